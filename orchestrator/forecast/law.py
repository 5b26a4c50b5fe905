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

Joint fit (`fit_sweep`). Every finished curve is fitted by least squares at every alpha of a grid
(`curve_fits`); its own best alpha, its (L0, A, C) at each alpha and its residual sd come from there. The
exponent is *not* one number for the sweep: on Li et al. 2025's runs each curve's best alpha rises with its
peak rate (about 0.4 at 4e-4, 0.55 at 1e-3, 0.7 at 2e-3, 0.95 at 4e-3, across 12M..1B parameters;
docs/forecasts.md), and one shared alpha misses the cooldown by 1-2% at half a run. So alpha, like
(L0, A, C), gets a prior from scale: the curves' best alphas regressed on (log N, log D, log peak lr)
(`AlphaPrior`), and at every alpha of the grid the curves' (L0, A, C) regressed on the same features. A
running trial's forecast averages over the grid (Bayesian model averaging): the weight of alpha is its prior
density times the evidence of the trial's own points under that alpha's Gaussian model, and within each
alpha the posterior is exact. A curve the law cannot describe (residual sd over `OUTLIER_SD` times the
median, such as a run stuck on a plateau that recovered late) is left out of the priors. The interval's
width is calibrated on the finished curves held out one at a time (forecast each from its own first
25/50/75% with priors built without it): the multiplier makes the nominal 90% interval cover 90% of them.

Recalibration (`Recalibration`, stacking on the same held-out forecasts). Those held-out forecasts err
systematically, by an amount that depends on where a run sits in the sweep and how much of it was seen (the
alpha a partial curve picks is not its whole curve's). From `MIN_RECALIBRATION_CURVES` finished curves on, a
forecast of a running trial's final loss rescales the law's forecast drop from where its fit says the run is
now by the measured/forecast drop ratio of its nearest finished curves at the same fraction of their runs;
below that many, the forecast is the law's alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

MOMENTUM = 0.999
"""lam of S2's momentum (Tissue et al. 2024, Sec. 3: 0.999 fits their runs; per optimizer step)."""
ALPHA_GRID = np.round(np.arange(0.05, 1.505, 0.025), 4)
"""Shared exponents searched (Tissue et al. report alpha of about 0.4 to 0.6)."""
DEFAULT_ALPHA = 0.5
OUTLIER_SD = 5.0
"""A finished curve whose own best fit leaves a residual sd above this multiple of the sweep's median is
one the law does not describe; it is kept out of the priors (it would set them alone: its squared residuals
are 1000x the others' on Li et al.'s 1B run at lr 4e-3)."""
Z90 = 1.6448536269514722
"""The standard normal's 95th percentile: a central 90% interval is mean +- Z90 * sd."""
CUTOFFS = (0.25, 0.5, 0.75)
"""Fractions of a finished curve used to calibrate the intervals on held-out curves."""
MIN_POINTS = 2
MIN_RECALIBRATION_CURVES = 8
"""Below this many finished curves with a held-out forecast at a cutoff, forecasts are not recalibrated at
it (`Recalibration`): its neighbours would be a handful of curves and the choice of how many to trust
(leave-one-out over at most half of them) would rest on two or three."""


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


def fit_start(curve: Curve) -> int:
    """The first step the law describes: 2x warmup's end or 10% of the run, whichever is later; before it the
    loss still falls faster than any power law of S1 (Tissue et al. fit after warmup, too). The misfitting
    benchmark's figures depend on this start (README: 1% / 10% / 20% measured side by side)."""
    peak_at = int(np.argmax(curve.lr >= curve.peak * (1 - 1e-9))) + 1
    return max(2 * peak_at, int(0.1 * curve.total_steps))


def fit_points(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """The points the law is fitted on: those from `fit_start` on (all of a short curve with fewer)."""
    keep = curve.steps >= fit_start(curve)
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


@dataclass(frozen=True)
class AlphaPrior:
    """Gaussian prior on a curve's alpha from its scale: mean = features(N, D, peak) @ coef, sd about it."""

    coef: np.ndarray
    features: tuple[str, ...]
    sd: float

    def mean(self, curve: Curve) -> float:
        return float(_features(curve, self.features) @ self.coef)


def _features(curve: Curve, names: tuple[str, ...]) -> np.ndarray:
    values = {"1": 1.0, "log_n": np.log(curve.n_params), "log_d": np.log(curve.tokens), "log_lr": np.log(curve.peak)}
    return np.array([values[n] for n in names])


def _feature_names(curves: list[Curve]) -> tuple[str, ...]:
    """The scale features the curves support: those that vary, about 5 curves per feature."""
    names: list[str] = ["1"]
    for name in ("log_n", "log_lr", "log_d"):
        col = np.array([_features(c, (name,))[0] for c in curves])
        if np.ptp(col) > 1e-9 and len(curves) >= 5 * (len(names) + 1):
            names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class SweepFit:
    """The shared part of the joint fit, from a sweep's finished curves.

    alpha: the sweep's representative exponent (the grid point of least summed residuals); sigma: the pooled
    residual sd of a measured loss about its curve's fit; prior: the (L0, A, C) prior at `alpha` (None: fewer
    than 2 curves); scale: the interval multiplier calibrated on held-out curves (1.0 when uncalibrated).
    With `alpha_prior`, a forecast averages over `grid` (one (L0, A, C) prior per grid point in `priors`).
    """

    alpha: float
    sigma: float
    prior: Prior | None
    scale: float
    n_curves: int
    coefficients: tuple[np.ndarray, ...] = ()
    alpha_prior: AlphaPrior | None = None
    grid: tuple[float, ...] = ()
    priors: tuple[Prior, ...] = ()
    recalibration: Recalibration | None = None
    """The held-out finished curves' correction of a forecast of the final loss (None: uncalibrated, or fewer
    than `MIN_RECALIBRATION_CURVES` finished curves)."""


@dataclass(frozen=True)
class Forecast:
    """One forecast of the loss at `step` (default: the run's last), with a central 90% interval.

    Within one alpha, L = L0 + A S1^-alpha - C S2 with (L0, A, C) ~ N(mean, cov) (posterior given the prior
    and the curve's points), predictive variance g' cov g + sigma^2 (exact for this linear model); over the
    grid of alphas, the mixture's mean and variance; sd = scale * sqrt(variance).
    """

    loss: float
    lo: float
    hi: float
    sd: float
    step: int
    n_points: int
    alpha: float
    """The alpha of largest posterior weight."""
    theta: tuple[float, float, float]
    """Posterior mean (L0, A, C) at `alpha`."""
    at_last: float | None = None
    """The law's own fit at the curve's last measured step, averaged as `loss` is (None: no measured step):
    where the fit says the run is now, so `loss - at_last` is the drop it forecasts is still to come."""

    def covers(self, value: float) -> bool:
        return self.lo <= value <= self.hi


def _lsq(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    theta, *_ = np.linalg.lstsq(x, y, rcond=None)
    r = y - x @ theta
    return theta, float(r @ r)


@dataclass(frozen=True)
class CurveFits:
    """Each curve's least-squares fit at every alpha of `grid`: residual sums `sse` (n_curves, n_grid),
    coefficients `theta` (n_curves, n_grid, 3), points fitted `n` (n_curves,)."""

    grid: np.ndarray
    sse: np.ndarray
    theta: np.ndarray
    n: np.ndarray

    def take(self, idx: list[int] | np.ndarray) -> CurveFits:
        idx = np.asarray(idx, dtype=int)
        return CurveFits(grid=self.grid, sse=self.sse[idx], theta=self.theta[idx], n=self.n[idx])

    @property
    def best(self) -> np.ndarray:
        """Each curve's own best alpha."""
        return self.grid[np.argmin(self.sse, axis=1)]

    @property
    def sd(self) -> np.ndarray:
        """Each curve's residual sd at its own best alpha."""
        return np.sqrt(np.min(self.sse, axis=1) / np.maximum(self.n - 3, 1))


def curve_fits(curves: list[Curve], *, grid: np.ndarray = ALPHA_GRID) -> CurveFits:
    """Fit every curve at every alpha of the grid (least squares on its `fit_points`)."""
    sse = np.zeros((len(curves), len(grid)))
    theta = np.zeros((len(curves), len(grid), 3))
    n = np.zeros(len(curves), dtype=int)
    for i, curve in enumerate(curves):
        steps, loss = fit_points(curve)
        n[i] = len(loss)
        for j, a in enumerate(grid):
            theta[i, j], sse[i, j] = _lsq(design(curve, alpha=a, steps=steps), loss)
    return CurveFits(grid=np.asarray(grid, dtype=float), sse=sse, theta=theta, n=n)


def fit_alpha(curves: list[Curve], *, grid: np.ndarray = ALPHA_GRID) -> tuple[float, np.ndarray]:
    """The alpha minimising the summed squared residuals of every curve's own LSQ fit, and the
    (n_curves, n_grid) table of residual sums."""
    fits = curve_fits(curves, grid=grid)
    return float(grid[int(np.argmin(fits.sse.sum(0)))]), fits.sse


def build_prior(curves: list[Curve], thetas: list[np.ndarray] | np.ndarray) -> Prior | None:
    """Regress (L0, A, C) on scale, with as many features as the curves support (about 5 curves per feature)."""
    if len(curves) < 2:
        return None
    return build_priors(curves, np.asarray(thetas)[:, None, :])[0]


def build_priors(curves: list[Curve], thetas: np.ndarray) -> tuple[Prior, ...]:
    """`build_prior` at every alpha of a grid at once: `thetas` is (n_curves, n_grid, 3)."""
    names = _feature_names(curves)
    x = np.array([_features(c, names) for c in curves])
    n, n_grid, _ = thetas.shape
    coef, *_ = np.linalg.lstsq(x, thetas.reshape(n, -1), rcond=None)
    resid = (thetas.reshape(n, -1) - x @ coef).reshape(n, n_grid, 3)
    dof = max(n - len(names), 1)
    cov = np.einsum("ngi,ngj->gij", resid, resid) / dof
    # A prior must not be degenerate: floor each variance at a small share of the coefficient's scale.
    floor = (1e-3 * (np.abs(thetas).mean(0) + 1e-6)) ** 2
    cov = cov + floor[:, :, None] * np.eye(3)[None]
    coef = coef.reshape(len(names), n_grid, 3)
    return tuple(Prior(coef=coef[:, g], features=names, cov=cov[g]) for g in range(n_grid))


def build_alpha_prior(curves: list[Curve], alphas: np.ndarray) -> AlphaPrior | None:
    """Regress each curve's best alpha on scale (the features `build_prior` uses); None below 3 curves."""
    if len(curves) < 3:
        return None
    names = _feature_names(curves)
    x = np.array([_features(c, names) for c in curves])
    coef, *_ = np.linalg.lstsq(x, alphas, rcond=None)
    resid = alphas - x @ coef
    sd = float(np.sqrt(resid @ resid / max(len(curves) - len(names), 1)))
    step = float(ALPHA_GRID[1] - ALPHA_GRID[0])
    return AlphaPrior(coef=coef, features=names, sd=max(sd, step))


def _recalibration_features(curve: Curve) -> np.ndarray:
    """Where a curve sits among the sweep's: (log N, log peak lr, log D, log total steps)."""
    return np.array([np.log(curve.n_params), np.log(curve.peak), np.log(curve.tokens), np.log(curve.total_steps)])


@dataclass(frozen=True)
class Recalibration:
    """The finished curves' measured remaining drop as a multiple of the law's forecast drop, by how much of
    the run the forecast saw: a second-level model learned on the first level's held-out forecasts (stacking,
    Wolpert 1992, "Stacked generalization", Neural Networks 5(2)), local in scale (k nearest neighbours with
    k chosen by leave-one-out, Stone 1977, "Consistent nonparametric regression", Ann. Statist. 5(4); Stone
    1974, "Cross-validatory choice and assessment of statistical predictions", JRSS B 36(2)).

    Why: the law with one alpha does not fit a curve's early part and its end equally, so the alpha a partial
    curve picks is not its whole curve's and the forecast errs *systematically*, by an amount that depends on
    where the run sits in the sweep (on Li et al. 2025's runs: 4000..6000-step runs forecast 1-1.5% low from
    half their steps, 16000-step ones 0.2-0.8% high; docs/forecasts.md). The sweep's finished curves, held out
    in turn and forecast from their own first `CUTOFFS` (`held_out_forecasts`), measure that error where it
    happens. It is expressed as the ratio r = (final - now) / (forecast - now) of the measured drop to the
    final loss over the law's forecast drop, both from `Forecast.at_last` ("now": the law's own fit at the
    last measured step, so an eval's noise does not enter): dimensionless, so it carries across curves of
    different losses and lengths, and it vanishes with the drop still to come (a curve near its end is barely
    moved). A running trial's forecast becomes now + r * (forecast - now). At each cutoff, r there is the
    median of its k nearest finished curves' (standardised `_recalibration_features`: a feature they all
    share counts nothing), placed at those curves' median observed fraction of their runs; at the trial's own
    fraction r is linear between the cutoffs, the first one's below them, and 1 at the run's end. Each
    cutoff's k (1..half the curves) is the one whose leave-one-out median error of the final loss over the
    finished curves is least: a sweep of similar runs picks a few close neighbours, a varied one more. The
    interval is the forecast's sd times |r| combined with the neighbours' spread of r (1.4826 MAD) times the
    forecast drop, then widened by the sweep's multiplier (`scale_from_held_out` measures it on the
    recalibrated held-out forecasts, each without its own curve).

    Degrades to nothing: below `MIN_RECALIBRATION_CURVES` finished curves there is no recalibration (a live
    sweep starts with 0..5 finished curves); only a forecast of the final step is recalibrated (a forecast of
    an intermediate step, the tripwires' check, is the law's own).
    """

    features: np.ndarray
    """(n_curves, 4) the finished curves' `_recalibration_features`."""
    fractions: np.ndarray
    """(n_curves, n_cutoffs) the fraction of its run each held-out forecast saw (nan: none)."""
    ratios: np.ndarray
    """(n_curves, n_cutoffs) measured drop / forecast drop (nan: no forecast)."""
    cutoffs: tuple[float, ...]
    """The fractions the held-out forecasts were made at (`CUTOFFS`)."""
    k: tuple[int, ...]
    """The neighbours to trust at each cutoff (leave-one-out; between cutoffs the estimates are interpolated)."""
    index: np.ndarray
    """(n_curves,) each one's index in the list of curves it was built from (`exclude` names these)."""

    @property
    def n_curves(self) -> int:
        return len(self.features)

    def _scale(self) -> np.ndarray:
        sd = self.features.std(axis=0)
        return np.where(sd > 1e-9, sd, np.inf)  # a feature every curve shares measures no distance

    def _nearest(self, curve: Curve, *, exclude: int | None = None) -> np.ndarray:
        """The finished curves' indices, nearest to `curve` first (`exclude`: one left out)."""
        d = np.sqrt((((self.features - _recalibration_features(curve)) / self._scale()) ** 2).sum(axis=1))
        if exclude is not None:
            d[self.index == exclude] = np.inf
        order = np.argsort(d, kind="stable")
        return order[np.isfinite(d[order])]

    def ratio(self, curve: Curve, fraction: float, *, exclude: int | None = None) -> tuple[float, float]:
        """(r, spread of r) for `curve` after `fraction` of its run; `exclude`: a finished curve's index to
        leave out (its own held-out forecast). At each cutoff, r is the median of its k nearest finished
        curves' ratios there, placed at their median observed fraction; between, linear; 1 at the end."""
        order = self._nearest(curve, exclude=exclude)
        xs, ys, ss = [], [], []
        for c, k in enumerate(self.k):
            near = order[np.isfinite(self.ratios[order, c])][:k]
            if len(near) == 0:
                continue
            value = float(np.median(self.ratios[near, c]))
            xs.append(float(np.median(self.fractions[near, c])))
            ys.append(value)
            ss.append(float(1.4826 * np.median(np.abs(self.ratios[near, c] - value))))
        if not xs:
            return 1.0, 0.0
        xs = list(np.maximum.accumulate(xs))
        return (float(np.interp(fraction, [*xs, 1.0], [*ys, 1.0])), float(np.interp(fraction, [*xs, 1.0], [*ss, 0.0])))

    def apply(self, f: Forecast, curve: Curve, *, exclude: int | None = None) -> Forecast:
        """`f`, a forecast of `curve`'s final loss, recalibrated (unchanged: no measured step yet, or a
        forecast of another step)."""
        if f.at_last is None or len(curve.steps) == 0 or f.step != curve.total_steps:
            return f
        r, spread = self.ratio(curve, float(curve.steps[-1]) / curve.total_steps, exclude=exclude)
        drop = f.loss - f.at_last
        value = f.at_last + r * drop
        sd = float(np.hypot(r * f.sd, spread * drop))
        return Forecast(loss=value, lo=value - Z90 * sd, hi=value + Z90 * sd, sd=sd, step=f.step,
                        n_points=f.n_points, alpha=f.alpha, theta=f.theta, at_last=f.at_last)


def build_recalibration(curves: list[Curve], rows: list[tuple[int, float, Forecast]], *,
                        cutoffs: tuple[float, ...] = CUTOFFS) -> Recalibration | None:
    """The `Recalibration` from finished curves' held-out forecasts (`held_out_forecasts`' rows: curve index,
    cutoff, forecast at scale 1); None below `MIN_RECALIBRATION_CURVES` curves with a usable forecast."""
    n = len(curves)
    fractions = np.full((n, len(cutoffs)), np.nan)
    ratios = np.full((n, len(cutoffs)), np.nan)
    weights = np.full((n, len(cutoffs)), np.nan)  # |forecast drop| / final loss: r's error in relative loss
    for i, cut, f in rows:
        part, truth = curves[i].upto(cut), curves[i].final_loss
        if truth is None or len(part.steps) == 0 or f.at_last is None:
            continue
        drop = f.loss - f.at_last
        if abs(drop) > 1e-12 and np.isfinite(drop):
            c = cutoffs.index(cut)
            fractions[i, c] = float(part.steps[-1]) / curves[i].total_steps
            ratios[i, c] = (truth - f.at_last) / drop
            weights[i, c] = abs(drop) / truth
    use = np.isfinite(ratios).any(axis=1)
    if use.sum() < MIN_RECALIBRATION_CURVES:
        return None
    features = np.array([_recalibration_features(c) for c in curves])
    recal = Recalibration(features=features[use], fractions=fractions[use], ratios=ratios[use], cutoffs=cutoffs,
                          k=(1,) * len(cutoffs), index=np.nonzero(use)[0])
    # k by leave-one-out at each cutoff: each curve's ratio there predicted from its k nearest others (the
    # median of their ratios at that cutoff), the error weighted by its forecast drop: the error of the final loss
    m = recal.n_curves
    d = np.sqrt((((recal.features[:, None] - recal.features[None]) / recal._scale()) ** 2).sum(axis=-1))
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :-1]  # the others, nearest first
    weights = weights[use]
    candidates = np.arange(1, max(m // 2, 1) + 1)
    chosen: dict[int, int] = {}
    for c in range(len(cutoffs)):
        rows_c = np.nonzero(np.isfinite(recal.ratios[:, c]))[0]
        if len(rows_c) == 0:
            continue
        values = recal.ratios[order[rows_c], c]  # (rows, m - 1): the others' ratios there, nearest first
        # a curve without a forecast there is no neighbour: move its nan to the back of each row
        values = np.take_along_axis(values, np.argsort(~np.isfinite(values), axis=1, kind="stable"), axis=1)
        with warnings.catch_warnings():  # a row whose k nearest have no forecast is a nan, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            errors = [float(np.nanmedian(weights[rows_c, c]
                                         * np.abs(recal.ratios[rows_c, c] - np.nanmedian(values[:, :k], axis=1))))
                      for k in candidates]
        errors = [e if np.isfinite(e) else np.inf for e in errors]
        chosen[c] = int(candidates[int(np.argmin(errors))])
    if not chosen:
        return None
    # a cutoff no held-out forecast reached borrows the nearest cutoff's k
    k = tuple(chosen[min(chosen, key=lambda j: (abs(cutoffs[j] - cutoffs[c]), j))] for c in range(len(cutoffs)))
    return Recalibration(features=recal.features, fractions=recal.fractions, ratios=recal.ratios, cutoffs=cutoffs,
                         k=k, index=recal.index)


def sweep_from_fits(curves: list[Curve], fits: CurveFits, *, calibrate: bool = True) -> SweepFit:
    """The joint fit from finished curves whose grid fits are given (`fits.take` them to hold curves out)."""
    sd = fits.sd
    keep = sd <= OUTLIER_SD * float(np.median(sd))
    idx = np.nonzero(keep)[0]
    kept, kfits = [curves[i] for i in idx], fits.take(idx)
    sigma = float(np.median(kfits.sd))
    j = int(np.argmin(kfits.sse.sum(0)))
    alpha = float(fits.grid[j])
    priors = build_priors(kept, kfits.theta) if len(kept) >= 2 else (None,) * len(fits.grid)
    alpha_prior = build_alpha_prior(kept, kfits.best) if len(fits.grid) > 1 else None
    grid = tuple(float(a) for a in fits.grid) if alpha_prior is not None else ()
    fit = SweepFit(alpha=alpha, sigma=sigma, prior=priors[j], scale=1.0, n_curves=len(kept),
                   coefficients=tuple(kfits.theta[:, j]), alpha_prior=alpha_prior, grid=grid,
                   priors=priors if alpha_prior is not None else ())
    if calibrate:
        rows = held_out_forecasts(kept, kfits) if len(kept) >= 3 else []  # fewer: nothing to measure them on
        recal = build_recalibration(kept, rows)
        fit = SweepFit(**{**fit.__dict__, "scale": scale_from_held_out(kept, rows, recal), "recalibration": recal})
    return fit


def _posterior(x: np.ndarray, y: np.ndarray, g: np.ndarray, mu0: np.ndarray, cov0: np.ndarray,
               sigma2: float) -> tuple[float, float, np.ndarray, float]:
    """Bayesian linear regression y = x theta + N(0, sigma2), theta ~ N(mu0, cov0): the predictive mean and
    variance at row g, the posterior mean, and the log evidence of y."""
    prec0 = np.linalg.inv(cov0)
    prec = prec0 + x.T @ x / sigma2
    cov = np.linalg.inv(prec)
    mean = cov @ (prec0 @ mu0 + x.T @ y / sigma2)
    _, logdet0 = np.linalg.slogdet(cov0)
    _, logdet = np.linalg.slogdet(cov)
    evidence = -0.5 * (len(y) * np.log(2 * np.pi * sigma2) + y @ y / sigma2 + mu0 @ prec0 @ mu0
                       - mean @ prec @ mean + logdet0 - logdet)
    return float(g @ mean), float(max(g @ cov @ g, 0.0) + sigma2), mean, float(evidence)


def forecast(curve: Curve, sweep: SweepFit, *, step: int | None = None) -> Forecast:
    """The posterior forecast of `curve`'s loss at `step` (default: its last planned step)."""
    steps, loss = fit_points(curve)
    if len(loss) < MIN_POINTS and sweep.prior is None:
        raise ForecastError(f"curve {curve.name}: {len(loss)} points and no finished curves to lean on.")
    target = curve.total_steps if step is None else step
    now = int(curve.steps[-1]) if len(curve.steps) else None
    sigma2 = max(sweep.sigma, 1e-6) ** 2
    if sweep.alpha_prior is not None and sweep.priors:
        alphas = np.array(sweep.grid)
        s1, s2 = _areas_cached(curve)
        rows = np.concatenate([steps.astype(int), [target if now is None else now, target]]) - 1
        # design rows [1, S1^-alpha, -S2] at every alpha: (n_grid, n_points + 2, 3); the last two rows are the
        # last measured step and the target
        xs = np.stack(np.broadcast_arrays(np.ones((len(alphas), len(rows))), s1[rows][None, :] ** -alphas[:, None],
                                          np.broadcast_to(-s2[rows], (len(alphas), len(rows)))), axis=-1)
        x, g_now, g = xs[:, :-2], xs[:, -2], xs[:, -1]
        mu0 = np.stack([p.mean(curve) for p in sweep.priors])
        cov0 = np.stack([p.cov for p in sweep.priors])
        prec0 = np.linalg.inv(cov0)
        prec = prec0 + np.einsum("gni,gnj->gij", x, x) / sigma2
        cov = np.linalg.inv(prec)
        rhs = np.einsum("gij,gj->gi", prec0, mu0) + np.einsum("gni,n->gi", x, loss) / sigma2
        mean = np.einsum("gij,gj->gi", cov, rhs)
        # log evidence of the points under each alpha (Bayesian linear regression; Bishop 2006, Eq. 3.86)
        evidence = -0.5 * (len(loss) * np.log(2 * np.pi * sigma2) + loss @ loss / sigma2
                           + np.einsum("gi,gij,gj->g", mu0, prec0, mu0) - np.einsum("gi,gij,gj->g", mean, prec, mean)
                           + np.linalg.slogdet(cov0)[1] - np.linalg.slogdet(cov)[1])
        logw = -0.5 * ((alphas - sweep.alpha_prior.mean(curve)) / sweep.alpha_prior.sd) ** 2 + evidence
        w = np.exp(logw - logw.max())
        w /= w.sum()
        means = np.einsum("gi,gi->g", g, mean)
        variances = np.maximum(np.einsum("gi,gij,gj->g", g, cov, g), 0.0) + sigma2
        value = float(w @ means)
        var = float(w @ (variances + means ** 2) - value ** 2)
        best = int(np.argmax(w))
        alpha, theta = float(alphas[best]), mean[best]
        at_last = None if now is None else float(w @ np.einsum("gi,gi->g", g_now, mean))
    else:
        alpha = sweep.alpha
        x = design(curve, alpha=alpha, steps=steps)
        g = design(curve, alpha=alpha, steps=np.array([target]))[0]
        if sweep.prior is not None:
            mu0, cov0 = sweep.prior.mean(curve), sweep.prior.cov
        else:  # no sweep to lean on: a weak prior, C centred on no annealing gain (only its points speak)
            mu0 = np.array([float(np.min(loss)) if len(loss) else 0.0, 0.0, 0.0])
            cov0 = np.diag([10.0, 1e3, 1e3]) ** 2
        value, var, theta, _ = _posterior(x, loss, g, mu0, cov0, sigma2)
        at_last = None if now is None else float(design(curve, alpha=alpha, steps=np.array([now]))[0] @ theta)
    sd = float(np.sqrt(max(var, 0.0)))
    out = Forecast(loss=value, lo=value - Z90 * sd, hi=value + Z90 * sd, sd=sd, step=int(target),
                   n_points=len(loss), alpha=alpha, theta=(float(theta[0]), float(theta[1]), float(theta[2])),
                   at_last=at_last)
    if sweep.recalibration is not None:  # the held-out finished curves' correction (final step only)
        out = sweep.recalibration.apply(out, curve)
    return widen(out, sweep.scale)


def widen(f: Forecast, scale: float) -> Forecast:
    """`f` with its sd (and 90% interval) times `scale`."""
    sd = scale * f.sd
    return Forecast(loss=f.loss, lo=f.loss - Z90 * sd, hi=f.loss + Z90 * sd, sd=sd, step=f.step,
                    n_points=f.n_points, alpha=f.alpha, theta=f.theta, at_last=f.at_last)


def fit_sweep(curves: list[Curve], *, calibrate: bool = True, alpha: float | None = None) -> SweepFit:
    """The exponents' prior, noise, (L0, A, C) priors and calibrated interval multiplier from finished
    curves (`alpha`: one fixed exponent for every curve instead)."""
    usable = [c for c in curves if len(fit_points(c)[1]) >= 3]
    if not usable:
        return SweepFit(alpha=DEFAULT_ALPHA if alpha is None else alpha, sigma=0.01, prior=None, scale=2.0,
                        n_curves=0)
    return sweep_from_fits(usable, curve_fits(usable, grid=ALPHA_GRID if alpha is None else np.array([alpha])),
                           calibrate=calibrate)


def held_out_forecasts(curves: list[Curve], fits: CurveFits, *,
                       cutoffs: tuple[float, ...] = CUTOFFS) -> list[tuple[int, float, Forecast]]:
    """Each finished curve held out in turn: priors from the others, its own first `cutoffs` of points,
    the forecast of its final loss. Returns (curve index, cutoff, forecast) with scale 1."""
    out = []
    for i, curve in enumerate(curves):
        if curve.final_loss is None:
            continue
        others = [j for j in range(len(curves)) if j != i]
        held = sweep_from_fits([curves[j] for j in others], fits.take(others), calibrate=False)
        for cut in cutoffs:
            part = curve.upto(cut)
            if len(part.steps) == 0 or part.final_loss is not None:
                continue
            out.append((i, cut, forecast(part, held)))
    return out


def calibrate_scale(curves: list[Curve], fits: CurveFits) -> float:
    """The multiplier k so that mean +- Z90 * k * sd covers 90% of held-out forecasts (recalibrated as the
    sweep's `Recalibration` would: `scale_from_held_out`)."""
    rows = held_out_forecasts(curves, fits) if len(curves) >= 3 else []
    return scale_from_held_out(curves, rows, build_recalibration(curves, rows))


def scale_from_held_out(curves: list[Curve], rows: list[tuple[int, float, Forecast]],
                        recal: Recalibration | None) -> float:
    """k = q90(|z|) / Z90 over the held-out forecasts `rows` (`held_out_forecasts`), each recalibrated by
    `recal` without its own curve (at least 1; 2 when fewer than 3 curves make the estimate)."""
    if len(curves) < 3:
        return 2.0
    z = []
    for i, cut, f in rows:
        if recal is not None:
            f = recal.apply(f, curves[i].upto(cut), exclude=i)
        z.append(abs(curves[i].final_loss - f.loss) / f.sd)
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
