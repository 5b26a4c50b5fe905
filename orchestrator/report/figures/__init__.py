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

from pathlib import Path

from matplotlib import rc_context

from orchestrator.report.figures.base import STYLE, Inputs
from orchestrator.report.figures.checks import holdout, residuals
from orchestrator.report.figures.data import curves, isoflop, surface
from orchestrator.report.figures.frontier import frontier, loss_frontier, methods
from orchestrator.report.page import Figure

PAGE_ORDER = (frontier, loss_frontier, methods, isoflop, surface, curves, residuals, holdout)


def draw_all(inputs: Inputs, *, out_dir: Path) -> list[Figure]:
    """Every figure, in page order, written to out_dir/<name>.png (rcParams scoped to this call)."""
    with rc_context(STYLE):
        return [fn(inputs, out_dir=out_dir) for fn in PAGE_ORDER]


__all__ = ["Figure", "Inputs", "draw_all"]
