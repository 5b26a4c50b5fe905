"""Does the headline law describe the runs to within their own noise? The lack-of-fit F-test with replicates.

Where design points were run at several seeds, the spread of a point's seeds measures the pure error, the
noise no law of N and D can remove, independently of any law. The spread of the points' mean losses about the
fitted law has two parts, that noise and whatever the law's form misses. Their ratio

    F = (SS_lof / df_lof) / (SS_pe / df_pe),
    SS_lof = sum_i k_i (mean_i - L(N_i, D_i))^2,   df_lof = points - parameters,
    SS_pe  = sum_i sum_j (L_ij - mean_i)^2,        df_pe  = runs - points,

is F(df_lof, df_pe)-distributed when the law is right (Fisher's lack-of-fit test: Draper & Smith, Applied
Regression Analysis, 3rd ed. 1998, sec. 2.1; for a nonlinear model it holds approximately: Bates & Watts,
Nonlinear Regression Analysis and Its Applications, 1988). A small p-value says the law misses the runs by more
than their noise: a narrower interval from more seeds would then be narrower about the wrong law. The usual
cause in a sweep is tuning that moves with N inside a budget (an lr or batch rule that helps some sizes more
than others bends the IsoFLOP profiles: Porian et al. 2024), or shapes whose losses step with the width.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from orchestrator.fitting.result import LackOfFit, MethodStatus

P_LEVEL = 0.01
"""The law misses the runs when the F-test's p-value is below this."""
MIN_PURE_DOF = 2
"""At least this many seed-to-seed degrees of freedom (runs - points) before the test is run."""


def lack_of_fit(runs: pd.DataFrame, law: object, *, method: str, n_params: int) -> LackOfFit:
    """The test of the module docstring for `law` (anything with loss(N, D)) on the tidy runs (columns point,
    budget, N, D, loss: fitting/table.py)."""
    from scipy.stats import f as f_dist  # noqa: PLC0415

    if not hasattr(law, "loss"):
        return LackOfFit(status=MethodStatus.SKIPPED, method=method,
                         reason=f"{method} has no loss surface L(N, D) to compare the runs with")
    g = runs.groupby("point").agg(N=("N", "first"), D=("D", "first"), budget=("budget", "first"),
                                  mean=("loss", "mean"), k=("loss", "size"), var=("loss", "var"))
    df_pe = int((g["k"] - 1).sum())
    df_lof = len(g) - n_params
    if df_pe < MIN_PURE_DOF:
        return LackOfFit(status=MethodStatus.SKIPPED, method=method, n_points=len(g), n_params=n_params,
                         reason="no design point has 2 or more seeds, so the noise the law should fit within is "
                                "not measured")
    if df_lof < 1:
        return LackOfFit(status=MethodStatus.SKIPPED, method=method, n_points=len(g), n_params=n_params,
                         reason=f"{len(g)} design points for a law of {n_params} parameters leave no degree of "
                                "freedom to test its form")
    res = g["mean"].to_numpy(float) - np.asarray(law.loss(g["N"].to_numpy(float), g["D"].to_numpy(float)), float)
    k = g["k"].to_numpy(float)
    ss_lof = float(np.sum(k * res ** 2))
    ss_pe = float(np.nansum(g["var"].to_numpy(float) * (k - 1)))
    seed_sd = math.sqrt(ss_pe / df_pe)
    F = (ss_lof / df_lof) / (ss_pe / df_pe) if ss_pe > 0 else math.inf
    p = float(f_dist.sf(F, df_lof, df_pe)) if math.isfinite(F) else 0.0
    worst, offset = None, None
    budgets = g["budget"].to_numpy(float)
    for b in np.unique(budgets[np.isfinite(budgets)]):
        m = float(np.mean(res[budgets == b]))
        if offset is None or abs(m) > abs(offset):
            worst, offset = float(b), m
    return LackOfFit(status=MethodStatus.OK, method=method, n_points=len(g), n_params=n_params,
                     scatter=float(np.sqrt(np.mean(res ** 2))), seed_sd=seed_sd, F=float(F), df_lof=df_lof,
                     df_pe=df_pe, p_value=p, worst_budget=worst, worst_budget_offset=offset)


def misses(lof: LackOfFit | None) -> bool:
    """True where the test ran and the law misses the runs by more than their noise."""
    return lof is not None and lof.ok and lof.p_value is not None and lof.p_value < P_LEVEL
