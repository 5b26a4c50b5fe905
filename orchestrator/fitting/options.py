"""Options of the fitting stage (the `fit:` node of the root config). Owned by the fitting stage.

Plain dataclasses (no hydra/omegaconf import): the lead registers `FitConfig` in the ConfigStore, so every
field is an OmegaConf-compatible type. Each field's comment says what it means; `__post_init__` rejects
bad values with one sentence naming the dotted key and the allowed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from orchestrator.fitting import methods as registry

METHODS = registry.selectable()  # fitting/methods.py: every method but the derived parametric_floor
FORM_NAMES = ("chinchilla", "overtrained", "data_constrained", "farseer")  # fitting/forms.FORMS
RESAMPLERS = ("stratified", "plain")
N_CONVENTIONS = ("total", "nonembed")
C_CONVENTIONS = ("exact", "6nd")


@dataclass
class ColumnMap:
    """Runs-CSV column holding each canonical quantity (None: the column is absent).

    A default name that is not in the CSV means "absent"; a name you set yourself must exist, else the fit
    stops with a sentence naming `fit.columns.<field>`. D (tokens) is derived as C / (6 N) when absent, and
    C as 6 N D when absent.
    """

    n_params: str | None = "n_params"  # total parameters N_total
    n_nonembed: str | None = "n_nonembed"  # non-embedding parameters (Kaplan et al. 2020 convention)
    tokens: str | None = "tokens"  # training tokens D
    flops: str | None = "flops"  # training FLOPs as counted exactly (C_exact)
    flops_6nd: str | None = "flops_6nd"  # training FLOPs as 6 N D (C_6ND); derived when absent
    loss: str | None = "loss"  # the fitted metric (final eval loss)
    status: str | None = "status"  # "finished" | "diverged" | "failed" | ...; all finished when absent
    seed: str | None = "seed"  # training seed (provenance only)
    budget: str | None = "budget"  # nominal compute budget of the run's IsoFLOP profile
    trial_id: str | None = "trial_id"  # run identity; "row<i>" when absent
    unique_tokens: str | None = "unique_tokens"  # unique tokens U of a run that repeats its data (epochs D / U)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"fit.columns.{name} must be a column name or null, got {value!r}.")


EXTRAPOLATION_DECADES = 2  # default target budgets reach at most this far beyond the largest swept budget


@dataclass
class FitConfig:
    """How a sweep's runs (or a CSV of runs) are turned into compute-optimal frontiers."""

    runs_csv: str | None = None  # fit this CSV of runs instead of a sweep's MLflow runs
    curves_csv: str | None = None  # per-step curves (trial_id, step, tokens, flops, eval_loss, ...) for envelope
    columns: ColumnMap = field(default_factory=ColumnMap)  # CSV column names (see ColumnMap)
    n_convention: str = "total"  # which N is fitted: "total" | "nonembed"
    # one C for budgets, every method and the frontier: "exact" | "6nd" (fitting/compute.py)
    c_convention: str = "exact"
    floor: float | None = None  # known irreducible loss: also fit L with E fixed to it (else the data's entropy floor)
    metric: str = "loss"  # "loss"/"eval_loss" (final eval loss), "train_loss", or a column name of the table
    drop_highest: int = 0  # exclusion rule: drop the k highest-loss runs (Besiroglu et al. 2024 drop 5)
    # exclusion rule: runs with fewer optimizer steps (None: the sweep's hparams.min_steps)
    min_steps: int | None = None
    min_warmup_steps: int | None = None  # exclusion rule: fewer warmup steps (None: the sweep's hparams)
    loss_ceiling: float | None = None  # exclusion rule: drop runs whose loss exceeds this value
    huber_delta: float = 1e-3  # Huber delta of the parametric fit, in log-loss units (Hoffmann et al. 2022)
    bootstrap: int = 1000  # bootstrap resamples over runs (0: no confidence intervals)
    seed: int = 0  # seed of the bootstrap resampling
    ci: float = 0.95  # confidence level of the percentile intervals
    target_budgets: list[float] = field(default_factory=list)  # FLOPs; empty: the swept decades up to 2 beyond
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # which methods to fit
    holdout: bool = True  # leave-largest-budget-out validation
    forms: list[str] = field(default_factory=lambda: list(FORM_NAMES))  # law forms compared by held-out error
    # (fitting/forms.py: chinchilla, overtrained, data_constrained, farseer; each where it applies); [] for none
    resampler: str = "stratified"  # bootstrap: "stratified" (design points within budgets) or "plain" (runs
    # drawn with replacement, Besiroglu et al. 2024's resampler)
    budget_tol_dex: float = 0.05  # IsoFLOP grouping: max |log10(C / budget)| of a run on a budget's profile
    out_dir: str = "reports"  # fit.json goes to <out_dir>/<sweep or csv name>/

    def __post_init__(self) -> None:
        if isinstance(self.columns, dict):  # a plain mapping from a YAML file or a test
            self.columns = ColumnMap(**self.columns)
        if self.n_convention not in N_CONVENTIONS:
            raise ValueError(f"fit.n_convention must be one of {', '.join(N_CONVENTIONS)}, got {self.n_convention!r}.")
        if self.c_convention not in C_CONVENTIONS:
            raise ValueError(f"fit.c_convention must be one of {', '.join(C_CONVENTIONS)}, got {self.c_convention!r}.")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"fit.metric must be a non-empty column name such as 'loss', got {self.metric!r}.")
        for key in ("min_steps", "min_warmup_steps"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"fit.{key} must be an integer >= 0 or null (the sweep's hparams), got {value!r}.")
        if not isinstance(self.drop_highest, int) or self.drop_highest < 0:
            raise ValueError(f"fit.drop_highest must be an integer >= 0, got {self.drop_highest!r}.")
        if self.loss_ceiling is not None and not (_finite(self.loss_ceiling) and self.loss_ceiling > 0):
            raise ValueError(f"fit.loss_ceiling must be a positive number or null, got {self.loss_ceiling!r}.")
        if self.floor is not None and not (_finite(self.floor) and self.floor > 0):
            raise ValueError(f"fit.floor must be a positive loss (the known irreducible loss) or null, "
                             f"got {self.floor!r}.")
        if not (_finite(self.huber_delta) and self.huber_delta > 0):
            raise ValueError(f"fit.huber_delta must be a positive number (default 1e-3), got {self.huber_delta!r}.")
        if not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise ValueError(f"fit.bootstrap must be an integer >= 0 (resamples), got {self.bootstrap!r}.")
        if not isinstance(self.seed, int):
            raise ValueError(f"fit.seed must be an integer, got {self.seed!r}.")
        if not (_finite(self.ci) and 0 < self.ci < 1):
            raise ValueError(f"fit.ci must be a confidence level strictly between 0 and 1, got {self.ci!r}.")
        budgets = list(self.target_budgets)
        if not all(_finite(c) and c > 0 for c in budgets):
            raise ValueError(f"fit.target_budgets must be positive FLOP counts, got {budgets!r}.")
        self.target_budgets = [float(c) for c in budgets]
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"fit.methods must be a non-empty list drawn from {', '.join(METHODS)}, "
                             f"got {list(self.methods)!r}.")
        self.methods = list(self.methods)
        bad = [f for f in self.forms if f not in FORM_NAMES]
        if bad:
            raise ValueError(f"fit.forms must be a list drawn from {', '.join(FORM_NAMES)} (or []), got "
                             f"{list(self.forms)!r}.")
        self.forms = list(self.forms)
        if self.resampler not in RESAMPLERS:
            raise ValueError(f"fit.resampler must be one of {', '.join(RESAMPLERS)}, got {self.resampler!r}.")
        if not (_finite(self.budget_tol_dex) and 0 < self.budget_tol_dex < 0.5):
            raise ValueError(f"fit.budget_tol_dex must be in (0, 0.5) decades, got {self.budget_tol_dex!r}.")
        if not isinstance(self.out_dir, str) or not self.out_dir:
            raise ValueError(f"fit.out_dir must be a folder path, got {self.out_dir!r}.")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
