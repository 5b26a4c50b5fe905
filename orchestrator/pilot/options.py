"""PilotConfig: the `pilot:` node of the root config (action=pilot, orchestrator/pilot/run.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class PilotColumns:
    """pilot.runs_csv's column names (pilot.columns.N=non_embedding_param_size, ...)."""

    N: str = "N"
    """Model size (the law's N: e.g. non-embedding parameters)."""
    D: str = "D"
    """Training tokens."""
    lr: str = "lr"
    """Peak learning rate."""
    batch: str = "batch"
    """Batch size (its unit is the law's: sequences or tokens)."""
    loss: str = "loss"
    """Final loss."""


@dataclass
class PilotConfig:
    """How a pilot measures a sweep's learning-rate and batch rules, its IsoFLOP centre and its throughput."""

    name: str = ""
    """The hparams option it writes: hparams/pilot_<name>.yaml in the first --config-dir (empty: the sweep's name)."""
    budgets: int = 0
    """How many of the sweep's smallest budgets the learning-rate and batch search runs at; 0 (auto): 3 where the
    sweep has 4 or more budgets, else 2 (see `search_budgets`)."""
    centre_guess: float = 20.0
    """Tokens per parameter the search's cells and the first profile are centred on (Hoffmann et al. 2022's 20)."""
    cell_span: float = 4.0
    """At each budget the cells train at centre_guess and centre_guess x cell_span tokens per parameter."""
    trials_per_cell: int = 10
    """Optuna trials (finished or pruned) per cell (one size at one budget)."""
    lr_min: float = 3e-4
    """Lower end of the log-uniform learning-rate range searched (and the fitted rule's floor)."""
    lr_max: float = 1e-1
    """Upper end of the range (and the rule's ceiling)."""
    batch_choices: int = 3
    """Batch sizes searched per cell: D / (s 2^i) tokens for i < batch_choices, s = max(hparams.min_steps, 100)
    steps: each choice leaves the run a valid scaling point."""
    profile_sizes: int = 5
    """Sizes of the IsoFLOP profile at the smallest budget that locates its minimum."""
    profile_span: float = 16.0
    """Largest over smallest size of that profile."""
    max_extensions: int = 2
    """Times the profile may add 2 sizes beyond an edge whose size had the lowest loss."""
    bootstrap: int = 1000
    """Resamples for the law's intervals."""
    seed: int = 0
    runs_csv: str = ""
    """Instead of running: fit the law to a CSV of runs (one row per run: size, tokens, rate, batch, loss) and
    write its report (reports/pilot_<name>/)."""
    columns: PilotColumns = field(default_factory=PilotColumns)
    """runs_csv's column names, e.g. pilot.columns.N=non_embedding_param_size pilot.columns.batch=bsz."""
    predict: list[float] = field(default_factory=list)
    """[N, D]: also predict lr* and B* there (e.g. beyond the table's largest run)."""

    def __post_init__(self) -> None:
        if self.budgets < 0:
            raise ValueError(f"pilot.budgets={self.budgets} is invalid: it must be >= 1, or 0 for the default.")
        for key in ("centre_guess", "lr_min", "lr_max", "profile_span", "cell_span"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"pilot.{key}={value} is invalid: it must be a positive number.")
        if self.lr_min >= self.lr_max:
            raise ValueError(f"pilot.lr_min={self.lr_min} must be below pilot.lr_max={self.lr_max}.")
        for key in ("profile_span", "cell_span"):
            if getattr(self, key) <= 1:
                raise ValueError(f"pilot.{key}={getattr(self, key)} is invalid: it must be > 1.")
        for key, low in (("trials_per_cell", 3), ("batch_choices", 1), ("profile_sizes", 3), ("max_extensions", 0),
                         ("bootstrap", 0)):
            if getattr(self, key) < low:
                raise ValueError(f"pilot.{key}={getattr(self, key)} is invalid: it must be >= {low}.")
        if isinstance(self.columns, dict):
            self.columns = PilotColumns(**self.columns)
        if self.predict and (len(self.predict) != 2 or min(self.predict) <= 0):
            raise ValueError(f"pilot.predict={self.predict} is invalid: give [N, D], both positive.")

    def search_budgets(self, budgets: list[float]) -> list[float]:
        """The budgets the search's cells sit at: the `budgets` smallest of the sweep's; by default 3 where it has
        4 or more, else 2 (at 3 or more budgets the largest is then never a cell's, and the pilot stays a fraction
        of the sweep). On cpu_small 4 cells at 2 budgets identified the size term poorly (alpha -0.77 [-1.29,
        -0.07]) and 6 cells at 3 budgets well (alpha -0.74 [-0.98, -0.45], 254 s): docs/own-project.md."""
        count = self.budgets or (3 if len(budgets) >= 4 else 2)
        return sorted(budgets)[:count]

    def column(self, key: str) -> str:
        return getattr(self.columns, key)
