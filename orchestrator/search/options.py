"""The schemas of the search/ and adaptive/ groups: SearchConfig (sweep.kind=lr_search, lr_search.py) and
AdaptiveConfig (adaptive IsoFLOP placement, adaptive.py). Pure dataclasses (no Optuna), registered in Hydra's
ConfigStore through orchestrator/config.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SAMPLERS = ("tpe", "gp")
PRUNERS = ("median", "successive_halving", "none")


def _check_positive_finite(key: str, values: list[float]) -> None:
    for value in values:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{key} contains {value}: every entry must be a positive finite number.")


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
