"""A trial that spans several workers, run on Ray Train (`ray.train.torch.TorchTrainer`).

The trial loop (orchestrator/runner/__init__.py) submits such a trial as one small Ray task (no CPU of its own) that
drives a `TorchTrainer`: Ray Train reserves the trial's workers as one placement group (all of them or none,
so a full cluster never holds half-placed gangs), starts one process per worker with `cluster.cpus_per_trial`
CPUs and `cluster.gpus_per_trial` GPUs each, and sets up torch.distributed between them (gloo on CPU, NCCL on
GPUs). Every worker calls the trial's trainer with the same config; the trainer sees torch.distributed and
splits the global batch (trainers/gpt.py), sharing the model as `cluster.parallel` says (ddp or fsdp: set in each
worker's environment as trainers.parallel.PARALLEL_ENV, trainers/parallel.py). Rank 0 streams its reports to
the driver's queue exactly as a one-worker trial does; the other ranks' reports are dropped. Rank 0's result
comes back through a mailbox (a Ray queue owned by the driving task).

Faults: Ray Train's own restarts are off (FailureConfig(max_failures=0)) so that the run stage's policies hold
unchanged. A worker process or node that dies raises `TrainWorkerLost`, which the loop treats as `lost`
(rescheduled without using a crash retry): the next attempt starts a new gang, whose trainer resumes from the
trial's last checkpoint in its run_dir (written by rank 0: on a multi-node cluster cluster.storage must be a
folder every node mounts). An exception in the trainer is a crash with that worker's traceback.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import ray
from ray.util.queue import Queue

CONTROLLER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


class TrainWorkerLost(RuntimeError):
    """A worker of a multi-worker trial (its process or its node) died: the trial is rescheduled as lost."""


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: run the trainer; rank 0 reports and posts the result."""
    import ray.train  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from trainers.api import load_trainer  # noqa: PLC0415
    from trainers.parallel import PARALLEL_ENV  # noqa: PLC0415

    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = loop_config["device"]
    if device == "cuda":  # the GPU Ray Train gave this worker
        from ray.train.torch import get_device  # noqa: PLC0415

        torch.cuda.set_device(get_device())
    os.environ[PARALLEL_ENV] = loop_config["parallel"]  # this process is the trial's alone
    key, queue = tuple(loop_config["key"]), loop_config["queue"]
    reporter = loop_config["reporter"](queue, key) if rank == 0 else (lambda metrics: None)
    if rank == 0:
        meta = {"host": socket.gethostname(), "device": device, "node": ray.get_runtime_context().get_node_id(),
                "started": time.time()}
        reporter.send({"kind": "start", "key": key, **meta})
    try:
        result = load_trainer(loop_config["target"])(loop_config["config"], reporter, run_dir=loop_config["run_dir"],
                                                     device=device, threads=loop_config["threads"])
    except BaseException:
        if rank != 0:
            raise
        if reporter.violation is None:
            reporter.flush()
            raise
        result = None  # the trainer let report()'s ContractError through: the violation is the outcome
    if rank == 0:  # the same payload as runner.execute_trial's
        loop_config["mailbox"].put({"result": result, "reports": reporter.tail(), "meta": meta,
                                    "violation": reporter.violation, "ended": time.time()})


def execute_on_train(config: dict[str, Any], *, key: tuple[str, int], target: str, queue: Queue,
                     run_dir: str | None, threads: int, device: str, workers: int, gpus_per_worker: float,
                     storage: str, reporter: type, parallel: str = "ddp") -> dict[str, Any]:
    """Body of the Ray task that drives one multi-worker trial; returns what execute_trial returns:
    {"result", "reports" (the tail), "meta"} of rank 0. `reporter` is the runner's streaming reporter class
    (runner._Reporter: passed, not imported, so that the runner alone knows it)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig  # noqa: PLC0415
    from ray.train.torch import TorchConfig, TorchTrainer  # noqa: PLC0415

    mailbox = Queue(actor_options={"num_cpus": 0})
    resources = {"CPU": float(threads)}
    if gpus_per_worker:
        resources["GPU"] = float(gpus_per_worker)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": config, "key": list(key), "target": target, "queue": queue, "mailbox": mailbox,
                           "reporter": reporter, "run_dir": run_dir, "threads": threads, "device": device,
                           "parallel": parallel},
        torch_config=TorchConfig(backend="nccl" if device == "cuda" else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(gpus_per_worker),
                                     resources_per_worker=resources, placement_strategy="PACK"),
        run_config=RunConfig(name=f"{key[0]}-{key[1]}-{os.getpid()}", storage_path=storage,
                             failure_config=FailureConfig(max_failures=0)),
    )
    try:
        trainer.fit()
    except Exception as err:  # noqa: BLE001  (sorted below: a lost worker, or the trainer's own error)
        lost = _lost_reason(err)
        if lost is not None:
            raise TrainWorkerLost(lost) from None
        raise RuntimeError(_trainer_error(err)) from None
    payload = mailbox.get(timeout=60)
    ray.kill(mailbox.actor)
    return payload


def _failures(err: BaseException) -> list[BaseException]:
    return list(getattr(err, "worker_failures", {}).values()) or [getattr(err, "controller_failure", err)]


def _lost_reason(err: BaseException) -> str | None:
    """Why the gang lost a worker (its process or node died), or None when the trainer itself raised."""
    died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.LocalRayletDiedError, ray.exceptions.OwnerDiedError)
    for failure in _failures(err):
        if isinstance(failure, died) or "died" in type(failure).__name__.lower():
            return f"a worker of the trial died: {(str(failure).strip().splitlines() or [type(failure).__name__])[0]}"
    text = str(err)
    if "ActorDiedError" in text or "The actor died" in text or "SYSTEM_ERROR" in text:
        return f"a worker of the trial died: {text.strip().splitlines()[-1]}"
    return None


def _trainer_error(err: BaseException) -> str:
    """The failing worker's error, traceback included (what a one-worker trial records as crashed)."""
    return "\n".join(str(f) for f in _failures(err))
