"""Approach 2 of Hoffmann et al. (2022): IsoFLOP profiles.

Per budget C, the final losses of runs of different sizes are fitted by a parabola in x = ln N,
L = c0 + c1 x + c2 x^2, whose vertex x* = -c1 / (2 c2) gives N_opt(C) = e^x* and L_opt(C); D_opt(C) is the
token count at which N_opt costs C under the fit's compute model (C = k(N) N D, fitting/compute.py). Power
laws through the vertices, N_opt = k_N C^a and D_opt = k_D C^b (log-log least squares), give the frontier;
the minima's losses are fitted by L_opt = E + k C^p (a floor, see powerlaw.SaturatingPowerLaw; a plain power
law when fewer than 3 budgets).

Runs that are not exactly on the smooth compute model. Under exact FLOP accounting, runs planned at one budget
sit on discrete shapes whose cost per token departs from the smooth k(N) by a few per cent, and each run's C is
within ~1% of the budget, not on it; under 6ND accounting of an exact-FLOP design the departures are larger.
A run's departure is delta_i = ln(D~_i / D_i), with D~_i = C / (k(N_i) N_i) the tokens the smooth model gives
N_i at the profile's budget C. Left alone, the departures make the profile jagged (loss steps of 0.03-0.06 nats
where the depth changes) and bias the vertex. Each loss is moved to the smooth model to first order,
L~_i = L_i + gamma delta_i with gamma = dL/d ln D at the profile, and by the envelope theorem
dL_opt/d ln C = dL/d ln D (at fixed N, ln D moves one for one with ln C), so gamma is the slope of the minima's
loss law at that budget, a quantity this method estimates itself (iterated three times from gamma = 0). With
one usable budget there is no slope and no correction (a warning says so when departures are material).

Known bias (Besiroglu et al. 2024; Open-Athena scaling-law-analysis QC flags): a parabola is only a local
approximation, so wide or off-centre size grids shift the vertex. Each profile is therefore checked:
- edge: the vertex is not bracketed by at least 2 sampled sizes on each side (a vertex outside the sampled
  sizes is an extrapolation: that profile is skipped, with the reason recorded);
- weak curvature: from its vertex to the farthest sampled size the parabola rises less than 3 residual
  standard deviations or less than 0.1% of L_opt, so the vertex is poorly determined.
Both produce warnings; a profile whose parabola opens downward (c2 <= 0) has no minimum and is skipped. The
bootstrap (bootstrap.py) applies the same rules to every resample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.powerlaw import (PowerLaw, PowerLawFrontier, SaturatingPowerLaw, fit_power_law,
                                           fit_saturating, power_law_batch)

MIN_SIZES = 3  # a parabola needs 3 distinct sizes
MIN_BUDGETS = 2  # a power law through the vertices needs 2 budgets
CORRECTION_ROUNDS = 3
MATERIAL_DEPARTURE = 0.01  # ln units: departures above 1% in D are worth correcting (or a warning)


@dataclass(frozen=True)
class IsoProfile:
    """One budget's parabola in ln N: vertex N_opt, D_opt (costing the budget), L_opt; `coef` (c0, c1, c2) with
    c2 the curvature per (ln N)^2; `gamma` the dL/d ln D used to move its runs onto the smooth compute model
    and `max_departure` their largest |delta| (ln units)."""

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
    coef: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gamma: float = 0.0
    max_departure: float = 0.0

    def parabola(self, N: np.ndarray) -> np.ndarray:
        """The fitted L(N) = c0 + c1 ln N + c2 (ln N)^2 along this budget."""
        return parabola(self.coef, N)

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
    """Approach 2 frontier: N_opt = n_law(C) = k_N C^a, D_opt = C / (k(N_opt) N_opt), L_opt = loss_law(C)."""

    profiles: tuple[IsoProfile, ...]
    skipped: tuple[tuple[float, str], ...]
    n_law: PowerLaw
    d_law: PowerLaw
    loss_law: SaturatingPowerLaw | PowerLaw
    notes: tuple[str, ...] = ()

    @property
    def warnings(self) -> list[str]:
        out = [w for p in self.profiles for w in p.warnings()]
        out += [f"budget {c:.3g} skipped: {reason}" for c, reason in self.skipped]
        if len(self.profiles) < 3:
            out.append(f"only {len(self.profiles)} usable budgets: the exponents rest on {len(self.profiles)} points")
        return out + list(self.notes)

    def gammas(self) -> dict[float, float]:
        return {p.budget: p.gamma for p in self.profiles}


def parabola(coef: tuple[float, float, float], N: np.ndarray) -> np.ndarray:
    """L = c0 + c1 ln N + c2 (ln N)^2."""
    x = np.log(N)
    return coef[0] + coef[1] * x + coef[2] * x * x


def fit_parabola(x: np.ndarray, y: np.ndarray, *, w: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Least-squares coefficients (c0, c1, c2) of y = c0 + c1 x + c2 x^2 and the residual standard deviation."""
    w = np.ones_like(x) if w is None else w
    X = np.stack([np.ones_like(x), x, x * x], axis=1)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    dof = max(len(x) - 3, 1)
    sigma = float(np.sqrt(np.sum(w * (y - X @ coef) ** 2) / dof)) if len(x) > 3 else 0.0
    return coef, sigma


def departures(N: np.ndarray, D: np.ndarray, *, budget: float, compute: ComputeModel) -> np.ndarray:
    """delta_i = ln(D~_i / D_i): how many fewer tokens (in ln units) each run trained than the smooth compute
    model gives its size at the profile's budget (positive: it trained fewer)."""
    return np.log(compute.tokens(budget, N)) - np.log(D)


def fit_profile(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, budget: float, compute: ComputeModel,
                gamma: float = 0.0) -> IsoProfile:
    """The parabola in ln N of one budget's (corrected) losses; raises FitInputError when it has no minimum."""
    n_sizes = len(np.unique(np.round(np.log(N), 9)))
    if n_sizes < MIN_SIZES:
        raise FitInputError(f"needs at least {MIN_SIZES} runs of distinct size, has {n_sizes}")
    delta = departures(N, D, budget=budget, compute=compute)
    xN = np.log(N)
    (c0, c1, c2), sigma = fit_parabola(xN, L + gamma * delta)
    if c2 <= 0:
        raise FitInputError("the parabola opens downward (no loss minimum inside this profile)")
    x_opt = -c1 / (2 * c2)
    if not xN.min() <= x_opt <= xN.max():
        raise FitInputError(f"the loss minimum (N={np.exp(x_opt):.3g}) lies outside the sampled sizes "
                            f"[{N.min():.3g}, {N.max():.3g}]: an extrapolated vertex, not used")
    L_opt = c0 + c1 * x_opt + c2 * x_opt ** 2
    below, above = np.sum(np.unique(xN) < x_opt), np.sum(np.unique(xN) > x_opt)
    half_span = max(x_opt - xN.min(), xN.max() - x_opt)
    rise = c2 * half_span ** 2
    N_opt = float(np.exp(x_opt))
    return IsoProfile(budget=float(budget), n_runs=len(N), N_opt=N_opt, D_opt=float(compute.tokens(budget, N_opt)),
                      L_opt=float(L_opt), curvature=float(c2), N_min=float(N.min()), N_max=float(N.max()),
                      edge=bool(below < 2 or above < 2), weak=bool(rise < max(3 * sigma, 1e-3 * L_opt)),
                      coef=(float(c0), float(c1), float(c2)), gamma=float(gamma),
                      max_departure=float(np.abs(delta).max()))


def fit_isoflop(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, budget: np.ndarray,
                compute: ComputeModel) -> IsoFLOPFit:
    """Approach 2 on runs labelled by budget (NaN: on no profile); see the module docstring."""
    N, D, L, budget = (np.asarray(v, dtype=float) for v in (N, D, L, budget))
    budgets = np.unique(budget[np.isfinite(budget)])
    gammas = np.zeros(len(budgets))
    notes: list[str] = []
    for round_ in range(CORRECTION_ROUNDS + 1):
        profiles, skipped = [], []
        for C, gamma in zip(budgets, gammas):
            m = budget == C
            try:
                profiles.append(fit_profile(N[m], D[m], L[m], budget=C, compute=compute, gamma=gamma))
            except FitInputError as err:
                skipped.append((float(C), str(err)))
        if round_ == CORRECTION_ROUNDS or len(profiles) < MIN_BUDGETS:
            break
        if max(p.max_departure for p in profiles) < 1e-9:
            break  # every run sits on the compute model (a 6ND design under 6ND): nothing to correct
        law = loss_law(np.array([p.budget for p in profiles]), np.array([p.L_opt for p in profiles]))
        gammas = loss_slope(law, budgets)
    if len(profiles) < MIN_BUDGETS:
        detail = "; ".join(f"budget {c:.3g}: {r}" for c, r in skipped)
        raise FitInputError(f"IsoFLOP profiles need at least {MIN_BUDGETS} budgets with a loss minimum, found "
                            f"{len(profiles)}" + (f" ({detail})" if detail else "") + ".")
    C = np.array([p.budget for p in profiles])
    worst = max(p.max_departure for p in profiles)
    if worst > MATERIAL_DEPARTURE:
        notes.append(f"runs depart from the smooth compute model by up to {100 * np.expm1(worst):.1f}% in tokens "
                     f"({compute.convention} FLOPs); their losses were moved onto it with dL/dlnD from the "
                     "minima's loss law (see fitting/isoflop.py)")
    return IsoFLOPFit(profiles=tuple(profiles), skipped=tuple(skipped),
                      n_law=fit_power_law(C, np.array([p.N_opt for p in profiles]), what="N_opt(C)"),
                      d_law=fit_power_law(C, np.array([p.D_opt for p in profiles]), what="D_opt(C)"),
                      loss_law=loss_law(C, np.array([p.L_opt for p in profiles])), notes=tuple(notes))


def loss_law(C: np.ndarray, L: np.ndarray) -> SaturatingPowerLaw | PowerLaw:
    """L_opt(C) = E + k C^p through >= 3 points, else a plain power law through 2."""
    if len(np.unique(C)) >= 3:
        return fit_saturating(C, L, what="L_opt(C)")
    return fit_power_law(C, L, what="L_opt(C)")


def loss_slope(law: SaturatingPowerLaw | PowerLaw, C: np.ndarray) -> np.ndarray:
    """dL_opt / d ln C of a loss law at the budgets C."""
    C = np.asarray(C, dtype=float)
    if isinstance(law, SaturatingPowerLaw):
        return law.p * law.k * (C / law.x_ref) ** law.p
    return law.p * law(C)


def isoflop_resamples(N: np.ndarray, D: np.ndarray, L: np.ndarray, *, budget: np.ndarray, budgets: np.ndarray,
                      weights: np.ndarray, compute: ComputeModel, gammas: np.ndarray) -> dict[str, np.ndarray]:
    """Approach 2 on every resample at once (weights (R, n) multiplicities), over the given budgets, with the
    point fit's corrections `gammas` (one per budget) and its rules: a budget's vertex counts only when the
    resample's parabola opens upward through at least 3 distinct sizes and its vertex lies inside the sizes
    the resample holds; a resample with fewer than 2 such budgets is not fitted (NaN).

    Returns log k and exponent of N_opt(C) and D_opt(C), each (R,) (keys n_logk, a, d_logk, b), and the
    vertices' budgets and losses (keys C, L: (R, budgets)) for the loss law.
    """
    R = weights.shape[0]
    vert = {k: np.full((R, len(budgets)), np.nan) for k in ("N", "D", "L")}
    for j, (C, gamma) in enumerate(zip(budgets, gammas)):
        m = budget == C
        W = weights[:, m]  # (R, n_b)
        x = np.log(N[m])
        y = L[m] + gamma * departures(N[m], D[m], budget=C, compute=compute)
        X = np.stack([np.ones_like(x), x, x * x], axis=1)  # (n_b, 3)
        G = (W @ (X[:, :, None] * X[:, None, :]).reshape(-1, 9)).reshape(-1, 3, 3)  # sum_n w x_k x_l
        c = W @ (X * y[:, None])
        present = W > 0
        x_lo = np.where(present, x[None, :], np.inf).min(axis=1)
        x_hi = np.where(present, x[None, :], -np.inf).max(axis=1)
        # At least MIN_SIZES (3) distinct sizes: two extremes and one strictly between them.
        enough = (x_lo < x_hi) & (present & (x[None, :] > x_lo[:, None]) & (x[None, :] < x_hi[:, None])).any(axis=1)
        G[~enough] = np.eye(3)  # too few sizes in this resample: no parabola (masked below)
        coef = np.linalg.solve(G, c[..., None])[..., 0]
        ok = (coef[:, 2] > 0) & enough
        x_opt = -coef[:, 1] / (2 * np.where(ok, coef[:, 2], 1.0))
        ok &= (x_opt >= x_lo) & (x_opt <= x_hi)
        n_opt = np.where(ok, np.exp(np.where(ok, x_opt, 0.0)), np.nan)
        vert["N"][:, j] = n_opt
        vert["D"][:, j] = np.where(ok, compute.tokens(C, np.where(ok, n_opt, 1.0)), np.nan)
        vert["L"][:, j] = np.where(ok, coef[:, 0] + coef[:, 1] * x_opt + coef[:, 2] * x_opt ** 2, np.nan)
    usable = np.isfinite(vert["N"]).sum(axis=1) >= MIN_BUDGETS
    for key in vert:
        vert[key][~usable] = np.nan
    Cs = np.broadcast_to(np.asarray(budgets, dtype=float), (R, len(budgets)))
    out = {"C": Cs, "L": vert["L"]}
    out["n_logk"], out["a"] = power_law_batch(Cs, vert["N"])
    out["d_logk"], out["b"] = power_law_batch(Cs, vert["D"])
    return out
