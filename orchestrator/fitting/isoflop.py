"""Approach 2 of Hoffmann et al. (2022): IsoFLOP profiles.

Per budget C, the final losses of runs of different sizes are fitted by a parabola in x = ln N,
L = c0 + c1 x + c2 x^2, whose vertex x* = -c1 / (2 c2) gives N_opt(C) = e^x* and L_opt(C); the same in
ln D gives D_opt(C). Power laws through the vertices, N_opt = k_N C^a and D_opt = k_D C^b (log-log least
squares), give the frontier; the minima's losses are fitted by L_opt = E + k C^p (a floor, see
powerlaw.SaturatingPowerLaw; a plain power law when fewer than 3 budgets).

Known bias (Besiroglu et al. 2024; Open-Athena scaling-law-analysis QC flags): a parabola is only a local
approximation, so wide or off-centre size grids shift the vertex. Each profile is therefore checked:
- edge: the vertex is not bracketed by at least 2 sampled sizes on each side (a vertex outside the sampled
  sizes is an extrapolation: that profile is skipped, with the reason recorded);
- weak curvature: from its vertex to the farthest sampled size the parabola rises less than 3 residual
  standard deviations or less than 0.1% of L_opt, so the vertex is poorly determined.
Both produce warnings; a profile whose parabola opens downward (c2 <= 0) has no minimum and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.powerlaw import PowerLaw, PowerLawFrontier, SaturatingPowerLaw, fit_power_law, fit_saturating, power_law_batch

MIN_SIZES = 3  # a parabola needs 3 distinct sizes
MIN_BUDGETS = 2  # a power law through the vertices needs 2 budgets


@dataclass(frozen=True)
class IsoProfile:
    """One budget's parabola in ln N (and ln D): vertex N_opt, D_opt, L_opt; c2 the curvature per (ln N)^2."""

    budget: float
    n_runs: int
    N_opt: float
    D_opt: float
    L_opt: float
    curvature: float
    N_min: float
    N_max: float
    edge: bool
    weak: bool

    def warnings(self) -> list[str]:
        out = []
        if self.edge:
            out.append(f"budget {self.budget:.3g}: the loss minimum (N={self.N_opt:.3g}) sits at the edge of the "
                       f"sampled sizes [{self.N_min:.3g}, {self.N_max:.3g}]; N_opt is extrapolated and biased")
        if self.weak:
            out.append(f"budget {self.budget:.3g}: weak curvature (c2={self.curvature:.3g} per (ln N)^2); "
                       "the minimum is poorly determined")
        return out


@dataclass(frozen=True)
class IsoFLOPFit(PowerLawFrontier):
    """Approach 2 frontier: N_opt = n_law(C) = k_N C^a, D_opt = d_law(C) = k_D C^b, L_opt = loss_law(C)."""

    profiles: tuple[IsoProfile, ...]
    skipped: tuple[tuple[float, str], ...]
    n_law: PowerLaw
    d_law: PowerLaw
    loss_law: SaturatingPowerLaw | PowerLaw

    @property
    def warnings(self) -> list[str]:
        out = [w for p in self.profiles for w in p.warnings()]
        out += [f"budget {c:.3g} skipped: {reason}" for c, reason in self.skipped]
        if len(self.profiles) < 3:
            out.append(f"only {len(self.profiles)} usable budgets: the exponents rest on {len(self.profiles)} points")
        return out



def fit_parabola(x: np.ndarray, y: np.ndarray, *, w: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Least-squares coefficients (c0, c1, c2) of y = c0 + c1 x + c2 x^2 and the residual standard deviation."""
    w = np.ones_like(x) if w is None else w
    X = np.stack([np.ones_like(x), x, x * x], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    dof = max(len(x) - 3, 1)
    sigma = float(np.sqrt(np.sum(w * (y - X @ coef) ** 2) / dof)) if len(x) > 3 else 0.0
    return coef, sigma


def fit_profile(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, budget: float) -> IsoProfile:
    """Parabolas in ln N and ln D for one budget; raises FitInputError when there is no minimum to find."""
    n_sizes = len(np.unique(np.round(np.log(N), 9)))
    if n_sizes < MIN_SIZES:
        raise FitInputError(f"needs at least {MIN_SIZES} runs of distinct size, has {n_sizes}")
    xN, xD = np.log(N), np.log(D)
    (c0, c1, c2), sigma = fit_parabola(xN, L)
    (d0, d1, d2), _ = fit_parabola(xD, L)
    if c2 <= 0 or d2 <= 0:
        raise FitInputError("the parabola opens downward (no loss minimum inside this profile)")
    x_opt = -c1 / (2 * c2)
    if not xN.min() <= x_opt <= xN.max():
        raise FitInputError(f"the loss minimum (N={np.exp(x_opt):.3g}) lies outside the sampled sizes "
                            f"[{N.min():.3g}, {N.max():.3g}]: an extrapolated vertex, not used")
    L_opt = c0 + c1 * x_opt + c2 * x_opt ** 2
    below, above = np.sum(np.unique(xN) < x_opt), np.sum(np.unique(xN) > x_opt)
    half_span = max(x_opt - xN.min(), xN.max() - x_opt)
    rise = c2 * half_span ** 2
    return IsoProfile(budget=float(budget), n_runs=len(N), N_opt=float(np.exp(x_opt)),
                      D_opt=float(np.exp(-d1 / (2 * d2))), L_opt=float(L_opt), curvature=float(c2),
                      N_min=float(N.min()), N_max=float(N.max()), edge=bool(below < 2 or above < 2),
                      weak=bool(rise < max(3 * sigma, 1e-3 * L_opt)))


def fit_isoflop(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, budget: np.ndarray) -> IsoFLOPFit:
    """Approach 2 on runs labelled by budget (NaN: on no profile); see the module docstring."""
    N, D, L, budget = (np.asarray(v, dtype=float) for v in (N, D, L, budget))
    profiles, skipped = [], []
    for C in np.unique(budget[np.isfinite(budget)]):
        m = budget == C
        try:
            profiles.append(fit_profile(N[m], D[m], L[m], budget=C))
        except FitInputError as err:
            skipped.append((float(C), str(err)))
    if len(profiles) < MIN_BUDGETS:
        detail = "; ".join(f"budget {c:.3g}: {r}" for c, r in skipped)
        raise FitInputError(f"IsoFLOP profiles need at least {MIN_BUDGETS} budgets with a loss minimum, found "
                            f"{len(profiles)}" + (f" ({detail})" if detail else "") + ".")
    C = np.array([p.budget for p in profiles])
    return IsoFLOPFit(profiles=tuple(profiles), skipped=tuple(skipped),
                      n_law=fit_power_law(C, np.array([p.N_opt for p in profiles]), what="N_opt(C)"),
                      d_law=fit_power_law(C, np.array([p.D_opt for p in profiles]), what="D_opt(C)"),
                      loss_law=loss_law(C, np.array([p.L_opt for p in profiles])))


def loss_law(C: np.ndarray, L: np.ndarray) -> SaturatingPowerLaw | PowerLaw:
    """L_opt(C) = E + k C^p through >= 3 points, else a plain power law through 2."""
    if len(np.unique(C)) >= 3:
        return fit_saturating(C, L, what="L_opt(C)")
    return fit_power_law(C, L, what="L_opt(C)")


def isoflop_resamples(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, budget: np.ndarray, budgets: np.ndarray,
                      weights: np.ndarray) -> dict[str, np.ndarray]:
    """Approach 2 on every resample at once (weights (R, n) multiplicities), over the given budgets.

    Returns log k and exponent of N_opt(C) and D_opt(C), each (R,) (keys n_logk, a, d_logk, b), and the
    vertices' budgets and losses (keys C, L: (R, budgets)) for the loss law. A budget whose resample has fewer than 3 distinct sizes or no minimum is dropped from that resample.
    """
    R = weights.shape[0]
    vert = {k: np.full((R, len(budgets)), np.nan) for k in ("N", "D", "L")}
    for j, C in enumerate(budgets):
        m = budget == C
        W = weights[:, m]  # (R, n_b)
        for key, x in (("N", np.log(N[m])), ("D", np.log(D[m]))):
            X = np.stack([np.ones_like(x), x, x * x], axis=1)  # (n_b, 3)
            G = np.einsum("rn,nk,nl->rkl", W, X, X)
            c = np.einsum("rn,nk,n->rk", W, X, L[m])
            sizes = np.stack([W[:, x == v].sum(axis=1) > 0 for v in np.unique(x)], axis=1).sum(axis=1)
            enough = sizes >= MIN_SIZES
            G[~enough] = np.eye(3)  # too few sizes in this resample: no parabola (masked below)
            coef = np.linalg.solve(G, c[..., None])[..., 0]
            ok = (coef[:, 2] > 0) & enough
            x_opt = -coef[:, 1] / (2 * np.where(ok, coef[:, 2], 1.0))
            vert[key][:, j] = np.where(ok, np.exp(x_opt), np.nan)
            if key == "N":
                vert["L"][:, j] = np.where(ok, coef[:, 0] + coef[:, 1] * x_opt + coef[:, 2] * x_opt ** 2, np.nan)
    Cs = np.broadcast_to(np.asarray(budgets, dtype=float), (R, len(budgets)))
    out = {"C": Cs, "L": vert["L"]}
    out["n_logk"], out["a"] = power_law_batch(Cs, vert["N"])
    out["d_logk"], out["b"] = power_law_batch(Cs, vert["D"])
    return out
