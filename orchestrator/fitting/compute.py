"""One definition of training compute from plan to frontier: C = f(N) D.

f(N) is the training FLOPs per token of a model with N parameters; we store it as k(N) = f(N) / N, so that
C = k(N) N D (k = 6 is the familiar C = 6 N D of Kaplan et al. 2020 and Hoffmann et al. 2022). The fit's
convention (`fit.c_convention`) decides which k every method uses:

- `6nd`: k = 6 for every N, with the fitted N (total or non-embedding, `fit.n_convention`).
- `exact` (default): k(N) = C_exact / (N D) of the shapes a model of N parameters has, smoothed in log N.
  For a sweep, the shapes are the ones the sweep's shape rule gives each N (the planner's own
  `resolve_shape` and exact accounting, sampled densely over the range the frontier needs; see
  `orchestrator.planner.shape_rule_samples`). For a CSV of runs, they are the runs' own: the smooth is
  fitted to each run's C / (N D) and held at its edge value beyond the runs' sizes.

Why smooth: along the discrete shapes of a shape rule, C_exact / (N D) is jagged (a model one layer deeper
at the same N costs 5-15% more per token, at small scale where attention over the context and the output
head are a large share), so an IsoFLOP profile of exact-FLOP runs is jagged too. The frontier is defined on
the smooth k: N_opt(C) minimises L(N, C / (k(N) N)), which is a smooth function of C; the shape to train
for N_opt is then resolved by the shape rule and its tokens solved so that it costs exactly C.

The smoother is a local-linear regression of ln k on log10 N with a Gaussian kernel (Fan & Gijbels 1996,
"Local Polynomial Modelling and Its Applications", ch. 3): it follows the trend (k rises towards 6 as
attention and embeddings shrink in share) without the steps, and at the edges of the samples it keeps the
local slope instead of bending back like a global polynomial.

`frontier_of_surface` finds N_opt(C) of L = E + A / N^alpha + B / D^beta under C = k(N) N D numerically
(vectorised over parameter samples and budgets); under a constant k it equals the closed form of Hoffmann
et al. (2022) eq. 4, N_opt = G (C / k)^a.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BANDWIDTH_DEX = 0.25  # kernel width of the smoother, decades of N
KNOTS_PER_DEX = 40  # resolution at which the smooth k(N) is stored and interpolated


@dataclass(frozen=True)
class ComputeModel:
    """C = k(N) N D with k stored on knots (ln N, ln k), linear in between, held flat beyond the knots.

    `convention` is exact or 6nd; `source` says in words where k(N) came from (it is printed and written
    to fit.json); `n_samples` is how many (N, k) samples the smooth was fitted to (0 for a constant).
    """

    convention: str
    source: str
    log_n: np.ndarray
    log_k: np.ndarray
    n_samples: int = 0
    samples: dict = field(default_factory=dict, compare=False)

    @classmethod
    def constant(cls, k: float = 6.0, *, convention: str = "6nd", source: str = "C = 6 N D") -> ComputeModel:
        return cls(convention=convention, source=source, log_n=np.array([0.0]), log_k=np.array([np.log(k)]))

    @classmethod
    def smooth(cls, N: np.ndarray, k: np.ndarray, *, convention: str, source: str,
               bandwidth_dex: float = BANDWIDTH_DEX) -> ComputeModel:
        """Local-linear smooth of ln k against log10 N (module docstring), stored on knots over N's range."""
        N, k = np.asarray(N, float), np.asarray(k, float)
        ok = np.isfinite(N) & np.isfinite(k) & (N > 0) & (k > 0)
        N, k = N[ok], k[ok]
        assert len(N) > 0, "a compute model needs at least one (N, k) sample"
        x, y = np.log10(N), np.log(k)
        if np.ptp(y) < 1e-12 or np.ptp(x) < 1e-9:  # one k for all: a constant
            return cls(convention=convention, source=source, log_n=np.array([np.log(N).mean()]),
                       log_k=np.array([float(np.mean(y))]), n_samples=len(N))
        n_knots = max(int(np.ptp(x) * KNOTS_PER_DEX) + 1, 2)
        knots = np.linspace(x.min(), x.max(), n_knots)
        return cls(convention=convention, source=source, log_n=knots * np.log(10.0),
                   log_k=local_linear(x, y, knots, bandwidth=bandwidth_dex), n_samples=len(N),
                   samples={"N": N.tolist(), "k": k.tolist()})

    @classmethod
    def from_json(cls, data: dict) -> ComputeModel:
        """The model `to_json` wrote (its knots, interpolated as before)."""
        if data.get("constant", True) or "knots" not in data:
            return cls.constant(float(data.get("k", 6.0)), convention=data.get("convention", "6nd"),
                                source=data.get("source", ""))
        return cls(convention=data["convention"], source=data["source"],
                   log_n=np.log(np.asarray(data["knots"]["N"], float)),
                   log_k=np.log(np.asarray(data["knots"]["k"], float)), n_samples=int(data.get("n_samples", 0)))

    @property
    def is_constant(self) -> bool:
        return len(self.log_k) == 1 or float(np.ptp(self.log_k)) < 1e-12

    def k(self, N: np.ndarray | float) -> np.ndarray:
        """C / (N D) at N (smooth; flat beyond the knots)."""
        x = np.log(np.asarray(N, dtype=float))
        if len(self.log_n) == 1:
            return np.full(np.shape(x), np.exp(self.log_k[0]))
        return np.exp(np.interp(x, self.log_n, self.log_k))

    def flops_per_token(self, N: np.ndarray | float) -> np.ndarray:
        return self.k(N) * np.asarray(N, dtype=float)

    def tokens(self, C: np.ndarray | float, N: np.ndarray | float) -> np.ndarray:
        """D such that k(N) N D = C."""
        return np.asarray(C, dtype=float) / self.flops_per_token(N)

    def deviation(self, N: np.ndarray, C: np.ndarray, D: np.ndarray) -> np.ndarray:
        """ln(k_run / k(N)): how much more a run's own shape costs per token than the smooth rule says."""
        N, C, D = (np.asarray(v, dtype=float) for v in (N, C, D))
        return np.log(C / (N * D)) - np.log(self.k(N))

    def to_json(self) -> dict:
        out = {"convention": self.convention, "source": self.source, "constant": self.is_constant,
               "n_samples": self.n_samples}
        if self.is_constant:
            out["k"] = float(np.exp(self.log_k[0]))
        else:  # every knot, so that from_json reproduces the model exactly
            out["knots"] = {"N": np.exp(self.log_n).tolist(), "k": np.exp(self.log_k).tolist()}
            out["k_range"] = [float(np.exp(self.log_k.min())), float(np.exp(self.log_k.max()))]
        return out


def local_linear(x: np.ndarray, y: np.ndarray, at: np.ndarray, *, bandwidth: float) -> np.ndarray:
    """Kernel-weighted (Gaussian, sd `bandwidth`) local-linear regression of y on x, evaluated at `at`.

    Where the kernel sees a single x (no slope to estimate), the weighted mean is returned.
    """
    z = np.asarray(at, dtype=float)[:, None]  # (m, 1)
    w = np.exp(-0.5 * ((z - x[None, :]) / bandwidth) ** 2)  # (m, n)
    w = np.maximum(w, 1e-300)
    sw = w.sum(axis=1)
    mx, my = (w * x).sum(axis=1) / sw, (w * y).sum(axis=1) / sw
    dx = x[None, :] - mx[:, None]
    sxx = (w * dx * dx).sum(axis=1)
    sxy = (w * dx * (y[None, :] - my[:, None])).sum(axis=1)
    slope = np.where(sxx > 1e-12 * sw, sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    return my + slope * (z[:, 0] - mx)


def frontier_of_surface(E: np.ndarray, A: np.ndarray, B: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
                        C: np.ndarray, *, compute: ComputeModel) -> tuple[np.ndarray, np.ndarray]:
    """N_opt(C), D_opt(C) of L = E + A / N^alpha + B / D^beta under C = k(N) N D: shapes (R, M).

    Parameters are (R,) arrays (or scalars, R = 1), budgets C (M,). Closed form under a constant k
    (Hoffmann et al. 2022, eq. 4: N_opt = G (C / k)^a, G = (alpha A / (beta B))^(1 / (alpha + beta))).
    Otherwise a grid over ln N of +-4 nats around the closed form at the guess's k, then two rounds of a
    finer grid and a parabola through the three best points (relative precision ~1e-6 in N). Parameter sets
    that cannot be evaluated (NaN, a zero exponent) give NaN.
    """
    E, A, B, alpha, beta = (np.atleast_1d(np.asarray(v, dtype=float))[:, None] for v in (E, A, B, alpha, beta))
    C = np.atleast_1d(np.asarray(C, dtype=float))[None, :]
    with np.errstate(all="ignore"):
        a = beta / (alpha + beta)
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        k0 = compute.k(G * (C / 6.0) ** a)
        N = G * (C / k0) ** a  # (R, M)
        if not compute.is_constant:
            def loss(x: np.ndarray) -> np.ndarray:  # x = ln N, (R, M, g)
                n = np.exp(x)
                d = C[..., None] / (compute.k(n) * n)
                return A[..., None] * n ** -alpha[..., None] + B[..., None] * d ** -beta[..., None]

            x = np.log(N)
            bad = ~np.isfinite(x)
            x = np.where(bad, 0.0, x)
            for half, points in ((4.0, 161), (0.06, 25), (0.006, 25)):
                grid = x[..., None] + np.linspace(-half, half, points)  # (R, M, g)
                values = loss(grid)
                values = np.where(np.isfinite(values), values, np.inf)
                i = np.clip(np.argmin(values, axis=-1), 1, points - 2)
                y0, y1, y2 = (np.take_along_axis(values, (i + j)[..., None], axis=-1)[..., 0] for j in (-1, 0, 1))
                h = 2 * half / (points - 1)
                curvature = y0 - 2 * y1 + y2
                offset = np.where(curvature > 0, 0.5 * h * (y0 - y2) / np.where(curvature > 0, curvature, 1.0), 0.0)
                x = np.take_along_axis(grid, i[..., None], axis=-1)[..., 0] + np.clip(offset, -h, h)
            N = np.where(bad, np.nan, np.exp(x))
        D = compute.tokens(C, N)
    ok = np.isfinite(N) & np.isfinite(D) & (N > 0) & (D > 0)
    return np.where(ok, N, np.nan), np.where(ok, D, np.nan)


def local_exponent(C: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares slope of ln(values) against ln C along the last axis (NaN where fewer than 2 finite)."""
    lx = np.log(np.asarray(C, dtype=float))
    with np.errstate(all="ignore"):
        ly = np.log(values)
        ok = np.isfinite(ly) & np.isfinite(lx)
        n = ok.sum(axis=-1)
        mx = np.where(ok, lx, 0.0).sum(axis=-1) / n
        my = np.where(ok, ly, 0.0).sum(axis=-1) / n
        dx = np.where(ok, lx - mx[..., None], 0.0)
        dy = np.where(ok, ly - my[..., None], 0.0)
        slope = (dx * dy).sum(axis=-1) / (dx * dx).sum(axis=-1)
    return np.where(n >= 2, slope, np.nan)
