"""The schema of the cluster/ group: where and how trials run (Ray resources, retries, order, time limits, workers
per trial). Its owner is the runner (orchestrator/runner/), whose package imports Ray, which the config core must
not; so the schema lives beside it here (also read by preflight.py and plan_view.py); registered in Hydra's
ConfigStore through orchestrator/config.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ORDERS = ("budget", "cost", "plan")
PARALLEL = ("ddp", "fsdp")


@dataclass
class WorkersRule:
    """Workers per trial by scale: a trial whose `of` (C: its budget, else C_exact; N: N_total; D: tokens) reaches
    `at[i]` gets `workers[i]` workers (the last threshold it reaches; below the first, cluster.workers_per_trial)."""

    of: str = "C"
    at: list[float] = field(default_factory=list)
    workers: list[int] = field(default_factory=list)

    def check(self) -> None:
        if self.of not in ("C", "N", "D"):
            raise ValueError(f"cluster.workers_rule.of={self.of!r} is unknown: allowed are C, N, D.")
        if len(self.at) != len(self.workers):
            raise ValueError(f"cluster.workers_rule has {len(self.at)} thresholds (at) but {len(self.workers)} "
                             f"worker counts (workers): give one count per threshold.")
        if any(not (math.isfinite(a) and a > 0) for a in self.at) or list(self.at) != sorted(self.at):
            raise ValueError(f"cluster.workers_rule.at={list(self.at)} is invalid: thresholds must be positive and "
                             f"increasing.")
        if any(int(w) != w or w < 1 for w in self.workers):
            raise ValueError(f"cluster.workers_rule.workers={list(self.workers)} is invalid: each must be a whole "
                             f"number >= 1.")


@dataclass
class ClusterConfig:
    """Where and how trials run (group `cluster/`)."""

    address: str | None = None
    """None starts a local Ray instance; auto, ray://host:port or host:port joins an existing cluster."""
    num_cpus: int | None = None
    """CPUs of the local Ray instance; None means all cores."""
    cpus_per_trial: int = 1
    """CPUs reserved per trial; the trial's torch thread count is set to match."""
    gpus_per_trial: float = 0.0
    """GPUs per trial; fractions pack small models onto one GPU."""
    memory_per_trial_gb: float = 0.0
    """Memory reserved per trial (0: no reservation)."""
    max_concurrent: int = 0
    """Most trials running at once (0: as many as the resources allow)."""
    max_retries: int = 2
    """Retries of a crashed trial."""
    retry_results: bool = False
    """Rerun diverged and oom trials on the next invocation (by default they are results)."""
    order: str = "budget"
    """Trial order: budget (smallest budgets first), cost (cheapest first) or plan."""
    storage: str = ""
    """Checkpoint folder (trial checkpoints, WSD trunks and their fork points): empty means ./checkpoints; on a
    multi-node cluster give a path every node mounts (as Ray's own storage_path)."""
    workers_per_trial: int = 1
    """Workers per trial (each with cpus_per_trial CPUs and gpus_per_trial GPUs): above 1 a trial runs on Ray
    Train (TorchTrainer, DDP, one placement group per trial: orchestrator/runner/train.py), its batch the global
    batch split across the workers."""
    workers_rule: WorkersRule = field(default_factory=WorkersRule)
    """More workers for bigger trials (thresholds of C, N or D); empty: every trial gets workers_per_trial."""
    throughput: str = "assumed"
    """Where the plan's times come from: assumed (assumed_flops_per_s) or probe (a few timed steps per trial
    shape on this machine's device, cached: orchestrator/throughput.py; the built-in GPT trainer only)."""
    gpu_hour_cost: float = 0.0
    """Price of one GPU-hour (any currency): the plan prints the sweep's cost from its GPU-hours (0: no cost)."""
    parallel: str = "ddp"
    """How a multi-worker trial shares its model: ddp (a replica per worker, gradients all-reduced) or fsdp (torch's
    fully_shard: parameters, gradients and optimizer state split across the workers, for a model that does not fit
    one device; trainers/parallel.py). One worker has nothing to share: the setting changes nothing there."""
    assumed_flops_per_s: float = 3.0e10
    """Throughput assumed per trial for time estimates (measured here: the cpu_small sweep's 10k..400k
    parameter models, evaluation included, reach about 3e10 FLOP/s per 1-thread trial)."""
    trial_timeout_s: float | None = None
    """Wall-clock limit of one trial, after which it is stopped and recorded as timed_out: seconds, 0 for no
    limit, or null for 10x the trial's FLOPs at the slowest throughput measured so far in the sweep (before
    any, cluster.assumed_flops_per_s) + 600 s (orchestrator/faults.py)."""

    def __post_init__(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"cluster.num_cpus={self.num_cpus} is invalid: it must be >= 1 (or null: all cores).")
        if self.cpus_per_trial < 1:
            raise ValueError(f"cluster.cpus_per_trial={self.cpus_per_trial} is invalid: it must be >= 1.")
        # NaN compares false with everything: test it explicitly.
        for key in ("gpus_per_trial", "memory_per_trial_gb", "gpu_hour_cost"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"cluster.{key}={value} is invalid: it must be a finite number >= 0.")
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ValueError(f"cluster.gpus_per_trial={self.gpus_per_trial} is invalid: above 1 it must be a whole "
                             f"number of GPUs (Ray packs fractions onto one GPU only).")
        if self.max_concurrent < 0 or self.max_retries < 0:
            raise ValueError("cluster.max_concurrent and cluster.max_retries must be >= 0.")
        if self.workers_per_trial < 1:
            raise ValueError(f"cluster.workers_per_trial={self.workers_per_trial} is invalid: it must be >= 1.")
        if self.workers_per_trial > 1 or self.workers_rule.at:
            if 0 < self.gpus_per_trial < 1:
                raise ValueError(f"cluster.gpus_per_trial={self.gpus_per_trial} is a fraction, which a trial of "
                                 f"several workers cannot share: give whole GPUs per worker (or 0).")
        self.workers_rule.check()
        if self.throughput not in ("assumed", "probe"):
            raise ValueError(f"cluster.throughput={self.throughput!r} is unknown: allowed are assumed, probe.")
        if self.parallel not in PARALLEL:
            raise ValueError(f"cluster.parallel={self.parallel!r} is unknown: allowed are {', '.join(PARALLEL)}.")
        if self.order not in ORDERS:
            raise ValueError(f"cluster.order={self.order!r} is unknown: allowed are {', '.join(ORDERS)}.")
        if not (math.isfinite(self.assumed_flops_per_s) and self.assumed_flops_per_s > 0):
            raise ValueError(
                f"cluster.assumed_flops_per_s={self.assumed_flops_per_s} is invalid: it must be a positive number."
            )
        if self.trial_timeout_s is not None and not (math.isfinite(self.trial_timeout_s) and self.trial_timeout_s >= 0):
            raise ValueError(f"cluster.trial_timeout_s={self.trial_timeout_s} is invalid: it must be a number of "
                             f"seconds >= 0 (0: no limit), or null for the default derived from each trial's FLOPs.")

    def workers_for(self, *, C: float, N: float, D: float) -> int:
        """The number of workers of a trial of compute C, size N (total parameters) and D tokens."""
        x = {"C": C, "N": N, "D": D}[self.workers_rule.of]
        reached = [int(w) for a, w in zip(self.workers_rule.at, self.workers_rule.workers) if x >= a]
        return reached[-1] if reached else self.workers_per_trial
