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

Memory is bounded whatever the number of runs: every objective evaluation is split into chunks of starts
with at most `MAX_ELEMENTS` (start, point) pairs, and above `COARSE_POINTS` runs the coarse phase searches
the grid on an even subsample of the points (the basins of 4500 starts do not need 100k points to be told
apart); the fine Newton phase and the polish always use every point, so the optimum is that of the full
data (benchmarks/fit_memory.py).

`fixed_E` fits the 4-parameter law with the irreducible loss E held at a known value (the entropy floor of
a synthetic language, or `fit.floor`): the same objective with e = log E frozen.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import OptimizeResult, minimize

from orchestrator.fitting.compute import ComputeModel, frontier_of_surface
from orchestrator.fitting.errors import FitError, FitInputError
from orchestrator.fitting.powerlaw import AllocationExponents
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
MAX_ELEMENTS = 2_000_000  # (start, point) pairs per objective evaluation: about 20 arrays of 16 MB at most
COARSE_POINTS = 1000  # the coarse grid search sees an even subsample of at most this many points
RESAMPLE_FTOL = 1e-7  # a resample's fit counts as converged when a Newton step would gain less than this (relative)


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

    def subset(self, idx: np.ndarray) -> SurfacePoints:
        """The points `idx`, centred like the full data (so parameters mean the same thing)."""
        return SurfacePoints(x_N=self.x_N[idx], x_D=self.x_D[idx], y=self.y[idx], m_N=self.m_N, m_D=self.m_D)

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
              dtype: type = np.float64, hessian: bool = True,
              irls: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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
    """L(N, D) = E + A / N^alpha + B / D^beta and its compute-optimal frontier under C = k(N) N D.

    Under a constant k (Hoffmann et al. 2022, eq. 4): N_opt(C) = G (C / k)^a, D_opt(C) = G^-1 (C / k)^b,
    G = (alpha A / (beta B))^(1 / (alpha + beta)), a = beta / (alpha + beta); under the exact convention
    N_opt(C) minimises L(N, C / (k(N) N)) (fitting/compute.py). Mixed into every fit of this form."""

    E: float
    A: float
    B: float

    @property
    def G(self) -> float:
        if not (self.A > 0 and self.B > 0):  # a law without an N or a D term has no compute-optimal allocation
            raise FitError(f"the fitted law has A={self.A:.3g}, B={self.B:.3g}: the loss does not fall with "
                           f"{'N' if not self.A > 0 else 'D'}, so there is no compute-optimal frontier")
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def loss(self, N: np.ndarray | float, D: np.ndarray | float) -> np.ndarray:
        return self.E + self.A / np.power(N, self.alpha) + self.B / np.power(D, self.beta)

    def frontier(self, C: np.ndarray | float, *, compute: ComputeModel) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) at budget(s) C, each costing C under `compute`."""
        N, D = frontier_of_surface(self.E, self.A, self.B, self.alpha, self.beta, C, compute=compute)
        shape = np.shape(C)
        return N[0].reshape(shape), D[0].reshape(shape)

    def loss_at(self, C: np.ndarray | float, *, compute: ComputeModel) -> np.ndarray:
        """Predicted loss of the compute-optimal model at budget C."""
        return self.loss(*self.frontier(C, compute=compute))


@dataclass(frozen=True)
class SurfaceFit(ParametricLaw):
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2), fitted by summed Huber in log space.

    Compute-optimal allocation: see ParametricLaw (a = beta / (alpha + beta) is the exponent under a constant
    k; the frontier's own slope under the exact convention is computed by the fitting stage).
    `fixed_E`: E was held at this value (the 4-parameter fit), else None.
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
    fixed_E: float | None = None

    def natural(self) -> np.ndarray:
        """The optimum as the vector (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta)."""
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])


def fit_surface(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, delta: float = 1e-3,
                starts: np.ndarray | None = None, fixed_E: float | None = None) -> SurfaceFit:
    """Fit approach 3 from every start (default: the 4500-point Hoffmann grid); see the module docstring."""
    t0 = time.perf_counter()
    check_identifiable(N, D, L, what="the parametric surface", n_params=5 if fixed_E is None else 4)
    pts = SurfacePoints.from_arrays(N, D, L)
    natural = hoffmann_grid() if starts is None else np.atleast_2d(np.asarray(starts, dtype=float))
    lower, upper, bounds_lower, bounds_upper = LOWER, UPPER, BOUNDS_LOWER, BOUNDS_UPPER
    if fixed_E is not None:
        natural = np.unique(np.c_[natural[:, :_E], np.full(len(natural), np.log(fixed_E)), natural[:, _E + 1:]],
                            axis=0)
        lower, upper = _freeze_e(LOWER, fixed_E), _freeze_e(UPPER, fixed_E)
        bounds_lower, bounds_upper = _freeze_e(BOUNDS_LOWER, fixed_E), _freeze_e(BOUNDS_UPPER, fixed_E)
    x0 = pts.to_centred(natural)
    coarse_pts = pts if len(pts.y) <= COARSE_POINTS else pts.subset(_even_subsample(pts, COARSE_POINTS))
    frozen = fixed_E is not None
    coarse = batched_newton(_chunked(lambda x, idx: huber_fgh(x, coarse_pts, delta=delta, dtype=np.float32, irls=True),
                                     n_points=len(coarse_pts.y), frozen=frozen), x0,
                            lower=lower, upper=upper, max_iter=COARSE_ITER, gtol=1e-9, halving=HALVING, min_keep=8)
    survivors = _distinct_best(coarse.x, coarse.f, coarse.alive, k=FINE_STARTS)
    if coarse_pts is not pts:  # rank the survivors on every point before the fine phase
        rank = _chunked(lambda x, idx: huber_fgh(x, pts, delta=delta, hessian=False), n_points=len(pts.y),
                        frozen=frozen)
        survivors = survivors[np.argsort(rank(coarse.x[survivors], survivors)[0], kind="stable")]
    fine = batched_newton(_chunked(lambda x, idx: huber_fgh(x, pts, delta=delta), n_points=len(pts.y), frozen=frozen),
                          coarse.x[survivors], lower=lower, upper=upper, max_iter=FINE_ITER)
    best_k = _distinct_best(fine.x, fine.f, np.ones(len(fine.f), bool), k=POLISH_STARTS)
    polished = [polish(fine.x[i], pts, delta=delta, lower=bounds_lower, upper=bounds_upper) for i in best_k]
    j = int(np.argmin([p.fun for p in polished]))
    res, i_best = polished[j], best_k[j]
    if not np.isfinite(res.fun):
        raise FitError("the parametric surface fit diverged from every start (objective not finite).")
    f_all = np.r_[fine.f, res.fun]
    n_at_best = int(np.sum(f_all[:-1] <= res.fun * (1 + 1e-6) + 1e-300))
    fit = _surface_result(res.x, pts, delta=delta, objective=float(res.fun), n_points=len(pts.y),
                          n_starts=len(natural), n_finalists=len(survivors), n_at_best=max(n_at_best, 1),
                          newton_iterations=int(coarse.iterations[survivors].max() + fine.iterations[i_best]),
                          polish_iterations=int(res.nit), seconds=time.perf_counter() - t0,
                          lower=bounds_lower, upper=bounds_upper)
    basins = _distinct_best(fine.x, fine.f, np.ones(len(fine.f), bool), k=BASIN_STARTS, tol=1e-3)
    origin = list(dict.fromkeys([int(i) for i in survivors[basins]] + [int(i) for i in survivors]))
    basin_starts = tuple(tuple(float(v) for v in natural[i]) for i in origin[:BASIN_STARTS])
    return replace(fit, basin_starts=basin_starts, fixed_E=fixed_E)


def _freeze_e(bounds: np.ndarray, E: float) -> np.ndarray:
    out = bounds.copy()
    out[_E] = np.log(E)
    return out


def _even_subsample(pts: SurfacePoints, k: int) -> np.ndarray:
    """k indices spread evenly over the points ordered by (log N, log D): every region of the design is kept."""
    order = np.lexsort((pts.x_D, pts.x_N))
    return np.sort(order[np.linspace(0, len(order) - 1, k).round().astype(int)])


def _chunked(fgh, *, n_points: int, frozen: bool = False):
    """An objective over starts evaluated in chunks of at most MAX_ELEMENTS (start, point) pairs.

    frozen=True holds e = log E fixed: its gradient is zeroed and its Hessian row and column decoupled, so no
    Newton step moves it (the 4-parameter fit with a known floor).
    """
    rows = max(1, MAX_ELEMENTS // max(n_points, 1))

    def run(x: np.ndarray, idx: np.ndarray):
        parts = [fgh(x[i:i + rows], idx[i:i + rows]) for i in range(0, len(x), rows)]
        f = np.concatenate([p[0] for p in parts])
        g = np.concatenate([p[1] for p in parts])
        H = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
        if frozen:
            g[:, _E] = 0.0
            if H is not None:
                H[:, _E, :] = 0.0
                H[:, :, _E] = 0.0
                H[:, _E, _E] = 1.0
        return f, g, H

    return run


def check_identifiable(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, what: str, n_params: int = 5) -> None:
    """n_params parameters need at least n_params + 1 runs spanning at least 2 sizes and 2 token counts."""
    n_N, n_D = len(np.unique(np.round(np.log(N), 9))), len(np.unique(np.round(np.log(D), 9)))
    if len(L) < n_params + 1 or n_N < 2 or n_D < 2:
        raise FitInputError(f"{what} has {n_params} parameters and needs at least {n_params + 1} runs over at least "
                            f"2 model sizes and 2 token counts; got {len(L)} runs, {n_N} sizes, {n_D} token counts.")


def polish(theta: np.ndarray, pts: SurfacePoints, *, delta: float, weights: np.ndarray | None = None,
           lower: np.ndarray = BOUNDS_LOWER, upper: np.ndarray = BOUNDS_UPPER) -> OptimizeResult:
    """scipy L-BFGS-B from one centred start, analytic gradient, tight tolerances; returns OptimizeResult."""
    w = None if weights is None else weights[None, :]

    def fg(t: np.ndarray) -> tuple[float, np.ndarray]:
        f, g, _ = huber_fgh(t[None, :], pts, delta=delta, weights=w, hessian=False)
        return float(f[0]), g[0]

    return minimize(fg, np.clip(theta, lower, upper), jac=True, method="L-BFGS-B", bounds=list(zip(lower, upper)),
                    options={"ftol": 1e-15, "gtol": 1e-13, "maxiter": 2000, "maxcor": 20})


def _surface_result(theta: np.ndarray, pts: SurfacePoints, *, delta: float, objective: float, n_points: int,
                    n_starts: int, n_finalists: int, n_at_best: int, newton_iterations: int, polish_iterations: int,
                    seconds: float, lower: np.ndarray = BOUNDS_LOWER, upper: np.ndarray = BOUNDS_UPPER) -> SurfaceFit:
    _, g, _ = huber_fgh(theta[None, :], pts, delta=delta, hessian=False)
    free = lower < upper  # a frozen parameter (fixed E) is not "on a bound"
    at_lower, at_upper = (theta <= BOUNDS_LOWER + 1e-9) & free, (theta >= BOUNDS_UPPER - 1e-9) & free
    on_bound = tuple(PARAMS[i] for i in range(5) if at_lower[i] or at_upper[i])
    grad_norm = float(_natural_grad_norm(theta[None, :], g, pts, lower=lower, upper=upper)[0])
    a, b, e, alpha, beta = pts.to_natural(theta[None, :])[0]
    return SurfaceFit(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                      beta=float(beta), objective=objective, huber_delta=delta, n_points=n_points,
                      n_starts=n_starts, n_finalists=n_finalists, n_at_best=n_at_best,
                      newton_iterations=newton_iterations,
                      polish_iterations=polish_iterations, grad_norm=grad_norm, on_bound=on_bound,
                      converged=bool(grad_norm <= _gtol(objective)), seconds=seconds)


def _gtol(objective: np.ndarray | float) -> np.ndarray | float:
    """The gradient norm below which an optimum counts as converged (relative to the objective's size)."""
    return 1e-6 * np.maximum(objective, 1e-12) + 1e-10


def _natural_grad_norm(theta: np.ndarray, g: np.ndarray, pts: SurfacePoints, *, lower: np.ndarray,
                       upper: np.ndarray) -> np.ndarray:
    """Max-norm of the projected gradient in natural coordinates (a, b, e, alpha, beta) at centred rows theta."""
    g_nat = g.copy()  # chain rule from centred to natural coordinates
    g_nat[:, _ALPHA] -= pts.m_N * g[:, _A]
    g_nat[:, _BETA] -= pts.m_D * g[:, _B]
    at_lower, at_upper = theta <= lower + 1e-9, theta >= upper - 1e-9
    g_nat[(at_lower & (g_nat > 0)) | (at_upper & (g_nat < 0)) | (at_lower & at_upper)] = 0.0
    return np.abs(g_nat).max(axis=1)


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
                          delta: float = 1e-3, fixed_E: float | None = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Refit approach 3 on many resamples at once: weights (R, n) are each resample's point multiplicities.

    Each resample starts from the K rows of `starts` (natural coordinates): the full-data optimum plus a few
    diverse grid starts (`SurfaceFit.basin_starts`: grid points whose full-data runs ended in the best
    distinct basins) instead of all 4500, since a resample's optimum lies near the full-data one. The R x K
    starts run a batched Newton: float32 IRLS model with halving to the best 2 starts per resample, then
    the exact float64 Newton. Resamples are processed in chunks of at most MAX_ELEMENTS (start, point) pairs,
    and with very many points only the first starts (the full-data optimum first) are kept so a chunk still
    holds several resamples. tests/fitting/test_bootstrap.py checks that this matches a full-grid fit of the
    same resamples. Returns natural parameters (R, 5), objective (R,) and converged (R,): the projected
    gradient met the point fit's tolerance.
    """
    pts = SurfacePoints.from_arrays(N, D, L)
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    n = len(pts.y)
    lower, upper, bounds_lower, bounds_upper = LOWER, UPPER, BOUNDS_LOWER, BOUNDS_UPPER
    if fixed_E is not None:
        starts = np.c_[starts[:, :_E], np.full(len(starts), np.log(fixed_E)), starts[:, _E + 1:]]
        lower, upper = _freeze_e(LOWER, fixed_E), _freeze_e(UPPER, fixed_E)
        bounds_lower, bounds_upper = _freeze_e(BOUNDS_LOWER, fixed_E), _freeze_e(BOUNDS_UPPER, fixed_E)
    # At least 8 resamples per chunk; with many runs a resample's optimum is next to the full-data one, so the
    # full-data optimum alone is the start.
    K = int(np.clip(MAX_ELEMENTS // (8 * n), 1, len(starts) if n <= COARSE_POINTS else 1))
    starts = starts[:K]
    R = weights.shape[0]
    per_chunk = max(1, MAX_ELEMENTS // (K * n))
    params = np.full((R, 5), np.nan)
    objective = np.full(R, np.nan)
    converged = np.zeros(R, dtype=bool)
    frozen = fixed_E is not None
    for lo in range(0, R, per_chunk):
        W = weights[lo:lo + per_chunk]
        r = len(W)
        groups = np.repeat(np.arange(r), K)
        x = np.tile(pts.to_centred(starts), (r, 1))
        if K > 2:  # halve to the best 2 starts per resample on the cheap float32 model first
            coarse = batched_newton(_chunked(lambda x, idx, W=W, groups=groups: huber_fgh(
                                                 x, pts, delta=delta, weights=W[groups[idx]], dtype=np.float32,
                                                 irls=True),
                                             n_points=n, frozen=frozen),
                                    x, lower=lower, upper=upper, max_iter=12, gtol=1e-9, halving=((4, 2 / K),),
                                    min_keep=2, groups=groups)
            keep = np.flatnonzero(coarse.alive)
            x, groups = coarse.x[keep], groups[keep]
        g2 = groups
        fine = batched_newton(_chunked(lambda x, idx, W=W, g2=g2: huber_fgh(x, pts, delta=delta, weights=W[g2[idx]]),
                                       n_points=n, frozen=frozen),
                              x, lower=bounds_lower, upper=bounds_upper, max_iter=80, gtol=1e-9, ftol=RESAMPLE_FTOL)
        order = np.lexsort((np.where(np.isfinite(fine.f), fine.f, np.inf), g2))
        first = order[np.r_[True, g2[order][1:] != g2[order][:-1]]]  # best row of each resample
        rows = lo + g2[first]
        params[rows] = pts.to_natural(fine.x[first])
        objective[rows] = fine.f[first]
        best = W[g2[first]]
        f, g, H = _chunked(lambda x, idx, best=best: huber_fgh(x, pts, delta=delta, weights=best[idx]),
                           n_points=n, frozen=frozen)(fine.x[first], np.arange(len(first)))
        free = ~((fine.x[first] <= bounds_lower + 1e-9) | (fine.x[first] >= bounds_upper - 1e-9))
        converged[rows] = np.isfinite(f) & (newton_decrement(g, H, free) <= RESAMPLE_FTOL * np.maximum(f, 1e-12))
    return params, objective, converged


def newton_decrement(g: np.ndarray, H: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Half the squared Newton decrement, g^T H^-1 g / 2, over the free coordinates of each row: the decrease a
    Newton step still expects (Boyd & Vandenberghe 2004, sec. 9.5.1). Scale-free, so "converged" means the
    objective is within a tiny fraction of its minimum whatever the data's size; +inf where H is not positive
    definite on the free coordinates."""
    out = np.full(len(g), np.inf)
    for i in range(len(g)):
        idx = np.flatnonzero(free[i])
        if len(idx) == 0:
            out[i] = 0.0
            continue
        h, gi = H[i][np.ix_(idx, idx)], g[i][idx]
        try:
            c = np.linalg.cholesky(h)
        except np.linalg.LinAlgError:
            continue
        z = np.linalg.solve(c, gi)
        out[i] = 0.5 * float(z @ z)
    return out
