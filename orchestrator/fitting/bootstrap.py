"""Bootstrap over runs: resample trials with replacement, refit every method, take percentile intervals.

A resample is a vector of multiplicities (R, n) drawn from Multinomial(n, 1/n) with a seeded generator
(Efron & Tibshirani 1993, ch. 6; percentile intervals ch. 13), so every method refits all resamples in one
batched call over the same runs. Quantities: E, A, B, alpha, beta, a, b (where the method has them) and,
at each target budget, N_opt, D_opt, tokens per parameter and the compute-optimal loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from orchestrator.fitting.envelope import EnvelopeFit, envelope_points
from orchestrator.fitting.isoflop import IsoFLOPFit, isoflop_resamples
from orchestrator.fitting.powerlaw import PowerLaw, SaturatingPowerLaw, power_law_batch, saturating_batch
from orchestrator.fitting.surface import SurfaceFit, fit_surface_resamples
from orchestrator.fitting.vpnls import VPNLSFit, bootstrap_vpnls


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile intervals at `level` over `n_valid` of `n_resamples` resamples (the rest could not be fitted).

    bounds: quantity -> (low, high); predictions: budget key -> quantity -> (low, high).
    """

    level: float
    n_resamples: int
    n_valid: int
    bounds: dict[str, tuple[float, float]]
    predictions: dict[str, dict[str, tuple[float, float]]]
    n_converged: int | None = None  # resamples whose optimiser met its gradient tolerance (iterative fits)

    def to_json(self) -> dict:
        return {"level": self.level, "n_resamples": self.n_resamples, "n_valid": self.n_valid,
                **({} if self.n_converged is None else {"n_converged": self.n_converged}),
                **{k: list(v) for k, v in self.bounds.items()},
                "predictions": {c: {q: list(v) for q, v in qs.items()} for c, qs in self.predictions.items()}}


def resample_weights(n: int, *, resamples: int, seed: int) -> np.ndarray:
    """Multiplicities (resamples, n) of a with-replacement resample of n runs (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)


def budget_key(C: float) -> str:
    """The JSON key of a budget: 3 significant digits, e.g. '1e+21', '2.96e+21'."""
    return f"{C:.3g}"


def percentile_ci(samples: dict[str, np.ndarray], predictions: dict[str, dict[str, np.ndarray]], *,
                  level: float) -> BootstrapCI:
    """Percentile intervals of each sample array (NaN rows are resamples that could not be fitted)."""
    q = (50 * (1 - level), 50 * (1 + level))
    valid = np.all([np.isfinite(v) for v in samples.values()], axis=0)

    def ci(v: np.ndarray) -> tuple[float, float]:
        v = v[valid & np.isfinite(v)]
        return (float("nan"), float("nan")) if len(v) < 2 else tuple(float(x) for x in np.percentile(v, q))

    return BootstrapCI(level=level, n_resamples=len(valid), n_valid=int(valid.sum()),
                       bounds={k: ci(v) for k, v in samples.items()},
                       predictions={c: {k: ci(v) for k, v in qs.items()} for c, qs in predictions.items()})


def surface_quantities(E: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: np.ndarray, beta: np.ndarray, *,
                       budgets: list[float], flops_per_nd: float) -> tuple[dict, dict]:
    """Samples of E, A, B, alpha, beta, a, b and the frontier at each budget (Hoffmann et al. 2022, eq. 4)."""
    with np.errstate(all="ignore"):
        a, b = beta / (alpha + beta), alpha / (alpha + beta)
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        preds = {}
        for C in budgets:
            x = C / flops_per_nd
            N, D = G * x ** a, x ** b / G
            preds[budget_key(C)] = {"N_opt": N, "D_opt": D, "tokens_per_param": D / N,
                                    "loss": E + A / N ** alpha + B / D ** beta}
    return {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta, "a": a, "b": b}, preds


def law_quantities(laws: dict[str, np.ndarray], *, budgets: list[float], law: SaturatingPowerLaw | PowerLaw
                   ) -> tuple[dict, dict]:
    """Samples of a, b and the frontier from per-resample power laws (keys n_logk, a, d_logk, b) and the
    loss law refitted on each resample's points (keys C, L: (R, m), NaN where a point is missing), in the
    form of the full-data `law` (a floor E + k C^p, or a plain power law)."""
    if isinstance(law, SaturatingPowerLaw):
        E, k, p = saturating_batch(laws["C"], laws["L"], x_ref=law.x_ref)
        loss = lambda C: E + k * (C / law.x_ref) ** p  # noqa: E731
    else:
        logk, p = power_law_batch(laws["C"], laws["L"])
        loss = lambda C: np.exp(logk + p * np.log(C))  # noqa: E731
    preds = {}
    with np.errstate(all="ignore"):
        for C in budgets:
            N, D = np.exp(laws["n_logk"] + laws["a"] * np.log(C)), np.exp(laws["d_logk"] + laws["b"] * np.log(C))
            preds[budget_key(C)] = {"N_opt": N, "D_opt": D, "tokens_per_param": D / N, "loss": loss(C)}
    return {"a": laws["a"], "b": laws["b"]}, preds


def bootstrap_parametric(runs: pd.DataFrame, fit: SurfaceFit, *, weights: np.ndarray, budgets: list[float],
                         flops_per_nd: float, level: float) -> BootstrapCI:
    """Approach 3 on each resample, warm-started (see surface.fit_surface_resamples)."""
    starts = np.vstack([fit.natural(), np.array(fit.basin_starts).reshape(-1, 5)])
    params, _, converged = fit_surface_resamples(runs["N"].to_numpy(float), runs["D"].to_numpy(float),
                                                 runs["loss"].to_numpy(float), weights=weights, starts=starts,
                                                 delta=fit.huber_delta)
    a, b, e, alpha, beta = params.T
    samples, preds = surface_quantities(np.exp(e), np.exp(a), np.exp(b), alpha, beta, budgets=budgets,
                                        flops_per_nd=flops_per_nd)
    return replace(percentile_ci(samples, preds, level=level), n_converged=int(converged.sum()))


def bootstrap_vp(runs: pd.DataFrame, fit: VPNLSFit, *, weights: np.ndarray, budgets: list[float],
                 flops_per_nd: float, level: float) -> BootstrapCI:
    """The variable-projection cross-check on each resample, from the full-data (alpha, beta)."""
    rows = bootstrap_vpnls(runs["N"].to_numpy(float), runs["D"].to_numpy(float), runs["loss"].to_numpy(float),
                           weights=weights, start=(fit.alpha, fit.beta))
    samples, preds = surface_quantities(*rows.T, budgets=budgets, flops_per_nd=flops_per_nd)
    return percentile_ci(samples, preds, level=level)


def bootstrap_isoflop(runs: pd.DataFrame, fit: IsoFLOPFit, *, weights: np.ndarray, budgets: list[float],
                      level: float) -> BootstrapCI:
    """Approach 2 on each resample over the budgets the full-data fit used."""
    laws = isoflop_resamples(runs["N"].to_numpy(float), runs["D"].to_numpy(float), runs["loss"].to_numpy(float),
                             budget=runs["budget"].to_numpy(float),
                             budgets=np.array([p.budget for p in fit.profiles]), weights=weights)
    samples, preds = law_quantities(laws, budgets=budgets, law=fit.loss_law)
    return percentile_ci(samples, preds, level=level)


def bootstrap_envelope(points: pd.DataFrame, fit: EnvelopeFit, *, resamples: int, seed: int, budgets: list[float],
                       level: float) -> BootstrapCI:
    """Approach 1 on each resample of the trials that contributed valid points."""
    trials, inverse = np.unique(points["trial_id"].astype(str), return_inverse=True)
    W = resample_weights(len(trials), resamples=resamples, seed=seed)[:, inverse]  # (R, points)
    C, N, D, L = (points[c].to_numpy(float) for c in ("C", "N", "D", "loss"))
    cols = {k: np.full((resamples, len(C)), np.nan) for k in ("C", "N", "D", "L")}
    for r in range(resamples):
        keep = np.flatnonzero(W[r] > 0)
        on = keep[envelope_points(C[keep], L[keep])]
        if len(on) >= 3 and len(np.unique(N[on])) >= 2:
            for key, v in (("C", C), ("N", N), ("D", D), ("L", L)):
                cols[key][r, on] = v[on]
    laws = {"C": cols["C"], "L": cols["L"]}
    laws["n_logk"], laws["a"] = power_law_batch(cols["C"], cols["N"])
    laws["d_logk"], laws["b"] = power_law_batch(cols["C"], cols["D"])
    samples, preds = law_quantities(laws, budgets=budgets, law=fit.loss_law)
    return percentile_ci(samples, preds, level=level)


def bootstrap_single_variable(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, slice_N: np.ndarray,
                              slice_D: np.ndarray, weights: np.ndarray, level: float) -> BootstrapCI:
    """Approach 5 on each resample: weighted log-log slopes on the fixed slices (runs at largest D / N)."""
    out = {}
    for name, idx, x in (("alpha", slice_N, N), ("beta", slice_D, D)):
        W = weights[:, idx]
        lx, ly = np.log(x[idx]), np.log(L[idx])
        with np.errstate(all="ignore"):
            mx, my = (W * lx).sum(1) / W.sum(1), (W * ly).sum(1) / W.sum(1)
            dx = lx[None, :] - mx[:, None]
            slope = (W * dx * (ly[None, :] - my[:, None])).sum(1) / (W * dx * dx).sum(1)
        distinct = (W[:, np.unique(lx, return_index=True)[1]] > 0).sum(1)
        out[name] = np.where(distinct >= 3, -slope, np.nan)
    with np.errstate(all="ignore"):
        out["a"] = out["beta"] / (out["alpha"] + out["beta"])
        out["b"] = out["alpha"] / (out["alpha"] + out["beta"])
    return percentile_ci(out, {}, level=level)
