"""What the figures draw that fit.json does not store, recomputed from the fitted runs and the fit's numbers.

fit.json keeps each method's parameters, vertices and predictions at the target budgets, not the curves
between them, so this module evaluates them: each budget's IsoFLOP parabola (`fitting.isoflop.fit_profile`
and `fit_parabola`, the same code the fit ran), each method's frontier N_opt(C), D_opt(C), L_opt(C) on a
grid, bootstrap bands between the budgets where intervals were computed, the fitted surface L(N, D), its
residuals, and the running-minimum envelope of the training curves. Pure numpy; nothing is drawn here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.fitting.envelope import envelope_points
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.isoflop import fit_parabola, fit_profile

_CURVE_LOSS = {"loss": "eval_loss", "eval_loss": "eval_loss", "train_loss": "train_loss"}


@dataclass(frozen=True)
class Profile:
    """One budget's runs (N, loss), its parabola L = c0 + c1 ln N + c2 (ln N)^2 and vertex (N_opt, D_opt from
    the parabola in ln D, L_opt), or why it has none.

    `edge`: the vertex is not bracketed by 2 sampled sizes on each side (fitting.isoflop's check);
    `skipped`: the IsoFLOP fit could not use this budget (reason), e.g. the vertex lies outside the sizes.
    """

    budget: float
    N: np.ndarray
    loss: np.ndarray
    coef: tuple[float, float, float] | None
    N_opt: float | None
    D_opt: float | None
    L_opt: float | None
    edge: bool
    weak: bool
    skipped: str | None

    def parabola(self, N: np.ndarray) -> np.ndarray:
        assert self.coef is not None
        x = np.log(N)
        return self.coef[0] + self.coef[1] * x + self.coef[2] * x * x


def profiles(runs: pd.DataFrame) -> list[Profile]:
    """The IsoFLOP profile of every budget of the fitted runs (runs on no profile are left out)."""
    out = []
    budgets = runs["budget"].to_numpy(float)
    for C in np.unique(budgets[np.isfinite(budgets)]):
        at = runs.loc[budgets == C]
        N, D, L = (at[c].to_numpy(float) for c in ("N", "D", "loss"))
        coef = None
        if len(np.unique(N)) >= 3:
            coef = tuple(float(c) for c in fit_parabola(np.log(N), L)[0])
        try:
            p = fit_profile(N, D, L, budget=C)
            out.append(Profile(float(C), N, L, coef, p.N_opt, p.D_opt, p.L_opt, p.edge, p.weak, None))
        except FitInputError as err:
            out.append(Profile(float(C), N, L, coef, None, None, None, False, False, str(err)))
    return out


def surface_loss(entry: dict, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """L(N, D) = E + A / N^alpha + B / D^beta with a surface method's fitted parameters."""
    return entry["E"] + entry["A"] / np.power(N, entry["alpha"]) + entry["B"] / np.power(D, entry["beta"])


def residuals(entry: dict, runs: pd.DataFrame) -> np.ndarray:
    """Relative residual of each run against the fitted surface: observed / predicted - 1."""
    N, D, L = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    return L / surface_loss(entry, N, D) - 1.0


def frontier_line(method: str, entry: dict, C: np.ndarray, *, flops_per_nd: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N_opt(C), D_opt(C), L_opt(C) of a fitted method on the budgets C (see fitting.frontier.predictions)."""
    C = np.asarray(C, dtype=float)
    if "G" in entry:  # a surface: N = G (C/k)^a, D = (C/k)^b / G (Hoffmann et al. 2022, eq. 4)
        x = C / flops_per_nd
        N, D = entry["G"] * x ** entry["a"], x ** entry["b"] / entry["G"]
        return N, D, surface_loss(entry, N, D)
    N, D = entry["k_N"] * C ** entry["a"], entry["k_D"] * C ** entry["b"]
    law = entry["loss_law"]
    if "C_ref" in law:
        L = law["E"] + law["k"] * (C / law["C_ref"]) ** law["p"]
    else:
        L = law["k"] * C ** law["p"]
    return N, D, L


def ci_band(entry: dict, quantity: str, C: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Bootstrap bounds of a prediction on the budgets C, interpolated in log-log space between the budgets
    where the fit computed them (NaN outside them); None when the method has no intervals.

    Between two such budgets the straight log-log line is wider than the true band of a power law
    (whose log-width is convex in log C), so the drawn band errs on the cautious side.
    """
    preds = (entry.get("ci") or {}).get("predictions") or {}
    pts = []
    for key, qs in preds.items():
        pair = qs.get(quantity)
        if pair and None not in pair and all(np.isfinite(pair)) and min(pair) > 0:
            pts.append((entry["predictions"][key]["C"], *pair))
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
