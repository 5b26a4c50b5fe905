"""Log axes keep their tick labels apart (issue 25: labels overlapped on wide spans): whatever the span, from a
fraction of a decade (a loss axis) to twelve decades (parameters), at most MAX_LOG_TICKS labels, none touching."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from orchestrator.report.figures.base import MAX_LOG_TICKS, count_axis, loss_axis


def visible_labels(fig, axis) -> list:
    fig.canvas.draw()
    lo, hi = sorted(axis.get_view_interval())
    return [t for t in axis.get_major_ticks() if lo <= t.get_loc() <= hi and t.label1.get_text()]


@pytest.mark.parametrize("span", [(2.9, 3.4), (2.0, 40.0), (1e3, 1e6), (1e3, 1e9), (10.0, 1e13)])
def test_log_tick_labels_never_overlap(span):
    fig, (ax_n, ax_loss) = plt.subplots(1, 2, figsize=(6.4, 3.2))  # the report's two-panel size
    ax_n.set_xscale("log")
    ax_n.plot(span, [1, 2])
    ax_n.set_xlim(*span)
    count_axis(ax_n.xaxis)
    ax_loss.plot([1, 2], span)
    ax_loss.set_ylim(*span)
    loss_axis(ax_loss)
    for axis, vertical in ((ax_n.xaxis, False), (ax_loss.yaxis, True)):
        ticks = visible_labels(fig, axis)
        assert 2 <= len(ticks) <= MAX_LOG_TICKS, [t.label1.get_text() for t in ticks]
        boxes = sorted((t.label1.get_window_extent() for t in ticks), key=lambda b: b.y0 if vertical else b.x0)
        for a, b in zip(boxes, boxes[1:]):
            assert (a.y1 <= b.y0) if vertical else (a.x1 <= b.x0), [t.label1.get_text() for t in ticks]
    plt.close(fig)
