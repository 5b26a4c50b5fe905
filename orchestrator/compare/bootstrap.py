"""Resampling a compared sweep: the point fit's estimator on each resample of its runs, and percentile intervals.

The multiplier's interval comes from the bootstrap of both frontiers (Efron & Tibshirani 1993, ch. 6 and 13):
each sweep's runs are resampled *independently* (the sweeps are independent experiments), with the fitting
stage's own resampler (fitting/bootstrap.Resampler.of_runs: design points within their IsoFLOP budget, a point's
seeds together) and refitted with the same estimator as the point fit:
- parametric / parametric_floor: fitting.surface.fit_surface_resamples, warm-started from the point fit and its
  best basins; resamples whose optimiser did not converge are dropped (as fitting/bootstrap.py drops them);
- vpnls: fitting.vpnls.bootstrap_vpnls from the point fit's exponents;
- isoflop: fitting.isoflop.isoflop_resamples with the point fit's budgets, corrections and vertex rules, then the
  minima's loss law refitted per resample (the grid search of fitting.powerlaw.saturating_batch).
Resample r of the baseline is paired with resample r of a variant; a pair counts when both could be fitted.
"""

from __future__ import annotations

import warnings

import numpy as np

from orchestrator.compare.fits import SweepFit
from orchestrator.compare.frontier import LossFrontier
from orchestrator.fitting.bootstrap import Resampler
from orchestrator.fitting.isoflop import isoflop_resamples
from orchestrator.fitting.powerlaw import SaturatingPowerLaw, power_law_batch, saturating_batch
from orchestrator.fitting.surface import SurfaceFit, fit_surface_resamples
from orchestrator.fitting.vpnls import VPNLSFit, bootstrap_vpnls

LOG_CAP = 700.0  # ln M beyond this is "no compute reaches it" (inf); keeps percentiles of inf well defined


def resampler_for(sweep: SweepFit, *, resamples: int, seed: int) -> Resampler:
    """The fitting stage's resampler over this sweep's runs (within budgets, a point's seeds together)."""
    return Resampler.of_runs(sweep.runs, resamples=resamples, seed=seed)


def frontier_resamples(sweep: SweepFit, *, resampler: Resampler) -> tuple[LossFrontier, np.ndarray]:
    """The sweep's frontier refitted on every resample: (LossFrontier with one row per resample, valid (R,))."""
    N, D, L = sweep.arrays()
    fit = sweep.fit
    rows: list[np.ndarray] = []
    valid: list[np.ndarray] = []
    for _, W in resampler.chunks():
        if isinstance(fit, SurfaceFit):  # parametric or parametric_floor (fit.fixed_E)
            starts = np.vstack([fit.natural(), np.array(fit.basin_starts).reshape(-1, 5)])
            params, _, converged = fit_surface_resamples(N, D, L, weights=W, starts=starts, delta=fit.huber_delta,
                                                         fixed_E=fit.fixed_E)
            a, b, e, alpha, beta = params.T
            rows.append(np.stack([np.exp(e), np.exp(a), np.exp(b), alpha, beta], axis=1))
            valid.append(converged)
        elif isinstance(fit, VPNLSFit):
            got = bootstrap_vpnls(N, D, L, weights=W, start=(fit.alpha, fit.beta))
            rows.append(got)
            valid.append(np.isfinite(got).all(axis=1))
        else:
            used = np.array([p.budget for p in fit.profiles])
            gammas = np.array([p.gamma for p in fit.profiles])
            got = isoflop_resamples(N, D, L, budget=sweep.runs["budget"].to_numpy(float), budgets=used, weights=W,
                                    compute=sweep.compute, gammas=gammas)
            law = fit.loss_law
            if isinstance(law, SaturatingPowerLaw):
                E, k, p = saturating_batch(got["C"], got["L"], x_ref=law.x_ref)
            else:
                logk, p = power_law_batch(got["C"], got["L"])
                E, k = np.zeros_like(p), np.exp(logk)
            got = np.stack([E, k, p], axis=1)
            rows.append(got)
            valid.append(np.isfinite(got).all(axis=1))
    params, ok = np.concatenate(rows), np.concatenate(valid)
    if sweep.frontier.is_surface:
        frontier = LossFrontier.surface(*params.T, compute=sweep.compute)
    else:
        x_ref = sweep.frontier.x_ref
        frontier = LossFrontier.loss_law(*params.T, x_ref=x_ref, compute=sweep.compute)
    return frontier, ok & frontier.valid()


def percentile_interval(log_values: np.ndarray, valid: np.ndarray, *, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval (Efron & Tibshirani 1993, ch. 13) of exp(log_values) over the valid rows, per column:
    (lo (M,), hi (M,)). Taken on the log scale, with a resample that no compute can match (ln value +inf) kept at
    the cap so it counts at the top without poisoning the interpolation (an inf bound is returned as inf); NaN
    entries are left out; NaN bounds where a column has fewer than 2 values."""
    v = np.atleast_2d(np.asarray(log_values, dtype=float))[np.asarray(valid, dtype=bool)]
    capped = np.clip(v, -LOG_CAP, LOG_CAP)
    enough = np.isfinite(capped).sum(axis=0) >= 2
    q = (50 * (1 - level), 50 * (1 + level))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: masked below
        lo, hi = (np.nanpercentile(capped, q, axis=0) if len(capped) else np.full((2, v.shape[1]), np.nan))

    def back(z: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            out = np.where(z >= LOG_CAP, np.inf, np.where(z <= -LOG_CAP, 0.0, np.exp(z)))
        return np.where(enough, out, np.nan)

    return back(lo), back(hi)
