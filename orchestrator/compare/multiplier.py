"""The effective compute multiplier of a variant over a baseline, M(C), and what it says at each budget.

Definition: M(C) = C_base(L_var(C)) / C, the compute the baseline needs to reach the variant's compute-optimal
loss at C, divided by C. M = 1.25 means the variant at C is worth 1.25 C of baseline compute. This is the
"effective compute multiplier" by which scaling teams judge an architecture, optimizer or data mix (OLMo-core's
`effective_compute_multiplier`; Marin's speedup gate, marin issue 8096), with L_opt(C) of each sweep from its
fitted law (Hoffmann et al. 2022: L_opt(C) = min over N of L(N, C / (k(N) N)); Kaplan et al. 2020, sec. 6, compare
architectures the same way, by loss against compute).

When the variant's law is the baseline's with compute scaled by a constant, L_var(C) = L_base(k C), M(C) = k at
every budget. When the exponents differ, M depends on C: it is computed at each budget, its trend
d ln M / d ln C is reported with its interval, and no single number is claimed (a ratio of the laws'
coefficients, which OLMo-core returns, is M only when the exponents are equal).

Where M leaves the data, in words (`Row.notes`):
- C outside the variant's swept budgets: L_var(C) extrapolates the variant's law;
- C_base = M C outside the baseline's swept budgets: the baseline's law is extrapolated to find it;
- L_var(C) at or below the baseline's fitted floor E: no baseline compute reaches it, M = inf (printed as
  "unreachable"), a statement about the fitted law, far outside anything measured.

Matched N and matched D (surface fits only): at the variant's compute-optimal allocation (N_v, D_v) at C, the
compute the baseline needs to reach L_var(C) with the same model size (D' tokens: C' = k_b(N_v) N_v D') or with
the same tokens (N' parameters: C' = k_b(N') N' D_v), over C. The compute-optimal path is the cheapest way to a
loss, so M_N >= M and M_D >= M; the gap says how much of the gain needs the variant's own allocation.
"""

from __future__ import annotations

import numpy as np

from orchestrator.compare.frontier import LossFrontier
from orchestrator.report.text import extrapolation, sci

SIGNIFICANT, AHEAD, BEHIND, UNCLEAR = "significant", "variant ahead", "baseline ahead", "not significant"
TREND_TOL = 0.05  # M varying by more than 5% over the budgets compared means "M depends on C"


def multipliers(base: LossFrontier, variant: LossFrontier, x: np.ndarray) -> dict[str, np.ndarray]:
    """ln M and its matched-N / matched-D counterparts at x = ln C (M,), for paired rows of the two frontiers
    (both R rows, or R = 1): arrays (R, M) of log_M, L_base, L_variant, and for two surfaces log_M_N, log_M_D,
    N_variant, D_variant, D_matched (the baseline's tokens at N_variant) and N_matched (its size at D_variant)."""
    x = np.asarray(x, dtype=float)
    both = base.is_surface and variant.is_surface
    Lv, Nv, Dv = variant.allocation(x) if both else (variant.loss(x), None, None)
    out = {"L_base": base.loss(x), "L_variant": Lv, "log_M": base.log_compute_for(Lv, start=x) - x}
    if both:
        E, A, B, alpha, beta = (getattr(base, f)[:, None] for f in ("E", "A", "B", "alpha", "beta"))
        with np.errstate(all="ignore"):
            rest_D = Lv - E - A * Nv ** -alpha  # what B / D^beta must supply at the variant's N
            Dm = np.where(rest_D > 0, (B / rest_D) ** (1 / beta), np.inf)
            rest_N = Lv - E - B * Dv ** -beta
            Nm = np.where(rest_N > 0, (A / rest_N) ** (1 / alpha), np.inf)
            out.update(N_variant=Nv, D_variant=Dv, D_matched=Dm, N_matched=Nm,
                       log_M_N=np.log(base.compute.flops_per_token(Nv) * Dm) - x,
                       log_M_D=np.log(base.compute.flops_per_token(Nm) * Dv) - x)
    return out


def verdict(lo: float, hi: float) -> str:
    """Which sweep the interval of M favours: variant ahead (lo > 1), baseline ahead (hi < 1), or not significant."""
    if np.isfinite(lo) and lo > 1:
        return AHEAD
    if np.isfinite(hi) and hi < 1:
        return BEHIND
    return UNCLEAR


def outside(C: float, swept: tuple[float, float]) -> float:
    """How far C lies outside the swept range (lo, hi): 1 inside it (within 1%), else the factor beyond the nearer
    edge; inf for a C that is infinite or undefined."""
    lo, hi = swept
    if not (np.isfinite(C) and C > 0):
        return float("inf")
    if C > hi * 1.01:
        return float(C / hi)
    if C < lo / 1.01:
        return float(lo / C)
    return 1.0


def notes(*, C: float, M: float, variant_swept: tuple[float, float], base_swept: tuple[float, float],
          below_floor: bool) -> list[str]:
    """Where M(C) leaves the data, in words (module docstring)."""
    out = []
    where_v = extrapolation(C, swept=variant_swept)
    if where_v != "in swept range":
        out.append(f"the variant's law is extrapolated ({where_v} its swept budgets)")
    if below_floor or not np.isfinite(M):
        out.append("the variant's loss here is below the baseline's fitted floor E: no baseline compute reaches it")
    else:
        where_b = extrapolation(M * C, swept=base_swept)
        if where_b != "in swept range":
            out.append(f"the baseline needs {sci(M * C)} FLOPs, {where_b} its swept budgets: its law is extrapolated")
    return out


def trend(x: np.ndarray, log_M: np.ndarray) -> np.ndarray:
    """d ln M / d ln C by least squares over the budgets x (M,) for each row of log_M (R, M): (R,), NaN where a
    row has fewer than 2 finite values."""
    ok = np.isfinite(log_M)
    n = ok.sum(axis=1)
    xs = np.where(ok, x[None, :], 0.0)
    ys = np.where(ok, log_M, 0.0)
    with np.errstate(all="ignore"):
        mx, my = xs.sum(1) / n, ys.sum(1) / n
        dx = np.where(ok, x[None, :] - mx[:, None], 0.0)
        slope = (dx * (ys - my[:, None])).sum(1) / (dx * dx).sum(1)
    return np.where(n >= 2, slope, np.nan)


def crossings(x: np.ndarray, log_M: np.ndarray) -> list[float]:
    """Budgets where the point estimate of M crosses 1 (ln M changes sign), by linear interpolation in ln C, on a
    grid x (G,) with log_M (G,)."""
    out = []
    y = np.asarray(log_M, dtype=float)
    for i in range(len(x) - 1):
        a, b = y[i], y[i + 1]
        if np.isfinite(a) and np.isfinite(b) and a * b < 0:
            out.append(float(np.exp(x[i] + (x[i + 1] - x[i]) * a / (a - b))))
    return out
