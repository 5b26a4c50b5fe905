"""The report's figures as PNG files: the one place matplotlib is imported (this package).

Each figure function takes the `Inputs` bundle (fit.json dict and prepared series, see report/derived.py),
draws one PNG and returns its `Figure` record (title and caption for the pages). A figure the input cannot
support (no surface fit, no hold-out) comes back with `path=None` and the reason, so the page says what is
missing instead of silently dropping it. User-supplied strings never reach a figure: labels are numbers and
method names (matplotlib would read '$' in a sweep name as mathtext).

Modules: base.py (inputs, colours, axis helpers), frontier.py (the answer), data.py (what the fit saw),
checks.py (residuals, hold-out).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from matplotlib import rc_context

from orchestrator.report.figures.base import STYLE, Inputs
from orchestrator.report.figures.checks import holdout, residuals
from orchestrator.report.figures.data import curves, isoflop, surface
from orchestrator.report.figures.frontier import frontier, loss_frontier, methods
from orchestrator.report.page import Figure

PAGE_ORDER = (frontier, loss_frontier, methods, isoflop, surface, curves, residuals, holdout)
NAMES = {"frontier": ("frontier", "Compute-optimal frontier"),
         "loss_frontier": ("loss", "Compute-optimal loss, the loss floor, and tokens per parameter"),
         "methods": ("methods", "Methods side by side: allocation exponents"),
         "isoflop": ("isoflop", "IsoFLOP profiles"), "surface": ("surface", "Fitted loss surface L(N, D)"),
         "curves": ("curves", "Training curves and their envelope"),
         "residuals": ("residuals", "Residuals of the parametric fit"),
         "holdout": ("holdout", "Leave-largest-budget-out check")}
"""Each figure's file name and title, for the record of a figure that could not be drawn."""


def draw_all(inputs: Inputs, *, out_dir: Path) -> list[Figure]:
    """Every figure, in page order, written to out_dir/<name>.png (rcParams scoped to this call).

    A figure that cannot be drawn from this input (values near the float limit, a degenerate fit with a zero
    exponent or coefficient) comes back missing with the reason, and the other figures and the report are
    still written: the report's job is to show what the fit found, including a fit that found nothing.
    """
    with rc_context(STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib's and numpy's notes on such input: the reason says it
        return [_draw(fn, inputs, out_dir=out_dir) for fn in PAGE_ORDER]


def _draw(fn, inputs: Inputs, *, out_dir: Path) -> Figure:
    with np.errstate(all="ignore"):
        try:
            return fn(inputs, out_dir=out_dir)
        except (ArithmeticError, ValueError) as err:  # numbers a figure cannot hold (LinAlgError is a ValueError);
            # anything else is a bug in the figure and is raised
            name, title = NAMES.get(fn.__name__, (fn.__name__, fn.__name__))
            (out_dir / f"{name}.png").unlink(missing_ok=True)  # never a half-written figure beside the report
            reason = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
            return Figure(name, title, "", missing=f"could not be drawn from this fit ({reason}){_span(inputs)}")


def _span(inputs: Inputs) -> str:
    """The fitted runs' range, when it is what defeats drawing (axes spanning hundreds of decades)."""
    spans = []
    for column in ("N", "D", "C", "loss"):
        values = inputs.runs[column].to_numpy(float) if column in inputs.runs else np.array([])
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) and np.log10(values.max() / values.min()) > 30:
            spans.append(f"{column} from {values.min():.3g} to {values.max():.3g}")
    return f"; the fitted runs span {', '.join(spans)}" if spans else ""


__all__ = ["Figure", "Inputs", "draw_all"]
