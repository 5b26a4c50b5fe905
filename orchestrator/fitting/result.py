"""What a fit produced, as frozen types, and fit.json: the one module that knows fit.json's keys.

`FitResult` is the whole fit (the runs kept and excluded, the compute model, budgets, every method, the checks, the
hold-out, the law forms, provenance); `MethodResult` one method's entry (fitting/methods.py names the methods).
`write_fit` / `read_fit` are fit.json at the edge (as Open-Athena's fitting returns frozen results and writes JSON
only at the edge, and Optuna's `FrozenTrial` is the one record every reader takes): strict JSON, NaN and inf
written as null (`to_json` keeps NaN in memory). Readers take the typed object; nothing else indexes fit.json's
keys.

A method's entry has the fields every method shares (status, the law's form and exponents, predictions, the
interval, the frontier curve, convergence, exclusions, warnings, time) typed here; what only one method records
(IsoFLOP's parabolas, the envelope's points, VPNLS's residual, the surface's objective) is kept in `detail` under
its own name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from orchestrator.fitting.isoflop import IsoProfile


class MethodStatus(StrEnum):
    OK = "ok"  # the method produced a fit
    SKIPPED = "skipped"  # the runs cannot be fitted by it (bad input for this method: FitInputError)
    FAILED = "failed"  # its maths failed on valid input (FitError)


class CheckStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"  # stated, but it does not decide trust
    SKIPPED = "skipped"  # could not run (never counted as passed)


@dataclass(frozen=True)
class Check:
    """One check of fitting/checks.py: `detail` the measured value in words; `fix` what to do."""

    name: str
    title: str
    status: CheckStatus
    detail: str
    fix: str = ""

    def to_json(self) -> dict:
        return {**asdict(self), "status": str(self.status)}

    @classmethod
    def from_json(cls, data: Mapping) -> Check:
        return cls(name=data["name"], title=data["title"], status=CheckStatus(data["status"]), detail=data["detail"],
                   fix=data.get("fix", ""))


@dataclass(frozen=True)
class LackOfFit:
    """Does the headline law describe the runs to within their own noise? (fitting/lack_of_fit.py)

    `scatter`: the root mean square of the design points' mean losses about the law (nats); `seed_sd`: the pooled
    seed-to-seed standard deviation (pure error); F = (SS_lof / df_lof) / (SS_pe / df_pe) and its p-value under
    a law that is right. `status` is OK where it was computed, else SKIPPED with `reason`."""

    status: MethodStatus
    method: str | None = None
    reason: str = ""
    n_points: int = 0
    n_params: int = 0
    scatter: float | None = None
    seed_sd: float | None = None
    F: float | None = None
    df_lof: int = 0
    df_pe: int = 0
    p_value: float | None = None
    worst_budget: float | None = None
    worst_budget_offset: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is MethodStatus.OK

    def to_json(self) -> dict:
        return {**asdict(self), "status": str(self.status)}

    @classmethod
    def from_json(cls, data: Mapping) -> LackOfFit:
        return cls(**{**{k: data[k] for k in cls.__dataclass_fields__ if k in data},
                      "status": MethodStatus(data["status"])})


LAW = ("E", "A", "B", "alpha", "beta", "a", "b")
"""The law's named parameters a method may carry (a surface all of them; a frontier law a and b)."""
_TAIL = ("predictions", "frontier_curve", "convergence", "ci", "excluded", "warnings", "seconds")
_HEAD = ("status", "reason", "input_error", "form")


@dataclass(frozen=True)
class MethodResult:
    """One method's result (module docstring). Quantities a method does not have are None; `predictions` maps the
    budget's key (fitting/bootstrap.budget_key, e.g. "1e+21") to N_opt, D_opt, tokens_per_param, loss (and the
    shape where the sweep has a shape rule)."""

    name: str
    status: MethodStatus
    reason: str | None = None
    input_error: bool | None = None
    form: str | None = None
    E: float | None = None
    A: float | None = None
    B: float | None = None
    alpha: float | None = None
    beta: float | None = None
    a: float | None = None
    b: float | None = None
    predictions: Mapping[str, Mapping] | None = None
    frontier_curve: Mapping[str, list] | None = None
    convergence: Mapping | None = None
    ci: Mapping | None = None
    excluded: tuple[Mapping, ...] = ()
    warnings: tuple[str, ...] | None = None
    seconds: float | None = None
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is MethodStatus.OK

    @property
    def loss_law(self) -> Mapping | None:
        """A frontier method's L_opt(C) law: form, E (when saturating), k, p, C_ref."""
        return self.detail.get("loss_law")

    @property
    def profiles(self) -> tuple[IsoProfile, ...]:
        """IsoFLOP: each used budget's parabola and vertex."""
        return tuple(IsoProfile(**{**p, "coef": tuple(p["coef"])}) for p in self.detail.get("profiles", []))

    @property
    def skipped_budgets(self) -> list[Mapping]:
        """IsoFLOP: the budgets it could not use, each with its reason."""
        return list(self.detail.get("skipped_budgets", []))

    @property
    def points(self) -> Mapping | None:
        """The envelope's points (C, N, D, loss)."""
        return self.detail.get("points")

    @property
    def vs_parametric(self) -> Mapping | None:
        """VPNLS against the parametric fit (fitting/frontier.compare_fits): quantities and `disagree`."""
        return self.detail.get("vs_parametric")

    @property
    def huber_delta(self) -> float | None:
        return self.detail.get("huber_delta")

    @property
    def points_fitted(self) -> str | None:
        """How many points the method's final fit rests on (runs, IsoFLOP minima, envelope points, slices)."""
        if "n_N" in self.detail:
            return f"{self.detail['n_N']} + {self.detail['n_D']} (L(N), L(D) slices)"
        n = self.detail.get("n_points") or (self.convergence or {}).get("n_points")
        return None if n is None else str(n)

    def interval(self, quantity: str, *, budget: str | None = None) -> tuple[float, float] | None:
        """The bootstrap interval of a quantity (of a prediction at `budget` when given), or None."""
        ci = self.ci or {}
        if budget is not None:
            ci = ci.get("predictions", {}).get(budget, {})
        pair = ci.get(quantity)
        if not pair or len(pair) != 2 or any(v is None or not math.isfinite(v) for v in pair):
            return None
        return float(pair[0]), float(pair[1])

    @property
    def level(self) -> float | None:
        """The intervals' confidence level (None: no bootstrap)."""
        return (self.ci or {}).get("level")

    def law(self, name: str) -> float | None:
        """One of the law's parameters (LAW) by name."""
        assert name in LAW, name
        return getattr(self, name)

    def to_json(self) -> dict:
        out = {k: _plain(getattr(self, k)) for k in _HEAD if getattr(self, k) is not None}
        out |= {k: _plain(getattr(self, k)) for k in LAW if getattr(self, k) is not None}
        out |= {k: _plain(v) for k, v in self.detail.items()}
        out |= {k: _plain(getattr(self, k)) for k in _TAIL if getattr(self, k) is not None}
        out["excluded"] = _plain(self.excluded)
        return out

    @classmethod
    def from_json(cls, name: str, data: Mapping) -> MethodResult:
        typed = {*_HEAD, *LAW, *_TAIL}
        return cls(name=name, status=MethodStatus(data["status"]), reason=data.get("reason"),
                   input_error=data.get("input_error"), form=data.get("form"),
                   **{k: data.get(k) for k in LAW}, predictions=data.get("predictions"),
                   frontier_curve=data.get("frontier_curve"), convergence=data.get("convergence"), ci=data.get("ci"),
                   excluded=tuple(data.get("excluded", ())),
                   warnings=None if data.get("warnings") is None else tuple(data["warnings"]),
                   seconds=data.get("seconds"), detail={k: v for k, v in data.items() if k not in typed})


@dataclass(frozen=True)
class FitResult:
    """The whole fit, as fit.json holds it. `methods` in the order they ran (fit.methods, parametric_floor after
    parametric when a floor is known); `floor_check`, `forms` and `holdout` are None where they were not run."""

    name: str
    form: str
    n_runs: int
    excluded: tuple[Mapping, ...]
    conventions: Mapping[str, str]
    compute: Mapping
    budgets: Mapping
    target_budgets: tuple[float, ...]
    slope_budgets: tuple[float, ...]
    methods: Mapping[str, MethodResult]
    floor: float | None
    noise: Mapping
    input_warnings: tuple[str, ...]
    swept_range: tuple[float, float]
    checks: tuple[Check, ...]
    trustworthy: bool
    headline_method: str | None
    provenance: Mapping
    floor_check: Mapping | None = None
    forms: Mapping | None = None
    holdout: Mapping | None = None
    lack_of_fit: LackOfFit | None = None

    @property
    def method_order(self) -> list[str]:
        return list(self.methods)

    def ok_methods(self) -> dict[str, MethodResult]:
        return {m: r for m, r in self.methods.items() if r.ok}

    def method(self, name: str) -> MethodResult | None:
        return self.methods.get(name)

    @property
    def compute_source(self) -> str | None:
        """Where the compute model's k(N) came from (fitting/compute.py), in words."""
        return self.compute.get("source")

    def to_json(self) -> dict:
        head = {"name": self.name, "form": self.form, "n_runs": self.n_runs, "excluded": self.excluded,
                "conventions": self.conventions, "compute": self.compute, "budgets": self.budgets,
                "target_budgets": self.target_budgets, "slope_budgets": self.slope_budgets,
                "method_order": self.method_order, "floor": self.floor, "noise": self.noise,
                "input_warnings": self.input_warnings}
        out = {k: _plain(v) for k, v in head.items()}
        out |= {m: r.to_json() for m, r in self.methods.items()}
        for key in ("floor_check", "forms", "holdout"):
            if getattr(self, key) is not None:
                out[key] = _plain(getattr(self, key))
        if self.lack_of_fit is not None:
            out["lack_of_fit"] = _plain(self.lack_of_fit.to_json())
        out |= {"swept_range": _plain(self.swept_range), "checks": [c.to_json() for c in self.checks],
                "trustworthy": bool(self.trustworthy), "headline_method": self.headline_method,
                "provenance": _plain(self.provenance)}
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> FitResult:
        return cls(name=data["name"], form=data["form"], n_runs=data["n_runs"], excluded=tuple(data["excluded"]),
                   conventions=data["conventions"], compute=data["compute"], budgets=data["budgets"],
                   target_budgets=tuple(data["target_budgets"]), slope_budgets=tuple(data["slope_budgets"]),
                   methods={m: MethodResult.from_json(m, data[m]) for m in data["method_order"]},
                   floor=data["floor"], noise=data["noise"], input_warnings=tuple(data["input_warnings"]),
                   swept_range=tuple(data["swept_range"]), checks=tuple(Check.from_json(c) for c in data["checks"]),
                   trustworthy=data["trustworthy"], headline_method=data["headline_method"],
                   provenance=data["provenance"], floor_check=data.get("floor_check"), forms=data.get("forms"),
                   holdout=data.get("holdout"),
                   lack_of_fit=LackOfFit.from_json(data["lack_of_fit"]) if data.get("lack_of_fit") else None)


def write_fit(result: FitResult, path: str | Path) -> Path:
    """fit.json at `path`: strict JSON (NaN and inf as null), indented."""
    path = Path(path)
    path.write_text(json.dumps(_strict(result.to_json()), indent=2, allow_nan=False) + "\n")
    return path


def read_fit(path: str | Path) -> FitResult:
    """The FitResult a fit.json holds (a quantity written as null reads as None)."""
    return FitResult.from_json(json.loads(Path(path).read_text()))


def _plain(obj: object) -> object:
    """Plain Python types (dict, list, int, float, str, bool, None); enums their value. NaN stays NaN in memory."""
    if isinstance(obj, StrEnum):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def _strict(obj: object) -> object:
    """NaN and inf as null, so the file is strict JSON."""
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
