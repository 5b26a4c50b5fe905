"""Approach 1 of Hoffmann et al. (2022): the envelope of training curves.

At each FLOP count the lowest loss over all runs marks the compute-optimal model, so the envelope's points
give N_opt(C) and D_opt(C), and power laws through them (log-log least squares) give the frontier:
N_opt = k_N C^a, D_opt = k_D C^b, and L_env = E + k C^p (isoflop.loss_law).

Only points whose loss is a valid estimate of "this model trained for this many tokens" may be used
(Hoffmann et al. 2022 sec. 3.1; Hägele et al. 2024): the end of a cosine (or any decayed) run, and
checkpoints taken after a cooldown. A curves table says which by a boolean `valid` column (the sweep
reader sets it for cooldown checkpoints); without it each trial's last step is used, except for trials
whose `schedule` column says "constant" (no decay, no valid point). Without curves, each finished run's
final point is used. The envelope is the running minimum of loss over points sorted
by C: a point is on it when no point with less or equal compute reached a lower loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.isoflop import loss_law
from orchestrator.fitting.powerlaw import PowerLaw, PowerLawFrontier, SaturatingPowerLaw, fit_power_law

_LOSS_COLUMNS = {"loss": "eval_loss", "eval_loss": "eval_loss", "train_loss": "train_loss"}


@dataclass(frozen=True)
class EnvelopeFit(PowerLawFrontier):
    """Approach 1 frontier through the envelope points (C, N, D, L) (see module docstring)."""

    C: tuple[float, ...]
    N: tuple[float, ...]
    D: tuple[float, ...]
    L: tuple[float, ...]
    n_valid_points: int
    source: str
    n_law: PowerLaw
    d_law: PowerLaw
    loss_law: SaturatingPowerLaw | PowerLaw



def valid_curve_points(curves: pd.DataFrame, *, runs: pd.DataFrame, metric: str = "loss",
                       c_convention: str = "exact") -> pd.DataFrame:
    """The valid points (trial_id, N, D, C, loss) of per-step curves; N comes from `runs` by trial_id.

    curves: trial_id, step, tokens, flops, eval_loss, train_loss, lr, and optionally valid (bool), schedule
    and N.
    """
    need = {"trial_id", "step", "tokens", _LOSS_COLUMNS.get(metric, metric)}
    missing = sorted(need - set(curves.columns))
    if missing:
        raise FitInputError(f"the curves table lacks column(s) {', '.join(missing)}; it needs trial_id, step, "
                            "tokens, the metric's column (eval_loss or train_loss) and flops or N.")
    df = curves.copy()
    df["trial_id"] = df["trial_id"].astype(str)
    if "N" not in df.columns:
        df = df.merge(runs[["trial_id", "N"]].astype({"trial_id": str}), on="trial_id", how="inner")
    if "valid" in df.columns:
        valid = df["valid"].astype(bool).to_numpy()
    else:
        valid = (df["step"] == df.groupby("trial_id")["step"].transform("max")).to_numpy()
        if "schedule" in df.columns:  # a constant learning rate never decays: none of its points is valid
            valid = valid & df["schedule"].astype(str).str.lower().ne("constant").to_numpy()
    df = df.loc[valid]
    D = pd.to_numeric(df["tokens"], errors="coerce").to_numpy(float)
    N = pd.to_numeric(df["N"], errors="coerce").to_numpy(float)
    if c_convention == "exact" and "flops" in df.columns:
        C = pd.to_numeric(df["flops"], errors="coerce").to_numpy(float)
    else:
        C = 6.0 * N * D
    L = pd.to_numeric(df[_LOSS_COLUMNS.get(metric, metric)], errors="coerce").to_numpy(float)
    out = pd.DataFrame({"trial_id": df["trial_id"].to_numpy(), "N": N, "D": D, "C": C, "loss": L})
    ok = np.isfinite(out[["N", "D", "C", "loss"]]).all(axis=1) & (out[["N", "D", "C", "loss"]] > 0).all(axis=1)
    return out.loc[ok].reset_index(drop=True)


def envelope_points(C: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Indices of the running-minimum envelope: sorted by C, each point lower than all before it."""
    order = np.lexsort((L, C))
    prev_min = np.minimum.accumulate(np.r_[np.inf, L[order]])[:-1]
    return order[L[order] < prev_min]


def fit_envelope(points: pd.DataFrame, *, source: str, min_points: int = 3) -> EnvelopeFit:
    """Approach 1 on valid points (columns N, D, C, loss); see the module docstring."""
    C, N, D, L = (points[c].to_numpy(float) for c in ("C", "N", "D", "loss"))
    on = envelope_points(C, L)
    n_sizes = len(np.unique(N[on]))
    if len(on) < min_points or n_sizes < 2:
        raise FitInputError(f"the training-curve envelope needs at least {min_points} points from at least 2 "
                            f"model sizes, found {len(on)} points from {n_sizes} size(s) "
                            f"among {len(C)} valid points.")
    return EnvelopeFit(C=tuple(C[on]), N=tuple(N[on]), D=tuple(D[on]), L=tuple(L[on]), n_valid_points=len(C),
                       source=source, n_law=fit_power_law(C[on], N[on], what="envelope N_opt(C)"),
                       d_law=fit_power_law(C[on], D[on], what="envelope D_opt(C)"),
                       loss_law=loss_law(C[on], L[on]))
