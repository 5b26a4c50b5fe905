"""Trials that span workers (trainers/parallel.py): DDP and FSDP over gloo on CPU, ranks as plain processes.

Each rank is a subprocess that joins a gloo process group (as Ray Train's workers do) and calls trainers.gpt.train
with the same config; the runner's part (orchestrator/runner/train.py) is tested through Ray in test_runner.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from trainers.config import DataConfig, ModelConfig
from trainers.gpt import train
from trainers.model import GPT

REPO = Path(__file__).resolve().parents[2]
RANK = """
import json, os, sys
import torch.distributed as dist
from trainers.gpt import train
config, run_dir, stop_at, out = json.loads(sys.argv[1]), sys.argv[2] or None, int(sys.argv[3]), sys.argv[4]
dist.init_process_group("gloo")
class Interrupt(Exception):
    pass
def report(metrics):  # every rank stops at the same step, as a trial whose worker died would be rescheduled
    if stop_at and metrics["tokens"] >= stop_at:
        raise Interrupt
try:
    result = train(config, report, run_dir=run_dir, threads=1)
except Interrupt:
    result = None
if dist.get_rank() == 0:
    open(out, "w").write(json.dumps(result))  # closed at once (CPython), before os._exit
dist.barrier()
# Both ranks are done: leave without tearing gloo down (its threads abort a process now and then at exit,
# "terminate called without an active exception": a teardown matter, not the trial's).
os._exit(0)
"""


def run_ranks(tmp_path: Path, config: dict, *, world: int, mode: str, run_dir: Path | None = None,
              stop_at: int = 0) -> dict | None:
    """Rank 0's result of `config` trained on `world` gloo ranks of 1 thread each, sharing the model by `mode`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / f"result-{mode}-{world}-{port}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "WORLD_SIZE": str(world), "SCALING_PARALLEL": mode, "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, "-c", RANK, json.dumps(config), str(run_dir or ""), str(stop_at),
                               str(out)], env={**env, "RANK": str(r)}, stderr=subprocess.PIPE, text=True)
             for r in range(world)]
    errors = [p.communicate(timeout=300)[1] for p in ranks]
    assert all(p.returncode == 0 for p in ranks), "\n".join(errors)
    return json.loads(out.read_text())


def uneven(tiny_config):
    # 11 sequences per step in micro-batches of 5: rank 0 takes 6 (two micro-batches), rank 1 takes 5 (one, plus
    # one at weight 0 to join FSDP's gathers); the last step has 1 sequence, rank 1 none.
    return tiny_config(tokens=32 * (11 * 4 + 1), trainer={"batch_tokens": 32 * 11, "micro_batch_tokens": 32 * 5,
                                                          "eval_tokens": 32 * 16, "checkpoint_interval_tokens": 32 * 22,
                                                          "eval_interval_tokens": 32 * 22})


@pytest.mark.parametrize("mode", ["fsdp", "ddp"])
def test_two_ranks_train_the_one_worker_trial(tmp_path, tiny_config, mode):
    # The same global batches in the same order, the gradient of the same batch mean: only float summation order
    # differs (FSDP's reduce-scatter, DDP's all-reduce), so the losses agree to float32 rounding (measured: 1.1e-8
    # relative for the eval loss, 0 for the train loss, after 5 steps); 1e-6 leaves room for that and no more
    # (the gradient of rank 0's half of each batch alone moves the eval loss by 9e-3).
    config = uneven(tiny_config)
    one = train(config, lambda m: None, threads=1)
    two = run_ranks(tmp_path, config, world=2, mode=mode)
    assert two["status"] == "finished" and two["extra"]["workers"] == 2
    # Rank 0 holds its shards under FSDP (each tensor's first dimension split in 2, rank 0 taking the larger
    # half), the whole model under DDP.
    n, held = one["extra"]["n_params"], two["extra"]["params_per_worker"]
    assert one["extra"]["params_per_worker"] == n
    assert (n / 2 <= held < 0.52 * n) if mode == "fsdp" else held == n, (held, n)
    assert two["final_eval_loss"] == pytest.approx(one["final_eval_loss"], rel=1e-6)
    assert two["final_train_loss"] == pytest.approx(one["final_train_loss"], rel=1e-6)
    assert (two["tokens"], two["steps"], two["flops"]) == (one["tokens"], one["steps"], one["flops"])


def test_an_fsdp_checkpoint_is_full_state_and_resumes_on_one_worker_ddp_or_fsdp(tmp_path, tiny_config):
    # Two FSDP ranks stop after step 3 (tokens 1056); rank 0 wrote the checkpoint at 704 tokens (step 2) from the
    # gathered shards. One worker, two DDP ranks and two FSDP ranks resume from it and end where the uninterrupted
    # trial ends.
    import torch

    config = uneven(tiny_config)
    reference = train(config, lambda m: None, threads=1)
    sharded = tmp_path / "written"
    assert run_ranks(tmp_path, config, world=2, mode="fsdp", run_dir=sharded, stop_at=32 * 33) is None
    state = torch.load(sharded / "checkpoint.pt", weights_only=True)
    assert state["counters"]["tokens"] == 32 * 22
    model = GPT(ModelConfig(**config["model"]), vocab_size=DataConfig(**config["data"]).vocab_size)
    full = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert {name: tuple(t.shape) for name, t in state["model"].items()} == full  # whole tensors, not shards
    for resume in ("one", "ddp", "fsdp"):
        folder = tmp_path / f"resume-{resume}"
        folder.mkdir()
        (folder / "checkpoint.pt").write_bytes((sharded / "checkpoint.pt").read_bytes())
        result = (train(config, lambda m: None, run_dir=str(folder), threads=1) if resume == "one" else
                  run_ranks(tmp_path, config, world=2, mode=resume, run_dir=folder))
        assert result["extra"]["resumed_from_tokens"] == 32 * 22
        assert result["final_eval_loss"] == pytest.approx(reference["final_eval_loss"], rel=1e-6), resume
        assert result["final_train_loss"] == pytest.approx(reference["final_train_loss"], rel=1e-6), resume
    # And the other way round: one worker's checkpoint resumes on two FSDP ranks.
    alone = tmp_path / "alone"

    def stop(metrics):
        if metrics["tokens"] >= 32 * 33:
            raise InterruptedError
    with pytest.raises(InterruptedError):
        train(config, stop, run_dir=str(alone), threads=1)
    result = run_ranks(tmp_path, config, world=2, mode="fsdp", run_dir=alone)
    assert result["extra"]["resumed_from_tokens"] == 32 * 22
    assert result["final_eval_loss"] == pytest.approx(reference["final_eval_loss"], rel=1e-6)


def test_an_unknown_mode_is_one_sentence(monkeypatch):
    from trainers.parallel import PARALLEL_ENV, mode

    monkeypatch.setenv(PARALLEL_ENV, "zero3")
    with pytest.raises(ValueError, match=r"^SCALING_PARALLEL='zero3' is unknown: allowed are ddp, fsdp\.$"):
        mode()
