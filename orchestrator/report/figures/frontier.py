"""The answer's figures: the frontier N_opt(C), D_opt(C); L_opt(C) with the loss floor and tokens per
parameter; the methods' exponents side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure as MplFigure

from orchestrator.report import derived
from orchestrator.fitting import methods as registry
from orchestrator.report.figures.base import (C_LABEL, LOSS_LABEL, Inputs,
                                              clip_y, log_axes, loss_axis, save, swept_span)
from orchestrator.report.page import Figure
from orchestrator.report.tables import ok_methods, primary_method, surface_method


def _method_lines(ax: Axes, inp: Inputs, C: np.ndarray, quantity: str) -> list[np.ndarray]:
    """Each frontier method's `quantity` on C: solid over the swept budgets, dashed beyond, its bootstrap band.
    The headline method's band is filled, the others' are dotted outlines. Returns the central lines
    (for the y-limits)."""
    lines, primary = [], primary_method(inp.result)
    for m in [m for m in ok_methods(inp.result) if m in registry.frontier_methods()]:
        e = inp.result.methods[m]
        N, D, L = derived.frontier_line(e, C)
        y = {"N_opt": N, "D_opt": D, "loss": L, "tokens_per_param": D / N}[quantity]
        inside = inp.swept_mask(C)
        ax.plot(C, y, color=registry.colour(m), lw=1.5, ls="--")
        ax.plot(C[inside], y[inside], color=registry.colour(m), lw=2, label=m)
        band = derived.ci_band(e, quantity, C)
        if band is not None and m == primary:
            ax.fill_between(C, *band, color=registry.colour(m), alpha=0.2, lw=0)
        elif band is not None:  # outlines: several filled bands on top of each other hide every line
            for edge in band:
                ax.plot(C, edge, color=registry.colour(m), lw=0.7, ls=":", alpha=0.8)
        lines.append(y)
    return lines


def _primary_points(ax: Axes, inp: Inputs, quantity: str) -> None:
    """The headline method's predictions at the target budgets, with their bootstrap intervals as bars."""
    m = primary_method(inp.result)
    if m not in registry.frontier_methods():
        return
    e = inp.result.methods[m]
    preds = sorted(e.predictions.items(), key=lambda kv: kv[1]["C"])
    xs = np.array([p["C"] for _, p in preds])
    ys = np.array([p[quantity] for _, p in preds])
    pairs = np.array([e.interval(quantity, budget=key) or (np.nan, np.nan) for key, _ in preds],
                     dtype=float).reshape(-1, 2)
    err = np.vstack([np.nan_to_num(ys - pairs[:, 0]), np.nan_to_num(pairs[:, 1] - ys)]).clip(min=0)
    ax.errorbar(xs, ys, yerr=err, fmt="o", ms=4, color=registry.colour(m), capsize=3, label=f"{m} at target budgets")


def frontier(inp: Inputs, *, out_dir: Path) -> Figure:
    title = "Compute-optimal frontier"
    caption = ("N_opt(C) and D_opt(C) of each method: solid over the swept budgets (grey), dashed where "
               "extrapolated; bootstrap intervals (filled for the headline method, dotted outlines for the others) "
               "are interpolated between the budgets where they were computed (markers with bars: the headline "
               "method at the target budgets). Black dots: IsoFLOP parabola minima (hollow red: minimum at the "
               "edge of the sampled sizes); grey crosses: training-curve envelope points.")
    if not any(m in registry.frontier_methods() for m in ok_methods(inp.result)):
        return Figure("frontier", title, caption, missing="no method produced a frontier")
    C = inp.c_grid()
    fig = MplFigure(figsize=(12, 4.8))
    axes = fig.subplots(1, 2)
    good = [p.fit for p in inp.profiles if p.fit is not None]
    env = inp.result.method("envelope")
    for ax, q, label in zip(axes, ("N_opt", "D_opt"), ("N_opt (parameters)", "D_opt (tokens)")):
        swept_span(ax, inp.swept)
        lines = _method_lines(ax, inp, C, q)
        _primary_points(ax, inp, q)
        if good:
            xs = np.array([p.budget for p in good])
            ys = np.array([p.N_opt if q == "N_opt" else p.D_opt for p in good])
            edge = np.array([p.edge for p in good])
            ax.scatter(xs[~edge], ys[~edge], color="k", s=22, zorder=5, label="IsoFLOP minima")
            if edge.any():
                ax.scatter(xs[edge], ys[edge], facecolor="none", edgecolor="red", s=40, lw=1.5, zorder=5,
                           label="IsoFLOP minimum at edge")
            lines.append(ys)
        if env is not None and env.ok:
            ax.scatter(env.points["C"], env.points["N" if q == "N_opt" else "D"], marker="x", color="0.4",
                       s=18, zorder=4, label="envelope points")
        log_axes(ax)
        clip_y(ax, lines)
        ax.set_xlabel(C_LABEL)
        ax.set_ylabel(label)
        ax.set_title(f"{q}(C)")
    axes[0].legend(loc="upper left")
    return Figure("frontier", title, caption, save(fig, out_dir, "frontier"))


def loss_frontier(inp: Inputs, *, out_dir: Path) -> Figure:
    title = "Compute-optimal loss, the loss floor, and tokens per parameter"
    caption = ("Left: predicted loss at the compute-optimal allocation, L_opt(C), per method (dashed: "
               "extrapolated; bands: bootstrap intervals as in the frontier figure), with the best run of each "
               "budget. Horizontal lines: the surface fit's irreducible loss E (band: its interval) and, where "
               "the dataset's true entropy floor is known, that floor: a fitted E below it is impossible. Right: "
               "compute-optimal tokens per parameter D_opt / N_opt (Chinchilla: about 20).")
    if not any(m in registry.frontier_methods() for m in ok_methods(inp.result)):
        return Figure("loss", title, caption, missing="no method produced a frontier")
    C = inp.c_grid()
    fig = MplFigure(figsize=(12, 4.8))
    ax, ax2 = fig.subplots(1, 2)
    swept_span(ax, inp.swept)
    lines = _method_lines(ax, inp, C, "loss")
    _primary_points(ax, inp, "loss")
    runs = inp.runs[np.isfinite(inp.runs["budget"])]
    if len(runs):
        best = runs.groupby("budget")["loss"].min()
        ax.scatter(best.index, best.to_numpy(), color="k", s=24, zorder=5, label="best run per budget")
        lines.append(best.to_numpy())
    sm = surface_method(inp.result)
    if sm is not None:
        e = inp.result.methods[sm]
        ax.axhline(e.E, color=registry.colour(sm), lw=1.2, ls=":", label=f"fitted E ({sm}) = {e.E:.3g}")
        ci = e.interval("E")
        if ci is not None:
            ax.axhspan(*ci, color=registry.colour(sm), alpha=0.15, lw=0)
        lines.append(np.array([e.E]))
    for i, floor in enumerate(inp.floors.values()):
        ax.axhline(floor, color="k", lw=1.3, ls=(0, (6, 2, 1, 2)),
                   label=f"true entropy floor{'' if len(inp.floors) == 1 else f' #{i + 1}'} = {floor:.3g}")
        lines.append(np.array([floor]))
    log_axes(ax)
    clip_y(ax, lines, factor=1.3)
    loss_axis(ax)
    ax.set_xlabel(C_LABEL)
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title("L_opt(C)")
    ax.legend(loc="upper right")
    swept_span(ax2, inp.swept)
    ratio = _method_lines(ax2, inp, C, "tokens_per_param")
    _primary_points(ax2, inp, "tokens_per_param")
    ax2.axhline(20, color="0.3", lw=0.8, ls=":", label="20 (Chinchilla)")
    log_axes(ax2)
    clip_y(ax2, ratio + [np.array([20.0])], factor=2.0)
    loss_axis(ax2)  # a ratio spanning about a decade: plain labels as on a loss axis
    ax2.set_xlabel(C_LABEL)
    ax2.set_ylabel("tokens per parameter D_opt / N_opt")
    ax2.set_title("D_opt / N_opt")
    ax2.legend(loc="upper left")
    return Figure("loss", title, caption, save(fig, out_dir, "loss"))


def methods(inp: Inputs, *, out_dir: Path) -> Figure:
    title = "Methods side by side: allocation exponents"
    caption = ("The compute-optimal exponents N_opt ~ C^a and D_opt ~ C^b of each method, with bootstrap "
               "intervals. Chinchilla found a = b = 0.5 (dotted); methods that agree within their intervals "
               "corroborate each other.")
    fitted = [m for m, e in inp.result.ok_methods().items() if e.a is not None]
    if not fitted:
        return Figure("methods", title, caption, missing="no method was fitted")
    fig = MplFigure(figsize=(10, 1.2 + 0.4 * len(fitted)))
    axes = fig.subplots(1, 2, sharey=True)
    ypos = np.arange(len(fitted))
    for ax, q in zip(axes, ("a", "b")):
        for y, m in zip(ypos, fitted):
            e = inp.result.methods[m]
            ci = e.interval(q)
            v = e.law(q)
            if ci is not None:
                ax.errorbar([v], [y], xerr=[[max(v - ci[0], 0)], [max(ci[1] - v, 0)]], fmt="o", capsize=4,
                            color=registry.colour(m))
            else:
                ax.plot([v], [y], "o", color=registry.colour(m))
        ax.axvline(0.5, color="k", lw=0.8, ls=":")
        ax.set_xlabel(f"{q}  ({'N_opt' if q == 'a' else 'D_opt'} ~ C^{q})")
    axes[0].set_yticks(ypos, fitted)
    axes[0].invert_yaxis()
    return Figure("methods", title, caption, save(fig, out_dir, "methods"))
