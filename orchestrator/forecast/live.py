"""The driver's live forecasts and tripwires for running trials (pure: no Ray, no MLflow).

`LiveForecaster.on_report` takes a trial's streamed report; at an evaluation it refits the trial's
forecast of its final eval loss (law.py: the sweep's shared fit, cached, plus the trial's own points),
at most every `min_interval_s` per trial, and returns the metrics to log beside it
(`forecast_final_loss`, `forecast_final_loss_lo`, `forecast_final_loss_hi`) and any tripwire:

- diverged: a non-finite loss, or an eval loss above `diverge_factor` x the trial's best so far (the
  curve, not only the trainer's own train-loss check): the driver stops the trial at once.
- spike / plateau: an eval loss more than `flag_sd` forecast sds above the previous forecast; a spike
  when it rose from the previous evaluation, a plateau when it did not (flagged, the trial goes on).
- undercooled (`on_finish`): a WSD run whose final loss sits far above what its stable phase and the
  sweep's prior predict for its cooldown (law.undercooled).

The rate of each step is trainers/schedule.py's `Schedule`, built from the trial's own trainer section
exactly as trainers/gpt.py builds it, at the tokens after each step.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.forecast.law import (
    MIN_POINTS,
    Curve,
    Forecast,
    ForecastError,
    SweepFit,
    fit_start,
    fit_sweep,
    forecast,
    undercooled,
)
from trainers.schedule import Schedule

REFIT_SWEEP_S = 10.0
"""The shared fit is refitted at most this often (at once while it has under FEW_CURVES curves), and only when a
curve has finished since."""
FEW_CURVES = 10
MIN_CURVES = 3
"""Finished curves the sweep fit needs before a running trial gets forecasts: the fewest whose held-out forecasts
calibrate the interval (law.calibrate_scale)."""
MAX_REL_SD = 0.1
"""A forecast whose sd exceeds this share of its value (a 90% interval wider than +-16%) says nothing a sweep can act
on (early in a run, before the sweep has finished curves to lean on, the law's extrapolation spans nats): it is
neither logged nor shown nor used (the panel shows the trial's forecasts once they are informative)."""


@dataclass(frozen=True)
class Trip:
    """A tripwire that fired: `kind` (diverged | spike | plateau | undercooled), at `step`, why."""

    kind: str
    step: int
    reason: str

    @property
    def stops(self) -> bool:
        return self.kind == "diverged"


def _law_points(curve: Curve) -> int:
    """The curve's points the law describes (from law.fit_start on)."""
    return int(np.sum(curve.steps >= fit_start(curve)))


def informative(f: Forecast) -> bool:
    """A forecast worth logging: finite, a positive value, and its sd at most MAX_REL_SD of it."""
    return math.isfinite(f.loss) and math.isfinite(f.sd) and f.loss > 0 and f.sd <= MAX_REL_SD * f.loss


@dataclass(frozen=True)
class Update:
    """What one report produced: the metrics to log with it and any tripwire."""

    metrics: dict[str, float]
    trip: Trip | None = None
    forecast: Forecast | None = None


def trial_schedule(config: dict[str, Any]) -> tuple[np.ndarray, int] | None:
    """The rate of each optimizer step of a trial, and its tokens per step (None: not our trainer's keys)."""
    found = _step_schedule(config)
    if found is None:
        return None
    sched, per_step, steps = found
    return _rates(sched, per_step, steps), per_step


def _rates(sched: Schedule, per_step: int, steps: int) -> np.ndarray:
    total = sched.total_tokens
    return np.array([sched(min(k * per_step, total)) for k in range(1, steps + 1)])


def _step_schedule(config: dict[str, Any]) -> tuple[Schedule, int, int] | None:
    """A trial's schedule, tokens per step and optimizer steps (None: not our trainer's keys)."""
    try:
        opt, seq_len, total = config["trainer"], int(config["model"]["seq_len"]), int(config["tokens"])
        per_step = max(int(opt["batch_tokens"]) // seq_len, 1) * seq_len
        sched = Schedule.for_trial(peak=float(opt["lr"]), total_tokens=total, warmup_tokens=int(opt["warmup_tokens"]),
                                   kind=str(opt["schedule"]), min_ratio=float(opt["min_lr_ratio"]),
                                   decay_fraction=float(opt["decay_fraction"]),
                                   cooldown_shape=str(opt.get("cooldown_shape", "1-sqrt")))
    except (KeyError, TypeError, ValueError):
        return None
    return sched, per_step, math.ceil(total / per_step)


@dataclass
class _Track:
    schedule: Schedule
    per_step: int
    n_steps: int
    n_params: float
    tokens: float
    name: str
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    best: float = math.inf
    last: Forecast | None = None
    fitted_at: float = -math.inf

    @functools.cached_property
    def lr(self) -> np.ndarray:
        """The rate of each step, built when the first forecast needs it (most short trials finish before)."""
        return _rates(self.schedule, self.per_step, self.n_steps)

    def curve(self) -> Curve:
        return Curve(steps=np.array(self.steps, int), loss=np.array(self.loss, float), lr=self.lr,
                     n_params=self.n_params, tokens=self.tokens, name=self.name)


class LiveForecaster:
    """Per-trial forecasts from streamed reports, with a cached shared fit over the finished curves."""

    def __init__(self, *, min_interval_s: float = 2.0, diverge_factor: float = 2.0, flag_sd: float = 4.0,
                 clock=time.monotonic) -> None:
        self.min_interval_s, self.diverge_factor = min_interval_s, diverge_factor
        self.flag_sd, self.clock = flag_sd, clock
        self.tracks: dict[Any, _Track] = {}
        self.finished: list[Curve] = []
        self._sweep: SweepFit | None = None
        self._sweep_at, self._stale = -math.inf, True
        self.flags: list[tuple[str, Trip]] = []
        """Every tripwire that fired: (trial name, trip)."""

    def start(self, key: Any, *, config: dict[str, Any], n_params: float, name: str) -> bool:
        """Track a trial; False when its trainer's schedule cannot be read (no forecasts for it)."""
        found = _step_schedule(config)
        if found is None:
            return False
        sched, per_step, steps = found
        self.tracks[key] = _Track(schedule=sched, per_step=per_step, n_steps=steps, n_params=n_params,
                                  tokens=float(config["tokens"]), name=name)
        self._per_step = per_step
        return True

    def sweep(self) -> SweepFit:
        now = self.clock()
        # A fit of few curves is cheap (0.02 s at 6) and the first ones matter most: refit it whenever one finishes.
        young = self._sweep is not None and self._sweep.n_curves < FEW_CURVES
        if self._sweep is None or (self._stale and (young or now - self._sweep_at > REFIT_SWEEP_S)):
            self._sweep, self._sweep_at, self._stale = fit_sweep(self.finished), now, False
        return self._sweep

    @property
    def curves_needed(self) -> int:
        """Finished curves still needed before running trials get forecasts (0: forecasts are on)."""
        fitted = self._sweep.n_curves if self._sweep is not None and not self._stale else len(self.finished)
        return max(MIN_CURVES - fitted, 0)

    def latest(self, key: Any) -> Forecast | None:
        track = self.tracks.get(key)
        return None if track is None else track.last

    def on_report(self, key: Any, metrics: dict[str, Any]) -> Update | None:
        track = self.tracks.get(key)
        if track is None:
            return None
        step = int(metrics.get("step", 0))
        for name in ("train_loss", "eval_loss"):
            value = metrics.get(name)
            if value is not None and not math.isfinite(float(value)):
                return self._trip(track, Trip("diverged", step, f"{name} is {value} at step {step}"))
        value = metrics.get("eval_loss")
        if value is None or step < 1 or step > track.n_steps:
            return None
        value = float(value)
        if value > self.diverge_factor * track.best:
            return self._trip(track, Trip("diverged", step, f"eval_loss {value:.4g} at step {step} exceeds "
                                                            f"{self.diverge_factor:g} x its best {track.best:.4g}"))
        trip = None
        last_loss = track.loss[-1] if track.loss else None
        if _law_points(track.curve()) >= MIN_POINTS:  # the curve so far predicts this step: is the point far above?
            try:
                here = forecast(track.curve(), self.sweep(), step=step)
            except (ForecastError, np.linalg.LinAlgError):
                here = None
            if here is not None and value > here.hi + self.flag_sd * here.sd:
                kind = "spike" if last_loss is not None and value > last_loss else "plateau"
                trip = Trip(kind, step, f"eval_loss {value:.4f} at step {step} is {(value - here.loss) / here.sd:.1f} "
                                        f"sd above its forecast {here.loss:.4f}")
                self.flags.append((track.name, trip))
        track.steps.append(step)
        track.loss.append(value)
        track.best = min(track.best, value)
        now = self.clock()
        if now - track.fitted_at < self.min_interval_s and step < track.n_steps:
            return Update(metrics={}, trip=trip)
        curve = track.curve()
        # Points in the warmup and just after it are not the law's (law.fit_start): a curve without MIN_POINTS
        # past them is too young to extrapolate from.
        if _law_points(curve) < MIN_POINTS:
            return Update(metrics={}, trip=trip)
        # Before the sweep has finished curves to set the priors and calibrate the interval on (held out one at a
        # time), a forecast is the curve's own extrapolation, or leans on a prior of two curves: on the GPT trainer's
        # first trials 10-20% low, and its interval missed (docs/forecasts.md). None is made before MIN_CURVES.
        if self.sweep().n_curves < MIN_CURVES:
            return Update(metrics={}, trip=trip)
        try:
            f = forecast(curve, self.sweep())
        except (ForecastError, np.linalg.LinAlgError):
            return Update(metrics={}, trip=trip)
        track.fitted_at = now
        if not informative(f):
            return Update(metrics={}, trip=trip)
        track.last = f
        return Update(metrics={"forecast_final_loss": f.loss, "forecast_final_loss_lo": f.lo,
                               "forecast_final_loss_hi": f.hi}, trip=trip, forecast=f)

    def _trip(self, track: _Track, trip: Trip) -> Update:
        self.flags.append((track.name, trip))
        return Update(metrics={}, trip=trip)

    def on_finish(self, key: Any, *, finished: bool) -> Trip | None:
        """The trial ended: a finished curve joins the shared fit; an undercooled one is flagged."""
        track = self.tracks.pop(key, None)
        if track is None or not finished or not track.steps:
            return None
        curve = track.curve()
        if curve.final_loss is None:
            return None
        trip = None
        excess = undercooled(curve, self.sweep())
        if excess is not None:
            trip = Trip("undercooled", int(curve.steps[-1]),
                        f"final eval_loss {curve.final_loss:.4f} is {excess:.1f} sd "
                        f"above what its schedule's cooldown predicts")
            self.flags.append((track.name, trip))
        self.finished.append(curve)
        self._stale = True
        return trip
