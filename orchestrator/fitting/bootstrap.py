"""Bootstrap over runs: resample, refit every method with the point fit's own rules, take percentile intervals.

The bootstrap is the estimator applied to resampled data (Efron & Tibshirani 1993, ch. 6; percentile intervals
ch. 13), so each resample goes through the same rules as the point fit:
- runs are resampled *within* their IsoFLOP budget (a stratified bootstrap, Davison & Hinkley 1997, sec. 3.7),
  so no resample loses a budget the design has; runs on no profile form one more stratum;
- the unit drawn is a design point, (N, D) with all of its seeds: seeds of one point are resampled together
  (a cluster bootstrap, Davison & Hinkley 1997, sec. 3.8), so the interval counts seed-to-seed scatter once;
- forks of one WSD trunk (column `trunk`, orchestrator/forks.py) share its weights up to their fork points, so
  their errors are correlated: a trunk is drawn whole, with all of its forks; when a trunk's forks lie on
  different budgets the draw is no longer stratified by budget (a unit cannot sit in two strata);
- approach 2 keeps a vertex only inside the sizes the resample holds (isoflop.isoflop_resamples);
- resamples whose optimiser did not converge (parametric) or that could not be fitted are dropped and counted:
  `n_valid` of `n_resamples` were used.
A resample is a vector of multiplicities per run, drawn from a seeded generator in chunks whose size depends
only on the number of runs, so every method sees the same resamples and memory stays bounded.
Quantities: E, A, B, alpha, beta (surfaces), a, b and, at each target budget, N_opt, D_opt, tokens per
parameter and the compute-optimal loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from orchestrator.fitting.compute import ComputeModel, frontier_of_surface, local_exponent
from orchestrator.fitting.envelope import BEST_PER_BUDGET, INTERPOLATED, CurveGrid, EnvelopeFit, envelope_points
from orchestrator.fitting.isoflop import IsoFLOPFit, isoflop_resamples
from orchestrator.fitting.powerlaw import PowerLaw, SaturatingPowerLaw, power_law_batch, saturating_batch
from orchestrator.fitting.surface import MAX_ELEMENTS, SurfaceFit, fit_surface_resamples
from orchestrator.fitting.vpnls import VPNLSFit, bootstrap_vpnls


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile intervals at `level` over `n_valid` of `n_resamples` resamples (the rest could not be fitted,
    or did not converge: `n_converged` counts those whose optimiser met its tolerance, for iterative fits).

    bounds: quantity -> (low, high); predictions: budget key -> quantity -> (low, high).
    """

    level: float
    n_resamples: int
    n_valid: int
    bounds: dict[str, tuple[float, float]]
    predictions: dict[str, dict[str, tuple[float, float]]]
    n_converged: int | None = None
    scheme: str = ""

    def to_json(self) -> dict:
        return {"level": self.level, "n_resamples": self.n_resamples, "n_valid": self.n_valid,
                **({} if self.n_converged is None else {"n_converged": self.n_converged}),
                **({"scheme": self.scheme} if self.scheme else {}),
                **{k: list(v) for k, v in self.bounds.items()},
                "predictions": {c: {q: list(v) for q, v in qs.items()} for c, qs in self.predictions.items()}}


class Resampler:
    """Seeded resamples of runs, stratified by `strata` (one label per run) with `units` (one label per run)
    drawn whole; see the module docstring. `chunks()` yields (first resample index, weights (r, n))."""

    def __init__(self, *, strata: np.ndarray, units: np.ndarray, resamples: int, seed: int) -> None:
        self.n, self.resamples, self.seed = len(strata), resamples, seed
        self.trunks = 0
        self.rows_per_chunk = max(1, min(resamples, MAX_ELEMENTS // max(self.n, 1)))
        self._strata = []
        for label in sorted(set(map(str, strata))):
            rows = np.flatnonzero(np.array([str(s) for s in strata]) == label)
            unit_ids, inverse = np.unique(np.asarray(units)[rows].astype(str), return_inverse=True)
            self._strata.append((rows, len(unit_ids), inverse))

    @classmethod
    def plain(cls, n: int, *, resamples: int, seed: int) -> Resampler:
        """Ordinary resampling of n runs (one stratum, each run its own unit)."""
        return cls(strata=np.zeros(n), units=np.arange(n), resamples=resamples, seed=seed)

    @classmethod
    def of_runs(cls, runs: pd.DataFrame, *, resamples: int, seed: int) -> Resampler:
        """Within budgets (runs on no profile together), a design point's seeds together, a trunk's forks together."""
        budget = runs["budget"].to_numpy(float)
        strata = np.where(np.isfinite(budget), np.round(np.log10(np.where(np.isfinite(budget), budget, 1.0)), 6),
                          np.inf)
        units = (runs["point"].to_numpy() if "point" in runs.columns else np.arange(len(runs))).astype(str)
        if "trunk" in runs.columns:
            trunk = runs["trunk"].astype(object).where(runs["trunk"].notna(), None).to_numpy()
            forked = np.array([t is not None and str(t) not in ("", "nan", "None") for t in trunk])
            if forked.any():
                units = np.where(forked, np.array(["trunk:" + str(t) for t in trunk]), units)
                spans = pd.Series(strata[forked]).groupby(units[forked]).nunique()
                if (spans > 1).any():
                    strata = np.zeros(len(runs))
        resampler = cls(strata=strata, units=units, resamples=resamples, seed=seed)
        resampler.trunks = int(len(set(units[forked]))) if "trunk" in runs.columns and forked.any() else 0
        return resampler

    @property
    def scheme(self) -> str:
        units = sum(m for _, m, _ in self._strata)
        forks = f", the forks of each of {self.trunks} WSD trunks together" if self.trunks else ""
        return (f"{self.resamples} resamples of {units} design points within {len(self._strata)} strata "
                f"(budgets), seeds of a point together{forks}")

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for index, lo in enumerate(range(0, self.resamples, self.rows_per_chunk)):
            r = min(self.rows_per_chunk, self.resamples - lo)
            rng = np.random.default_rng([self.seed, index])
            W = np.zeros((r, self.n))
            for rows, m, inverse in self._strata:
                counts = rng.multinomial(m, np.full(m, 1.0 / m), size=r).astype(float)  # (r, m)
                W[:, rows] = counts[:, inverse]
            yield lo, W

    def weights(self) -> np.ndarray:
        """All resamples at once (R, n): for small tables and tests."""
        return np.concatenate([W for _, W in self.chunks()])


def resample_weights(n: int, *, resamples: int, seed: int) -> np.ndarray:
    """Multiplicities (resamples, n) of a plain with-replacement resample of n runs (seeded)."""
    return Resampler.plain(n, resamples=resamples, seed=seed).weights()


def budget_key(C: float) -> str:
    """The JSON key of a budget: 3 significant digits, e.g. '1e+21', '2.96e+21'."""
    return f"{C:.3g}"


def percentile_ci(samples: dict[str, np.ndarray], predictions: dict[str, dict[str, np.ndarray]], *,
                  level: float, valid: np.ndarray | None = None) -> BootstrapCI:
    """Percentile intervals of each sample array over the `valid` resamples (default: those where every sample
    is finite); the others are resamples that could not be fitted."""
    q = (50 * (1 - level), 50 * (1 + level))
    finite = np.all([np.isfinite(v) for v in samples.values()], axis=0)
    valid = finite if valid is None else finite & valid

    def ci(v: np.ndarray) -> tuple[float, float]:
        v = v[valid & np.isfinite(v)]
        return (float("nan"), float("nan")) if len(v) < 2 else tuple(float(x) for x in np.percentile(v, q))

    return BootstrapCI(level=level, n_resamples=len(valid), n_valid=int(valid.sum()),
                       bounds={k: ci(v) for k, v in samples.items()},
                       predictions={c: {k: ci(v) for k, v in qs.items()} for c, qs in predictions.items()})


def frontier_samples(N: np.ndarray, D: np.ndarray, loss: np.ndarray, *, budgets: list[float]) -> dict:
    """{budget key: {N_opt, D_opt, tokens_per_param, loss}} from (R, M) arrays over `budgets`."""
    with np.errstate(all="ignore"):
        return {budget_key(C): {"N_opt": N[:, j], "D_opt": D[:, j], "tokens_per_param": D[:, j] / N[:, j],
                                "loss": loss[:, j]} for j, C in enumerate(budgets)}


def surface_quantities(E: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: np.ndarray, beta: np.ndarray, *,
                       budgets: list[float], slope_budgets: np.ndarray, compute: ComputeModel
                       ) -> tuple[dict, dict]:
    """Samples of E, A, B, alpha, beta, a, b (the frontier's slopes over `slope_budgets`), a_law =
    beta / (alpha + beta), and the frontier at each budget (fitting/compute.frontier_of_surface)."""
    allC = np.r_[np.asarray(budgets, float), np.asarray(slope_budgets, float)]
    N, D = frontier_of_surface(E, A, B, alpha, beta, allC, compute=compute)
    m = len(budgets)
    with np.errstate(all="ignore"):
        loss = E[:, None] + A[:, None] / N[:, :m] ** alpha[:, None] + B[:, None] / D[:, :m] ** beta[:, None]
        samples = {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta,
                   "a": local_exponent(slope_budgets, N[:, m:]), "b": local_exponent(slope_budgets, D[:, m:]),
                   "a_law": beta / (alpha + beta)}
    return samples, frontier_samples(N[:, :m], D[:, :m], loss, budgets=budgets)


def law_quantities(laws: dict[str, np.ndarray], *, budgets: list[float], law: SaturatingPowerLaw | PowerLaw,
                   compute: ComputeModel) -> tuple[dict, dict]:
    """Samples of a, b and the frontier from per-resample power laws (keys n_logk, a, d_logk, b) and the
    loss law refitted on each resample's points (keys C, L: (R, m), NaN where a point is missing), in the
    form of the full-data `law` (a floor E + k C^p, or a plain power law). D_opt costs C under `compute`."""
    if isinstance(law, SaturatingPowerLaw):
        E, k, p = saturating_batch(laws["C"], laws["L"], x_ref=law.x_ref)
        loss = lambda C: E + k * (C / law.x_ref) ** p  # noqa: E731
    else:
        logk, p = power_law_batch(laws["C"], laws["L"])
        loss = lambda C: np.exp(logk + p * np.log(C))  # noqa: E731
    Cs = np.asarray(budgets, dtype=float)
    with np.errstate(all="ignore"):
        N = np.exp(laws["n_logk"][:, None] + laws["a"][:, None] * np.log(Cs)[None, :])
        D = compute.tokens(Cs[None, :], N)
        L = np.stack([loss(C) for C in Cs], axis=1)
    return {"a": laws["a"], "b": laws["b"]}, frontier_samples(N, D, L, budgets=budgets)


def _gather(resampler: Resampler, fit_chunk) -> dict[str, np.ndarray]:
    """Run fit_chunk(W) -> {name: (r, ...)} over every chunk and stack the pieces."""
    parts: dict[str, list[np.ndarray]] = {}
    for _, W in resampler.chunks():
        for key, value in fit_chunk(W).items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(values) for key, values in parts.items()}


def bootstrap_parametric(runs: pd.DataFrame, fit: SurfaceFit, *, resampler: Resampler, budgets: list[float],
                         slope_budgets: np.ndarray, compute: ComputeModel, level: float) -> BootstrapCI:
    """Approach 3 on each resample, warm-started (surface.fit_surface_resamples); non-converged resamples are
    dropped and counted."""
    starts = np.vstack([fit.natural(), np.array(fit.basin_starts).reshape(-1, 5)])
    N, D, L = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))

    def fit_chunk(W: np.ndarray) -> dict[str, np.ndarray]:
        params, _, converged = fit_surface_resamples(N, D, L, weights=W, starts=starts, delta=fit.huber_delta,
                                                     fixed_E=fit.fixed_E)
        return {"params": params, "converged": converged}

    got = _gather(resampler, fit_chunk)
    a, b, e, alpha, beta = got["params"].T
    samples, preds = surface_quantities(np.exp(e), np.exp(a), np.exp(b), alpha, beta, budgets=budgets,
                                        slope_budgets=slope_budgets, compute=compute)
    if fit.fixed_E is not None:
        samples.pop("E")
    ci = percentile_ci(samples, preds, level=level, valid=got["converged"])
    return replace(ci, n_converged=int(got["converged"].sum()), scheme=resampler.scheme)


def bootstrap_vp(runs: pd.DataFrame, fit: VPNLSFit, *, resampler: Resampler, budgets: list[float],
                 slope_budgets: np.ndarray, compute: ComputeModel, level: float) -> BootstrapCI:
    """The variable-projection cross-check on each resample, from the full-data (alpha, beta)."""
    N, D, L = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    got = _gather(resampler, lambda W: {"rows": bootstrap_vpnls(N, D, L, weights=W, start=(fit.alpha, fit.beta))})
    samples, preds = surface_quantities(*got["rows"].T, budgets=budgets, slope_budgets=slope_budgets,
                                        compute=compute)
    return replace(percentile_ci(samples, preds, level=level), scheme=resampler.scheme)


def bootstrap_isoflop(runs: pd.DataFrame, fit: IsoFLOPFit, *, resampler: Resampler, budgets: list[float],
                      compute: ComputeModel, level: float) -> BootstrapCI:
    """Approach 2 on each resample over the budgets the point fit used, with its corrections and vertex rules."""
    N, D, L = (runs[c].to_numpy(float) for c in ("N", "D", "loss"))
    used = np.array([p.budget for p in fit.profiles])
    gammas = np.array([p.gamma for p in fit.profiles])
    got = _gather(resampler, lambda W: isoflop_resamples(N, D, L, budget=runs["budget"].to_numpy(float),
                                                         budgets=used, weights=W, compute=compute, gammas=gammas))
    samples, preds = law_quantities(got, budgets=budgets, law=fit.loss_law, compute=compute)
    return replace(percentile_ci(samples, preds, level=level), scheme=resampler.scheme)


def bootstrap_envelope(points: pd.DataFrame, fit: EnvelopeFit, *, runs: pd.DataFrame, resampler: Resampler,
                       budgets: list[float], compute: ComputeModel, level: float) -> BootstrapCI:
    """Approach 1 on each resample: a trial's valid points come with it (its weight is its run's)."""
    weight_col = pd.Series(np.arange(len(runs)), index=runs["trial_id"].astype(str).to_numpy())
    row_of = points["trial_id"].astype(str).map(weight_col).to_numpy()
    known = np.isfinite(row_of.astype(float))
    pts = points.loc[known].reset_index(drop=True)
    row_of = row_of[known].astype(int)
    C, N, L = (pts[c].to_numpy(float) for c in ("C", "N", "loss"))
    if fit.mode == INTERPOLATED:
        grid = CurveGrid.of(pts)
        trial_row = pd.Series(row_of, index=pts["trial_id"].astype(str)).groupby(level=0).first()
        trial_rows = trial_row.loc[grid.trials].to_numpy()
        step = max(1, MAX_ELEMENTS // max(grid.loss.size, 1))

        def fit_chunk(W: np.ndarray) -> dict[str, np.ndarray]:
            outs = [grid.best(W[i:i + step][:, trial_rows] > 0) for i in range(0, len(W), step)]
            Nb, Lb = np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
            Cs = np.broadcast_to(grid.C, Nb.shape)
            return {"C": np.where(np.isfinite(Nb), Cs, np.nan), "N": Nb, "L": Lb}
    elif fit.mode == BEST_PER_BUDGET:
        budget = runs["budget"].to_numpy(float)[row_of]
        levels = np.unique(budget[np.isfinite(budget)])

        def fit_chunk(W: np.ndarray) -> dict[str, np.ndarray]:
            w = W[:, row_of]
            out = {k: np.full((len(W), len(levels)), np.nan) for k in ("C", "N", "L")}
            for j, c in enumerate(levels):
                cols = np.flatnonzero(budget == c)
                masked = np.where(w[:, cols] > 0, L[cols][None, :], np.inf)
                i = np.argmin(masked, axis=1)
                hit = np.isfinite(masked[np.arange(len(W)), i])
                out["C"][:, j] = np.where(hit, c, np.nan)
                out["N"][:, j] = np.where(hit, N[cols][i], np.nan)
                out["L"][:, j] = np.where(hit, L[cols][i], np.nan)
            return out
    else:
        def fit_chunk(W: np.ndarray) -> dict[str, np.ndarray]:
            out = {k: np.full((len(W), len(C)), np.nan) for k in ("C", "N", "L")}
            for r in range(len(W)):
                keep = np.flatnonzero(W[r, row_of] > 0)
                on = keep[envelope_points(C[keep], L[keep])]
                if len(on) >= 3 and len(np.unique(N[on])) >= 2:
                    for key, v in (("C", C), ("N", N), ("L", L)):
                        out[key][r, on] = v[on]
            return out
    got = _gather(resampler, fit_chunk)
    enough = (np.isfinite(got["N"]).sum(axis=1) >= 3) & (np.nanmax(np.where(np.isfinite(got["N"]), got["N"], -np.inf),
                                                                    axis=1) >
                                                         np.nanmin(np.where(np.isfinite(got["N"]), got["N"], np.inf),
                                                                   axis=1))
    for key in got:
        got[key][~enough] = np.nan
    with np.errstate(all="ignore"):
        D = compute.tokens(got["C"], got["N"])
    laws = {"C": got["C"], "L": got["L"]}
    laws["n_logk"], laws["a"] = power_law_batch(got["C"], got["N"])
    laws["d_logk"], laws["b"] = power_law_batch(got["C"], D)
    samples, preds = law_quantities(laws, budgets=budgets, law=fit.loss_law, compute=compute)
    return replace(percentile_ci(samples, preds, level=level), scheme=resampler.scheme)


def bootstrap_single_variable(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, slice_N: np.ndarray,
                              slice_D: np.ndarray, resampler: Resampler, level: float) -> BootstrapCI:
    """Approach 5 on each resample: weighted log-log slopes on the fixed slices (runs at largest D / N)."""
    def fit_chunk(weights: np.ndarray) -> dict[str, np.ndarray]:
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
        return out

    out = _gather(resampler, fit_chunk)
    with np.errstate(all="ignore"):
        out["a"] = out["beta"] / (out["alpha"] + out["beta"])
        out["b"] = out["alpha"] / (out["alpha"] + out["beta"])
    return replace(percentile_ci(out, {}, level=level), scheme=resampler.scheme)
