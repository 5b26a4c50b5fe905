"""The fitting methods, one record each: the only list of them (as Optuna's samplers or Hydra's ConfigStore).

Each `Method` holds what every other place needs: its name (the key in fit.json and in `fit.methods`), the
report's label and colour, its kind, the point fit and the bootstrap. Adding a method is one record here (and its
estimator module); `fit.methods`, the checks, the report and the comparison read the registry.

Kinds:
- surface: L(N, D) fitted over every run, so it predicts any (N, D) and the frontier under the compute model:
  parametric (Hoffmann et al. 2022, approach 3, log-space Huber), parametric_floor (the same with E fixed at a
  known floor), vpnls (variable projection of the same surface, Golub & Pereyra 1973);
- frontier: only the compute-optimal frontier N_opt(C), D_opt(C), L_opt(C): isoflop (approach 2, parabolas per
  budget) and envelope (approach 1, the lowest loss over training curves);
- slice: single-variable power laws L(N), L(D) (Kaplan et al. 2020), no frontier.

A `derived` method is not chosen in `fit.methods`: parametric_floor runs after parametric when a floor is known.
A `comparable` method is one whose L_opt(C) compare/ can resample and invert (the envelope needs every run's
training curve, the slice predicts no frontier). A `referee` is an estimator the headline's allocation is checked
against (fitting/checks.py: VPNLS, unbiased on IsoFLOP designs, and IsoFLOP, with other assumptions). `refit`
fits the method again without the largest budget (fitting/holdout.py; the slice has none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
import pandas as pd

from orchestrator.fitting import bootstrap as bs
from orchestrator.fitting.compute import ComputeModel, local_exponent
from orchestrator.fitting.envelope import fit_envelope, valid_curve_points
from orchestrator.fitting.frontier import ShapeOf, predictions
from orchestrator.fitting.isoflop import fit_isoflop
from orchestrator.fitting.powerlaw import SaturatingPowerLaw, fit_single_variable, slice_at_largest
from orchestrator.fitting.result import MethodResult, MethodStatus
from orchestrator.fitting.surface import fit_surface
from orchestrator.fitting.vpnls import fit_vpnls

FORM = "L(N, D) = E + A / N^alpha + B / D^beta"


class Kind(StrEnum):
    SURFACE = "surface"
    FRONTIER = "frontier"
    SLICE = "slice"


class Options(Protocol):
    """What the methods read of the fit's options (fitting/options.FitConfig; not imported: options.py reads this
    registry for `fit.methods`)."""

    huber_delta: float
    ci: float
    metric: str
    c_convention: str
    budget_tol_dex: float


class Excluded(Protocol):
    trial_id: str
    reason: str


class Table(Protocol):
    """What the methods read of the tidy runs table (fitting/table.RunTable)."""

    runs: pd.DataFrame
    excluded: tuple[Excluded, ...]


@dataclass
class FitContext:
    """Everything the methods share: the kept runs, the compute model, budgets and resamples; `fits` collects each
    method's point fit (the estimator's result) by name as it runs."""

    table: Table
    options: Options
    compute: ComputeModel
    compute_for: Callable[[pd.DataFrame], ComputeModel]
    budgets: list[float]
    slope_budgets: np.ndarray
    resampler: bs.Resampler | None
    shape_of: ShapeOf | None
    curves: pd.DataFrame | None
    floor: float | None
    fits: dict = field(default_factory=dict)
    points: pd.DataFrame | None = None

    @property
    def runs(self) -> pd.DataFrame:
        return self.table.runs

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.runs[c].to_numpy(float) for c in ("N", "D", "loss"))


@dataclass(frozen=True)
class HeldOut:
    """What a method refits on when the largest budget is held out (fitting/holdout.py): the remaining runs as
    arrays and table, their compute model, the fit's options, and the training curves' points with the held-out
    trials' ids (the envelope drops their points)."""

    N: np.ndarray
    D: np.ndarray
    L: np.ndarray
    rest: pd.DataFrame
    compute: ComputeModel
    delta: float
    fixed_E: float | None
    points: pd.DataFrame | None
    held_ids: frozenset[str]


PointFit = Callable[[FitContext], tuple[object, MethodResult]]
"""ctx -> (the estimator's result, its MethodResult without the interval)."""
Bootstrap = Callable[[FitContext, object], dict]
"""(ctx, the point fit) -> its bootstrap intervals as fit.json's `ci`."""
Refit = Callable[[HeldOut], object | None]
"""The held-out runs -> the method's fit on them (None: it cannot refit there), for leave-largest-budget-out."""


@dataclass(frozen=True)
class Method:
    """One fitting method (module docstring)."""

    name: str
    label: str
    colour: str
    kind: Kind
    fit: PointFit
    bootstrap: Bootstrap
    refit: Refit | None = None
    derived: bool = False
    comparable: bool = False
    referee: bool = False

    @property
    def predicts_frontier(self) -> bool:
        return self.kind is not Kind.SLICE


# -- the point fits ----------------------------------------------------------------------------------------------
def _fit_parametric(ctx: FitContext, *, fixed_E: float | None = None) -> tuple[object, MethodResult]:
    N, D, L = ctx.arrays()
    name = "parametric" if fixed_E is None else "parametric_floor"
    fit = fit_surface(N, D, L, delta=ctx.options.huber_delta, fixed_E=fixed_E)
    detail = {"objective": fit.objective, "huber_delta": fit.huber_delta}
    form = FORM
    if fixed_E is not None:
        detail["fixed_E"] = fixed_E
        form = f"L(N, D) = {fixed_E:.4g} + A / N^alpha + B / D^beta (E fixed at the known floor)"
    convergence = {"grad_norm": fit.grad_norm, "newton_iterations": fit.newton_iterations,
                   "polish_iterations": fit.polish_iterations, "on_bound": list(fit.on_bound),
                   "converged": fit.converged, "n_starts": fit.n_starts, "n_finalists": fit.n_finalists,
                   "n_at_best": fit.n_at_best, "seconds": fit.seconds}
    return fit, _surface_result(ctx, fit, name=name, form=form, convergence=convergence, detail=detail)


def _fit_parametric_floor(ctx: FitContext) -> tuple[object, MethodResult]:
    assert ctx.floor is not None
    return _fit_parametric(ctx, fixed_E=ctx.floor)


def _fit_vpnls(ctx: FitContext) -> tuple[object, MethodResult]:
    fit = fit_vpnls(*ctx.arrays())
    convergence = {"grad_norm": fit.grad_norm, "iterations": fit.iterations, "on_bound": list(fit.on_bound),
                   "converged": fit.converged, "grid_points": fit.grid_points, "seconds": fit.seconds}
    return fit, _surface_result(ctx, fit, name="vpnls", form=FORM, convergence=convergence, detail={"rss": fit.rss})


def _fit_isoflop(ctx: FitContext) -> tuple[object, MethodResult]:
    N, D, L = ctx.arrays()
    fit = fit_isoflop(N, D, L, budget=ctx.runs["budget"].to_numpy(float), compute=ctx.compute)
    on_profile = np.isfinite(ctx.runs["budget"].to_numpy(float))
    off = [{"trial_id": t, "reason": "not on an IsoFLOP profile"} for t in ctx.runs.loc[~on_profile, "trial_id"]]
    detail = {"profiles": [asdict(p) for p in fit.profiles],
              "skipped_budgets": [{"budget": c, "reason": r} for c, r in fit.skipped]}
    return fit, _law_result(ctx, fit, name="isoflop", detail=detail, warnings=tuple(fit.warnings),
                            dropped=tuple(excluded(ctx) + off))


def _fit_envelope(ctx: FitContext) -> tuple[object, MethodResult]:
    runs, options = ctx.runs, ctx.options
    if ctx.curves is not None:
        ctx.points = valid_curve_points(ctx.curves, runs=runs, metric=options.metric,
                                        c_convention=options.c_convention)
        source = "valid points of training curves"
    else:
        ctx.points, source = runs[["trial_id", "N", "D", "C", "loss"]], "final point of each run"
    budget_of = pd.Series(runs["budget"].to_numpy(float), index=runs["trial_id"].astype(str).to_numpy())
    fit = fit_envelope(ctx.points, source=source, compute=ctx.compute, budget_of=budget_of)
    detail = {"source": fit.source, "mode": fit.mode, "n_valid_points": fit.n_valid_points,
              "points": {"C": fit.C, "N": fit.N, "D": fit.D, "loss": fit.L}}
    return fit, _law_result(ctx, fit, name="envelope", detail=detail, warnings=tuple(fit.notes))


def _fit_powerlaw(ctx: FitContext) -> tuple[object, MethodResult]:
    N, D, L = ctx.arrays()
    fit = fit_single_variable(N, D, L, tol_dex=ctx.options.budget_tol_dex)
    detail = {"at_D": fit.at_D, "at_N": fit.at_N, "k_N": fit.loss_vs_N.k, "k_D": fit.loss_vs_D.k,
              "n_N": fit.loss_vs_N.n, "n_D": fit.loss_vs_D.n,
              "note": "a and b assume the additive form with negligible E; no frontier predictions"}
    return fit, MethodResult(
        name="powerlaw", status=MethodStatus.OK,
        form="L(N) = k_N N^-alpha at the largest D; L(D) = k_D D^-beta at the largest N",
        alpha=fit.alpha, beta=fit.beta, a=fit.a, b=fit.b, predictions={}, excluded=tuple(excluded(ctx)),
        convergence={"method": "closed-form log-log least squares", "r2_N": fit.loss_vs_N.r2, "r2_D": fit.loss_vs_D.r2},
        detail=detail)


# -- the bootstraps ----------------------------------------------------------------------------------------------
def _boot_parametric(ctx: FitContext, fit) -> dict:
    return bs.bootstrap_parametric(ctx.runs, fit, resampler=ctx.resampler, budgets=ctx.budgets,
                                   slope_budgets=ctx.slope_budgets, compute=ctx.compute, level=ctx.options.ci).to_json()


def _boot_vpnls(ctx: FitContext, fit) -> dict:
    return bs.bootstrap_vp(ctx.runs, fit, resampler=ctx.resampler, budgets=ctx.budgets,
                           slope_budgets=ctx.slope_budgets, compute=ctx.compute, level=ctx.options.ci).to_json()


def _boot_isoflop(ctx: FitContext, fit) -> dict:
    return bs.bootstrap_isoflop(ctx.runs, fit, resampler=ctx.resampler, budgets=ctx.budgets, compute=ctx.compute,
                                level=ctx.options.ci).to_json()


def _boot_envelope(ctx: FitContext, fit) -> dict:
    return bs.bootstrap_envelope(ctx.points, fit, runs=ctx.runs, resampler=ctx.resampler, budgets=ctx.budgets,
                                 compute=ctx.compute, level=ctx.options.ci).to_json()


def _boot_powerlaw(ctx: FitContext, fit) -> dict:  # noqa: ARG001  (the slices are the runs', not the fit's)
    N, D, L = ctx.arrays()
    tol = ctx.options.budget_tol_dex
    iN, _ = slice_at_largest(D, N, tol_dex=tol, what="L(N)")
    iD, _ = slice_at_largest(N, D, tol_dex=tol, what="L(D)")
    return bs.bootstrap_single_variable(N, D, L, slice_N=iN, slice_D=iD, resampler=ctx.resampler,
                                        level=ctx.options.ci).to_json()


# -- the refits without the largest budget -----------------------------------------------------------------------
def _refit_parametric(h: HeldOut) -> object:
    return fit_surface(h.N, h.D, h.L, delta=h.delta)


def _refit_parametric_floor(h: HeldOut) -> object | None:
    return None if h.fixed_E is None else fit_surface(h.N, h.D, h.L, delta=h.delta, fixed_E=h.fixed_E)


def _refit_vpnls(h: HeldOut) -> object:
    return fit_vpnls(h.N, h.D, h.L)


def _refit_isoflop(h: HeldOut) -> object:
    return fit_isoflop(h.N, h.D, h.L, budget=h.rest["budget"].to_numpy(float), compute=h.compute)


def _refit_envelope(h: HeldOut) -> object | None:
    if h.points is None:
        return None
    budget_of = pd.Series(h.rest["budget"].to_numpy(float), index=h.rest["trial_id"].astype(str).to_numpy())
    return fit_envelope(h.points.loc[~h.points["trial_id"].astype(str).isin(h.held_ids)], source="held-out refit",
                        compute=h.compute, budget_of=budget_of)


REGISTRY: tuple[Method, ...] = (
    Method("parametric", "parametric L(N, D) (Chinchilla approach 3)", "#1f77b4", Kind.SURFACE,
           _fit_parametric, _boot_parametric, _refit_parametric, comparable=True),
    Method("parametric_floor", "parametric L(N, D) with E fixed at the known floor", "#ff7f0e", Kind.SURFACE,
           _fit_parametric_floor, _boot_parametric, _refit_parametric_floor, derived=True, comparable=True),
    Method("vpnls", "variable projection (approach 3 cross-check)", "#17becf", Kind.SURFACE,
           _fit_vpnls, _boot_vpnls, _refit_vpnls, comparable=True, referee=True),
    Method("isoflop", "IsoFLOP profiles (approach 2)", "#d62728", Kind.FRONTIER,
           _fit_isoflop, _boot_isoflop, _refit_isoflop, comparable=True, referee=True),
    Method("envelope", "training-curve envelope (approach 1)", "#2ca02c", Kind.FRONTIER,
           _fit_envelope, _boot_envelope, _refit_envelope),
    Method("powerlaw", "single-variable L(N), L(D) (Kaplan-style)", "#9467bd", Kind.SLICE,
           _fit_powerlaw, _boot_powerlaw),
)
BY_NAME: dict[str, Method] = {m.name: m for m in REGISTRY}
OTHER_COLOUR = "0.3"  # a name that is not a method (a law form, a label) drawn beside them


def get(name: str) -> Method:
    return BY_NAME[name]


def names(*, kinds: tuple[Kind, ...] = tuple(Kind), derived: bool | None = None, comparable: bool | None = None,
          referee: bool | None = None) -> tuple[str, ...]:
    """The methods' names in the registry's order (the order they run and are reported in), filtered."""
    return tuple(m.name for m in REGISTRY if m.kind in kinds and (derived is None or m.derived == derived)
                 and (comparable is None or m.comparable == comparable) and (referee is None or m.referee == referee))


def selectable() -> tuple[str, ...]:
    """What `fit.methods` may name (every method but the derived ones)."""
    return names(derived=False)


def frontier_methods() -> tuple[str, ...]:
    """The methods that predict a compute-optimal frontier (every kind but the single-variable slice)."""
    return names(kinds=(Kind.SURFACE, Kind.FRONTIER))


def label(name: str) -> str:
    return BY_NAME[name].label if name in BY_NAME else name


def colour(name: str) -> str:
    return BY_NAME[name].colour if name in BY_NAME else OTHER_COLOUR


# -- the shared parts of an entry --------------------------------------------------------------------------------
def excluded(ctx: FitContext) -> list[dict]:
    return [{"trial_id": e.trial_id, "reason": e.reason} for e in ctx.table.excluded]


def _surface_result(ctx: FitContext, fit, *, name: str, form: str, convergence: dict, detail: dict) -> MethodResult:
    """A fitted surface L(N, D): its parameters, the frontier's local exponents over the swept budgets, predictions."""
    slopeN, slopeD = fit.frontier(ctx.slope_budgets, compute=ctx.compute)
    return MethodResult(
        name=name, status=MethodStatus.OK, form=form, E=fit.E, A=fit.A, B=fit.B, alpha=fit.alpha, beta=fit.beta,
        a=float(local_exponent(ctx.slope_budgets, slopeN)), b=float(local_exponent(ctx.slope_budgets, slopeD)),
        predictions=predictions(fit, ctx.budgets, compute=ctx.compute, shape_of=ctx.shape_of),
        frontier_curve=_curve(ctx, fit), convergence=convergence, excluded=tuple(excluded(ctx)),
        detail={"a_law": fit.a, "b_law": fit.b, "G": fit.G, "n_points": fit.n_points, **detail})


def _law_result(ctx: FitContext, fit, *, name: str, detail: dict, warnings: tuple[str, ...],
                dropped: tuple[dict, ...] | None = None) -> MethodResult:
    """A fitted frontier (power laws through the minima): a, b, the laws' coefficients, the loss law, predictions."""
    law = fit.loss_law
    loss = ({"form": "L_opt = E + k (C / C_ref)^p", "E": law.E, "k": law.k, "p": law.p, "C_ref": law.x_ref}
            if isinstance(law, SaturatingPowerLaw) else {"form": "L_opt = k C^p", "k": law.k, "p": law.p})
    return MethodResult(
        name=name, status=MethodStatus.OK, form="N_opt = k_N C^a, D_opt = C / (k(N_opt) N_opt)", a=fit.a, b=fit.b,
        predictions=predictions(fit, ctx.budgets, compute=ctx.compute, shape_of=ctx.shape_of),
        frontier_curve=_curve(ctx, fit),
        convergence={"method": "closed-form log-log least squares", "r2_N": fit.n_law.r2, "r2_D": fit.d_law.r2,
                     "n_points": fit.n_law.n},
        excluded=tuple(excluded(ctx)) if dropped is None else dropped, warnings=warnings,
        detail={"k_N": fit.n_law.k, "k_D": fit.d_law.k, "loss_law": loss, **detail})


def _curve(ctx: FitContext, fit) -> dict:
    """The frontier on a grid from the smallest swept to the largest target budget (what the report draws)."""
    C = np.unique(np.r_[np.geomspace(min(min(ctx.slope_budgets), min(ctx.budgets)) / 1.5, max(ctx.budgets) * 1.5, 60),
                        ctx.budgets])
    N, D = fit.frontier(C, compute=ctx.compute)
    return {"C": C.tolist(), "N_opt": np.asarray(N).tolist(), "D_opt": np.asarray(D).tolist(),
            "loss": np.asarray(fit.loss_at(C, compute=ctx.compute)).tolist()}
