"""Options of the comparison stage (the `compare:` node of the root config). Owned by the comparison stage.

A plain dataclass (no hydra/omegaconf import), registered by the root schema (orchestrator/config.py) like
`FitConfig`; `__post_init__` rejects a bad value with one sentence naming the dotted key and what is allowed.
Whether the sweeps named exist and can be compared is checked by the stage (compare/run.py), which needs the
tracking store.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from orchestrator.fitting import methods as registry

METHODS = ("headline", *registry.names(comparable=True))  # headline: the first that fitted every sweep
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


@dataclass
class CompareConfig:
    """Which sweeps to compare and how (`action=compare`); see compare/run.py.

    A sweep is named as it is in the tracking store (its `sweep.name`), or given as a CSV of runs (a path ending
    in `.csv`, read with the `fit.columns` mapping like `fit.runs_csv`).
    """

    baseline: str = ""  # the reference sweep: M(C) says how much compute *it* needs to match a variant
    variants: list[str] = field(default_factory=list)  # one or more sweeps judged against the baseline
    budgets: list[float] = field(default_factory=list)  # target budgets (FLOPs) beside the swept ones; empty:
    # one and two decades beyond the largest budget the sweeps share
    method: str = "headline"  # the frontier each sweep is fitted with: the first frontier method every sweep's
    # fit produced (fit.methods order; parametric first), or one of parametric, parametric_floor, vpnls, isoflop
    joint_E: bool = False  # also fit all sweeps jointly with one shared irreducible loss E
    bootstrap: int = 1000  # resamples of each sweep's runs (0: no intervals)
    ci: float = 0.90  # level of the percentile intervals of M(C)
    seed: int = 0  # seed of the resampling (sweep i uses seed + i: the sweeps are resampled independently)
    name: str = ""  # the comparison's report folder and MLflow experiment; empty: compare-<baseline>-vs-<variants>

    def __post_init__(self) -> None:
        for key in ("baseline", "name"):
            value = getattr(self, key)
            if not isinstance(value, str):
                raise ValueError(f"compare.{key} must be a string, got {value!r}.")
        if self.name and not NAME.fullmatch(self.name):
            raise ValueError(f"compare.name={self.name!r} is invalid: it names the report folder and the MLflow "
                             "experiment, so use up to 100 letters, digits, '_', '.' and '-'.")
        self.variants = [str(v) for v in self.variants]
        if any(not v for v in self.variants):
            raise ValueError(f"compare.variants={self.variants!r} contains an empty name: give sweep names or "
                             "CSV paths.")
        budgets = list(self.budgets)
        if not all(isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c > 0
                   for c in budgets):
            raise ValueError(f"compare.budgets must be positive FLOP counts, got {budgets!r}.")
        self.budgets = sorted({float(c) for c in budgets})
        if self.method not in METHODS:
            raise ValueError(f"compare.method={self.method!r} is unknown: allowed are {', '.join(METHODS)}.")
        if not isinstance(self.bootstrap, int) or isinstance(self.bootstrap, bool) or self.bootstrap < 0:
            raise ValueError(f"compare.bootstrap must be an integer >= 0 (resamples), got {self.bootstrap!r}.")
        if not (isinstance(self.ci, (int, float)) and math.isfinite(self.ci) and 0 < self.ci < 1):
            raise ValueError(f"compare.ci must be a confidence level strictly between 0 and 1, got {self.ci!r}.")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"compare.seed must be an integer >= 0, got {self.seed!r}.")
