"""Hyperparameter laws from a table of runs: the optimal learning rate lr*(N, D) and batch B*(D), with intervals.

Two steps, both pure functions over numbers (no printing, no plotting):

1. **The optimum of each cell.** A cell is one (N, D): runs of the same size and tokens at different rates and
   batches. Near its minimum the final loss is close to a convex quadratic in (ln lr, ln B) (Li et al. 2025,
   "Predictable Scale: Part I, Optimal Hyperparameter Scaling Law in Large Language Model Pretraining", the
   Step Law paper, sec. 3: the landscape is convex in log space with a wide flat basin; McCandlish et al. 2018
   and Wortsman et al. 2023 for the quadratic shape in ln lr). So each cell's optimum is the vertex of a
   weighted least-squares quadratic
       L ~ c0 + c1 x + c2 y + c3 x^2 + c4 x y + c5 y^2,   x = ln lr, y = ln B,
   through its best runs (the lowest-loss half, at least `MIN_POINTS`; a diverged run's loss far above the
   basin would bend the surface), not the argmin of the grid, which resolves the optimum only to the grid's
   steps; a cell of few runs (a pilot's) is fitted through all of them, without the cross term below
   `CROSS_POINTS`. With a single batch (or a single rate) in a cell the fit is a parabola in the other
   variable. A vertex beyond the tried range gives the surface's minimum over that range (on its boundary,
   `how` = edge); a surface that is not convex falls back to the best run; both say so (`how`, `edge`).
2. **The law.** Through the cells' optima, by least squares in log space:
       ln lr* = ln k_lr + alpha ln N + beta ln D      (lr* = k_lr N^alpha D^beta; Step Law eq. 4:
                                                      eta* = 1.79 N^-0.713 D^0.307)
       ln B*  = ln k_B + gamma ln D                   (B* = k_B D^gamma; Step Law: B* = 0.58 D^0.571 tokens)
   DeepSeek LLM (2024, sec. 3.1) fitted the same forms of compute C instead (eta = 0.3118 C^-0.125,
   B = 0.292 C^0.3271); with one size per D (a pilot's few cells) the N term is not identified and alpha is
   fixed at 0 (`alpha_free=False`), i.e. lr*(D).

Intervals: the estimator applied to resampled data (Efron & Tibshirani 1993). Each resample draws the runs of
every cell with replacement (the optimum's noise), and, with at least `MIN_CELLS_FOR_CELL_RESAMPLING` cells,
also the cells themselves (how far cells scatter about the law: the part that matters for a prediction
beyond the data; a two-stage bootstrap, Davison & Hinkley 1997, sec. 3.8). Percentile intervals; resamples
whose law cannot be fitted (too few distinct N or D) are dropped and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from orchestrator.fitting.errors import FitError

MIN_POINTS = 5
"""Fewest runs a cell's quadratic in two variables is fitted through: 5 without the cross term (ln lr x ln B),
CROSS_POINTS or more with it (a full quadratic has 6 coefficients)."""
CROSS_POINTS = 8
BEST_FRACTION = 0.5
"""The share of a cell's runs (the lowest losses) that the quadratic is fitted through."""
MIN_CELLS_FOR_CELL_RESAMPLING = 8
"""Below this many cells, the bootstrap resamples runs within cells only (resampling 4 cells for a 3-parameter
law would leave most resamples unidentified)."""
EDGE_SLACK = 0.0
"""How far (in ln units) a vertex may lie beyond the tried range and still count as inside."""


@dataclass(frozen=True)
class CellOptimum:
    """The optimum of one cell (N, D): lr_opt and batch_opt (the batch in the table's units), the loss there."""

    N: float
    D: float
    lr_opt: float
    batch_opt: float
    loss_opt: float
    how: str
    """vertex (the quadratic's minimum, inside the tried range), edge (its minimum over the tried range, on the
    range's boundary: the unconstrained vertex lies beyond it; `edge` says where) or best_run (too few runs, or
    not convex: `edge` says why)."""
    n_runs: int
    lr_best_run: float
    batch_best_run: float
    loss_best_run: float
    edge: str = ""
    """Which side the vertex fell beyond (e.g. 'lr above 0.02'), or why it was not used; empty for a vertex."""


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float


@dataclass(frozen=True)
class HParamsLaw:
    """lr* = k_lr N^alpha D^beta and B* = k_B D^gamma (B in the table's units), with 95% percentile intervals.

    alpha is 0 and its interval NaN when the cells hold one size per D (alpha_free False)."""

    k_lr: float
    alpha: float
    beta: float
    k_B: float
    gamma: float
    alpha_ci: Interval
    beta_ci: Interval
    gamma_ci: Interval
    n_cells: int
    alpha_free: bool
    resampling: str
    """'runs within cells' or 'cells, then runs within cells'."""
    n_resamples: int
    n_valid: int
    lr_rmse: float
    """Root-mean-square residual of ln lr* about the law, over the cells (0.1 = 10% off)."""
    batch_rmse: float
    note: str = ""
    """Why the form is what it is (e.g. the size term dropped because the cells did not identify it)."""
    lr_batch_exponent: float = math.nan
    """Where B* lay beyond the batches tried (mode linear): d ln lr* / d ln B, the shift of the rate's optimum with
    the batch (0 to 1; 0.5 is the square-root rule for Adam, Malladi et al. 2022), which puts lr* at the batch the
    rule keeps rather than at the cells' average batch."""
    laws: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros((0, 5)))
    """The resamples' (ln k_lr, alpha, beta, ln k_B, gamma), one row per valid resample."""

    def lr(self, *, N: float | np.ndarray, D: float | np.ndarray) -> float | np.ndarray:
        return self.k_lr * np.asarray(N, float) ** self.alpha * np.asarray(D, float) ** self.beta

    def batch(self, *, D: float | np.ndarray) -> float | np.ndarray:
        return self.k_B * np.asarray(D, float) ** self.gamma

    def predict(self, *, N: float, D: float, level: float = 0.95) -> Prediction:
        """lr*(N, D) and B*(D) with percentile intervals from the resampled laws."""
        lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
        lr = float(self.lr(N=N, D=D))
        batch = float(self.batch(D=D))
        if len(self.laws):
            a = self.laws
            lrs = np.exp(a[:, 0] + a[:, 1] * math.log(N) + a[:, 2] * math.log(D))
            bs = np.exp(a[:, 3] + a[:, 4] * math.log(D))
            lr_ci = Interval(*map(float, np.percentile(lrs, [lo_q, hi_q])))
            b_ci = Interval(*map(float, np.percentile(bs, [lo_q, hi_q])))
        else:
            lr_ci = b_ci = Interval(math.nan, math.nan)
        return Prediction(N=N, D=D, lr=lr, lr_ci=lr_ci, batch=batch, batch_ci=b_ci)


@dataclass(frozen=True)
class Prediction:
    N: float
    D: float
    lr: float
    lr_ci: Interval
    batch: float
    batch_ci: Interval


@dataclass(frozen=True)
class OffCell:
    """A cell (or run) whose rate or batch lies more than `factor` from the law's optimum."""

    N: float
    D: float
    lr: float
    lr_opt: float
    batch: float
    batch_opt: float
    what: str
    """'lr 3.1x above lr*', 'batch 2.5x below B*', or both."""


def _design(x: np.ndarray, y: np.ndarray | None, *, cross: bool = True) -> np.ndarray:
    cols = [np.ones_like(x), x, x * x]
    if y is not None:
        cols = [np.ones_like(x), x, y, x * x, x * y if cross else np.zeros_like(x), y * y]
    return np.stack(cols, axis=1)


def cell_optimum(lr: np.ndarray, batch: np.ndarray, loss: np.ndarray, *, N: float, D: float) -> CellOptimum:
    """The optimum of one cell's runs (see the module docstring, step 1). Non-finite losses are left out."""
    lr, batch, loss = (np.asarray(v, float) for v in (lr, batch, loss))
    ok = np.isfinite(loss) & (lr > 0) & (batch > 0)
    lr, batch, loss = lr[ok], batch[ok], loss[ok]
    if len(loss) == 0:
        raise FitError(f"the cell N={N:.4g} D={D:.4g} has no run with a finite loss.")
    best = int(np.argmin(loss))
    fallback = dict(N=N, D=D, n_runs=len(loss), lr_best_run=float(lr[best]), batch_best_run=float(batch[best]),
                    loss_best_run=float(loss[best]))
    x, y = np.log(lr), np.log(batch)
    two_d = len(np.unique(np.round(y, 9))) >= 3 and len(np.unique(np.round(x, 9))) >= 3
    one_var_y = len(np.unique(np.round(x, 9))) < 3 <= len(np.unique(np.round(y, 9)))
    order = np.argsort(loss)
    need = MIN_POINTS if two_d else 3
    keep = order[:max(need, math.ceil(BEST_FRACTION * len(loss)))]
    result = None
    if len(keep) >= need:
        if two_d and len(loss) >= 2 * CROSS_POINTS:
            keep = order[:max(CROSS_POINTS, math.ceil(BEST_FRACTION * len(loss)))]
        elif two_d:
            keep = order  # few runs: all of them (a basin's walls are what locate its bottom)
        xs, ys, ls = x[keep], y[keep], loss[keep]
        if two_d:
            result = _vertex_2d(xs, ys, ls, x_range=(x.min(), x.max()), y_range=(y.min(), y.max()))
        elif one_var_y:
            v = _vertex_1d(ys, ls, lo=y.min(), hi=y.max())
            result = (float(lr[best]), float(np.exp(v[0])) if v[2] == "" else math.nan, v[1], v[2])
        elif len(np.unique(np.round(x, 9))) >= 3:
            v = _vertex_1d(xs, ls, lo=x.min(), hi=x.max())
            result = (float(np.exp(v[0])) if v[2] == "" else math.nan, float(batch[best]), v[1], v[2])
    if result is None:
        return CellOptimum(lr_opt=float(lr[best]), batch_opt=float(batch[best]), loss_opt=float(loss[best]),
                           how="best_run", edge="too few distinct rates or batches for a fit", **fallback)
    lr_opt, b_opt, l_opt, edge = result
    if edge.startswith("edge: "):  # the optimum within the tried box, on its boundary
        return CellOptimum(lr_opt=lr_opt, batch_opt=b_opt, loss_opt=l_opt, how="edge", edge=edge[6:], **fallback)
    if edge:
        return CellOptimum(lr_opt=float(lr[best]), batch_opt=float(batch[best]), loss_opt=float(loss[best]),
                           how="best_run", edge=edge, **fallback)
    return CellOptimum(lr_opt=lr_opt, batch_opt=b_opt, loss_opt=l_opt, how="vertex", **fallback)


def _vertex_1d(x: np.ndarray, loss: np.ndarray, *, lo: float, hi: float) -> tuple[float, float, str]:
    """(x at the parabola's minimum, the loss there, '' or why it is not usable)."""
    X = _design(x, None)
    coef, *_ = np.linalg.lstsq(X, loss, rcond=None)
    c0, c1, c2 = coef
    if not c2 > 0:
        return (math.nan, math.nan, "the loss is not convex in ln lr / ln B")
    v = -c1 / (2 * c2)
    if v < lo - EDGE_SLACK or v > hi + EDGE_SLACK:
        return (v, math.nan, f"the vertex lies beyond the tried range (e^{v:.3g})")
    return (float(v), float(c0 + c1 * v + c2 * v * v), "")


def _vertex_2d(x: np.ndarray, y: np.ndarray, loss: np.ndarray, *, x_range: tuple[float, float],
               y_range: tuple[float, float]) -> tuple[float, float, float, str]:
    """(lr, batch, loss) at the quadratic surface's minimum, and '' or why it is not usable."""
    X = _design(x, y, cross=len(x) >= CROSS_POINTS)
    coef, *_ = np.linalg.lstsq(X, loss, rcond=None)
    c0, c1, c2, c3, c4, c5 = coef
    H = np.array([[2 * c3, c4], [c4, 2 * c5]])
    if not (H[0, 0] > 0 and np.linalg.det(H) > 0):
        return (math.nan, math.nan, math.nan, "the loss surface is not convex in (ln lr, ln B)")

    def value(vx: float, vy: float) -> float:
        return float(c0 + c1 * vx + c2 * vy + c3 * vx * vx + c4 * vx * vy + c5 * vy * vy)

    vx, vy = np.linalg.solve(H, [-c1, -c2])
    inside_x = x_range[0] - EDGE_SLACK <= vx <= x_range[1] + EDGE_SLACK
    inside_y = y_range[0] - EDGE_SLACK <= vy <= y_range[1] + EDGE_SLACK
    if inside_x and inside_y:
        return (float(math.exp(vx)), float(math.exp(vy)), value(vx, vy), "")
    # The minimum of a convex quadratic over the tried box lies on its boundary: the best of the 1-D minima
    # along each side (clipped to the side) is the optimum within the range; it is marked as at an edge.
    candidates = []
    for y0 in y_range:
        xs = float(np.clip(-(c1 + c4 * y0) / (2 * c3), *x_range))
        candidates.append((value(xs, y0), xs, y0))
    for x0 in x_range:
        ys = float(np.clip(-(c2 + c4 * x0) / (2 * c5), *y_range))
        candidates.append((value(x0, ys), x0, ys))
    best, bx, by = min(candidates)
    edges = []
    if math.isclose(bx, x_range[0]) or math.isclose(bx, x_range[1]):
        edges.append(f"lr* at the {'low' if math.isclose(bx, x_range[0]) else 'high'} end of the tried "
                     f"{math.exp(x_range[0]):.3g}..{math.exp(x_range[1]):.3g}")
    if math.isclose(by, y_range[0]) or math.isclose(by, y_range[1]):
        edges.append(f"B* at the {'low' if math.isclose(by, y_range[0]) else 'high'} end of the tried "
                     f"{math.exp(y_range[0]):.4g}..{math.exp(y_range[1]):.4g}")
    return (float(math.exp(bx)), float(math.exp(by)), best, "edge: " + "; ".join(edges))


def cell_optima(N: np.ndarray, D: np.ndarray, lr: np.ndarray, batch: np.ndarray, loss: np.ndarray) -> list[CellOptimum]:
    """Every cell's optimum, by (N, D)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    out = []
    for n, d in sorted({(float(a), float(b)) for a, b in zip(N, D)}):
        at = (N == n) & (D == d)
        out.append(cell_optimum(np.asarray(lr)[at], np.asarray(batch)[at], np.asarray(loss)[at], N=n, D=d))
    return out


def _law_params(N: np.ndarray, D: np.ndarray, lr: np.ndarray, batch: np.ndarray, *,
                alpha_free: bool) -> np.ndarray | None:
    """(ln k_lr, alpha, beta, ln k_B, gamma) by least squares in log space; None when not identified."""
    lN, lD = np.log(N), np.log(D)
    if len(np.unique(lD)) < 2:
        return None
    cols = [np.ones_like(lD), lN, lD] if alpha_free else [np.ones_like(lD), lD]
    A = np.stack(cols, axis=1)
    if np.linalg.matrix_rank(A) < A.shape[1]:
        return None
    c_lr, *_ = np.linalg.lstsq(A, np.log(lr), rcond=None)
    if not alpha_free:
        c_lr = np.array([c_lr[0], 0.0, c_lr[1]])
    B = np.stack([np.ones_like(lD), lD], axis=1)
    c_b, *_ = np.linalg.lstsq(B, np.log(batch), rcond=None)
    return np.array([c_lr[0], c_lr[1], c_lr[2], c_b[0], c_b[1]])


def identifies_size_term(N: np.ndarray, D: np.ndarray) -> bool:
    """Whether ln N varies independently of ln D across the cells (else alpha cannot be told from beta)."""
    lN, lD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
    A = np.stack([np.ones_like(lD), lN, lD], axis=1)
    return bool(len(lN) >= 4 and np.linalg.matrix_rank(A, tol=1e-6) == 3)


def fit_hparams_law(N: np.ndarray, D: np.ndarray, lr: np.ndarray, batch: np.ndarray, loss: np.ndarray, *,
                    n_resamples: int = 1000, seed: int = 0, alpha_free: bool | None = None,
                    level: float = 0.95) -> tuple[HParamsLaw, list[CellOptimum]]:
    """The law through the cells' optima, with bootstrap intervals (see the module docstring).

    One row per run: its size N, tokens D, rate, batch and final loss. `alpha_free` None: free when the cells
    identify it (`identifies_size_term`). Raises FitError when fewer than 2 token counts are present."""
    N, D, lr, batch, loss = (np.asarray(v, float) for v in (N, D, lr, batch, loss))
    optima = cell_optima(N, D, lr, batch, loss)
    cN = np.array([c.N for c in optima])
    cD = np.array([c.D for c in optima])
    if alpha_free is None:
        alpha_free = identifies_size_term(cN, cD)
    point = _law_params(cN, cD, np.array([c.lr_opt for c in optima]), np.array([c.batch_opt for c in optima]),
                        alpha_free=alpha_free)
    if point is None:
        raise FitError(f"an hparams law needs cells at 2 or more token counts (and, for the size term, sizes that "
                       f"vary apart from D); got {len(optima)} cells at D = {sorted(set(cD.tolist()))}.")
    resample_cells = len(optima) >= MIN_CELLS_FOR_CELL_RESAMPLING
    rng = np.random.default_rng(seed)
    cells = [np.flatnonzero((N == c.N) & (D == c.D)) for c in optima]
    laws = []
    for _ in range(n_resamples):
        chosen = rng.integers(0, len(cells), len(cells)) if resample_cells else np.arange(len(cells))
        rows = []
        for i in chosen:
            idx = cells[i]
            pick = idx[rng.integers(0, len(idx), len(idx))]
            c = cell_optimum(lr[pick], batch[pick], loss[pick], N=optima[i].N, D=optima[i].D)
            rows.append((c.N, c.D, c.lr_opt, c.batch_opt))
        r = np.array(rows)
        params = _law_params(r[:, 0], r[:, 1], r[:, 2], r[:, 3], alpha_free=alpha_free)
        if params is not None:
            laws.append(params)
    laws_a = np.array(laws) if laws else np.zeros((0, 5))
    ci = _percentile_intervals(laws_a, level=level, alpha_free=alpha_free)

    ln_k, alpha, beta, ln_kb, gamma = map(float, point)
    lr_res = np.log([c.lr_opt for c in optima]) - (ln_k + alpha * np.log(cN) + beta * np.log(cD))
    b_res = np.log([c.batch_opt for c in optima]) - (ln_kb + gamma * np.log(cD))
    law = HParamsLaw(k_lr=math.exp(ln_k), alpha=alpha, beta=beta, k_B=math.exp(ln_kb), gamma=gamma,  # floats
                     alpha_ci=ci(1), beta_ci=ci(2), gamma_ci=ci(4), n_cells=len(optima), alpha_free=bool(alpha_free),
                     resampling="cells, then runs within cells" if resample_cells else "runs within cells",
                     n_resamples=n_resamples, n_valid=len(laws_a), lr_rmse=float(np.sqrt(np.mean(lr_res ** 2))),
                     batch_rmse=float(np.sqrt(np.mean(b_res ** 2))), laws=laws_a)
    return law, optima


def _percentile_intervals(laws: np.ndarray, *, level: float, alpha_free: bool):
    """Interval of law parameter j (columns ln k_lr, alpha, beta, ln k_B, gamma) from the resampled laws' percentiles;
    NaN with fewer than 2 resamples, and for alpha when the cells cannot identify it."""
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def ci(j: int) -> Interval:
        if len(laws) < 2 or (j == 1 and not alpha_free):
            return Interval(math.nan, math.nan)
        return Interval(*map(float, np.percentile(laws[:, j], [lo_q, hi_q])))

    return ci


def off_optimum(N: np.ndarray, D: np.ndarray, lr: np.ndarray, batch: np.ndarray, *, law: HParamsLaw,
                factor: float) -> list[OffCell]:
    """The runs whose rate or batch lies more than `factor` (e.g. 2: outside [lr*/2, 2 lr*]) from the law's
    optimum at their (N, D). A NaN lr or batch (not recorded) is not judged."""
    assert factor > 1
    out = []
    for n, d, r, b in zip(*(np.asarray(v, float) for v in (N, D, lr, batch))):
        r_opt, b_opt = float(law.lr(N=n, D=d)), float(law.batch(D=d))
        what = []
        for name, v, opt, sym in (("lr", r, r_opt, "lr*"), ("batch", b, b_opt, "B*")):
            if math.isfinite(v) and v > 0:
                ratio = v / opt
                if ratio > factor:
                    what.append(f"{name} {ratio:.2g}x above {sym}")
                elif ratio < 1 / factor:
                    what.append(f"{name} {1 / ratio:.2g}x below {sym}")
        if what:
            out.append(OffCell(N=float(n), D=float(d), lr=float(r), lr_opt=r_opt, batch=float(b), batch_opt=b_opt,
                               what="; ".join(what)))
    return out


def _pooled_residuals(theta: np.ndarray, *, x: np.ndarray, y: np.ndarray, loss: np.ndarray, cell: np.ndarray,
                      lN: np.ndarray, lD: np.ndarray, alpha_free: bool, n_cells: int, mode: str,
                      y_mean: np.ndarray) -> np.ndarray:
    """Residuals of the pooled model (see fit_pooled_law); theta = (ln k_lr, [alpha], beta, ln k_B, gamma, a, c, b,
    f_1..f_cells). mode: bowl (quadratic in ln lr and ln B), linear (quadratic in ln lr about a centre that moves
    with the batch, x*_c + b (y - ybar_c), plus a shared slope c in ln B about each cell's mean: B* lies beyond
    the batches tried), none (one batch per cell: ln lr alone)."""
    i = 0
    ln_k = theta[i]
    i += 1
    alpha = theta[i] if alpha_free else 0.0
    i += alpha_free
    beta, ln_kb, gamma, a, c, b = theta[i:i + 6]
    f = theta[i + 6:i + 6 + n_cells]
    dx = x - (ln_k + alpha * lN + beta * lD)  # distance from each run's cell's ln lr*
    if mode == "linear":
        dx = dx - b * (y - y_mean)  # the rate's optimum moves with the batch (b = d ln lr* / d ln B)
    A = math.exp(a)
    out = f[cell] + A * dx * dx - loss
    if mode == "bowl":
        C = math.exp(c)
        Bc = math.tanh(b) * math.sqrt(A * C)  # |B| < sqrt(AC): the bowl stays convex
        dy = y - (ln_kb + gamma * lD)
        out += C * dy * dy + 2 * Bc * dx * dy
    elif mode == "linear":
        out += c * (y - y_mean)
    return out


MAX_ALPHA_WIDTH = 1.0
"""A size exponent whose 95% interval is wider than this (and holds 0) is not identified by the cells: the pooled
fit then drops the N term (lr*(D), the one-variable form of DeepSeek LLM 2024) rather than extrapolate noise."""


def fit_pooled_law(N: np.ndarray, D: np.ndarray, lr: np.ndarray, batch: np.ndarray, loss: np.ndarray, *,
                   n_resamples: int = 1000, seed: int = 0, alpha_free: bool | None = None,
                   level: float = 0.95) -> tuple[HParamsLaw, list[CellOptimum]]:
    """`_fit_pooled` (below); with alpha_free None, the N term is kept only where its interval identifies it."""
    law, optima = _fit_pooled(N, D, lr, batch, loss, n_resamples=n_resamples, seed=seed, alpha_free=alpha_free,
                              level=level)
    width = law.alpha_ci.hi - law.alpha_ci.lo
    if alpha_free is None and law.alpha_free and n_resamples and (
            not math.isfinite(width) or (width > MAX_ALPHA_WIDTH and law.alpha_ci.lo <= 0 <= law.alpha_ci.hi)):
        note = (f"the size term was dropped: alpha = {law.alpha:.3f}, 95% interval {law.alpha_ci.lo:.3f} to "
                f"{law.alpha_ci.hi:.3f}, is not identified by these cells")
        law, optima = _fit_pooled(N, D, lr, batch, loss, n_resamples=n_resamples, seed=seed, alpha_free=False,
                                  level=level)
        law = replace(law, note=note)
    return law, optima


def _fit_pooled(N: np.ndarray, D: np.ndarray, lr: np.ndarray, batch: np.ndarray, loss: np.ndarray, *,
                n_resamples: int, seed: int, alpha_free: bool | None,
                level: float) -> tuple[HParamsLaw, list[CellOptimum]]:
    """The law fitted to every run at once, for a pilot's few runs per cell.

    With 6 to 10 runs per cell, a quadratic per cell is barely determined and the law through 4 such optima
    is noise. So one convex bowl in (ln lr, ln B) is shared by all cells, centred on the law:
        L_i = f_c + A (x_i - x*_c)^2 + C (y_i - y*_c)^2 + 2 B (x_i - x*_c)(y_i - y*_c),
        x*_c = ln k_lr + alpha ln N_c + beta ln D_c,   y*_c = ln k_B + gamma ln D_c,
    with a free loss level f_c per cell, B^2 < A C, fitted by robust least squares (soft-L1, scale 0.01 nats, so
    that a diverged run far up the walls does not bend the bowl; scipy least_squares). The same shape of basin
    at every scale is the Step Law's observation (Li et al. 2025, sec. 3: the landscape keeps its shape and
    only its centre moves). Cell optima are the bowl's centre at each cell (`how` = pooled, or edge where the
    centre lies beyond the tried range of that cell). Where the loss keeps falling past the batches tried in most
    cells (mode linear), B* has no centre: the loss is a shared slope in ln B, and the rate's centre moves with the
    batch, x*_c + b (y - ybar_c) with b in [0, 1] (lr* grows with the batch: the square-root rule b = 0.5 for Adam,
    Malladi et al. 2022; linear for SGD, Goyal et al. 2017), so the law is lr* at the batch the rule keeps (the
    most steps tried), not at the cells' average batch. Intervals: runs resampled within cells, refitted."""
    from scipy.optimize import least_squares  # noqa: PLC0415

    N, D, lr, batch, loss = (np.asarray(v, float) for v in (N, D, lr, batch, loss))
    ok = np.isfinite(loss) & (lr > 0) & (batch > 0)
    N, D, lr, batch, loss = N[ok], D[ok], lr[ok], batch[ok], loss[ok]
    keys = sorted({(float(a), float(b)) for a, b in zip(N, D)})
    cell = np.array([keys.index((float(a), float(b))) for a, b in zip(N, D)])
    cN, cD = np.array([k[0] for k in keys]), np.array([k[1] for k in keys])
    if alpha_free is None:
        alpha_free = identifies_size_term(cN, cD)
    if len(np.unique(cD)) < 2:
        raise FitError(f"an hparams law needs cells at 2 or more token counts; got {len(keys)} cells at "
                       f"D = {sorted(set(cD.tolist()))}.")
    x, y, lN, lD = np.log(lr), np.log(batch), np.log(N), np.log(D)
    best = [int(np.flatnonzero(cell == i)[np.argmin(loss[cell == i])]) for i in range(len(keys))]
    start = _law_params(cN, cD, lr[best], batch[best], alpha_free=alpha_free)
    if start is None:
        raise FitError(f"an hparams law needs sizes that vary apart from D; got cells {keys}.")
    law0 = [start[0], *([start[1]] if alpha_free else []), start[2], start[3], start[4]]
    theta0 = np.array([*law0, math.log(0.02), math.log(0.01), 0.0, *loss[best]])

    # A cell with one batch says nothing about B*: without any searched batch the model is in ln lr alone and
    # B*(D) is the law through the batches the cells ran at.
    searched = any(len(np.unique(y[cell == i])) > 1 for i in range(len(keys)))
    y_mean = np.array([y[cell == i].mean() for i in range(len(keys))])[cell]
    b_law = _law_params(cN, cD, lr[best], batch[best], alpha_free=False)
    n_law = 3 + alpha_free + 1  # ln k_lr, [alpha], beta, ln k_B, gamma
    lower = np.full(len(theta0), -np.inf)
    upper = np.full(len(theta0), np.inf)
    lower[n_law - 1], upper[n_law - 1] = -2.0, 3.0  # gamma
    lower[n_law - 2], upper[n_law - 2] = -60.0, 60.0  # ln k_B
    lower[n_law:n_law + 2], upper[n_law:n_law + 2] = math.log(1e-6), math.log(10.0)  # ln A, ln C of the bowl
    theta0 = np.clip(theta0, lower + 1e-9, upper - 1e-9)

    def solve(idx: np.ndarray, init: np.ndarray, mode: str) -> np.ndarray | None:
        if len(np.unique(cell[idx])) < len(keys):
            return None
        lo, hi = lower.copy(), upper.copy()
        if mode == "linear":
            lo[n_law + 1], hi[n_law + 1] = -np.inf, np.inf  # c is a slope there
            lo[n_law + 2], hi[n_law + 2] = 0.0, 1.0  # b: lr* grows with the batch, at most linearly
        fit = least_squares(_pooled_residuals, np.clip(init, lo + 1e-9, hi - 1e-9), loss="soft_l1", f_scale=0.01,
                            x_scale="jac", bounds=(lo, hi),
                            kwargs=dict(x=x[idx], y=y[idx], loss=loss[idx], cell=cell[idx], lN=lN[idx], lD=lD[idx],
                                        alpha_free=alpha_free, n_cells=len(keys), mode=mode, y_mean=y_mean[idx]))
        if not fit.success:
            return None
        if mode != "bowl":  # the batch law is the cells' best batches, not a fitted centre
            fit.x[n_law - 2:n_law] = b_law[3:5]
        return fit.x

    mode = "bowl" if searched else "none"
    theta = solve(np.arange(len(loss)), theta0, mode)
    if theta is not None and mode == "bowl":
        ys = theta[n_law - 2] + theta[n_law - 1] * np.log(cD)
        beyond = sum(not y[cell == i].min() <= ys[i] <= y[cell == i].max() for i in range(len(keys)))
        if beyond > len(keys) / 2:  # the loss keeps falling past the batches tried: no bowl to centre a law on
            mode = "linear"
            start = theta0.copy()
            start[n_law + 1] = 0.0
            theta = solve(np.arange(len(loss)), start, mode)
    if theta is None:
        raise FitError("the pooled hparams fit did not converge.")

    y_cell = np.array([y[cell == i].mean() for i in range(len(keys))])

    def edge_shift(t: np.ndarray) -> np.ndarray:
        """Per cell, ln of the batch the rule keeps (the most steps tried where the loss falls toward small batches,
        else the fewest) minus the cell's mean ln batch: where lr*, fitted about that mean, is to be read."""
        ends = np.array([y[cell == i].min() if t[n_law + 1] > 0 else y[cell == i].max() for i in range(len(keys))])
        return ends - y_cell

    def law_of(t: np.ndarray) -> np.ndarray:
        out = np.array([t[0], t[1] if alpha_free else 0.0, *t[1 + alpha_free:4 + alpha_free]])
        if mode == "linear":  # the law of lr* at the batch the rule keeps
            out[0] += t[n_law + 2] * float(np.mean(edge_shift(t)))
        return out

    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(cell == i) for i in range(len(keys))]
    laws = []
    for _ in range(n_resamples):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        t = solve(idx, theta, mode)
        if t is not None:
            laws.append(law_of(t))
    laws_a = np.array(laws) if laws else np.zeros((0, 5))
    ci = _percentile_intervals(laws_a, level=level, alpha_free=alpha_free)

    ln_k, alpha, beta, ln_kb, gamma = map(float, law_of(theta))
    kappa = float(theta[n_law + 2]) if mode == "linear" else math.nan
    f = theta[4 + alpha_free + 3:]
    shift = edge_shift(theta) if mode == "linear" else None
    optima = []
    for i, (n, d) in enumerate(keys):
        g = groups[i]
        xs, ys = ln_k + alpha * math.log(n) + beta * math.log(d), ln_kb + gamma * math.log(d)
        if mode == "linear":  # the cell's own optimum at its kept batch (the law's shift is the cells' mean)
            xs += kappa * float(shift[i] - np.mean(shift))
        edges = []
        if not x[g].min() <= xs <= x[g].max():
            edges.append(f"lr* {math.exp(xs):.3g} beyond the tried {lr[g].min():.3g}..{lr[g].max():.3g}")
        if mode == "bowl" and not y[g].min() <= ys <= y[g].max():
            edges.append(f"B* {math.exp(ys):.4g} beyond the tried {batch[g].min():.4g}..{batch[g].max():.4g}")
        elif mode == "linear":
            ys = float(y_cell[i] + shift[i])  # the batch the rule keeps (edge_shift)
            edges.append(f"B* beyond the tried {batch[g].min():.4g}..{batch[g].max():.4g}: the loss falls by "
                         f"{abs(float(theta[n_law + 1])) * math.log(2):.3g} nats per halving/doubling toward "
                         f"{math.exp(ys):.4g} (one slope fitted to all cells)")
        j = g[np.argmin(loss[g])]
        optima.append(CellOptimum(N=n, D=d, lr_opt=math.exp(xs), batch_opt=math.exp(ys), loss_opt=float(f[i]),
                                  how="edge" if edges else "pooled", n_runs=len(g), lr_best_run=float(lr[j]),
                                  batch_best_run=float(batch[j]), loss_best_run=float(loss[j]),
                                  edge="; ".join(edges)))
    res = _pooled_residuals(theta, x=x, y=y, loss=loss, cell=cell, lN=lN, lD=lD, alpha_free=alpha_free,
                            n_cells=len(keys), mode=mode, y_mean=y_mean)
    law = HParamsLaw(k_lr=math.exp(ln_k), alpha=alpha, beta=beta, k_B=math.exp(ln_kb), gamma=gamma,
                     alpha_ci=ci(1), beta_ci=ci(2), gamma_ci=ci(4), n_cells=len(keys), alpha_free=bool(alpha_free),
                     resampling=f"runs within cells, pooled ({mode})", n_resamples=n_resamples, n_valid=len(laws_a),
                     lr_rmse=float(np.sqrt(np.mean(res ** 2))), batch_rmse=math.nan, lr_batch_exponent=kappa,
                     laws=laws_a)
    return law, optima
