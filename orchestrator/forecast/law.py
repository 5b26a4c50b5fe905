"""The loss as a function of the learning-rate schedule: the scaling law with LR annealing, fitted jointly.

Law (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing", arXiv:2408.11029, Eq. 1 and 3):

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)
    S1(s) = sum_{i<=s} eta_i                         forward area: the sum of the rates used so far
    S2(s) = sum_{i<=s} m_i,  m_i = lam * m_{i-1} + (eta_{i-1} - eta_i)     annealing area with momentum

with lam = 0.999 per step (the paper's default). During warmup the rate rises; the paper's S2 counts
annealing only, so a rise contributes nothing (eta_{i-1} - eta_i is taken from the peak onwards).

Why this law rather than the Multi-Power Law (Luo et al. 2025, arXiv:2503.12811): for a fixed alpha it is
*linear* in (L0, A, C), so a trial's fit given the sweep's shared exponent is a closed-form Bayesian linear
regression with an exact Gaussian posterior, whose predictive variance is the interval's delta method with
no linearisation error; it is cheap enough for the driver to refit at every evaluation. It covers every
schedule we train (cosine, WSD with a 1-sqrt or linear cooldown, linear decay, constant) through the lr
sequence alone, and Tissue et al. validate it across all of these (their Sec. 4).

Joint fit (`fit_sweep`): alpha is shared by every finished curve (minimum of the summed squared residuals
over a grid, each curve's (L0, A, C) profiled out by least squares). Each curve's (L0, A, C) is then
regressed on its scale (log N, log D, log peak lr), which gives a running trial a prior on its own
coefficients; its own points update that prior (`forecast`). The interval's width is calibrated on the
finished curves held out one at a time (forecast each from its own first 25/50/75% with a prior built
without it): the multiplier makes the nominal 90% interval cover 90% of those held-out forecasts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MOMENTUM = 0.999
"""lam of S2's momentum (Tissue et al. 2024, Sec. 3: 0.999 fits their runs; per optimizer step)."""
ALPHA_GRID = np.round(np.arange(0.05, 1.505, 0.025), 4)
"""Shared exponents searched (Tissue et al. report alpha of about 0.4 to 0.6)."""
DEFAULT_ALPHA = 0.5
Z90 = 1.6448536269514722
"""The standard normal's 95th percentile: a central 90% interval is mean +- Z90 * sd."""
CUTOFFS = (0.25, 0.5, 0.75)
"""Fractions of a finished curve used to calibrate the intervals on held-out curves."""
MIN_POINTS = 2


class ForecastError(ValueError):
    """The curve or the sweep cannot be fitted (too few points, a rate schedule shorter than the curve)."""


@dataclass(frozen=True)
class Curve:
    """One run's loss curve and its full planned rate schedule.

    `lr[i]` is the rate of optimizer step i + 1; `steps` are the steps after which `loss` was measured.
    """

    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    n_params: float
    tokens: float
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.loss):
            raise ForecastError(f"curve {self.name}: {len(self.steps)} steps but {len(self.loss)} losses.")
        if len(self.steps) and (int(np.max(self.steps)) > len(self.lr) or int(np.min(self.steps)) < 1):
            raise ForecastError(f"curve {self.name}: steps must lie in 1..{len(self.lr)} (the schedule's length).")

    @property
    def total_steps(self) -> int:
        return len(self.lr)

    @property
    def peak(self) -> float:
        return float(np.max(self.lr))

    def upto(self, fraction: float) -> Curve:
        """The curve as seen after `fraction` of its planned steps."""
        keep = self.steps <= fraction * self.total_steps + 1e-9
        return Curve(steps=self.steps[keep], loss=self.loss[keep], lr=self.lr, n_params=self.n_params,
                     tokens=self.tokens, name=self.name)

    @property
    def final_loss(self) -> float | None:
        """The measured loss at the last planned step (None: not reached)."""
        done = self.steps == self.total_steps
        return float(self.loss[done][-1]) if done.any() else None


def areas(lr: np.ndarray, *, momentum: float = MOMENTUM) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after each step (Tissue et al. 2024, Eq. 3), arrays of len(lr)."""
    lr = np.asarray(lr, dtype=float)
    s1 = np.cumsum(lr)
    # Annealing only: the drop of each step below the running peak (a warmup's rise counts nothing).
    ref = np.maximum.accumulate(lr)
    prev = np.concatenate([[ref[0]], np.minimum(lr[:-1], ref[:-1])])
    drop = np.where(lr < ref, prev - lr, 0.0)
    drop = np.maximum(drop, 0.0)
    m = np.empty_like(lr)
    acc = 0.0
    for i, d in enumerate(drop):  # m_i = lam m_{i-1} + drop_i; a linear recurrence (lfilter-free for clarity)
        acc = momentum * acc + d
        m[i] = acc
    return s1, np.cumsum(m)


def design(curve: Curve, *, alpha: float, steps: np.ndarray | None = None) -> np.ndarray:
    """Rows [1, S1^-alpha, -S2] at `steps` (default: the curve's measured steps): L = row . (L0, A, C)."""
    s1, s2 = _areas_cached(curve)
    idx = (curve.steps if steps is None else np.asarray(steps)).astype(int) - 1
    return np.column_stack([np.ones(len(idx)), s1[idx] ** -alpha, -s2[idx]])


_AREAS: dict[int, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = {}


def _areas_cached(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    hit = _AREAS.get(id(curve.lr))
    if hit is not None and hit[0] is curve.lr:
        return hit[1]
    value = areas(curve.lr)
    if len(_AREAS) > 4096:
        _AREAS.clear()
    _AREAS[id(curve.lr)] = (curve.lr, value)
    return value


def fit_points(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """The points the law is fitted on: from 2x warmup's end or 10% of the run, whichever is later; before
    it the loss still falls faster than any power law of S1 (Tissue et al. fit after warmup, too). The
    misfitting benchmark's figures depend on this start (README: 1% / 10% / 20% measured side by side)."""
    peak_at = int(np.argmax(curve.lr >= curve.peak * (1 - 1e-9))) + 1
    start = max(2 * peak_at, int(0.1 * curve.total_steps))
    keep = curve.steps >= start
    if keep.sum() < MIN_POINTS:  # a short curve: keep what there is
        keep = np.ones(len(curve.steps), bool)
    return curve.steps[keep], curve.loss[keep]


@dataclass(frozen=True)
class Prior:
    """Gaussian prior on a curve's (L0, A, C) from its scale: mean = features(N, D, peak) @ coef."""

    coef: np.ndarray
    """(n_features, 3)."""
    features: tuple[str, ...]
    cov: np.ndarray
    """(3, 3) residual covariance of the finished curves' coefficients about the regression."""

    def mean(self, curve: Curve) -> np.ndarray:
        return _features(curve, self.features) @ self.coef


def _features(curve: Curve, names: tuple[str, ...]) -> np.ndarray:
    values = {"1": 1.0, "log_n": np.log(curve.n_params), "log_d": np.log(curve.tokens), "log_lr": np.log(curve.peak)}
    return np.array([values[n] for n in names])


@dataclass(frozen=True)
class SweepFit:
    """The shared part of the joint fit, from a sweep's finished curves.

    alpha: the exponent of S1 shared by all curves; sigma: the pooled residual sd of a measured loss about
    its curve's fit; prior: the (L0, A, C) prior from scale (None: fewer than 2 curves); scale: the interval
    multiplier calibrated on held-out curves (1.0 when uncalibrated).
    """

    alpha: float
    sigma: float
    prior: Prior | None
    scale: float
    n_curves: int
    coefficients: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Forecast:
    """One forecast of the loss at `step` (default: the run's last), with a central 90% interval.

    L = L0 + A S1^-alpha - C S2 with (L0, A, C) ~ N(mean, cov) (posterior given the prior and the curve's
    points); sd = scale * sqrt(g' cov g + sigma^2) (delta method, exact for this linear model).
    """

    loss: float
    lo: float
    hi: float
    sd: float
    step: int
    n_points: int
    alpha: float
    theta: tuple[float, float, float]
    """Posterior mean (L0, A, C)."""

    def covers(self, value: float) -> bool:
        return self.lo <= value <= self.hi


def _lsq(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    theta, *_ = np.linalg.lstsq(x, y, rcond=None)
    r = y - x @ theta
    return theta, float(r @ r)


def fit_alpha(curves: list[Curve], *, grid: np.ndarray = ALPHA_GRID) -> tuple[float, np.ndarray]:
    """The shared alpha minimising the summed squared residuals of every curve's own LSQ fit.

    Returns alpha and the (n_curves, n_grid) table of residual sums (for leave-one-out refits)."""
    table = np.zeros((len(curves), len(grid)))
    for i, curve in enumerate(curves):
        steps, loss = fit_points(curve)
        sub = Curve(steps=steps, loss=loss, lr=curve.lr, n_params=curve.n_params, tokens=curve.tokens)
        for j, a in enumerate(grid):
            table[i, j] = _lsq(design(sub, alpha=a), loss)[1]
    return float(grid[int(np.argmin(table.sum(0)))]), table


def _coefficients(curves: list[Curve], alpha: float) -> tuple[list[np.ndarray], float]:
    """Each curve's LSQ (L0, A, C) at `alpha`, and the median of the curves' residual sds (robust to the
    few curves the law fits badly, such as a run that recovered from an instability)."""
    thetas, sds = [], []
    for curve in curves:
        steps, loss = fit_points(curve)
        theta, r = _lsq(design(curve, alpha=alpha, steps=steps), loss)
        thetas.append(theta)
        if len(loss) > 3:
            sds.append(np.sqrt(r / (len(loss) - 3)))
    return thetas, float(np.median(sds)) if sds else 0.01


def build_prior(curves: list[Curve], thetas: list[np.ndarray]) -> Prior | None:
    """Regress (L0, A, C) on scale, with as many features as the curves support (about 5 curves per feature)."""
    if len(curves) < 2:
        return None
    candidates = ["1", "log_n", "log_lr", "log_d"]
    names: list[str] = ["1"]
    for name in candidates[1:]:
        col = np.array([_features(c, (name,))[0] for c in curves])
        if np.ptp(col) > 1e-9 and len(curves) >= 5 * (len(names) + 1):
            names.append(name)
    x = np.array([_features(c, tuple(names)) for c in curves])
    y = np.array(thetas)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    dof = max(len(curves) - len(names), 1)
    cov = resid.T @ resid / dof
    # A prior must not be degenerate: floor each variance at a small share of the coefficient's scale.
    floor = (1e-3 * (np.abs(y).mean(0) + 1e-6)) ** 2
    cov = cov + np.diag(floor)
    return Prior(coef=coef, features=tuple(names), cov=cov)


def forecast(curve: Curve, sweep: SweepFit, *, step: int | None = None) -> Forecast:
    """The posterior forecast of `curve`'s loss at `step` (default: its last planned step)."""
    steps, loss = fit_points(curve)
    if len(loss) < MIN_POINTS and sweep.prior is None:
        raise ForecastError(f"curve {curve.name}: {len(loss)} points and no finished curves to lean on.")
    target = curve.total_steps if step is None else step
    x = design(curve, alpha=sweep.alpha, steps=steps)
    g = design(curve, alpha=sweep.alpha, steps=np.array([target]))[0]
    sigma2 = max(sweep.sigma, 1e-6) ** 2
    if sweep.prior is not None:
        mu0, cov0 = sweep.prior.mean(curve), sweep.prior.cov
    else:  # no sweep to lean on: a weak prior, C centred on no annealing gain (only its points speak)
        mu0 = np.array([float(np.min(loss)) if len(loss) else 0.0, 0.0, 0.0])
        cov0 = np.diag([10.0, 1e3, 1e3]) ** 2
    prec0 = np.linalg.inv(cov0)
    prec = prec0 + x.T @ x / sigma2
    cov = np.linalg.inv(prec)
    mean = cov @ (prec0 @ mu0 + x.T @ loss / sigma2)
    value = float(g @ mean)
    sd = sweep.scale * float(np.sqrt(max(g @ cov @ g, 0.0) + sigma2))
    return Forecast(loss=value, lo=value - Z90 * sd, hi=value + Z90 * sd, sd=sd, step=int(target),
                    n_points=len(loss), alpha=sweep.alpha, theta=(float(mean[0]), float(mean[1]), float(mean[2])))


def fit_sweep(curves: list[Curve], *, calibrate: bool = True, alpha: float | None = None) -> SweepFit:
    """The shared exponent, noise, scale prior and calibrated interval multiplier from finished curves."""
    usable = [c for c in curves if len(fit_points(c)[1]) >= 3]
    if not usable:
        return SweepFit(alpha=DEFAULT_ALPHA if alpha is None else alpha, sigma=0.01, prior=None, scale=2.0,
                        n_curves=0)
    if alpha is None:
        alpha, _ = fit_alpha(usable)
    thetas, sigma = _coefficients(usable, alpha)
    prior = build_prior(usable, thetas)
    scale = calibrate_scale(usable, alpha=alpha, sigma=sigma, thetas=thetas) if calibrate else 1.0
    return SweepFit(alpha=alpha, sigma=sigma, prior=prior, scale=scale, n_curves=len(usable),
                    coefficients=tuple(thetas))


def calibrate_scale(curves: list[Curve], *, alpha: float, sigma: float, thetas: list[np.ndarray]) -> float:
    """The multiplier k so that mean +- Z90 * k * sd covers 90% of held-out forecasts.

    Each finished curve is held out in turn: a prior from the others, its own first 25/50/75% of points,
    the forecast of its measured final loss; k = q90(|z|) / Z90 over all of them (at least 1; 2 when
    fewer than 3 curves make the estimate)."""
    if len(curves) < 3:
        return 2.0
    z = []
    for i, curve in enumerate(curves):
        truth = curve.final_loss
        if truth is None:
            continue
        others = [c for j, c in enumerate(curves) if j != i]
        prior = build_prior(others, [t for j, t in enumerate(thetas) if j != i])
        held = SweepFit(alpha=alpha, sigma=sigma, prior=prior, scale=1.0, n_curves=len(others))
        for cut in CUTOFFS:
            part = curve.upto(cut)
            if len(part.steps) == 0 or part.final_loss is not None:
                continue
            f = forecast(part, held)
            z.append(abs(truth - f.loss) / f.sd)
    if len(z) < 3:
        return 2.0
    return max(float(np.quantile(z, 0.9)) / Z90, 1.0)


def undercooled(curve: Curve, sweep: SweepFit, *, tolerance: float = 3.0) -> float | None:
    """How far (in forecast sd) a finished curve's final loss sits above what its schedule predicts from
    its pre-cooldown points (None: not finished, or nothing before the cooldown to predict from).

    A WSD run's cooldown should deliver the gain C * S2 that its stable phase's fit and the sweep's prior
    predict (Hägele et al. 2024, Sec. 3); a final loss more than `tolerance` sd above it is undercooled."""
    truth = curve.final_loss
    if truth is None:
        return None
    s2 = areas(curve.lr)[1]
    started = np.nonzero(s2 > 0)[0]
    first = int(started[0]) + 1 if len(started) else curve.total_steps
    part = Curve(steps=curve.steps[curve.steps < first], loss=curve.loss[curve.steps < first], lr=curve.lr,
                 n_params=curve.n_params, tokens=curve.tokens, name=curve.name)
    if len(part.steps) < MIN_POINTS:
        return None
    f = forecast(part, sweep)
    excess = (truth - f.loss) / f.sd
    return float(excess) if excess > tolerance else None
