"""A sweep's compute-optimal loss L_opt(C), vectorised over parameter sets, and its inverse C(L).

Two forms, one per kind of frontier the fitting stage produces:
- `surface`: L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq. 2; approaches 3 and VPNLS), with
  L_opt(C) = min_N L(N, C / (k(N) N)) under the fit's compute model C = k(N) N D (fitting/compute.py);
- `loss_law`: L_opt(C) = E + k (C / C_ref)^p, the minima's own law (approach 2, IsoFLOP; E = 0 for a plain
  power law through two budgets).

Every row holds one parameter set (R = 1 for the point fit, R resamples for a bootstrap) and is evaluated at
its own budget: the arrays are elementwise, so that C(L) can be solved for each (resample, budget) pair at once.
Budgets travel as x = ln C, so that a law compared with itself is evaluated at bitwise the same budgets.

Elementwise evaluation of a surface uses one identity: at budget C, B / D^beta = (B C^-beta) (k(N) N)^beta, so
L_opt at C with coefficient B equals L_opt at C = 1 with coefficient B C^-beta (the minimiser N_opt is the
same). `fitting.compute.frontier_of_surface` then does the minimisation with one shared budget.

C(L) inverts L_opt, which falls monotonically towards E as C grows: the solution of
ln(L_opt(x) - E) = ln(L - E), a nearly linear function of x (exactly linear, slope -alpha beta / (alpha + beta),
under a constant k), found by Newton's method from a start the caller gives (its budget), with the slope from the
envelope theorem. A loss at or below E is reached by no compute: C = inf.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from orchestrator.fitting.compute import ComputeModel, frontier_of_surface

SURFACE, LOSS_LAW = "surface", "loss_law"
NEWTON_ITER, NEWTON_TOL, NEWTON_STEP = 60, 1e-11, 8.0


@dataclass(frozen=True)
class LossFrontier:
    """L_opt(C) for R parameter sets (see the module docstring). `E` is each row's floor; for a surface `A, B,
    alpha, beta` are set, for a loss law `k, p` (and the scalar `x_ref`, C_ref)."""

    kind: str
    compute: ComputeModel
    E: np.ndarray
    A: np.ndarray | None = None
    B: np.ndarray | None = None
    alpha: np.ndarray | None = None
    beta: np.ndarray | None = None
    k: np.ndarray | None = None
    p: np.ndarray | None = None
    x_ref: float = 1.0

    @classmethod
    def surface(cls, E, A, B, alpha, beta, *, compute: ComputeModel) -> LossFrontier:
        E, A, B, alpha, beta = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (E, A, B, alpha, beta))
        return cls(kind=SURFACE, compute=compute, E=E, A=A, B=B, alpha=alpha, beta=beta)

    @classmethod
    def loss_law(cls, E, k, p, *, x_ref: float, compute: ComputeModel) -> LossFrontier:
        E, k, p = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (E, k, p))
        return cls(kind=LOSS_LAW, compute=compute, E=E, k=k, p=p, x_ref=float(x_ref))

    @property
    def R(self) -> int:
        return len(self.E)

    @property
    def is_surface(self) -> bool:
        return self.kind == SURFACE

    def _fields(self) -> tuple[str, ...]:
        return ("E", "A", "B", "alpha", "beta") if self.is_surface else ("E", "k", "p")

    def take(self, rows: np.ndarray) -> LossFrontier:
        """The parameter sets `rows` (an index array; repeats allowed)."""
        return replace(self, **{f: getattr(self, f)[rows] for f in self._fields()})

    def valid(self) -> np.ndarray:
        """Rows whose parameters are all finite."""
        return np.all([np.isfinite(getattr(self, f)) for f in self._fields()], axis=0)

    # -- evaluation, one budget per row -------------------------------------------------------------------------
    def _allocation_rows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N_opt, D_opt / C, B C^-beta) of each row at its own x = ln C (surfaces only)."""
        with np.errstate(all="ignore"):
            B1 = self.B * np.exp(-self.beta * x)
            N, D1 = frontier_of_surface(self.E, self.A, B1, self.alpha, self.beta, np.ones(1), compute=self.compute)
            return N[:, 0], D1[:, 0], B1

    def _loss_rows(self, x: np.ndarray) -> np.ndarray:
        return self._gap_rows(x)[0] + self.E

    def _gap_rows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """L_opt - E of each row at its own x = ln C, and d ln(L_opt - E) / d ln C. The slope by the envelope
        theorem: N sits at its optimum, so only D moves with C (D = C / (k(N) N)): dL/d ln C = -beta B / D^beta."""
        with np.errstate(all="ignore"):
            if not self.is_surface:
                return self.k * np.exp(self.p * (x - np.log(self.x_ref))), self.p
            N, D1, B1 = self._allocation_rows(x)  # B / D^beta = (B C^-beta) / (D / C)^beta: no overflow
            data = B1 * D1 ** -self.beta
            gap = self.A * N ** -self.alpha + data
            return gap, -self.beta * data / gap

    def _expand(self, x: np.ndarray) -> tuple[LossFrontier, np.ndarray, tuple[int, ...]]:
        """Rows repeated over the budgets of x (R, M) or (M,): (frontier with R*M rows, flat x, shape)."""
        x = np.asarray(x, dtype=float)
        x2 = np.broadcast_to(x, (self.R, x.shape[-1])) if x.ndim == 1 else x
        assert x2.shape[0] == self.R, "one row of budgets per parameter set"
        return self.take(np.repeat(np.arange(self.R), x2.shape[1])), x2.ravel(), x2.shape

    def loss(self, x: np.ndarray) -> np.ndarray:
        """L_opt at x = ln C: x (M,) is shared by every row, x (R, M) is per row; returns (R, M)."""
        rows, flat, shape = self._expand(x)
        return rows._loss_rows(flat).reshape(shape)

    def allocation(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(L_opt, N_opt, D_opt) at x = ln C, each (R, M), in one minimisation; D_opt costs C under the compute
        model (surfaces only)."""
        assert self.is_surface, "a loss law has no allocation"
        rows, flat, shape = self._expand(x)
        N, D1, B1 = rows._allocation_rows(flat)
        with np.errstate(all="ignore"):
            L = rows.E + (rows.A * N ** -rows.alpha + B1 * D1 ** -rows.beta)  # as _gap_rows: the same rounding
            return L.reshape(shape), N.reshape(shape), (np.exp(flat) * D1).reshape(shape)

    def log_compute_for(self, L: np.ndarray, *, start: np.ndarray) -> np.ndarray:
        """x = ln C at which L_opt(C) = L, for L (R, M), from the starts `start` (M,) or (R, M) (ln C): +inf where
        L <= E (no compute reaches it), NaN where L or the row is not finite or Newton's method fails."""
        L = np.asarray(L, dtype=float)
        rows, x0, shape = self._expand(np.broadcast_to(start, L.shape) if np.ndim(start) == 1 else start)
        return rows._solve(L.ravel(), x0).reshape(shape)

    def _solve(self, L: np.ndarray, x0: np.ndarray) -> np.ndarray:
        """Newton's method on g(x) = ln(L_opt(x) - E) - ln(L - E), one row per element (module docstring).

        A row whose start already solves it (g = 0 exactly: a law compared with itself) is returned unchanged."""
        out = np.full(len(L), np.nan)
        with np.errstate(all="ignore"):
            gap = L - self.E
            ok = np.isfinite(L) & self.valid() & np.isfinite(x0)
            out[ok & (gap <= 0)] = np.inf
            live = np.flatnonzero(ok & (gap > 0))
            x, target = x0[live].copy(), np.log(gap[live])
            for _ in range(NEWTON_ITER):
                if len(live) == 0:
                    break
                sub = self.take(live)
                gap_here, slope = sub._gap_rows(x)
                g = np.log((sub.E + gap_here) - sub.E) - target  # as L - E was formed: exact zero at the answer
                done = np.abs(g) <= NEWTON_TOL
                out[live[done]] = x[done]
                stuck = ~done & ~(slope < 0)  # L_opt must fall with C; a flat or rising row has no solution here
                step = np.clip(-g / np.where(slope < 0, slope, -1.0), -NEWTON_STEP, NEWTON_STEP)
                keep = ~done & ~stuck & np.isfinite(step)
                live, x, target = live[keep], (x + step)[keep], target[keep]
        return out
