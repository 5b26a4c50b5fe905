"""Typed config of a sweep invocation: the schema of every Hydra group, registered in the ConfigStore.

Config flows one way: Hydra composes `conf/`, `cli.to_typed` turns the `DictConfig` into these
dataclasses once (running every `__post_init__` check), and nothing below the CLI imports hydra or
omegaconf. A typo'd key or a wrong type is rejected by OmegaConf against these schemas before
anything runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from orchestrator.compare.options import CompareConfig
from orchestrator.fitting.options import FitConfig
from orchestrator.hparams import HParamsConfig
from orchestrator.pilot.options import PilotConfig
from orchestrator.prepare.options import PrepareConfig
from trainers.config import DataConfig, ModelConfig, TrainerConfig

SWEEP_KINDS = ("grid", "isoflop", "list", "lr_search")
SAMPLERS = ("tpe", "gp")
PRUNERS = ("median", "successive_halving", "none")
SIZE_CONVENTIONS = ("total", "nonembed")
ACTIONS = ("run", "plan", "fit", "report", "compare", "prepare", "pilot")
ORDERS = ("budget", "cost", "plan")
MAX_NAME_LENGTH = 100
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
    kind=lr_search: for each model size (the `sizes` at each of the `tokens` or `budgets`), an Optuna
                  search of the learning rate (group `search/`); see orchestrator/search/lr_search.py.

    Any kind can take its learning rates from a finished search (`lr_from`), and kind=isoflop can
    place its sizes adaptively (group `adaptive/`, see orchestrator/search/adaptive.py).
    """

    name: str = "sweep"
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
    lr_from: str = ""
    """Name of a finished kind=lr_search sweep: each trial's trainer.lr is that search's power law
    lr_opt(N) = k N^p at the trial's N_total (the `hyperparameters.lr=tuned` handoff); empty: off."""
    forks: bool = False
    """Trials that differ only in D share one constant-rate WSD trunk, forked into a cooldown at each D
    (trainer.schedule=wsd; Hägele et al. 2024; orchestrator/forks.py). grid and isoflop sweeps."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError(
                f"sweep.name={self.name!r} is invalid: it names the MLflow experiment and the report folder, so "
                f"use letters, digits, '_', '.' and '-'."
            )
        if len(self.name) > MAX_NAME_LENGTH:
            # It becomes a folder name (reports/<name>/, checkpoints/<name>/), and file names stop at 255 bytes.
            raise ValueError(f"sweep.name is {len(self.name)} characters long: the limit is {MAX_NAME_LENGTH}, "
                             f"since it names the MLflow experiment and the report folder.")
        bad_seeds = [s for s in self.seeds if not (isinstance(s, int) and s >= 0)]
        if bad_seeds:
            raise ValueError(f"sweep.seeds contains {bad_seeds[0]}: seeds must be integers >= 0 (numpy and torch "
                             f"generators reject negative seeds).")
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
        if self.forks and self.kind not in ("grid", "isoflop"):
            raise ValueError(f"sweep.forks=true with sweep.kind={self.kind}: forks are for grid and isoflop sweeps.")
        if self.lr_from and self.lr:
            raise ValueError("sweep.lr_from and sweep.lr are both set: take learning rates from a search or give an "
                             "axis, not both.")
        for index, trial in enumerate(self.trials):
            unknown = sorted(set(trial) - set(LIST_TRIAL_KEYS))
            if unknown:
                raise ValueError(
                    f"sweep.trials[{index}] has unknown key {unknown[0]!r}: allowed are {', '.join(LIST_TRIAL_KEYS)}."
                )


@dataclass
class AdaptiveConfig:
    """Adaptive IsoFLOP placement (group `adaptive/`, for sweep.kind=isoflop; orchestrator/search/adaptive.py).

    Each budget's planned `sweep.sizes_per_budget` sizes run as a first wave; then sizes are added where the
    budget's minimum is unbracketed or least certain, until its N_opt is known within `tolerance` or a cap
    (`max_sizes`, `max_flops`) is reached.
    """

    enabled: bool = False
    """Place sizes adaptively (needs sweep.kind=isoflop); false runs the planned sizes only."""
    tolerance: float = 0.1
    """Stop a budget when the relative uncertainty of its N_opt is below this."""
    max_flops: float = 0.0
    """Stop adding sizes once the sweep has spent this many FLOPs (0: no cap)."""
    max_sizes: int = 10
    """Most sizes per budget, the first wave included."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise ValueError(f"adaptive.tolerance={self.tolerance} is invalid: it must be > 0.")
        if not (math.isfinite(self.max_flops) and self.max_flops >= 0):
            raise ValueError(f"adaptive.max_flops={self.max_flops} is invalid: it must be >= 0 (0: no cap).")
        if self.max_sizes < 3:
            raise ValueError(f"adaptive.max_sizes={self.max_sizes} is invalid: it must be >= 3 (a parabola needs 3 "
                             f"sizes).")


@dataclass
class SearchConfig:
    """A per-size hyperparameter search with Optuna (group `search/`), used by sweep.kind=lr_search."""

    sampler: str = "tpe"
    """tpe (Optuna's TPESampler) or gp (GPSampler, Gaussian-process Bayesian optimisation)."""
    pruner: str = "median"
    """median, successive_halving or none: stops weak trials early from their intermediate eval_loss."""
    trials_per_size: int = 5
    """Trials (finished or pruned) per study, i.e. per model size."""
    parallel_per_size: int = 1
    """Trials of one size running at once (sizes run side by side); 1 lets each trial learn from the last."""
    startup_trials: int = 2
    """Random trials before the sampler models the loss, and finished trials before the pruner may prune."""
    lr_min: float = 1e-4
    """Lower end of the log-uniform learning-rate range."""
    lr_max: float = 1e-1
    """Upper end of the log-uniform learning-rate range."""
    batch_tokens: list[int] = field(default_factory=list)
    """Also search the batch size over these values (empty: trainer.batch_tokens)."""
    warmup_tokens: list[int] = field(default_factory=list)
    """Also search the warmup over these values (empty: trainer.warmup_tokens)."""
    storage: str = ""
    """Optuna storage: empty means the journal file optuna.journal next to the MLflow SQLite DB (or in the
    working folder for a server); else an RDB URL (sqlite:///..., postgresql://...)."""
    seed: int = 0
    """Sampler seed (per size it is offset by the size's index), for reproducible searches."""
    lr_law_of: str = "N"
    """What the tuned law lr_opt = k x^p is a function of when a sweep uses it (sweep.lr_from): N (model size),
    D (tokens) or C (compute)."""

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"search.sampler={self.sampler!r} is unknown: allowed are {', '.join(SAMPLERS)}.")
        if self.pruner not in PRUNERS:
            raise ValueError(f"search.pruner={self.pruner!r} is unknown: allowed are {', '.join(PRUNERS)}.")
        for key in ("trials_per_size", "parallel_per_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"search.{key}={getattr(self, key)} is invalid: it must be >= 1.")
        if self.startup_trials < 0:
            raise ValueError(f"search.startup_trials={self.startup_trials} is invalid: it must be >= 0.")
        _check_positive_finite("search.lr_min", [self.lr_min])
        _check_positive_finite("search.lr_max", [self.lr_max])
        if self.lr_min >= self.lr_max:
            raise ValueError(f"search.lr_min={self.lr_min} must be below search.lr_max={self.lr_max}.")
        _check_positive_finite("search.batch_tokens", self.batch_tokens)
        if self.seed < 0:
            raise ValueError(f"search.seed={self.seed} is invalid: it must be >= 0.")
        if self.lr_law_of not in ("N", "D", "C"):
            raise ValueError(f"search.lr_law_of={self.lr_law_of!r} is unknown: allowed are N, D, C.")
        if self.storage and "://" not in self.storage:
            raise ValueError(f"search.storage={self.storage!r} is not a URL: give an RDB URL such as "
                             f"sqlite:///ABSOLUTE/PATH.db, or leave it empty for the journal file.")


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
        for key in ("gpus_per_trial", "memory_per_trial_gb", "gpu_hour_cost"):  # NaN compares false with everything: test it
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


@dataclass
class Config:
    """The root config (conf/config.yaml)."""

    action: str = "run"
    """run (plan, then run pending trials), plan (print the plan; run and write nothing), fit, report, compare
    (the compute multiplier of compare.variants over compare.baseline: orchestrator/compare)."""
    sweep: SweepConfig = field(default_factory=SweepConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    """action=prepare: a text/JSONL/Parquet corpus -> data=tokens files (orchestrator/prepare)."""
    search: SearchConfig = field(default_factory=SearchConfig)
    pilot: PilotConfig = field(default_factory=PilotConfig)
    """action=pilot: short runs that measure the sweep's lr and batch rules and centre (orchestrator/pilot)."""
    hparams: HParamsConfig = field(default_factory=HParamsConfig)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action={self.action!r} is unknown: allowed are {', '.join(ACTIONS)}.")
        if self.action == "prepare":
            self.prepare.check_paths()
        if self.adaptive.enabled and self.sweep.kind != "isoflop":
            raise ValueError(f"adaptive.enabled=true needs sweep.kind=isoflop, not {self.sweep.kind!r}: adaptive "
                             f"placement adds sizes along each budget's IsoFLOP profile.")


GROUP_SCHEMAS = {
    "sweep": SweepConfig,
    "model": ModelConfig,
    "data": DataConfig,
    "trainer": TrainerConfig,
    "tracking": TrackingConfig,
    "cluster": ClusterConfig,
    "search": SearchConfig,
    "hparams": HParamsConfig,
    "adaptive": AdaptiveConfig,
}
