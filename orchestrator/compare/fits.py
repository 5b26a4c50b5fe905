"""Each compared sweep's frontier, fitted by one method: the point estimate the multiplier is computed from.

A comparison is only as right as each frontier, so every sweep is fitted by the fitting stage's own estimators
(fitting/surface.py, vpnls.py, isoflop.py) on its tidy runs table under its own compute model C = k(N) N D, and
all sweeps by the same method (an IsoFLOP law against a parametric surface would compare two estimators, not two
sweeps). `SUPPORTED` are the methods whose L_opt(C) can be resampled and inverted:
- parametric (Hoffmann et al. 2022, approach 3) and its fixed-floor variant parametric_floor,
- vpnls (the variable-projection fit of the same surface),
- isoflop (approach 2: the minima's loss law L_opt = E + k (C / C_ref)^p).
The envelope (approach 1) needs every run's training curve and is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.compare.frontier import LossFrontier
from orchestrator.fitting import methods as registry
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.isoflop import IsoFLOPFit, fit_isoflop
from orchestrator.fitting.powerlaw import SaturatingPowerLaw
from orchestrator.fitting.result import FitResult, MethodResult
from orchestrator.fitting.surface import SurfaceFit, fit_surface
from orchestrator.fitting.vpnls import VPNLSFit, fit_vpnls

SUPPORTED = registry.names(comparable=True)  # fitting/methods.py: the methods whose L_opt(C) compare inverts


@dataclass(frozen=True)
class SweepFit:
    """One sweep fitted by `method`: its tidy runs (fitting/table.py columns N, D, C, loss, budget, point), the
    compute model, the estimator's result and the frontier L_opt(C) it implies (R = 1)."""

    name: str
    method: str
    runs: pd.DataFrame
    compute: ComputeModel
    fit: SurfaceFit | VPNLSFit | IsoFLOPFit
    frontier: LossFrontier
    huber_delta: float = 1e-3
    floor: float | None = None

    @property
    def budgets(self) -> list[float]:
        """The swept IsoFLOP budgets, else the range of the runs' C."""
        b = self.runs["budget"].to_numpy(float)
        if np.isfinite(b).any():
            return sorted(set(b[np.isfinite(b)].tolist()))
        C = self.runs["C"].to_numpy(float)
        return sorted({float(C.min()), float(C.max())})

    @property
    def swept(self) -> tuple[float, float]:
        return min(self.budgets), max(self.budgets)

    def span(self, column: str) -> tuple[float, float]:
        """The sampled range of N or D."""
        v = self.runs[column].to_numpy(float)
        return float(v.min()), float(v.max())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.runs[c].to_numpy(float) for c in ("N", "D", "loss"))

    def parameters(self) -> dict[str, float]:
        """The fitted law's parameters, for compare.json and the report."""
        f = self.frontier
        names = ("E", "A", "B", "alpha", "beta") if f.is_surface else ("E", "k", "p")
        out = {n: float(getattr(f, n)[0]) for n in names}
        if not f.is_surface:
            out["C_ref"] = f.x_ref
        return out


def fit_sweep(name: str, runs: pd.DataFrame, *, method: str, compute: ComputeModel, huber_delta: float = 1e-3,
              floor: float | None = None) -> SweepFit:
    """Fit the tidy `runs` of one sweep by `method` (one of SUPPORTED); FitInputError when it cannot be fitted."""
    assert method in SUPPORTED, method
    N, D, L = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    if method == "vpnls":
        fit = fit_vpnls(N, D, L)
    elif method == "isoflop":
        fit = fit_isoflop(N, D, L, budget=runs["budget"].to_numpy(float), compute=compute)
    elif method == "parametric_floor":
        if floor is None:
            raise FitInputError(f"sweep {name}: parametric_floor needs a known floor (fit.floor=...).")
        fit = fit_surface(N, D, L, delta=huber_delta, fixed_E=floor)
    else:
        fit = fit_surface(N, D, L, delta=huber_delta)
    return sweep_fit(name, runs, method=method, fit=fit, compute=compute, huber_delta=huber_delta, floor=floor)


def sweep_fit(name: str, runs: pd.DataFrame, *, method: str, fit: SurfaceFit | VPNLSFit | IsoFLOPFit,
              compute: ComputeModel, huber_delta: float = 1e-3, floor: float | None = None) -> SweepFit:
    """One sweep's point fit by `method` (the fitting stage's estimate: compare/run.py takes it from run_fit, so
    each sweep is fitted once) with the frontier L_opt(C) it implies."""
    if registry.get(method).kind is registry.Kind.SURFACE:
        frontier = LossFrontier.surface(fit.E, fit.A, fit.B, fit.alpha, fit.beta, compute=compute)
    else:
        frontier = loss_law_frontier(fit, compute=compute)
    return SweepFit(name=name, method=method, runs=runs, compute=compute, fit=fit, frontier=frontier,
                    huber_delta=huber_delta, floor=floor if method == "parametric_floor" else None)


def loss_law_frontier(fit: IsoFLOPFit, *, compute: ComputeModel) -> LossFrontier:
    """The IsoFLOP minima's loss law as a frontier: E + k (C / C_ref)^p, or k C^p (E = 0) through two budgets."""
    law = fit.loss_law
    if isinstance(law, SaturatingPowerLaw):
        return LossFrontier.loss_law(law.E, law.k, law.p, x_ref=law.x_ref, compute=compute)
    return LossFrontier.loss_law(0.0, law.k, law.p, x_ref=1.0, compute=compute)


def common_method(results: dict[str, FitResult], *, requested: str) -> str:
    """The method every sweep is compared by: `requested`, or (headline) the first supported method, in the first
    sweep's fit.methods order, that every sweep's fit produced. `results` maps sweep name -> its FitResult.
    FitInputError (one sentence) when no supported method fitted every sweep."""
    ok = {name: set(r.ok_methods()) for name, r in results.items()}
    if requested != "headline":
        missing = [name for name, methods in ok.items() if requested not in methods]
        if missing:
            reasons = "; ".join(f"{n}: {_reason(results[n].method(requested))}" for n in missing)
            raise FitInputError(f"compare.method={requested} could not fit every sweep ({reasons}); choose another "
                                f"method or compare.method=headline.")
        return requested
    first = next(iter(results.values()))
    for method in first.method_order:
        if method in SUPPORTED and all(method in methods for methods in ok.values()):
            return method
    detail = "; ".join(f"{n}: {', '.join(sorted(m & set(SUPPORTED))) or 'none'}" for n, m in ok.items())
    raise FitInputError(f"no frontier method fitted every compared sweep (supported methods that fitted: {detail}); "
                        "add runs to the sweep that could not be fitted.")


def _reason(result: MethodResult | None) -> str:
    return "not fitted" if result is None or result.reason is None else result.reason
