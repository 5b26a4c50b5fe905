"""Pre-flight: what a run checks before it touches the tracking store or starts a trial.

A deterministic mistake (a trainer that cannot be imported, options the trainer rejects, data that is
missing or too small for a trial, resources that no node can ever give one trial) is one sentence and
exit 2 before mlflow.db exists; retries are kept for transient faults. `check_run` runs in the driver
before the runner (commands.action_run); `check_resources` runs in the runner once Ray is connected,
because an existing cluster's nodes are only known then, still before the store is written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from orchestrator.cluster_options import ClusterConfig
from orchestrator.config import Config
from orchestrator.errors import UsageError
from orchestrator.planner import Trial
from trainers.api import TrainerError, load_trainer, load_validator
from trainers.config import DataConfig

GIB = 2**30


class PreflightError(UsageError):
    """A run that cannot succeed as configured (one sentence; nothing was written)."""


def check_run(config: Config, *, trials: list[Trial]) -> None:
    """The trainer, its options on every trial, every dataset, and the local instance's CPUs."""
    check_trainer(config.trainer.target, trials)
    check_data(trials)
    check_local_cpus(config.cluster)


def check_trainer(target: str, trials: Iterable[Trial]) -> None:
    """The target imports and is a function; the trainer's own `validate` hook accepts every trial config."""
    try:
        load_trainer(target)
        validate = load_validator(target)
    except TrainerError as err:
        raise PreflightError(str(err)) from None
    if validate is None:
        return
    for trial in trials:
        try:
            validate(trial.config)
        except ValueError as err:  # the contract's one-sentence rejection (trainers/api.py)
            raise PreflightError(str(err)) from None


def check_data(trials: Iterable[Trial]) -> None:
    """Each dataset can serve its largest trial (from file sizes: nothing is read)."""
    needs: dict[str, tuple[DataConfig, int, int]] = {}
    for trial in trials:
        data = DataConfig(**trial.config["data"])
        seq_len = int(trial.config["model"]["seq_len"])
        known = needs.get(trial.dataset)
        tokens = max(trial.tokens, known[2] if known else 0)
        needs[trial.dataset] = (data, seq_len, tokens)
    for data, seq_len, tokens in needs.values():
        if data.seed < 0:
            raise PreflightError(f"data.seed={data.seed} is invalid: it must be >= 0.")
        if data.name == "synthetic":
            continue
        from trainers.data import DataError, check_data as check_source  # noqa: PLC0415  (imports torch)

        try:
            check_source(data, seq_len=seq_len, tokens=tokens)
        except DataError as err:
            raise PreflightError(str(err)) from None


def check_local_cpus(cluster: ClusterConfig) -> None:
    """A local instance has cluster.num_cpus (or all cores): a trial needing more would wait forever."""
    if cluster.address:
        return
    cpus = cluster.num_cpus or os.cpu_count() or 1
    if cluster.cpus_per_trial > cpus:
        raise PreflightError(
            f"cluster.cpus_per_trial={cluster.cpus_per_trial} can never be satisfied: the local Ray instance has "
            f"{cpus} CPUs ({'cluster.num_cpus' if cluster.num_cpus else 'all cores of this machine'}); lower "
            f"cluster.cpus_per_trial, or run on a larger cluster (cluster.address).")


def check_resources(cluster: ClusterConfig, nodes: list[dict[str, float]]) -> None:
    """Some alive node can give one trial all of cpus_per_trial, gpus_per_trial and memory_per_trial_gb at once;
    otherwise Ray would queue every trial forever. `nodes` are Ray's per-node resource totals."""
    need = {"CPU": float(cluster.cpus_per_trial), "GPU": float(cluster.gpus_per_trial),
            "memory": cluster.memory_per_trial_gb * GIB}
    if any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in need.items()) for node in nodes):
        return
    where = f"the Ray cluster at {cluster.address}" if cluster.address else "the local Ray instance"
    top = {k: max((node.get(k, 0.0) for node in nodes), default=0.0) for k in need}
    if need["GPU"] > 0 and top["GPU"] == 0:
        raise PreflightError(f"cluster.gpus_per_trial={cluster.gpus_per_trial:g} can never be satisfied: {where} has "
                             f"no GPU; set cluster.gpus_per_trial=0 to train on CPUs, or use a cluster with GPUs.")
    if top["CPU"] < need["CPU"]:
        raise PreflightError(f"cluster.cpus_per_trial={cluster.cpus_per_trial} can never be satisfied: the largest "
                             f"node of {where} has {top['CPU']:g} CPUs; lower cluster.cpus_per_trial.")
    if top["GPU"] < need["GPU"]:
        raise PreflightError(f"cluster.gpus_per_trial={cluster.gpus_per_trial:g} can never be satisfied: the largest "
                             f"node of {where} has {top['GPU']:g} GPUs; lower cluster.gpus_per_trial.")
    if top["memory"] < need["memory"]:
        raise PreflightError(f"cluster.memory_per_trial_gb={cluster.memory_per_trial_gb:g} can never be satisfied: "
                             f"the largest node of {where} offers {math.floor(top['memory'] / GIB * 10) / 10:g} GiB "
                             f"to tasks; lower cluster.memory_per_trial_gb.")
    raise PreflightError(f"no single node of {where} has cluster.cpus_per_trial={cluster.cpus_per_trial}, "
                         f"cluster.gpus_per_trial={cluster.gpus_per_trial:g} and cluster.memory_per_trial_gb="
                         f"{cluster.memory_per_trial_gb:g} at once; lower one of them.")


def check_gang(cluster: ClusterConfig, nodes: list[dict[str, float]], *, workers: int) -> None:
    """A trial of `workers` workers needs them all at once (Ray Train reserves them as one placement group): the
    cluster must hold that many workers of cluster.cpus_per_trial CPUs and cluster.gpus_per_trial GPUs, counted
    node by node, or the trial would wait forever."""
    if workers <= 1:
        return
    need = {"CPU": float(cluster.cpus_per_trial), "GPU": float(cluster.gpus_per_trial),
            "memory": cluster.memory_per_trial_gb * GIB}
    capacity = sum(min(int(node.get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0) for node in nodes)
    if capacity >= workers:
        return
    where = f"the Ray cluster at {cluster.address}" if cluster.address else "the local Ray instance"
    raise PreflightError(f"a trial of {workers} workers (cluster.workers_per_trial / cluster.workers_rule) can never "
                         f"be placed: {where} holds {capacity} workers of cluster.cpus_per_trial="
                         f"{cluster.cpus_per_trial} and cluster.gpus_per_trial={cluster.gpus_per_trial:g} at once; "
                         f"lower the workers per trial or use a larger cluster.")
