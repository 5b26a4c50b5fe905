"""How a trial that spans workers shares its model: DDP (a replica per worker) or FSDP (each worker holds a shard).

The runner (orchestrator/runner/train.py) starts the workers on Ray Train, which initialises torch.distributed,
and says which mode the user chose (`cluster.parallel`) in the environment variable PARALLEL_ENV, as torchrun
says RANK and WORLD_SIZE: the trainer's call (`trainers/api.py`) stays the same for one worker and for many.

- ddp: `DistributedDataParallel` (Li et al. 2020, PyTorch Distributed: Experiences on Accelerating Data Parallel
  Training): every worker holds the whole model and optimizer; gradients are all-reduced (averaged).
- fsdp: torch's `fully_shard` (FSDP2; Zhao et al. 2023, PyTorch FSDP: Experiences on Scaling Fully Sharded Data
  Parallel; the ZeRO-3 partitioning of Rajbhandari et al. 2020): each transformer block, then the rest of the
  model (embeddings, final norm, head), is one unit whose parameters, gradients and optimizer state are split
  across the workers; a unit's parameters are all-gathered for its forward and backward and its gradients
  reduce-scattered (averaged, as DDP's). Each worker's memory for the model state is then about 1/k of the whole,
  for a model that does not fit one device. The arithmetic is that of DDP: the same loss up to float summation
  order.

Checkpoints are full-state in both modes (`full_state`): unsharded tensors on the CPU, the model's state_dict keys
and the optimizer's state keyed by parameter name (torch.distributed.checkpoint.state_dict), so a checkpoint of an
FSDP trial resumes on one worker, on DDP workers or on FSDP workers of any count, and the other ways round.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

PARALLEL_ENV = "SCALING_PARALLEL"
"""The environment variable that names the mode of a multi-worker trial (absent: ddp)."""
MODES = ("ddp", "fsdp")


def mode() -> str:
    """The mode the runner chose for this multi-worker trial (PARALLEL_ENV; ddp when it is not set)."""
    chosen = os.environ.get(PARALLEL_ENV) or "ddp"
    if chosen not in MODES:
        raise ValueError(f"{PARALLEL_ENV}={chosen!r} is unknown: allowed are {', '.join(MODES)}.")
    return chosen


def shard(model: nn.Module, *, blocks: nn.ModuleList) -> None:
    """FSDP2 in place: each of `blocks` one unit, then the root (what is left: embeddings, final norm, head; a
    tied head is the embedding and stays in the root's unit). `token_losses` gathers parameters as `forward`
    does."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method  # noqa: PLC0415

    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    register_fsdp_forward_method(model, "token_losses")


def held(model: nn.Module) -> int:
    """Parameter elements this rank holds: the whole model's under DDP or on one worker, its shards' under FSDP
    (about 1/k of them; FSDP2 splits each tensor's first dimension, rank 0 taking the larger part)."""
    from torch.distributed.tensor import DTensor  # noqa: PLC0415

    return sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in model.parameters())


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's and the optimizer's full (unsharded) state on the CPU. Under FSDP it gathers the shards: a
    collective, which every rank must call; the state is rank 0's to write (other ranks get empty dicts)."""
    from torch.distributed.checkpoint.state_dict import (  # noqa: PLC0415
        StateDictOptions, get_model_state_dict, get_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (get_model_state_dict(model, options=options),
            get_optimizer_state_dict(model, optimizer, options=options))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, *, model_state: dict[str, Any],
                    optimizer_state: dict[str, Any]) -> None:
    """Load a full state (`full_state`'s) into a plain, DDP's or FSDP's model (each rank keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import (  # noqa: PLC0415
        StateDictOptions, set_model_state_dict, set_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, model_state, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
