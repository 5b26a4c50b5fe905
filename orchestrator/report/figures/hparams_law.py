"""The hparams law's figure: each cell's optimal rate and batch against the fitted lr*(N, D) and B*(D)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure as MplFigure

from orchestrator.fitting.hparams_law import CellOptimum, HParamsLaw
from orchestrator.report.figures.base import STYLE, count_axis, log_axes, save


def hparams_law(law: HParamsLaw, optima: list[CellOptimum], *, out_dir: Path,
                predict: tuple[float, float] | None = None) -> Path:
    """Left: lr* of each cell against D, one colour per size, the law's line per size (and the prediction);
    right: B* against D with the law's line. Open markers: a cell whose optimum is its best run (no vertex)."""
    with rc_context(STYLE):
        fig = MplFigure(figsize=(10.5, 4.2))
        ax_lr, ax_b = fig.subplots(1, 2)
        sizes = sorted({c.N for c in optima})
        colours = {n: c for n, c in zip(sizes, _colours(len(sizes)))}
        D_all = np.array([c.D for c in optima])
        d_hi = max(D_all.max(), predict[1] if predict else 0.0)
        grid = np.geomspace(D_all.min() / 1.3, d_hi * 1.3, 60)
        for n in sizes:
            cells = [c for c in optima if c.N == n]
            for c in cells:
                face = colours[n] if c.how == "vertex" else "none"
                ax_lr.plot(c.D, c.lr_opt, "o", mfc=face, mec=colours[n])
            ax_lr.plot(grid, law.lr(N=n, D=grid), "-", color=colours[n], lw=1, label=f"N={n:.3g}")
        for c in optima:
            ax_b.plot(c.D, c.batch_opt, "o", mfc=colours[c.N] if c.how == "vertex" else "none", mec=colours[c.N])
        ax_b.plot(grid, law.batch(D=grid), "k-", lw=1, label=f"B* = {law.k_B:.3g} D^{law.gamma:.3f}")
        if predict is not None:
            pr = law.predict(N=predict[0], D=predict[1])
            ax_lr.errorbar([pr.D], [pr.lr], yerr=[[pr.lr - pr.lr_ci.lo], [pr.lr_ci.hi - pr.lr]], fmt="*",
                           color="crimson", ms=10, label=f"predicted at N={pr.N:.3g}")
            ax_b.errorbar([pr.D], [pr.batch], yerr=[[pr.batch - pr.batch_ci.lo], [pr.batch_ci.hi - pr.batch]],
                          fmt="*", color="crimson", ms=10, label=f"predicted at D={pr.D:.3g}")
        for ax, label in ((ax_lr, "optimal learning rate lr*"), (ax_b, "optimal batch B*")):
            log_axes(ax)
            count_axis(ax.xaxis)
            ax.set_xlabel("training tokens D")
            ax.set_ylabel(label)
            ax.legend(loc="best")
        ax_lr.set_title("lr*(N, D): cells (filled: quadratic vertex) and the law")
        ax_b.set_title("B*(D)")
        path = save(fig, out_dir, "hparams_law")
    return path


def _colours(n: int):
    from matplotlib import colormaps  # noqa: PLC0415

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1) * 0.9) for i in range(n)]
