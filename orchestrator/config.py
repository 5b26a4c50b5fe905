"""Typed config of a sweep invocation: the root schema and the sweep group's; GROUP_SCHEMAS names every Hydra
group's schema for the ConfigStore (cli.py registers them). Each other schema lives beside its owner and is
imported here: search/options.py (search, adaptive), cluster_options.py (the runner's cluster group),
tracking_options.py (tracking), hparams.py, trainers/config.py (model, data, trainer), and the fit, compare,
prepare and pilot nodes in their packages' options.py.

Config flows one way: Hydra composes `conf/`, `cli.to_typed` turns the `DictConfig` into these
dataclasses once (running every `__post_init__` check), and nothing below the CLI imports hydra or
omegaconf. A typo'd key or a wrong type is rejected by OmegaConf against these schemas before
anything runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.cluster_options import ClusterConfig
from orchestrator.compare.options import CompareConfig
from orchestrator.fitting.options import FitConfig
from orchestrator.hparams import HParamsConfig
from orchestrator.pilot.options import PilotConfig
from orchestrator.prepare.options import PrepareConfig
from orchestrator.search.options import AdaptiveConfig, SearchConfig
from orchestrator.tracking_options import TrackingConfig
from trainers.config import DataConfig, ModelConfig, TrainerConfig

SWEEP_KINDS = ("grid", "isoflop", "list", "lr_search")
SIZE_CONVENTIONS = ("total", "nonembed")
ACTIONS = ("run", "plan", "fit", "report", "compare", "prepare", "pilot", "forecast")
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
    early_stop: bool = False
    """isoflop: stop a running trial whose live forecast interval shows it can be neither its budget's minimum
    nor one of the sizes that bracket it (orchestrator/forecast/early_stop.py); recorded as pruned with the
    reason. Off by default; only for the trials planned up front (no effect with adaptive placement)."""

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
            raise ValueError("sweep.sizes and sweep.shapes are both set: "
                             "give target sizes or explicit shapes, not both.")
        if self.kind == "grid" and self.tokens and self.budgets:
            raise ValueError(
                "sweep.tokens and sweep.budgets are both set for kind=grid: "
                "give token counts or FLOP budgets (D is then solved per shape), not both."
            )
        if self.kind == "isoflop" and self.tokens:
            raise ValueError("sweep.tokens is set for kind=isoflop: an IsoFLOP sweep solves D from sweep.budgets.")
        if self.forks and self.kind not in ("grid", "isoflop"):
            raise ValueError(f"sweep.forks=true with sweep.kind={self.kind}: forks are for grid and isoflop sweeps.")
        if self.early_stop and self.kind != "isoflop":
            raise ValueError(f"sweep.early_stop=true with sweep.kind={self.kind}: early stopping protects an IsoFLOP "
                             f"profile's minimum, so it is for kind=isoflop sweeps only.")
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
@dataclass
class ForecastConfig:
    """action=forecast: each run's final loss forecast from a CSV of checkpoints (orchestrator/forecast/table.py)."""

    table: str = ""
    """The checkpoint CSV: run, step, loss, total_steps, peak_lr (optional: warmup_steps, schedule, min_lr_ratio,
    decay_fraction, cooldown_shape, n_params, tokens)."""

    def check(self) -> None:
        """What action=forecast needs that the other actions do not: a table that exists."""
        if not self.table:
            raise ValueError("forecast.table is required for action=forecast: give a CSV of checkpoints "
                             "(forecast.table=PATH.csv).")
        if not Path(self.table).is_file():
            raise ValueError(f"forecast.table={self.table} does not exist: give a CSV of checkpoints "
                             f"(forecast.table=PATH.csv).")


@dataclass
class Config:
    """The root config (conf/config.yaml)."""

    action: str = "run"
    """run (plan, then run pending trials), plan (print the plan; run and write nothing), fit, report, compare
    (the compute multiplier of compare.variants over compare.baseline: orchestrator/compare), forecast (each run
    of forecast.table's checkpoints: its forecast final loss)."""
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
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    """action=forecast: forecast.table=PATH.csv, a table of checkpoints (orchestrator/forecast/table.py)."""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action={self.action!r} is unknown: allowed are {', '.join(ACTIONS)}.")
        if self.action == "prepare":
            self.prepare.check_paths()
        if self.action == "forecast":
            self.forecast.check()
        if self.adaptive.enabled and self.sweep.kind != "isoflop":
            raise ValueError(f"adaptive.enabled=true needs sweep.kind=isoflop, not {self.sweep.kind!r}: adaptive "
                             f"placement adds sizes along each budget's IsoFLOP profile.")


def reports_dir(config: Config, name: str | None = None) -> Path:
    """<fit.out_dir>/<name> (default reports/<sweep.name>): the one place a stage's report files go, so that
    fit.out_dir moves them all (the fit's, the search's, adaptive placement's and the pilot's)."""
    return Path(config.fit.out_dir) / (name or config.sweep.name)


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
