"""Cross-check of approach 3 by variable projection: (alpha, beta) searched, (E, A, B) solved exactly.

Model L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2), fitted by weighted least squares
in loss space. For fixed (alpha, beta) the model is linear in (E, A, B), so the best non-negative
(E, A, B) is a 3-variable NNLS problem, solved exactly by trying all 8 active sets (Lawson & Hanson 1974):
the projected residual sum of squares RSS(alpha, beta) is a function of two variables only (Golub & Pereyra
1973). It is minimised on a grid (alpha, beta in 0.02..2 by 0.02), then refined by L-BFGS-B using the
variable-projection gradient (the envelope theorem: d RSS / d alpha = 2 sum_i w_i r_i A log N_i N_i^-alpha
with (E, A, B) held at their projected values). Features are scaled by the geometric mean of N and D so the
3x3 normal equations stay well conditioned. Different objective from approach 3 (loss-space squares instead
of log-space Huber), so agreement between the two is evidence that neither fit is an optimiser artefact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.optimize import minimize

from orchestrator.fitting.surface import MAX_ELEMENTS, ParametricLaw, check_identifiable

GRID = np.round(np.arange(0.02, 2.0001, 0.02), 10)
EXP_BOUNDS = (0.0, 5.0)
_SUBSETS = [s for k in (1, 2, 3) for s in combinations(range(3), k)]  # active sets of (E, A', B')


@dataclass(frozen=True)
class VPNLSFit(ParametricLaw):
    """L(N, D) = E + A / N^alpha + B / D^beta by variable projection + NNLS (see module docstring).

    a = beta / (alpha + beta), b = alpha / (alpha + beta), N_opt(C) = G (C / k)^a, D_opt(C) = G^-1 (C / k)^b
    with G = (alpha A / (beta B))^(1 / (alpha + beta)) (Hoffmann et al. 2022, eq. 4). `on_bound` names
    exponents at the edge of [0, 5] and coefficients that NNLS pinned at zero.
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    rss: float
    n_points: int
    grid_points: int
    iterations: int
    grad_norm: float
    on_bound: tuple[str, ...]
    converged: bool
    seconds: float


@dataclass(frozen=True)
class _Scaled:
    """log N and log D centred on their means (features (N / N_ref)^-alpha stay O(1)), y = loss."""

    xN: np.ndarray
    xD: np.ndarray
    y: np.ndarray
    mN: float
    mD: float

    @classmethod
    def of(cls, N: np.ndarray, D: np.ndarray, L: np.ndarray) -> _Scaled:
        lN, lD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
        return cls(lN - lN.mean(), lD - lD.mean(), np.asarray(L, float), float(lN.mean()), float(lD.mean()))


def nnls3(G: np.ndarray, c: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched exact NNLS with 3 unknowns from normal equations: G (..., 3, 3), c = X^T W y (..., 3).

    Returns (coef (..., 3) >= 0, rss (...)), rss = yy - 2 coef.c + coef.G.coef, over the 8 active sets.
    """
    best = np.broadcast_to(yy, c.shape[:-1]).astype(float)  # the empty active set: all coefficients zero
    coef = np.zeros(c.shape)
    for s in _SUBSETS:
        ix = np.array(s)
        Gs = G[..., ix[:, None], ix[None, :]]
        ridge = (1e-12 * np.trace(Gs, axis1=-2, axis2=-1) + 1e-300)[..., None, None] * np.eye(len(s))
        with np.errstate(all="ignore"):
            sol = np.linalg.solve(Gs + ridge, c[..., ix, None])[..., 0]  # ridge: collinear features (alpha=0)
        full = np.zeros(c.shape)
        full[..., ix] = sol
        rss = yy - 2 * np.einsum("...k,...k->...", full, c) + np.einsum("...k,...kl,...l->...", full, G, full)
        ok = (sol >= 0).all(axis=-1) & np.isfinite(rss) & (rss < best)
        best = np.where(ok, rss, best)
        coef = np.where(ok[..., None], full, coef)
    return coef, best


def projected(alpha: np.ndarray, beta: np.ndarray, data: _Scaled, *,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RSS(alpha, beta), its gradient (..., 2) and the NNLS coefficients (E, A', B') for arrays of exponents.

    alpha, beta: (R,) with weights (R, n) or None. A' = A e^(-alpha m_N) is the amplitude of the centred
    feature e^(-alpha x_N).
    """
    w = np.ones((1, len(data.y))) if weights is None else weights
    pN = np.exp(-alpha[:, None] * data.xN)  # (R, n)
    pD = np.exp(-beta[:, None] * data.xD)
    wN, wD, wy = w * pN, w * pD, w * data.y
    G = np.empty((len(alpha), 3, 3))
    G[:, 0, 0] = w.sum(axis=1)
    G[:, 0, 1] = G[:, 1, 0] = wN.sum(axis=1)
    G[:, 0, 2] = G[:, 2, 0] = wD.sum(axis=1)
    G[:, 1, 1] = (wN * pN).sum(axis=1)
    G[:, 2, 2] = (wD * pD).sum(axis=1)
    G[:, 1, 2] = G[:, 2, 1] = (wN * pD).sum(axis=1)
    c = np.stack([wy.sum(axis=1), (wy * pN).sum(axis=1), (wy * pD).sum(axis=1)], axis=1)
    yy = (wy * data.y).sum(axis=1) * np.ones(len(alpha))
    coef, rss = nnls3(G, c, yy)
    wr = wy - w * (coef[:, :1] + coef[:, 1:2] * pN + coef[:, 2:] * pD)  # w * residual, (R, n)
    grad = np.stack([2 * coef[:, 1] * (wr * pN * data.xN).sum(axis=1),
                     2 * coef[:, 2] * (wr * pD * data.xD).sum(axis=1)], axis=1)
    return rss, grad, coef


def fit_vpnls(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, weights: np.ndarray | None = None,
              start: tuple[float, float] | None = None) -> VPNLSFit:
    """Variable-projection NNLS fit (module docstring): grid over (alpha, beta), then L-BFGS-B refinement.

    `start` skips the grid (bootstrap and hold-out refits start from the full-data optimum).
    """
    t0 = time.perf_counter()
    check_identifiable(N, D, L, what="the variable-projection fit")
    data = _Scaled.of(N, D, L)
    w = None if weights is None else np.asarray(weights, float)[None, :]
    if start is None:
        rss_grid = _grid_rss(data, np.ones(len(data.y)) if weights is None else np.asarray(weights, float))
        i, j = np.unravel_index(np.argmin(rss_grid), rss_grid.shape)
        x0, grid_points = np.array([GRID[i], GRID[j]]), rss_grid.size
    else:
        x0, grid_points = np.asarray(start, float), 0

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        r, g, _ = projected(x[:1], x[1:], data, weights=w)
        return float(r[0]), g[0]

    res = minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=[EXP_BOUNDS, EXP_BOUNDS],
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 500})
    x = res.x if res.fun <= fg(x0)[0] else x0
    rss, grad, coef = projected(x[:1], x[1:], data, weights=w)
    alpha, beta = float(x[0]), float(x[1])
    E, A, B = coef[0, 0], coef[0, 1] * np.exp(alpha * data.mN), coef[0, 2] * np.exp(beta * data.mD)
    on_bound = tuple([n for n, v in (("alpha", alpha), ("beta", beta)) if v <= EXP_BOUNDS[0] or v >= EXP_BOUNDS[1]]
                     + [n for n, v in (("E", E), ("A", A), ("B", B)) if v <= 0])
    pg = np.where([alpha <= EXP_BOUNDS[0] or alpha >= EXP_BOUNDS[1], beta <= EXP_BOUNDS[0] or beta >= EXP_BOUNDS[1]],
                  0.0, grad[0])
    grad_norm = float(np.abs(pg).max())
    return VPNLSFit(E=float(E), A=float(A), B=float(B), alpha=alpha, beta=beta, rss=float(rss[0]),
                    n_points=len(data.y), grid_points=grid_points, iterations=int(res.nit), grad_norm=grad_norm,
                    on_bound=on_bound, converged=bool(res.success or grad_norm <= 1e-8 * float(np.sum(data.y ** 2))),
                    seconds=time.perf_counter() - t0)


def _grid_rss(data: _Scaled, w: np.ndarray) -> np.ndarray:
    """RSS(alpha, beta) on GRID x GRID (G, G), normal equations accumulated over chunks of points by matrix
    products (memory bounded by MAX_ELEMENTS whatever the number of runs)."""
    g = len(GRID)
    G = np.zeros((g, g, 3, 3))
    c = np.zeros((g, g, 3))
    step = max(1, MAX_ELEMENTS // g)
    for i in range(0, len(data.y), step):
        xN, xD, wc, y = data.xN[i:i + step], data.xD[i:i + step], w[i:i + step], data.y[i:i + step]
        PN = np.exp(-GRID[:, None] * xN)  # (G, chunk)
        PD = np.exp(-GRID[:, None] * xD)
        G[..., 0, 0] += wc.sum()
        G[..., 0, 1] += (PN @ wc)[:, None]
        G[..., 0, 2] += (PD @ wc)[None, :]
        G[..., 1, 1] += ((PN * PN) @ wc)[:, None]
        G[..., 2, 2] += ((PD * PD) @ wc)[None, :]
        G[..., 1, 2] += (PN * wc) @ PD.T
        wy = wc * y
        c[..., 0] += wy.sum()
        c[..., 1] += (PN @ wy)[:, None]
        c[..., 2] += (PD @ wy)[None, :]
    G[..., 1, 0], G[..., 2, 0], G[..., 2, 1] = G[..., 0, 1], G[..., 0, 2], G[..., 1, 2]
    _, rss = nnls3(G, c, np.full((g, g), (w * data.y * data.y).sum()))
    return rss


def bootstrap_vpnls(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, weights: np.ndarray,
                    start: tuple[float, float], iterations: int = 30) -> np.ndarray:
    """(R, 5) rows (E, A, B, alpha, beta) of the fit on each resample (weights (R, n) multiplicities).

    All resamples are refined together by a projected Newton method (`_refine_resamples`), each from the
    full-data optimum `start`, in chunks of resamples of at most MAX_ELEMENTS (resample, point) pairs.
    """
    data = _Scaled.of(N, D, L)
    step_rows = max(1, MAX_ELEMENTS // len(data.y))
    return np.concatenate([_refine_resamples(data, weights[i:i + step_rows], start=start, iterations=iterations)
                           for i in range(0, weights.shape[0], step_rows)])


def _refine_resamples(data: _Scaled, weights: np.ndarray, *, start: tuple[float, float],
                      iterations: int) -> np.ndarray:
    """Projected Newton on RSS(alpha, beta) for every resample at once: the analytic projected gradient, its
    Jacobian by forward differences (two more evaluations), a step halved until RSS falls; stops per resample
    when a step no longer moves it (a resample starts at the full-data optimum, so a few steps suffice)."""
    R = weights.shape[0]
    x = np.tile(np.asarray(start, float), (R, 1))
    lo, hi = EXP_BOUNDS
    f, g, _ = projected(x[:, 0], x[:, 1], data, weights=weights)
    active = np.isfinite(f)
    h = 1e-6
    for _ in range(iterations):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        W, xi, gi = weights[idx], x[idx], g[idx]
        H = np.empty((len(idx), 2, 2))
        for j in range(2):
            xh = xi.copy()
            xh[:, j] += h
            _, gh, _ = projected(xh[:, 0], xh[:, 1], data, weights=W)
            H[:, :, j] = (gh - gi) / h
        H = 0.5 * (H + np.transpose(H, (0, 2, 1)))
        with np.errstate(all="ignore"):
            ev = np.linalg.eigvalsh(np.where(np.isfinite(H), H, 0.0))
            H = H + np.maximum(0.0, 1e-8 * np.abs(ev).max(axis=1) - ev[:, 0])[:, None, None] * np.eye(2)
            # The 2x2 solve in closed form: a singular or non-finite H (a flat direction, e.g. an amplitude that
            # NNLS pinned at 0) gives a non-finite step, replaced by a small gradient step below.
            det = H[:, 0, 0] * H[:, 1, 1] - H[:, 0, 1] * H[:, 1, 0]
            step = -np.stack([H[:, 1, 1] * gi[:, 0] - H[:, 0, 1] * gi[:, 1],
                              H[:, 0, 0] * gi[:, 1] - H[:, 1, 0] * gi[:, 0]], axis=1) / det[:, None]
        step = np.where(np.isfinite(step).all(axis=1, keepdims=True) & (np.abs(det) > 1e-300)[:, None], step,
                        -1e-3 * gi / np.maximum(np.abs(gi).max(axis=1, keepdims=True), 1e-300))
        moved = np.zeros(len(idx), dtype=bool)
        t = np.ones(len(idx))
        for _ in range(8):  # backtracking: halve the step until RSS falls
            xt = np.clip(xi + t[:, None] * step, lo, hi)
            ft, gt, _ = projected(xt[:, 0], xt[:, 1], data, weights=W)
            better = np.isfinite(ft) & (ft <= f[idx]) & ~moved
            rows = idx[better]
            x[rows], f[rows], g[rows] = xt[better], ft[better], gt[better]
            moved |= better
            t = np.where(moved, t, t / 2)
            if moved.all():
                break
        small = np.abs(t[:, None] * step).max(axis=1) < 1e-10
        active[idx[~moved | small]] = False
    _, _, coef = projected(x[:, 0], x[:, 1], data, weights=weights)
    E, A, B = coef[:, 0], coef[:, 1] * np.exp(x[:, 0] * data.mN), coef[:, 2] * np.exp(x[:, 1] * data.mD)
    return np.stack([E, A, B, x[:, 0], x[:, 1]], axis=1)
