"""Typed config of a sweep invocation: the schema of every Hydra group, registered in the ConfigStore.

Config flows one way: Hydra composes `conf/`, `load_config` turns the `DictConfig` into these
dataclasses once (running every `__post_init__` check), and nothing below the CLI imports hydra or
omegaconf. A typo'd key or a wrong type is rejected by OmegaConf against these schemas before
anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from orchestrator.fitting.options import FitConfig
from trainers.config import DataConfig, ModelConfig, TrainerConfig

SWEEP_KINDS = ("grid", "isoflop", "list")
SIZE_CONVENTIONS = ("total", "nonembed")
ACTIONS = ("run", "plan", "fit", "report")
ORDERS = ("budget", "cost", "plan")
LIST_TRIAL_KEYS = (
    "size", "n_layer", "d_model", "n_head", "tokens", "budget", "lr", "batch_tokens", "warmup_tokens",
    "seed", "dataset",
)


def _check_positive_finite(key: str, values: list[float]) -> None:
    for value in values:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{key} contains {value}: every entry must be a positive finite number.")


@dataclass
class ShapeSpec:
    """An explicit model shape on the parameter axis."""

    n_layer: int
    d_model: int
    n_head: int


@dataclass
class SweepConfig:
    """A scaling sweep (group `sweep/`): grids over parameters, data and compute.

    kind=grid:    the cartesian product of the model axis (`sizes` or `shapes`), the data axis
                  (`datasets` x `tokens`) or the compute axis (`budgets`, D solved per shape), and
                  the hyperparameter axes (`lr`, `batch_tokens`, `warmup_tokens`, `seeds`).
    kind=isoflop: for each budget C, `sizes_per_budget` sizes log-spaced over a factor `span` around
                  the centre N_c = sqrt(C / (6 * centre_tokens_per_param)) (or the given `sizes`),
                  with D solved so that the exact training FLOPs equal C within `budget_tolerance`.
    kind=list:    the explicit `trials`, each a dict of keys from LIST_TRIAL_KEYS.
    """

    name: str = "???"
    """Sweep name: the MLflow experiment and the report folder."""
    kind: str = "grid"
    """grid, isoflop or list."""
    description: str = ""
    sizes: list[float] = field(default_factory=list)
    """Target parameter counts, resolved to shapes by the model's shape rule."""
    size_convention: str = "total"
    """Which count `sizes` target: total or nonembed parameters."""
    shapes: list[ShapeSpec] = field(default_factory=list)
    """Explicit shapes (instead of sizes)."""
    tokens: list[float] = field(default_factory=list)
    """Training token counts D (grid)."""
    budgets: list[float] = field(default_factory=list)
    """Training FLOP budgets C (grid or isoflop)."""
    datasets: list[str] = field(default_factory=list)
    """Dataset axis: names of configs in conf/data/; empty means the selected `data` group."""
    sizes_per_budget: int = 5
    """isoflop: model sizes per budget."""
    span: float = 8.0
    """isoflop: ratio of the largest to the smallest target size at each budget."""
    centre_tokens_per_param: float = 20.0
    """isoflop: tokens per parameter at the centre of each budget's sizes (Chinchilla's ~20)."""
    budget_tolerance: float = 0.01
    """Largest allowed |C_exact - C| / C for a trial planned from a budget."""
    min_tokens_per_param: float = 1.0
    """Reject trials with fewer tokens per parameter than this (0 allows any)."""
    lr: list[float] = field(default_factory=list)
    """Learning-rate axis; empty means trainer.lr."""
    batch_tokens: list[int] = field(default_factory=list)
    """Batch-size axis (tokens per step); empty means trainer.batch_tokens."""
    warmup_tokens: list[int] = field(default_factory=list)
    """Warmup axis; empty means trainer.warmup_tokens."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seed axis: each seed is its own trial."""
    trials: list[dict[str, Any]] = field(default_factory=list)
    """kind=list: explicit trials."""

    def __post_init__(self) -> None:
        if self.kind not in SWEEP_KINDS:
            raise ValueError(f"sweep.kind={self.kind!r} is unknown: allowed are {', '.join(SWEEP_KINDS)}.")
        if self.size_convention not in SIZE_CONVENTIONS:
            raise ValueError(
                f"sweep.size_convention={self.size_convention!r} is unknown: "
                f"allowed are {', '.join(SIZE_CONVENTIONS)}."
            )
        for key in ("sizes", "tokens", "budgets", "lr", "batch_tokens"):
            _check_positive_finite(f"sweep.{key}", getattr(self, key))
        for key in ("span", "centre_tokens_per_param", "budget_tolerance"):
            _check_positive_finite(f"sweep.{key}", [getattr(self, key)])
        if self.span < 1:
            raise ValueError(f"sweep.span={self.span} is invalid: it must be >= 1.")
        if self.sizes_per_budget < 1:
            raise ValueError(f"sweep.sizes_per_budget={self.sizes_per_budget} is invalid: it must be >= 1.")
        if not (math.isfinite(self.min_tokens_per_param) and self.min_tokens_per_param >= 0):
            raise ValueError(f"sweep.min_tokens_per_param={self.min_tokens_per_param} is invalid: it must be >= 0.")
        if any(w < 0 for w in self.warmup_tokens):
            raise ValueError(f"sweep.warmup_tokens={self.warmup_tokens} is invalid: entries must be >= 0.")
        if self.sizes and self.shapes:
            raise ValueError("sweep.sizes and sweep.shapes are both set: give target sizes or explicit shapes, not both.")
        if self.kind == "grid" and self.tokens and self.budgets:
            raise ValueError(
                "sweep.tokens and sweep.budgets are both set for kind=grid: "
                "give token counts or FLOP budgets (D is then solved per shape), not both."
            )
        if self.kind == "isoflop" and self.tokens:
            raise ValueError("sweep.tokens is set for kind=isoflop: an IsoFLOP sweep solves D from sweep.budgets.")
        for index, trial in enumerate(self.trials):
            unknown = sorted(set(trial) - set(LIST_TRIAL_KEYS))
            if unknown:
                raise ValueError(
                    f"sweep.trials[{index}] has unknown key {unknown[0]!r}: allowed are {', '.join(LIST_TRIAL_KEYS)}."
                )


@dataclass
class TrackingConfig:
    """Where runs are recorded (group `tracking/`)."""

    uri: str | None = None
    """MLflow tracking URI; None means sqlite:///<absolute cwd>/mlflow.db. http://host:port for a server."""
    experiment: str | None = None
    """MLflow experiment; None means the sweep name."""
    timeout_s: float = 10.0
    """Fail within this many seconds when the tracking store is unreachable."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"tracking.timeout_s={self.timeout_s} is invalid: it must be a positive number.")


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
    assumed_flops_per_s: float = 8.0e10
    """Throughput assumed per trial for time estimates (measured here: ~9e10 FLOP/s per 1-thread CPU trial)."""

    def __post_init__(self) -> None:
        if self.cpus_per_trial < 1:
            raise ValueError(f"cluster.cpus_per_trial={self.cpus_per_trial} is invalid: it must be >= 1.")
        if self.gpus_per_trial < 0:
            raise ValueError(f"cluster.gpus_per_trial={self.gpus_per_trial} is invalid: it must be >= 0.")
        if self.max_concurrent < 0 or self.max_retries < 0:
            raise ValueError("cluster.max_concurrent and cluster.max_retries must be >= 0.")
        if self.order not in ORDERS:
            raise ValueError(f"cluster.order={self.order!r} is unknown: allowed are {', '.join(ORDERS)}.")
        if not (math.isfinite(self.assumed_flops_per_s) and self.assumed_flops_per_s > 0):
            raise ValueError(
                f"cluster.assumed_flops_per_s={self.assumed_flops_per_s} is invalid: it must be a positive number."
            )


@dataclass
class Config:
    """The root config (conf/config.yaml)."""

    action: str = "run"
    """run (plan, then run pending trials), plan (print the plan; run and write nothing), fit, report."""
    sweep: SweepConfig = field(default_factory=SweepConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action={self.action!r} is unknown: allowed are {', '.join(ACTIONS)}.")


GROUP_SCHEMAS = {
    "sweep": SweepConfig,
    "model": ModelConfig,
    "data": DataConfig,
    "trainer": TrainerConfig,
    "tracking": TrackingConfig,
    "cluster": ClusterConfig,
}
