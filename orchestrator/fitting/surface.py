"""Approach 3 of Hoffmann et al. (2022): fit the parametric loss surface L(N, D) = E + A / N^alpha + B / D^beta.

Objective (Hoffmann et al. 2022, eq. 3 and App. D.2; Besiroglu et al. 2024): in log-loss space with the
log-sum-exp parameterisation A = e^a, B = e^b, E = e^e,

    min_{a, b, e, alpha, beta}  sum_i w_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i )

summed (not averaged: averaging makes L-BFGS stop after ~2 iterations, the bias Besiroglu et al. found),
from every start of the 4500-point grid (alpha, beta in {0, 0.5, ..., 2}; e in {-1, -0.5, ..., 1};
a, b in {0, 5, ..., 25}). w_i are bootstrap multiplicities (1 for a plain fit).

How the grid is searched quickly (same optimum as one scipy L-BFGS-B run per start; benchmarks/fit_speed.py):
1. Coordinates are centred, a_c = a - alpha * mean(log N) (and b_c likewise), which decorrelates the
   amplitudes from the exponents; the optimum is unchanged.
2. All starts run a batched damped Newton method (`optim.batched_newton`) with analytic gradient and Hessian:
   first in float32 on the IRLS curvature model (`huber_fgh(irls=True)`), with successive halving
   (4500 -> 1125 -> 375 -> 125 live starts at iterations 3, 8, 15), then the 16 best distinct survivors
   with the exact Hessian in float64.
3. The 3 best distinct end points are polished with scipy L-BFGS-B (analytic gradient, float64, bounds
   `BOUNDS_LOWER`..`BOUNDS_UPPER`); the best wins.
On the Epoch data this returns the objective of the full 4500-start scipy loop (0.0010182740) about 100x
faster; tests/fitting/test_surface.py checks it against scipy from sampled grid starts.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import OptimizeResult, minimize

from orchestrator.fitting.powerlaw import AllocationExponents
from orchestrator.fitting.errors import FitError, FitInputError
from orchestrator.fitting.optim import batched_newton

PARAMS = ("a", "b", "e", "alpha", "beta")  # order of the internal vector: log A, log B, log E, alpha, beta
_A, _B, _E, _ALPHA, _BETA = range(5)
# Bounds of the answer, in centred coordinates: amplitudes where exp() stays finite even in float32,
# E = e^e >= 4.5e-5, exponents in [0, 5] (a negative exponent would make loss grow with scale).
BOUNDS_LOWER = np.array([-60.0, -60.0, -10.0, 0.0, 0.0])
BOUNDS_UPPER = np.array([60.0, 60.0, 5.0, 5.0, 5.0])
# The batched search may cross zero exponents (many grid starts sit on alpha = 0 or beta = 0, where a
# projected Newton step stalls); only the polish enforces the bounds above.
LOWER = np.array([-60.0, -60.0, -10.0, -2.0, -2.0])
UPPER = BOUNDS_UPPER
COARSE_ITER, HALVING = 30, ((3, 1 / 4), (8, 1 / 3), (15, 1 / 3))
FINE_STARTS, FINE_ITER, POLISH_STARTS = 16, 60, 3
BASIN_STARTS = 7  # grid starts that seed each bootstrap resample, with the full-data optimum


def hoffmann_grid() -> np.ndarray:
    """The 4500 starts of Hoffmann et al. (2022) App. D.2 as rows (a, b, e, alpha, beta)."""
    a = np.arange(0.0, 25.1, 5.0)
    e = np.arange(-1.0, 1.01, 0.5)
    exponent = np.arange(0.0, 2.01, 0.5)
    rows = [(ai, bi, ei, al, be) for ai, bi, ei, al, be in itertools.product(a, a, e, exponent, exponent)]
    return np.array(rows)


@dataclass(frozen=True)
class SurfacePoints:
    """Fitting data in log space, centred: x_N = log N - m_N, x_D = log D - m_D, y = log L."""

    x_N: np.ndarray
    x_D: np.ndarray
    y: np.ndarray
    m_N: float
    m_D: float

    @classmethod
    def from_arrays(cls, N: np.ndarray, D: np.ndarray, L: np.ndarray) -> SurfacePoints:
        lN, lD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
        return cls(x_N=lN - lN.mean(), x_D=lD - lD.mean(), y=np.log(np.asarray(L, float)),
                   m_N=float(lN.mean()), m_D=float(lD.mean()))

    def to_centred(self, natural: np.ndarray) -> np.ndarray:
        """Rows (a, b, e, alpha, beta) -> (a_c, b_c, e, alpha, beta)."""
        c = np.array(natural, dtype=float, copy=True)
        c[:, _A] -= c[:, _ALPHA] * self.m_N
        c[:, _B] -= c[:, _BETA] * self.m_D
        return c

    def to_natural(self, centred: np.ndarray) -> np.ndarray:
        n = np.array(centred, dtype=float, copy=True)
        n[..., _A] += n[..., _ALPHA] * self.m_N
        n[..., _B] += n[..., _BETA] * self.m_D
        return n


def huber_fgh(theta: np.ndarray, pts: SurfacePoints, *, delta: float, weights: np.ndarray | None = None,
              dtype: type = np.float64, hessian: bool = True, irls: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Objective, gradient and Hessian of the summed Huber loss at centred parameters theta (S, 5).

    r_i = log(t1 + t2 + t3) - y_i with t1 = e^(a_c - alpha x_N), t2 = e^(b_c - beta x_D), t3 = e^e; the
    softmax weights w_k = t_k / s give dr/du_k, and d2r/du2 = diag(w) - w w^T (u_k the three exponents).
    weights (S, n) multiplies each point's term (bootstrap multiplicities). Returns f (S,), g (S, 5),
    H (S, 5, 5) in float64; f is +inf where the objective overflowed.
    """
    xN, xD, y = pts.x_N.astype(dtype), pts.x_D.astype(dtype), pts.y.astype(dtype)
    th = theta.astype(dtype)
    S = th.shape[0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        t1 = np.exp(th[:, _A, None] - th[:, _ALPHA, None] * xN)  # (S, n)
        t2 = np.exp(th[:, _B, None] - th[:, _BETA, None] * xD)  # (S, n)
        t3 = np.exp(th[:, _E, None])  # (S, 1)
        s = t1 + t2 + t3
        r = np.log(s) - y  # (S, n)
        hp = np.clip(r, -delta, delta)  # Huber'(r)
        h = hp * (r - 0.5 * hp)  # Huber(r): r^2 / 2 inside +-delta, delta (|r| - delta / 2) outside
        inv_s = 1.0 / s
        w1, w2, w3 = t1 * inv_s, t2 * inv_s, t3 * inv_s
    if weights is not None:
        wt = weights.astype(dtype)
        h, hp = h * wt, hp * wt
    f = h.sum(axis=1, dtype=np.float64)
    q1, q2, q3 = hp * w1, hp * w2, hp * w3
    ones = np.ones_like(xN)
    FN = np.stack([ones, xN, xN * xN], axis=1)  # (n, 3)
    FD = np.stack([ones, xD, xD * xD], axis=1)
    g = np.empty((S, 5))
    gN, gD = q1 @ FN[:, :2], q2 @ FD[:, :2]
    g[:, _A], g[:, _ALPHA] = gN[:, 0], -gN[:, 1]
    g[:, _B], g[:, _BETA] = gD[:, 0], -gD[:, 1]
    g[:, _E] = q3.sum(axis=1)
    bad = ~(np.isfinite(f) & np.isfinite(g).all(axis=1))
    f[bad] = np.inf
    g[bad] = 0.0
    if not hessian:
        return f, g, None
    # d2f/du_k du_l = (Huber'' - Huber') w_k w_l + Huber' [k == l] w_k, with Huber'' = 1 inside +-delta.
    # irls=True replaces Huber'' by Huber'(r) / r = min(1, delta / |r|), the curvature of the quadratic that
    # majorises Huber at r (the IRLS weight, Holland & Welsch 1977): a positive, smoother model that finds
    # the global basin from more starts, at the price of linear convergence (so only the coarse phase uses it).
    with np.errstate(invalid="ignore", divide="ignore"):
        curv = np.where(np.abs(r) <= delta, 1.0, delta / np.abs(r)) if irls else (np.abs(r) <= delta)
    c = curv.astype(dtype) * (1 if weights is None else wt) - hp
    cw1, cw2 = c * w1, c * w2
    m11 = (cw1 * w1 + q1) @ FN  # (S, 3): sums of M11 * (1, x_N, x_N^2)
    m22 = (cw2 * w2 + q2) @ FD
    m33 = (c * w3 * w3 + q3).sum(axis=1)
    m12 = (cw1 * w2) @ np.stack([ones, xN, xD, xN * xD], axis=1)
    m13 = (cw1 * w3) @ FN[:, :2]
    m23 = (cw2 * w3) @ FD[:, :2]
    H = np.empty((S, 5, 5))
    for (i, j), value in {(_A, _A): m11[:, 0], (_A, _ALPHA): -m11[:, 1], (_ALPHA, _ALPHA): m11[:, 2],
                          (_B, _B): m22[:, 0], (_B, _BETA): -m22[:, 1], (_BETA, _BETA): m22[:, 2],
                          (_E, _E): m33, (_A, _B): m12[:, 0], (_A, _BETA): -m12[:, 2],
                          (_ALPHA, _B): -m12[:, 1], (_ALPHA, _BETA): m12[:, 3],
                          (_A, _E): m13[:, 0], (_ALPHA, _E): -m13[:, 1],
                          (_B, _E): m23[:, 0], (_BETA, _E): -m23[:, 1]}.items():
        H[:, i, j] = H[:, j, i] = value
    H[bad] = np.eye(5)
    return f, g, H


class ParametricLaw(AllocationExponents):
    """L(N, D) = E + A / N^alpha + B / D^beta and its compute-optimal frontier under C = k N D
    (Hoffmann et al. 2022, eq. 4): N_opt(C) = G (C / k)^a, D_opt(C) = G^-1 (C / k)^b,
    G = (alpha A / (beta B))^(1 / (alpha + beta)). Mixed into every fit of this form."""

    E: float
    A: float
    B: float

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def loss(self, N: np.ndarray | float, D: np.ndarray | float) -> np.ndarray:
        return self.E + self.A / np.power(N, self.alpha) + self.B / np.power(D, self.beta)

    def frontier(self, C: np.ndarray | float, *, flops_per_nd: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) at budget C."""
        x = np.asarray(C, dtype=float) / flops_per_nd
        return self.G * x ** self.a, x ** self.b / self.G

    def loss_at(self, C: np.ndarray | float, *, flops_per_nd: float = 6.0) -> np.ndarray:
        """Predicted loss of the compute-optimal model at budget C."""
        return self.loss(*self.frontier(C, flops_per_nd=flops_per_nd))


@dataclass(frozen=True)
class SurfaceFit(ParametricLaw):
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2), fitted by summed Huber in log space.

    Compute-optimal allocation under C = k N D (k = 6 for the 6ND convention; eq. 4 of Hoffmann et al.):
        N_opt(C) = G (C / k)^a,  D_opt(C) = G^-1 (C / k)^b,  G = (alpha A / (beta B))^(1 / (alpha + beta)),
        a = beta / (alpha + beta),  b = alpha / (alpha + beta).
    Convergence: `grad_norm` is the max-norm of the projected gradient in (a, b, e, alpha, beta) at the
    optimum; `on_bound` names parameters at a bound of the box; `n_at_best` counts, among the
    `n_finalists` distinct starts optimised to the end, those within 1e-6 (relative) of the best objective.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    huber_delta: float
    n_points: int
    n_starts: int
    n_finalists: int
    n_at_best: int
    newton_iterations: int
    polish_iterations: int
    grad_norm: float
    on_bound: tuple[str, ...]
    converged: bool
    seconds: float
    basin_starts: tuple[tuple[float, ...], ...] = ()  # grid starts (a, b, e, alpha, beta) of the best basins

    def natural(self) -> np.ndarray:
        """The optimum as the vector (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta)."""
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])


def fit_surface(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, delta: float = 1e-3,
                starts: np.ndarray | None = None) -> SurfaceFit:
    """Fit approach 3 from every start (default: the 4500-point Hoffmann grid); see the module docstring."""
    t0 = time.perf_counter()
    check_identifiable(N, D, L, what="the parametric surface")
    pts = SurfacePoints.from_arrays(N, D, L)
    natural = hoffmann_grid() if starts is None else np.atleast_2d(starts)
    x0 = pts.to_centred(natural)
    coarse = batched_newton(lambda x, idx: huber_fgh(x, pts, delta=delta, dtype=np.float32, irls=True), x0,
                            lower=LOWER, upper=UPPER, max_iter=COARSE_ITER, gtol=1e-9, halving=HALVING, min_keep=8)
    survivors = _distinct_best(coarse.x, coarse.f, coarse.alive, k=FINE_STARTS)
    fine = batched_newton(lambda x, idx: huber_fgh(x, pts, delta=delta), coarse.x[survivors],
                          lower=LOWER, upper=UPPER, max_iter=FINE_ITER)
    best_k = _distinct_best(fine.x, fine.f, np.ones(len(fine.f), bool), k=POLISH_STARTS)
    polished = [polish(fine.x[i], pts, delta=delta) for i in best_k]
    j = int(np.argmin([p.fun for p in polished]))
    res, i_best = polished[j], best_k[j]
    if not np.isfinite(res.fun):
        raise FitError("the parametric surface fit diverged from every start (objective not finite).")
    f_all = np.r_[fine.f, res.fun]
    n_at_best = int(np.sum(f_all[:-1] <= res.fun * (1 + 1e-6) + 1e-300))
    fit = _surface_result(res.x, pts, delta=delta, objective=float(res.fun), n_points=len(pts.y),
                          n_starts=len(natural), n_finalists=len(survivors), n_at_best=max(n_at_best, 1),
                          newton_iterations=int(coarse.iterations[survivors].max() + fine.iterations[i_best]),
                          polish_iterations=int(res.nit), seconds=time.perf_counter() - t0)
    basins = _distinct_best(fine.x, fine.f, np.ones(len(fine.f), bool), k=BASIN_STARTS, tol=1e-3)
    origin = list(dict.fromkeys([int(i) for i in survivors[basins]] + [int(i) for i in survivors]))
    basin_starts = tuple(tuple(float(v) for v in natural[i]) for i in origin[:BASIN_STARTS])
    return replace(fit, basin_starts=basin_starts)


def check_identifiable(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, what: str) -> None:
    """Five parameters need at least 6 runs spanning at least 2 sizes and 2 token counts."""
    n_N, n_D = len(np.unique(np.round(np.log(N), 9))), len(np.unique(np.round(np.log(D), 9)))
    if len(L) < 6 or n_N < 2 or n_D < 2:
        raise FitInputError(f"{what} has 5 parameters and needs at least 6 runs over at least 2 model sizes and "
                            f"2 token counts; got {len(L)} runs, {n_N} sizes, {n_D} token counts.")


def polish(theta: np.ndarray, pts: SurfacePoints, *, delta: float, weights: np.ndarray | None = None
           ) -> OptimizeResult:
    """scipy L-BFGS-B from one centred start, analytic gradient, tight tolerances; returns OptimizeResult."""
    w = None if weights is None else weights[None, :]

    def fg(t: np.ndarray) -> tuple[float, np.ndarray]:
        f, g, _ = huber_fgh(t[None, :], pts, delta=delta, weights=w, hessian=False)
        return float(f[0]), g[0]

    return minimize(fg, theta, jac=True, method="L-BFGS-B", bounds=list(zip(BOUNDS_LOWER, BOUNDS_UPPER)),
                    options={"ftol": 1e-15, "gtol": 1e-13, "maxiter": 2000, "maxcor": 20})


def _surface_result(theta: np.ndarray, pts: SurfacePoints, *, delta: float, objective: float, n_points: int,
                    n_starts: int, n_finalists: int, n_at_best: int, newton_iterations: int, polish_iterations: int,
                    seconds: float) -> SurfaceFit:
    _, g, _ = huber_fgh(theta[None, :], pts, delta=delta, hessian=False)
    g_nat = g[0].copy()  # chain rule from centred to natural coordinates
    g_nat[_ALPHA] -= pts.m_N * g[0][_A]
    g_nat[_BETA] -= pts.m_D * g[0][_B]
    at_lower, at_upper = theta <= BOUNDS_LOWER + 1e-9, theta >= BOUNDS_UPPER - 1e-9
    on_bound = tuple(PARAMS[i] for i in range(5) if at_lower[i] or at_upper[i])
    g_nat[(at_lower & (g_nat > 0)) | (at_upper & (g_nat < 0))] = 0.0
    a, b, e, alpha, beta = pts.to_natural(theta[None, :])[0]
    grad_norm = float(np.abs(g_nat).max())
    return SurfaceFit(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                      beta=float(beta), objective=objective, huber_delta=delta, n_points=n_points,
                      n_starts=n_starts, n_finalists=n_finalists, n_at_best=n_at_best, newton_iterations=newton_iterations,
                      polish_iterations=polish_iterations, grad_norm=grad_norm, on_bound=on_bound,
                      converged=bool(grad_norm <= 1e-6 * max(objective, 1e-12) + 1e-10), seconds=seconds)


def _distinct_best(x: np.ndarray, f: np.ndarray, mask: np.ndarray, *, k: int, tol: float = 1e-6) -> np.ndarray:
    """Indices of up to k rows with the lowest f among `mask`, skipping rows within tol of one already taken."""
    order = [i for i in np.argsort(np.where(mask & np.isfinite(f), f, np.inf)) if mask[i] and np.isfinite(f[i])]
    taken: list[int] = []
    for i in order:
        if all(np.abs(x[i] - x[j]).max() > tol for j in taken):
            taken.append(i)
            if len(taken) == k:
                break
    if not taken:
        raise FitError("the parametric surface fit diverged from every start (objective not finite).")
    return np.array(taken)


def fit_surface_resamples(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, weights: np.ndarray, starts: np.ndarray,
                          delta: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refit approach 3 on many resamples at once: weights (R, n) are each resample's point multiplicities.

    Each resample starts from the K rows of `starts` (natural coordinates): the full-data optimum plus a few
    diverse grid starts (`SurfaceFit.basin_starts`: grid points whose full-data runs ended in the best
    distinct basins) instead of all 4500, since a resample's optimum lies near the full-data one. All R x K
    starts run one batched Newton: float32 IRLS model with halving to the best 2 starts per resample, then
    the exact float64 Newton. tests/fitting/test_bootstrap.py checks that this matches a full-grid fit of
    the same resamples. Returns natural parameters (R, 5), objective (R,), converged (R,).
    """
    pts = SurfacePoints.from_arrays(N, D, L)
    R, K = weights.shape[0], len(starts)
    groups = np.repeat(np.arange(R), K)
    x0 = np.tile(pts.to_centred(np.atleast_2d(starts)), (R, 1))
    coarse = batched_newton(
        lambda x, idx: huber_fgh(x, pts, delta=delta, weights=weights[groups[idx]], dtype=np.float32, irls=True),
        x0, lower=LOWER, upper=UPPER, max_iter=12, gtol=1e-9, halving=((4, 2 / K),), min_keep=2, groups=groups)
    keep = np.flatnonzero(coarse.alive)
    g2 = groups[keep]
    fine = batched_newton(lambda x, idx: huber_fgh(x, pts, delta=delta, weights=weights[g2[idx]]), coarse.x[keep],
                          lower=BOUNDS_LOWER, upper=BOUNDS_UPPER, max_iter=80, gtol=1e-9)
    order = np.lexsort((np.where(np.isfinite(fine.f), fine.f, np.inf), g2))
    first = order[np.r_[True, g2[order][1:] != g2[order][:-1]]]  # best row of each resample
    params = np.full((R, 5), np.nan)
    objective = np.full(R, np.nan)
    converged = np.zeros(R, dtype=bool)
    params[g2[first]] = pts.to_natural(fine.x[first])
    objective[g2[first]] = fine.f[first]
    converged[g2[first]] = fine.converged[first]
    return params, objective, converged
