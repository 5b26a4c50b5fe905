"""Power laws y = k x^p by least squares in log-log space, power laws with a floor y = E + k x^p, and
approach 5: single-variable laws L(N), L(D).

Used for the power laws through IsoFLOP minima and envelope points (N_opt = k C^a, Hoffmann et al. 2022
approaches 1 and 2) and for Kaplan-style single-variable laws (Kaplan et al. 2020, eqs. 1.1-1.2):
L(N) = (N_c / N)^alpha_N at the largest D and L(D) = (D_c / D)^alpha_D at the largest N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from orchestrator.fitting.errors import FitInputError


class AllocationExponents:
    """N_opt ~ C^a and D_opt ~ C^b from a loss law's exponents (Hoffmann et al. 2022, Eq. 4):
    a = beta / (alpha + beta), b = alpha / (alpha + beta). Mixed into every fit that has alpha, beta."""

    alpha: float
    beta: float

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        return self.alpha / (self.alpha + self.beta)


@dataclass(frozen=True)
class PowerLaw:
    """y = k x^p, fitted as log y = log k + p log x by (weighted) least squares; r2 in log space."""

    k: float
    p: float
    n: int
    r2: float
    x_min: float
    x_max: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.k * np.power(np.asarray(x, dtype=float), self.p)


class PowerLawFrontier:
    """A frontier given directly as power laws in C: N_opt = n_law(C) = k_N C^a, L_opt = loss_law(C)
    (approaches 1 and 2 of Hoffmann et al. 2022), and D_opt the tokens at which N_opt costs C under the fit's
    compute model (so every recommended allocation costs its budget). Mixed into those fits."""

    n_law: PowerLaw
    d_law: PowerLaw
    loss_law: SaturatingPowerLaw | PowerLaw

    @property
    def a(self) -> float:
        return self.n_law.p

    @property
    def b(self) -> float:
        return self.d_law.p

    def frontier(self, C: np.ndarray | float, *, compute) -> tuple[np.ndarray, np.ndarray]:
        N = self.n_law(C)
        return N, compute.tokens(C, N)

    def loss_at(self, C: np.ndarray | float, *, compute) -> np.ndarray:  # noqa: ARG002
        return self.loss_law(C)


def fit_power_law(x: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None, what: str = "power law",
                  min_points: int = 2) -> PowerLaw:
    """Fit y = k x^p; raises FitInputError (naming `what`) with fewer than min_points distinct x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0) & (w > 0)
    if len(np.unique(x[ok])) < min_points:
        raise FitInputError(f"{what} needs at least {min_points} distinct points, got {len(np.unique(x[ok]))}.")
    lx, ly, w = np.log(x[ok]), np.log(y[ok]), w[ok]
    mx, my = np.average(lx, weights=w), np.average(ly, weights=w)
    sxx = np.sum(w * (lx - mx) ** 2)
    p = np.sum(w * (lx - mx) * (ly - my)) / sxx
    logk = my - p * mx
    resid = ly - logk - p * lx
    sst = np.sum(w * (ly - my) ** 2)
    r2 = 1.0 - np.sum(w * resid ** 2) / sst if sst > 0 else 1.0
    return PowerLaw(k=float(np.exp(logk)), p=float(p), n=int(ok.sum()), r2=float(r2),
                    x_min=float(x[ok].min()), x_max=float(x[ok].max()))


def power_law_batch(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise log-log least squares for (R, m) arrays with NaN for missing points: (log k (R,), p (R,)).

    Rows with fewer than 2 finite points get NaN (bootstrap resamples that lost a budget).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        lx, ly = np.log(x), np.log(y)
    ok = np.isfinite(lx) & np.isfinite(ly)
    n = ok.sum(axis=1)
    lx0, ly0 = np.where(ok, lx, 0.0), np.where(ok, ly, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = lx0.sum(1) / n, ly0.sum(1) / n
        dx, dy = np.where(ok, lx - mx[:, None], 0.0), np.where(ok, ly - my[:, None], 0.0)
        p = (dx * dy).sum(1) / (dx * dx).sum(1)
        logk = my - p * mx
    bad = n < 2
    p[bad], logk[bad] = np.nan, np.nan
    return logk, p


@dataclass(frozen=True)
class SaturatingPowerLaw:
    """y = E + k (x / x_ref)^p with E, k >= 0 and p < 0: a power law with a floor (Hoffmann et al. 2022 eq. 2
    along the frontier; the floor E is the irreducible loss). Fitted by least squares in y: for each p the
    best non-negative (E, k) is closed-form, p is searched on a grid (-2..-0.005) and refined (Brent)."""

    E: float
    k: float
    p: float
    x_ref: float
    n: int
    rss: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.E + self.k * np.power(np.asarray(x, dtype=float) / self.x_ref, self.p)


P_GRID = -np.geomspace(0.005, 2.0, 240)


def _floor_ls(u: np.ndarray, y: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best (E, k) >= 0 for y = E + k u over the rows of (R, m) arrays (ok masks points): E, k, rss (R,)."""
    u, y, w = np.where(ok, u, 0.0), np.where(ok, y, 0.0), ok.astype(float)
    n, su, sy, suu, suy, syy = w.sum(1), u.sum(1), y.sum(1), (u * u).sum(1), (u * y).sum(1), (y * y).sum(1)
    with np.errstate(all="ignore"):
        det = n * suu - su * su
        E, k = (suu * sy - su * suy) / det, (n * suy - su * sy) / det
        cands = [(E, k), (sy / n, 0.0 * n), (0.0 * n, suy / suu)]  # both free; k = 0; E = 0
        best = (np.full_like(n, np.nan), np.full_like(n, np.nan), np.full_like(n, np.inf))
        for e, kk in cands:
            rss = syy - 2 * e * sy - 2 * kk * suy + e * e * n + 2 * e * kk * su + kk * kk * suu
            good = (e >= 0) & (kk >= 0) & np.isfinite(rss) & (rss < best[2])
            best = tuple(np.where(good, v, b) for v, b in zip((e, kk, rss), best))
    return best


def saturating_batch(x: np.ndarray, y: np.ndarray, *, x_ref: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SaturatingPowerLaw on each row of (R, m) arrays (NaN: missing), grid search only: E, k, p (R,).

    Rows with fewer than 3 points get NaN.
    """
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    u0 = np.where(ok, x, x_ref) / x_ref
    best = [np.full(x.shape[0], np.nan) for _ in range(3)] + [np.full(x.shape[0], np.inf)]
    for p in P_GRID:
        E, k, rss = _floor_ls(u0 ** p, y, ok)
        better = rss < best[3]
        for i, v in enumerate((E, k, np.full_like(E, p), rss)):
            best[i] = np.where(better, v, best[i])
    few = ok.sum(1) < 3
    return tuple(np.where(few, np.nan, b) for b in best[:3])


def fit_saturating(x: np.ndarray, y: np.ndarray, *, what: str = "saturating power law",
                   min_points: int = 3) -> SaturatingPowerLaw:
    """Fit y = E + k (x / x_ref)^p (see SaturatingPowerLaw); x_ref is the geometric mean of x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < min_points:
        raise FitInputError(f"{what} needs at least {min_points} distinct points, got {len(np.unique(x))}.")
    x_ref = float(np.exp(np.mean(np.log(x))))
    ok = np.ones((1, len(x)), dtype=bool)
    E, k, p = (v[0] for v in saturating_batch(x[None], y[None], x_ref=x_ref))

    def rss(q: float) -> float:
        return float(_floor_ls((x / x_ref)[None] ** q, y[None], ok)[2][0])

    i = int(np.argmin(np.abs(P_GRID - p)))
    lo, hi = P_GRID[min(i + 1, len(P_GRID) - 1)], P_GRID[max(i - 1, 0)]
    res = minimize_scalar(rss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8})
    if res.fun < rss(p):
        p = float(res.x)
    E, k, r = (v[0] for v in _floor_ls((x / x_ref)[None] ** p, y[None], ok))
    return SaturatingPowerLaw(E=float(E), k=float(k), p=float(p), x_ref=x_ref, n=len(x), rss=float(r))


@dataclass(frozen=True)
class SingleVariableFit(AllocationExponents):
    """Kaplan-style laws: L(N) = k_N N^-alpha_N on the runs at the largest D (and L(D) likewise).

    `at_D` / `at_N` are the fixed values used (the largest D / N holding >= 3 distinct values of the other).
    a = beta_D / (alpha_N + beta_D) is reported as the additive-form (Hoffmann et al. 2022) allocation
    exponent; it assumes L = E + A N^-alpha + B D^-beta with negligible E, so read it as a rough check.
    """

    loss_vs_N: PowerLaw
    loss_vs_D: PowerLaw
    at_D: float
    at_N: float

    @property
    def alpha(self) -> float:
        return -self.loss_vs_N.p

    @property
    def beta(self) -> float:
        return -self.loss_vs_D.p


def fit_single_variable(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, tol_dex: float = 0.05) -> SingleVariableFit:
    """Approach 5: L(N) at the largest D and L(D) at the largest N (see SingleVariableFit).

    Runs count as sharing a D (or N) when within tol_dex decades of the group's largest value; the largest
    group with at least 3 distinct values of the other variable is used.
    """
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    iN, fixed_D = slice_at_largest(D, N, tol_dex=tol_dex, what="L(N) at the largest D")
    iD, fixed_N = slice_at_largest(N, D, tol_dex=tol_dex, what="L(D) at the largest N")
    return SingleVariableFit(loss_vs_N=fit_power_law(N[iN], L[iN], what="L(N)", min_points=3),
                             loss_vs_D=fit_power_law(D[iD], L[iD], what="L(D)", min_points=3),
                             at_D=fixed_D, at_N=fixed_N)


def slice_at_largest(fixed: np.ndarray, free: np.ndarray, *, tol_dex: float, what: str) -> tuple[np.ndarray, float]:
    """Indices of runs at the largest value of `fixed` (within tol_dex) that has >= 3 distinct `free`."""
    lf = np.log10(fixed)
    for top in np.sort(np.unique(lf))[::-1]:
        idx = np.flatnonzero(np.abs(lf - top) <= tol_dex)
        if len(np.unique(np.round(np.log10(free[idx]), 6))) >= 3:
            return idx, float(10 ** top)
    raise FitInputError(f"{what} needs 3 runs of distinct size at one shared value (within {tol_dex} decades); "
                        "no such group exists in this table.")
