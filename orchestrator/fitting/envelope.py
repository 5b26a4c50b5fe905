"""Approach 1 of Hoffmann et al. (2022): the envelope of training curves.

Hoffmann et al. (2022, sec. 3.1) interpolate each run's training curve into a map from FLOPs to loss, then at
1500 log-spaced FLOP values take the run with the lowest loss: its model size is N_opt at that compute, and
power laws through those points (log-log least squares) give N_opt = k_N C^a; the envelope's losses give
L_env = E + k C^p (isoflop.loss_law). D_opt is the tokens at which N_opt costs C under the fit's compute model.

Only points whose loss is a valid estimate of "this model trained for this many tokens" may be used
(Hoffmann et al. 2022 sec. 3.1; Hägele et al. 2024): the end of a cosine (or any decayed) run, and checkpoints
taken after a cooldown (WSD forks). A curves table says which by a boolean `valid` column; without it each
trial's last step is used, except for trials whose `schedule` column says "constant" (no decay, no valid point).
Without curves, each finished run's final point is used. Three cases follow from what is valid:
- trials with several valid points (cooldown checkpoints, or per-step curves marked valid): Chinchilla's
  procedure, each trial's valid points interpolated linearly in ln C, the lowest at each of `GRID_POINTS`
  log-spaced FLOP values that at least one trial reaches;
- one valid point per trial on IsoFLOP profiles: the best run of each budget (the envelope of final points
  cannot resolve N_opt finer than the sampled sizes: a warning gives the spacing);
- one valid point per trial and no profiles (a grid of sizes x token counts): the running minimum, a point
  being on the envelope when no point with less or equal compute reached a lower loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.isoflop import loss_law
from orchestrator.fitting.powerlaw import PowerLaw, PowerLawFrontier, SaturatingPowerLaw, fit_power_law

_LOSS_COLUMNS = {"loss": "eval_loss", "eval_loss": "eval_loss", "train_loss": "train_loss"}
GRID_POINTS = 1500  # log-spaced FLOP values (Hoffmann et al. 2022, sec. 3.1)
STORED_POINTS = 200  # envelope points kept in fit.json (evenly subsampled)
INTERPOLATED, BEST_PER_BUDGET, RUNNING_MINIMUM = "interpolated curves", "best run per budget", "running minimum"


@dataclass(frozen=True)
class EnvelopeFit(PowerLawFrontier):
    """Approach 1 frontier through the envelope points (C, N, D, L) (see module docstring); `mode` is which of
    the three cases ran and `notes` what the reader should know about its resolution."""

    C: tuple[float, ...]
    N: tuple[float, ...]
    D: tuple[float, ...]
    L: tuple[float, ...]
    n_valid_points: int
    source: str
    n_law: PowerLaw
    d_law: PowerLaw
    loss_law: SaturatingPowerLaw | PowerLaw
    mode: str = RUNNING_MINIMUM
    notes: tuple[str, ...] = ()


def valid_curve_points(curves: pd.DataFrame, *, runs: pd.DataFrame, metric: str = "loss",
                       c_convention: str = "exact") -> pd.DataFrame:
    """The valid points (trial_id, N, D, C, loss) of per-step curves; N comes from `runs` by trial_id.

    curves: trial_id, step, tokens, flops, eval_loss, train_loss, lr, and optionally valid (bool), schedule
    and N. C is the logged FLOPs under the exact convention, else 6 N D.
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


@dataclass(frozen=True)
class CurveGrid:
    """Every trial's valid points interpolated on the FLOP grid: loss (trials, grid), inf where a trial's points
    do not reach that compute (Hoffmann et al. 2022, sec. 3.1)."""

    trials: np.ndarray
    N: np.ndarray
    C: np.ndarray
    loss: np.ndarray

    @classmethod
    def of(cls, points: pd.DataFrame) -> CurveGrid:
        C_all = points["C"].to_numpy(float)
        grid = np.geomspace(C_all.min(), C_all.max(), GRID_POINTS)
        lg = np.log(grid)
        trials, loss, sizes = [], [], []
        for trial, pts in points.groupby("trial_id", sort=True):
            pts = pts.sort_values("C")
            lc, ll = np.log(pts["C"].to_numpy(float)), pts["loss"].to_numpy(float)
            row = np.full(len(grid), np.inf)
            if len(lc) == 1:  # a single valid point: it counts at the grid value nearest its compute
                row[int(np.argmin(np.abs(lg - lc[0])))] = ll[0]
            else:
                inside = (lg >= lc[0] - 1e-12) & (lg <= lc[-1] + 1e-12)
                row[inside] = np.interp(lg[inside], lc, ll)
            trials.append(str(trial))
            loss.append(row)
            sizes.append(float(pts["N"].iloc[0]))
        return cls(trials=np.array(trials), N=np.array(sizes), C=grid, loss=np.array(loss))

    def best(self, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, L) of the best trial at each grid value (NaN where no selected trial reaches it); mask (trials,)
        or (R, trials) selects trials (a bootstrap resample) and adds a leading axis."""
        if mask is None:
            loss = self.loss
            i = np.argmin(loss, axis=0)
            Lb = loss[i, np.arange(loss.shape[1])]
            return np.where(np.isfinite(Lb), self.N[i], np.nan), np.where(np.isfinite(Lb), Lb, np.nan)
        loss = np.where(mask[..., None], self.loss[None], np.inf)  # (R, trials, grid)
        i = np.argmin(loss, axis=1)  # (R, grid)
        Lb = np.take_along_axis(loss, i[:, None, :], axis=1)[:, 0, :]
        return np.where(np.isfinite(Lb), self.N[i], np.nan), np.where(np.isfinite(Lb), Lb, np.nan)


def fit_envelope(points: pd.DataFrame, *, source: str, compute: ComputeModel,
                 budget_of: pd.Series | None = None, min_points: int = 3) -> EnvelopeFit:
    """Approach 1 on valid points (columns trial_id, N, D, C, loss); see the module docstring.

    `budget_of` maps trial_id to its IsoFLOP budget (NaN: on no profile); used when each trial has one point.
    """
    mode, notes = mode_of(points, budget_of)
    if mode == INTERPOLATED:
        grid = CurveGrid.of(points)
        N, L = grid.best()
        ok = np.isfinite(N)
        C, N, L = grid.C[ok], N[ok], L[ok]
    elif mode == BEST_PER_BUDGET:
        C, N, L, spacing = best_per_budget(points, budget_of)
        if spacing > 1.0:
            notes.append(f"approach 1 from final points takes the best run of each budget, so it resolves N_opt only "
                         f"to the sampled sizes (neighbours a factor {spacing:.2g} apart); IsoFLOP parabolas "
                         "interpolate between them")
    else:
        C_all, N_all, L_all = (points[c].to_numpy(float) for c in ("C", "N", "loss"))
        on = envelope_points(C_all, L_all)
        C, N, L = C_all[on], N_all[on], L_all[on]
    n_sizes = len(np.unique(N))
    if len(C) < min_points or n_sizes < 2:
        raise FitInputError(f"the training-curve envelope needs at least {min_points} points from at least 2 "
                            f"model sizes, found {len(C)} points from {n_sizes} size(s) "
                            f"among {len(points)} valid points.")
    D = compute.tokens(C, N)
    keep = np.unique(np.linspace(0, len(C) - 1, min(len(C), STORED_POINTS)).round().astype(int))
    return EnvelopeFit(C=tuple(C[keep]), N=tuple(N[keep]), D=tuple(D[keep]), L=tuple(L[keep]),
                       n_valid_points=len(points), source=source,
                       n_law=fit_power_law(C, N, what="envelope N_opt(C)"),
                       d_law=fit_power_law(C, D, what="envelope D_opt(C)"),
                       loss_law=loss_law(C, L), mode=mode, notes=tuple(notes))


def mode_of(points: pd.DataFrame, budget_of: pd.Series | None) -> tuple[str, list[str]]:
    """Which case of the module docstring applies to these points."""
    per_trial = points.groupby("trial_id")["C"].count()
    if (per_trial >= 2).any():
        return INTERPOLATED, []
    if budget_of is not None:
        budgets = points["trial_id"].astype(str).map(budget_of)
        if np.isfinite(budgets.to_numpy(float)).sum() >= 3:
            return BEST_PER_BUDGET, []
    return RUNNING_MINIMUM, []


def best_per_budget(points: pd.DataFrame, budget_of: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(budget, N, loss) of the lowest-loss run of each budget, and the largest ratio between neighbouring
    sizes near those minima (the resolution of this estimate)."""
    df = points.assign(budget=points["trial_id"].astype(str).map(budget_of).astype(float))
    df = df[np.isfinite(df["budget"])]
    rows, spacing = [], 1.0
    for C, at in df.groupby("budget", sort=True):
        best = at.loc[at["loss"].idxmin()]
        rows.append((float(C), float(best["N"]), float(best["loss"])))
        sizes = np.unique(at["N"].to_numpy(float))
        j = int(np.searchsorted(sizes, best["N"]))
        ratios = [sizes[i + 1] / sizes[i] for i in (j - 1, j) if 0 <= i < len(sizes) - 1]
        spacing = max([spacing, *ratios])
    C, N, L = (np.array(v) for v in zip(*rows)) if rows else (np.array([]),) * 3
    return C, N, L, spacing
