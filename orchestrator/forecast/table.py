"""Curves from a table of intermediate checkpoints, and each run's forecast final loss.

A row is one checkpoint: `run` (any id), `step` (optimizer steps so far), `loss`, and the run's schedule:
`total_steps`, `peak_lr`, optionally `warmup_steps` (0 means 2% of the run, as our trainers do),
`schedule` (cosine | wsd | linear; linear decay is a WSD whose cooldown is the whole run, linear),
`min_lr_ratio` (0.1), `decay_fraction` (0.2), `cooldown_shape` (1-sqrt | linear), and the run's scale
`n_params`, `tokens` (its planned D). The rate of step k is trainers/schedule.py's `Schedule` at k, in units
of steps, so a table forecast uses exactly the rate our trainers would have used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.forecast.law import Curve, Forecast, SweepFit, fit_sweep, forecast
from trainers.schedule import Schedule

REQUIRED = ("run", "step", "loss", "total_steps", "peak_lr")
DEFAULTS = {"warmup_steps": 0, "schedule": "cosine", "min_lr_ratio": 0.1, "decay_fraction": 0.2,
            "cooldown_shape": "1-sqrt", "n_params": 1.0, "tokens": 1.0}


class TableError(ValueError):
    """A table that cannot be read as checkpoints: one sentence naming the column or run."""


def schedule_lr(*, total_steps: int, peak: float, warmup_steps: int = 0, kind: str = "cosine",
                min_ratio: float = 0.1, decay_fraction: float = 0.2, cooldown_shape: str = "1-sqrt") -> np.ndarray:
    """The rate of steps 1..total_steps (trainers/schedule.py in units of steps; `linear`: linear decay)."""
    if kind == "linear":
        kind, decay_fraction, cooldown_shape = "wsd", 1.0, "linear"
    sched = Schedule.for_trial(peak=peak, total_tokens=int(total_steps), warmup_tokens=int(warmup_steps), kind=kind,
                               min_ratio=min_ratio, decay_fraction=decay_fraction, cooldown_shape=cooldown_shape)
    return np.array([sched(k) for k in range(1, int(total_steps) + 1)])


def read_curves(frame: pd.DataFrame) -> list[Curve]:
    """One `Curve` per run of a checkpoint table (columns: see the module docstring)."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise TableError(f"the checkpoint table lacks column(s) {', '.join(missing)}; it needs "
                         f"{', '.join(REQUIRED)} (optional: {', '.join(DEFAULTS)}).")
    frame = frame.assign(**{k: frame[k] if k in frame.columns else v for k, v in DEFAULTS.items()})
    curves = []
    for run, rows in frame.groupby("run", sort=True):
        rows = rows.sort_values("step")
        first = rows.iloc[0]
        for key in ("total_steps", "peak_lr", "warmup_steps", "schedule", "min_lr_ratio", "decay_fraction",
                    "cooldown_shape"):
            if rows[key].nunique() > 1:
                raise TableError(f"run {run!r} has several values of {key}: one run has one schedule.")
        try:
            lr = schedule_lr(total_steps=int(first.total_steps), peak=float(first.peak_lr),
                             warmup_steps=int(first.warmup_steps), kind=str(first.schedule),
                             min_ratio=float(first.min_lr_ratio), decay_fraction=float(first.decay_fraction),
                             cooldown_shape=str(first.cooldown_shape))
        except ValueError as err:
            raise TableError(f"run {run!r}: {err}") from None
        curves.append(Curve(steps=rows.step.to_numpy(int), loss=rows.loss.to_numpy(float), lr=lr,
                            n_params=float(first.n_params), tokens=float(first.tokens), name=str(run)))
    return curves


@dataclass(frozen=True)
class TableForecast:
    """A run's forecast from the checkpoints it has, beside its measured final loss when it has one.

    `last_step`, `last_loss`: the run's last checkpoint in the table; `seen_step`: the last checkpoint the
    forecast used (a finished run's forecast leaves its final checkpoint out, to check it)."""

    run: str
    forecast: Forecast
    measured: float | None
    last_step: int = 0
    last_loss: float = float("nan")
    seen_step: int = 0


def forecast_table(path: Path | str, *, finished: list[Curve] | None = None) -> list[TableForecast]:
    """Forecast every unfinished run of a checkpoint CSV; the finished runs (and `finished`) form the
    sweep's shared fit. A finished run is forecast too, from all but its last checkpoint, to check it."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise TableError(f"cannot be read as a CSV ({str(err).splitlines()[0]}).") from None
    curves = read_curves(frame)
    done = [c for c in curves if c.final_loss is not None] + list(finished or [])
    sweep: SweepFit = fit_sweep(done)
    out = []
    for curve in curves:
        measured = curve.final_loss
        part = curve if measured is None else Curve(steps=curve.steps[:-1], loss=curve.loss[:-1], lr=curve.lr,
                                                     n_params=curve.n_params, tokens=curve.tokens, name=curve.name)
        if len(part.steps) == 0:
            continue
        out.append(TableForecast(run=curve.name, forecast=forecast(part, sweep), measured=measured,
                                 last_step=int(curve.steps[-1]), last_loss=float(curve.loss[-1]),
                                 seen_step=int(part.steps[-1])))
    return out
