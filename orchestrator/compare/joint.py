"""A joint fit of every compared sweep with one shared irreducible loss E.

    L_s(N, D) = E + A_s / N^alpha_s + B_s / D^beta_s,   s = 1..S sweeps,

fitted by the objective of approach 3 (Hoffmann et al. 2022, eq. 3: Huber on log losses, summed) added over the
sweeps, in the centred coordinates of each sweep's points (fitting/surface.py). E is the entropy of the data
(Hoffmann et al. 2022, sec. 3.3): variants that change the model or the optimizer but not the data share it,
and fitting it once from all runs removes the freedom that lets two separately fitted floors pull the curves
apart far from the data (a variant whose separately fitted E is lower wins every extrapolation).

The 1 + 4 S parameters (log E, then log A_s, log B_s, alpha_s, beta_s per sweep) are found by the fitting stage's
batched damped Newton method (fitting/optim.py) with the exact gradient and Hessian of each sweep's term
(`surface.huber_fgh`), from the separate fits with E set to each sweep's fitted floor, to their minimum and to a
coarse grid (the grid of Hoffmann et al. App. D.2 for e = log E). The bootstrap refits every resample from the
joint optimum, each sweep's runs resampled independently (compare/bootstrap.py); a resample counts when its
Newton decrement falls below the point fit's tolerance (as fitting.surface.fit_surface_resamples does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.compare.fits import SweepFit
from orchestrator.fitting import methods as registry
from orchestrator.compare.frontier import LossFrontier
from orchestrator.fitting.bootstrap import Resampler
from orchestrator.fitting.errors import FitError, FitInputError
from orchestrator.fitting.optim import batched_newton
from orchestrator.fitting.surface import (BOUNDS_LOWER, BOUNDS_UPPER, RESAMPLE_FTOL, SurfacePoints, huber_fgh,
                                          newton_decrement)

_A, _B, _E, _ALPHA, _BETA = range(5)  # fitting/surface.py's parameter order
E_GRID = np.arange(-1.0, 1.01, 0.5)  # Hoffmann et al. App. D.2's starts for e = log E


@dataclass(frozen=True)
class JointFit:
    """The shared E and each sweep's frontier under it; `objective` the summed Huber loss, `converged` whether the
    projected gradient met the fitting stage's tolerance."""

    E: float
    frontiers: tuple[LossFrontier, ...]
    objective: float
    converged: bool


class _Objective:
    """Summed objective of every sweep with e shared: x (S, 1 + 4 K) in centred coordinates."""

    def __init__(self, sweeps: list[SweepFit]) -> None:
        self.points = [SurfacePoints.from_arrays(*s.arrays()) for s in sweeps]
        self.deltas = [s.huber_delta for s in sweeps]
        self.K = len(sweeps)
        self.P = 1 + 4 * self.K
        # Position of (a, b, e, alpha, beta) of sweep k in the joint vector.
        self.maps = [np.array([1 + 4 * k, 2 + 4 * k, 0, 3 + 4 * k, 4 + 4 * k]) for k in range(self.K)]
        self.lower, self.upper = np.empty(self.P), np.empty(self.P)
        for m in self.maps:
            self.lower[m], self.upper[m] = BOUNDS_LOWER, BOUNDS_UPPER

    def split(self, x: np.ndarray, k: int) -> np.ndarray:
        return x[:, self.maps[k]]

    def fgh(self, x: np.ndarray, weights: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        S = len(x)
        f, g, H = np.zeros(S), np.zeros((S, self.P)), np.zeros((S, self.P, self.P))
        for k, (pts, delta, m) in enumerate(zip(self.points, self.deltas, self.maps)):
            fk, gk, Hk = huber_fgh(self.split(x, k), pts, delta=delta, weights=None if weights is None else weights[k])
            f += fk
            g[:, m] += gk
            H[:, m[:, None], m[None, :]] += Hk
        return f, g, H


def fit_joint(sweeps: list[SweepFit]) -> JointFit:
    """The joint fit (module docstring) of sweeps fitted by a parametric surface."""
    if any(s.method not in registry.names(kinds=(registry.Kind.SURFACE,), derived=False) for s in sweeps):
        raise FitInputError("compare.joint_E=true fits the parametric surface of every sweep with one E; use "
                            "compare.method=parametric (or vpnls), not a fixed-floor or IsoFLOP comparison.")
    obj = _Objective(sweeps)
    floors = [float(s.frontier.E[0]) for s in sweeps]
    e_starts = np.unique(np.round(np.r_[np.log(floors), np.log(min(floors)), E_GRID], 12))
    x0 = np.empty((len(e_starts), obj.P))
    for k, (s, pts) in enumerate(zip(sweeps, obj.points)):
        f = s.frontier
        natural = np.array([[np.log(f.A[0]), np.log(f.B[0]), 0.0, f.alpha[0], f.beta[0]]])
        x0[:, obj.maps[k]] = pts.to_centred(natural)
    x0[:, 0] = e_starts
    res = batched_newton(lambda x, idx: obj.fgh(x, None), x0, lower=obj.lower, upper=obj.upper, max_iter=200,
                         gtol=1e-10)
    if not np.isfinite(res.f).any():
        raise FitError("the joint fit with a shared E diverged from every start.")
    best = int(np.nanargmin(np.where(np.isfinite(res.f), res.f, np.inf)))
    return JointFit(E=float(np.exp(res.x[best, 0])), frontiers=_frontiers(obj, res.x[best:best + 1], sweeps),
                    objective=float(res.f[best]), converged=bool(res.converged[best]))


def joint_resamples(sweeps: list[SweepFit], point: JointFit, *, resamplers: list[Resampler]
                    ) -> tuple[tuple[LossFrontier, ...], np.ndarray]:
    """The joint fit on every resample (each sweep's runs resampled by its own resampler): (one frontier per
    sweep with R rows, converged (R,))."""
    obj = _Objective(sweeps)
    weights = [r.weights() for r in resamplers]
    R = len(weights[0])
    start = np.empty(obj.P)
    start[0] = np.log(point.E)
    for k, (f, pts) in enumerate(zip(point.frontiers, obj.points)):
        start[obj.maps[k]] = pts.to_centred(np.array([[np.log(f.A[0]), np.log(f.B[0]), np.log(point.E), f.alpha[0],
                                                       f.beta[0]]]))[0]
    x0 = np.tile(start, (R, 1))
    res = batched_newton(lambda x, idx: obj.fgh(x, [w[idx] for w in weights]), x0, lower=obj.lower,
                         upper=obj.upper, max_iter=80, gtol=1e-9, ftol=RESAMPLE_FTOL)
    f, g, H = obj.fgh(res.x, weights)
    free = ~((res.x <= obj.lower + 1e-9) | (res.x >= obj.upper - 1e-9))
    converged = np.isfinite(f) & (newton_decrement(g, H, free) <= RESAMPLE_FTOL * np.maximum(f, 1e-12))
    return _frontiers(obj, res.x, sweeps), converged


def _frontiers(obj: _Objective, x: np.ndarray, sweeps: list[SweepFit]) -> tuple[LossFrontier, ...]:
    out = []
    for k, (s, pts) in enumerate(zip(sweeps, obj.points)):
        a, b, e, alpha, beta = pts.to_natural(obj.split(x, k)).T
        out.append(LossFrontier.surface(np.exp(e), np.exp(a), np.exp(b), alpha, beta, compute=s.compute))
    return tuple(out)
