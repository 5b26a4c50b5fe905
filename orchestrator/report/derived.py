"""What the figures draw that fit.json does not store, recomputed from the fitted runs and the fit's numbers.

fit.json keeps each method's parameters, IsoFLOP parabolas, frontier curve and predictions; this module turns
them into what is drawn: each budget's profile (the fit's parabola, its runs as fitted), each method's frontier
N_opt(C), D_opt(C), L_opt(C) on any grid, bootstrap bands between the budgets where intervals were computed, the
fitted surface L(N, D), its residuals, and the running-minimum envelope of the training curves. Pure numpy;
nothing is drawn here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.fitting.envelope import envelope_points
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.isoflop import IsoProfile, departures, fit_parabola, parabola
from orchestrator.fitting.result import FitResult, MethodResult

_CURVE_LOSS = {"loss": "eval_loss", "eval_loss": "eval_loss", "train_loss": "train_loss"}


@dataclass(frozen=True)
class Profile:
    """One budget's runs as the figures draw them (N, loss as fitted: moved onto the fit's compute model,
    fitting/isoflop.py) with `fit`, the IsoFLOP fit's own parabola and vertex for this budget
    (fitting.isoflop.IsoProfile), or None when the fit did not use it: `skipped` says why, and `coef` is then a
    plain parabola through the runs (None when fewer than 3 sizes)."""

    budget: float
    N: np.ndarray
    loss: np.ndarray
    fit: IsoProfile | None
    coef: tuple[float, float, float] | None
    skipped: str | None

    def parabola(self, N: np.ndarray) -> np.ndarray:
        assert self.coef is not None
        return parabola(self.coef, N)


def compute_model(result: FitResult) -> ComputeModel:
    """The fit's compute model, C = k(N) N D, as the fit recorded it."""
    return ComputeModel.from_json(result.compute or {"constant": True, "k": 6.0})


def profiles(runs: pd.DataFrame, result: FitResult) -> list[Profile]:
    """The IsoFLOP profile of every budget of the fitted runs (runs on no profile are left out): the fit's own
    parabolas and corrections where the IsoFLOP fit used the budget, else a plain parabola through the runs."""
    out = []
    compute = compute_model(result)
    iso = result.method("isoflop")
    iso = iso if iso is not None and iso.ok else None
    fitted = {p.budget: p for p in (iso.profiles if iso else ())}
    skipped = {s["budget"]: s["reason"] for s in (iso.skipped_budgets if iso else [])}
    budgets = runs["budget"].to_numpy(float)
    for C in np.unique(budgets[np.isfinite(budgets)]):
        at = runs.loc[budgets == C]
        N, D, L = (at[c].to_numpy(float) for c in ("N", "D", "loss"))
        p = fitted.get(float(C))
        if p is not None:
            shown = L + p.gamma * departures(N, D, budget=C, compute=compute)
            out.append(Profile(float(C), N, shown, p, p.coef, None))
            continue
        coef = None
        if len(np.unique(N)) >= 3:
            with np.errstate(all="ignore"):
                coef = tuple(float(c) for c in fit_parabola(np.log(N), L)[0])
            if not all(np.isfinite(coef)):
                coef = None
        reason = skipped.get(float(C), "the IsoFLOP fit did not run" if not iso else "not used by the IsoFLOP fit")
        out.append(Profile(float(C), N, L, None, coef, reason))
    return out


def surface_loss(entry: MethodResult, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """L(N, D) = E + A / N^alpha + B / D^beta with a surface method's fitted parameters."""
    return entry.E + entry.A / np.power(N, entry.alpha) + entry.B / np.power(D, entry.beta)


def residuals(entry: MethodResult, runs: pd.DataFrame) -> np.ndarray:
    """Relative residual of each run against the fitted surface: observed / predicted - 1."""
    N, D, L = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    return L / surface_loss(entry, N, D) - 1.0


def frontier_line(entry: MethodResult, C: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N_opt(C), D_opt(C), L_opt(C) of a fitted method on the budgets C: its `frontier_curve` (the fit evaluated
    it on its own compute model), interpolated in log-log and held at the curve's ends."""
    C = np.asarray(C, dtype=float)
    curve = entry.frontier_curve
    x = np.log(np.asarray(curve["C"], dtype=float))
    out = []
    for q in ("N_opt", "D_opt", "loss"):
        y = np.asarray([np.nan if v is None else v for v in curve[q]], dtype=float)
        ok = np.isfinite(y) & (y > 0)
        if ok.sum() < 2:
            out.append(np.full(C.shape, np.nan))
            continue
        out.append(np.exp(np.interp(np.log(C), x[ok], np.log(y[ok]))))
    return out[0], out[1], out[2]


def ci_band(entry: MethodResult, quantity: str, C: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Bootstrap bounds of a prediction on the budgets C, interpolated in log-log space between the budgets
    where the fit computed them (NaN outside them); None when the method has no intervals.

    Between two such budgets the straight log-log line is wider than the true band of a power law
    (whose log-width is convex in log C), so the drawn band errs on the cautious side.
    """
    pts = []
    for key, pred in (entry.predictions or {}).items():
        pair = entry.interval(quantity, budget=key)
        if pair and min(pair) > 0:
            pts.append((pred["C"], *pair))
    if len(pts) < 2:
        return None
    Cs, lo, hi = (np.log(np.array(v, dtype=float)) for v in zip(*sorted(pts)))
    x = np.log(np.asarray(C, dtype=float))
    inside = (x >= Cs[0] - 1e-9) & (x <= Cs[-1] + 1e-9)
    band_lo = np.where(inside, np.exp(np.interp(x, Cs, lo)), np.nan)
    band_hi = np.where(inside, np.exp(np.interp(x, Cs, hi)), np.nan)
    return band_lo, band_hi


def curve_points(curves: pd.DataFrame | None, runs: pd.DataFrame, *, metric: str,
                 c_convention: str) -> pd.DataFrame | None:
    """Every logged point of the training curves as (trial_id, step, N, C, loss), sorted by trial and step.

    C is the logged FLOPs under the exact convention, else 6 N tokens (N from the fitted runs); loss is the
    fitted metric's curve (eval_loss, or train_loss for fit.metric=train_loss).
    """
    column = _CURVE_LOSS.get(metric, "eval_loss")
    if curves is None or len(curves) == 0 or column not in curves.columns:
        return None
    df = curves.assign(trial_id=curves["trial_id"].astype(str))
    df = df.merge(runs[["trial_id", "N"]].astype({"trial_id": str}), on="trial_id", how="left")
    if c_convention == "exact" and "flops" in df.columns:
        C = pd.to_numeric(df["flops"], errors="coerce")
    else:
        C = 6.0 * df["N"] * pd.to_numeric(df["tokens"], errors="coerce")
    out = pd.DataFrame({"trial_id": df["trial_id"], "step": df["step"], "N": df["N"], "C": C,
                        "loss": pd.to_numeric(df[column], errors="coerce")})
    ok = np.isfinite(out["C"]) & np.isfinite(out["loss"]) & (out["C"] > 0) & (out["loss"] > 0)
    return out.loc[ok].sort_values(["trial_id", "step"], kind="stable").reset_index(drop=True)


def running_envelope(C: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lowest loss reached at or below each compute, as a staircase through its corner points."""
    on = envelope_points(np.asarray(C, dtype=float), np.asarray(L, dtype=float))
    order = on[np.argsort(np.asarray(C)[on])]
    return np.asarray(C, dtype=float)[order], np.asarray(L, dtype=float)[order]


def grid(lo: float, hi: float, *, n: int = 200) -> np.ndarray:
    """Log-spaced values from lo to hi."""
    return np.geomspace(lo, hi, n)
