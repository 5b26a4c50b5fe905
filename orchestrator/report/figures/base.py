"""What every figure shares: the input bundle, colours, axis conventions and saving to PNG.

Figures use matplotlib's object API on the Agg canvas (`matplotlib.figure.Figure` + `savefig`), never pyplot,
so drawing leaves no global state behind and needs no display.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, ticker
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure as MplFigure

from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.result import FitResult
from orchestrator.report import derived
from orchestrator.report.text import count

DPI = 110
C_LABEL = "training compute C (FLOPs)"
LOSS_LABEL = "loss (nats/token)"
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8,
         "legend.framealpha": 0.85}


@dataclass(frozen=True)
class Inputs:
    """What every figure may draw from: the fit, the fitted runs, their curves, swept budgets, entropy floors."""

    result: FitResult
    runs: pd.DataFrame
    curves: pd.DataFrame | None
    profiles: list[derived.Profile]
    swept: tuple[float, float]
    floors: dict[str, float]

    @property
    def compute(self) -> ComputeModel:
        """The fit's C = k(N) N D (IsoFLOP lines are drawn with it)."""
        return derived.compute_model(self.result)

    def c_grid(self) -> np.ndarray:
        """Budgets to draw frontiers on: the swept budgets and every target budget, with a margin."""
        budgets = [*self.swept, *self.result.target_budgets]
        return derived.grid(min(budgets) / 1.5, max(budgets) * 1.5)

    def swept_mask(self, C: np.ndarray) -> np.ndarray:
        """Which budgets lie within the swept ones (drawn solid; the rest is extrapolation, drawn dashed)."""
        return (C >= self.swept[0] / 1.01) & (C <= self.swept[1] * 1.01)


def save(fig: MplFigure, out_dir: Path, name: str) -> Path:
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def log_axes(ax: Axes, *, y: bool = True) -> None:
    ax.set_xscale("log")
    if y:
        ax.set_yscale("log")


SUBS = ((1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), (1.0, 2.0, 5.0),
        (1.0, 3.0), (1.0,))
"""Labelled positions within a decade, densest first."""
MAX_LOG_TICKS = 8
"""Most labelled ticks on a log axis: more overlap on a figure's narrow panel (issue 25)."""


def plain_log_axis(axis: Axis, *, fmt=lambda v: f"{v:.4g}", subs: tuple[float, ...] | None = None) -> None:
    """Label a log axis in plain numbers ('30', '3B') instead of matplotlib's '3 x 10^1' minor labels.

    `axis` is ax.xaxis or ax.yaxis; call it once the data are drawn: the tick density follows the axis's span (a
    loss axis often spans less than a decade and needs more than one labelled tick; one spanning ten decades gets
    a label every few decades), at most MAX_LOG_TICKS labels, from `subs` or denser only where they fit.
    """
    lo, hi = sorted(axis.get_view_interval())
    decades = max(np.log10(hi / lo), 0.1) if lo > 0 else 1.0
    fits = [s for s in SUBS if (subs is None or len(s) <= len(subs)) and len(s) * decades <= MAX_LOG_TICKS]
    if fits:
        axis.set_major_locator(ticker.LogLocator(subs=fits[0]))
    else:  # more decades than labels: every k-th decade
        axis.set_major_locator(ticker.LogLocator(subs=(1.0,), numticks=MAX_LOG_TICKS))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: fmt(v)))
    axis.set_minor_formatter(ticker.NullFormatter())


def loss_axis(ax: Axes) -> None:
    """A log loss axis labelled in plain numbers (call after drawing and setting limits)."""
    ax.set_yscale("log")
    plain_log_axis(ax.yaxis)


def count_axis(axis: Axis) -> None:
    """A log parameter or token axis labelled '20M', '1B' (set the log scale first)."""
    plain_log_axis(axis, fmt=count, subs=(1.0, 2.0, 5.0))


def clip_y(ax: Axes, values: list[np.ndarray], *, factor: float = 5.0) -> None:
    """Keep the fitted lines and observations in view; bands far wider than them are cut at the frame."""
    v = np.concatenate([np.ravel(x) for x in values])
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_ylim(v.min() / factor, v.max() * factor)


def swept_span(ax: Axes, swept: tuple[float, float]) -> None:
    ax.axvspan(swept[0], swept[1], color="0.85", alpha=0.6, lw=0, label="swept budgets", zorder=0)


def budget_colours(budgets: list[float]) -> dict[float, tuple[float, float, float, float]]:
    """A viridis colour per budget, smallest darkest (the yellow end is cut: it vanishes on white)."""
    cmap = colormaps["viridis"]
    return {b: cmap(i / max(len(budgets) - 1, 1) * 0.9) for i, b in enumerate(sorted(budgets))}
