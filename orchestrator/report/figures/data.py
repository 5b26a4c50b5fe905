"""The data the fit saw: IsoFLOP profiles with their parabolas, the fitted surface L(N, D) over the runs,
and the training curves with their envelope."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps, colors
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure as MplFigure

from orchestrator.report import derived
from orchestrator.report.figures.base import (C_LABEL, LOSS_LABEL, Inputs, budget_colours, count_axis, log_axes,
                                              loss_axis, save)
from orchestrator.report.page import Figure
from orchestrator.report.tables import surface_method
from orchestrator.report.text import sci


def isoflop(inp: Inputs, *, out_dir: Path) -> Figure:
    title = "IsoFLOP profiles"
    caption = ("Final loss against model size at each budget, with the parabola in ln N fitted to each profile "
               "and its minimum (star); where runs depart from the fit's compute model (exact FLOPs of discrete "
               "shapes), their losses are shown as fitted, moved onto it (fitting/isoflop.py). "
               "A red ring marks a minimum at the edge of the sampled sizes (biased "
               "N_opt); dashed parabolas were not used by the IsoFLOP fit (reason in the warnings). Grey dotted: "
               "the surface fit's prediction along each budget.")
    if not inp.profiles:
        return Figure("isoflop", title, caption, missing="no run lies on an IsoFLOP profile (no shared budgets)")
    fig = MplFigure(figsize=(9, 5.5))
    ax = fig.subplots()
    colour = budget_colours([p.budget for p in inp.profiles])
    sm = surface_method(inp.result)
    for p in inp.profiles:
        c = colour[p.budget]
        note = f" ({len(p.N)} runs)" + (" skipped" if p.skipped else "")
        ax.scatter(p.N, p.loss, color=c, s=18, zorder=3, label=f"C = {sci(p.budget)}{note}")
        xs = np.geomspace(p.N.min() / 1.25, p.N.max() * 1.25, 100)
        if p.coef is not None:
            ax.plot(xs, p.parabola(xs), color=c, lw=1.5, ls="--" if p.skipped else "-")
        if sm is not None:
            D = inp.compute.tokens(p.budget, xs)
            ax.plot(xs, derived.surface_loss(inp.result.methods[sm], xs, D), color="0.5", lw=0.8, ls=":")
        if p.fit is not None:
            ax.scatter([p.fit.N_opt], [p.fit.L_opt], marker="*", s=140, color=c, edgecolor="k", lw=0.6, zorder=5)
            if p.fit.edge:
                ax.scatter([p.fit.N_opt], [p.fit.L_opt], s=320, facecolor="none", edgecolor="red", lw=1.5, zorder=6)
    if any(p.fit is not None and p.fit.edge for p in inp.profiles):
        ax.scatter([], [], s=120, facecolor="none", edgecolor="red", lw=1.5, label="minimum at edge of sizes")
    ax.set_xscale("log")
    count_axis(ax.xaxis)
    ax.set_xlabel("parameters N")
    ax.set_ylabel(f"final {LOSS_LABEL}")
    ax.set_title("loss against model size at fixed compute")
    ax.legend(loc="best", ncol=1 if len(inp.profiles) < 8 else 2)
    return Figure("isoflop", title, caption, save(fig, out_dir, "isoflop"))


def surface(inp: Inputs, *, out_dir: Path) -> Figure:
    title = "Fitted loss surface L(N, D)"
    sm = surface_method(inp.result)
    caption = (f"Contours of the {sm or 'parametric'} fit L(N, D) = E + A/N^alpha + B/D^beta, with the fitted runs "
               "(dots), the swept budgets' IsoFLOP lines C = kND (grey dashed) and the compute-optimal path "
               "(red; dashed beyond the swept budgets, diamonds at the target budgets).")
    if sm is None:
        return Figure("surface", title, caption, missing="neither parametric nor vpnls was fitted")
    e = inp.result.methods[sm]
    C = inp.c_grid()
    Np, Dp, _ = derived.frontier_line(e, C)
    N_run, D_run = inp.runs["N"].to_numpy(float), inp.runs["D"].to_numpy(float)
    n_lo, n_hi = min(N_run.min(), Np.min()) / 2, max(N_run.max(), Np.max()) * 2
    d_lo, d_hi = min(D_run.min(), Dp.min()) / 2, max(D_run.max(), Dp.max()) * 2
    NN, DD = np.meshgrid(derived.grid(n_lo, n_hi, n=240), derived.grid(d_lo, d_hi, n=240))
    LL = derived.surface_loss(e, NN, DD)
    # Contours evenly spaced in log(L - E): the reducible loss shrinks by decades across this range.
    excess = LL - e.E
    levels = e.E + np.geomspace(max(excess.min(), 1e-12), excess.max(), 16)
    fig = MplFigure(figsize=(9, 6.5))
    ax = fig.subplots()
    cs = ax.contourf(NN, DD, LL, levels=levels, cmap="viridis_r", norm=colors.LogNorm(), alpha=0.85)
    ax.contour(NN, DD, LL, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
    fig.colorbar(cs, ax=ax, label=f"fitted {LOSS_LABEL}", format="%.3g")
    xs = derived.grid(n_lo, n_hi, n=50)
    for b in sorted({p.budget for p in inp.profiles}):
        ax.plot(xs, inp.compute.tokens(b, xs), color="0.35", lw=0.8, ls="--")
    ax.scatter(N_run, D_run, s=9, color="k", zorder=4, label=f"fitted runs ({len(N_run)})")
    inside = inp.swept_mask(C)
    ax.plot(Np, Dp, color="red", lw=1.6, ls="--", label="extrapolated")
    ax.plot(Np[inside], Dp[inside], color="red", lw=2.2, label="compute-optimal path (swept budgets)")
    tN, tD, _ = derived.frontier_line(e, np.array(inp.result.target_budgets))
    ax.scatter(tN, tD, marker="D", s=30, color="red", edgecolor="white", zorder=5, label="target budgets")
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(d_lo, d_hi)
    log_axes(ax)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("training tokens D")
    ax.set_title(f"L(N, D), {sm} fit: E={e.E:.3g}, alpha={e.alpha:.3g}, beta={e.beta:.3g}")
    ax.legend(loc="upper left")
    return Figure("surface", title, caption, save(fig, out_dir, "surface"))


def curves(inp: Inputs, *, out_dir: Path) -> Figure:
    title = "Training curves and their envelope"
    env = inp.result.method("envelope")
    has_curves = inp.curves is not None and len(inp.curves) > 0
    caption = (("Loss against training FLOPs for every run, coloured by model size; " if has_curves else
                "No training curves were given, so each run's final loss is shown, coloured by model size; ")
               + "black staircase: the lowest loss reached at each compute (the envelope); red: the envelope "
               "points approach 1 fitted and its L_opt(C).")
    fig = MplFigure(figsize=(9, 5.5))
    ax = fig.subplots()
    N_all = inp.runs["N"].to_numpy(float)
    norm = colors.LogNorm(vmin=N_all.min(), vmax=max(N_all.max(), N_all.min() * 1.01))
    cmap = colormaps["plasma"]
    if has_curves:
        pts = inp.curves
        segments, seg_colours = [], []
        for _, g in pts.groupby("trial_id", sort=False):
            if len(g) > 1:
                segments.append(np.column_stack([g["C"].to_numpy(), g["loss"].to_numpy()]))
                seg_colours.append(g["N"].iat[0])
        lc = LineCollection(segments, cmap=cmap, norm=norm, linewidths=0.9, alpha=0.75)
        lc.set_array(np.nan_to_num(np.array(seg_colours, float), nan=N_all.min()))
        ax.add_collection(lc)
        C_env, L_env = pts["C"].to_numpy(float), pts["loss"].to_numpy(float)
    else:
        C_env, L_env = inp.runs["C"].to_numpy(float), inp.runs["loss"].to_numpy(float)
    finals = ax.scatter(inp.runs["C"], inp.runs["loss"], c=N_all, cmap=cmap, norm=norm, s=10, zorder=3)
    sx, sy = derived.running_envelope(C_env, L_env)
    ax.step(sx, sy, where="post", color="k", lw=1.4, label="envelope (running minimum)")
    if env is not None and env.ok:
        pc, pl = np.array(env.points["C"]), np.array(env.points["loss"])
        ax.scatter(pc, pl, color="red", s=22, zorder=5, label=f"envelope points fitted ({len(pc)})")
        Cg = derived.grid(pc.min(), pc.max())
        ax.plot(Cg, derived.frontier_line(env, Cg)[2], color="red", lw=1.2,
                label="approach 1 L_opt(C)")
    fig.colorbar(finals, ax=ax, label="parameters N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.autoscale_view()
    loss_axis(ax)
    ax.set_xlabel(C_LABEL)
    ax.set_ylabel(LOSS_LABEL)
    n = inp.curves["trial_id"].nunique() if has_curves else len(inp.runs)
    ax.set_title(f"{'training curves' if has_curves else 'final losses'} of {n} runs")
    ax.legend(loc="upper right")
    return Figure("curves", title, caption, save(fig, out_dir, "curves"))
