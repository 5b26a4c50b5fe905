"""Checks a sceptical reader asks for: residuals of the surface fit and the leave-largest-budget-out test."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colors
from matplotlib.figure import Figure as MplFigure

from orchestrator.report import derived
from orchestrator.fitting import methods as registry
from orchestrator.report.figures.base import C_LABEL, LOSS_LABEL, Inputs, count_axis, save
from orchestrator.report.page import Figure
from orchestrator.report.tables import holdout_rows, surface_method
from orchestrator.report.text import sci


def residuals(inp: Inputs, *, out_dir: Path) -> Figure:
    title = "Residuals of the parametric fit"
    sm = surface_method(inp.result)
    caption = (f"Observed / predicted - 1 for each fitted run under the {sm or 'parametric'} surface, against "
               "model size and tokens, coloured by budget. Grey band: the Huber loss's quadratic zone (runs "
               "outside it are down-weighted as outliers). A trend, not scatter, means the functional form is off.")
    if sm is None:
        return Figure("residuals", title, caption, missing="neither parametric nor vpnls was fitted")
    e = inp.result.methods[sm]
    r = derived.residuals(e, inp.runs) * 100
    fig = MplFigure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    C = inp.runs["C"].to_numpy(float)
    norm = colors.LogNorm(vmin=C.min(), vmax=max(C.max(), C.min() * 1.01))
    delta = e.huber_delta
    for ax, col, label in zip(axes, ("N", "D"), ("parameters N", "training tokens D")):
        sc = ax.scatter(inp.runs[col], r, c=C, cmap="viridis", norm=norm, s=14)
        ax.axhline(0, color="k", lw=0.8)
        if delta:  # Huber delta is in log-loss units: |log(obs/pred)| < delta is about |r| < 100 delta percent
            ax.axhspan(-100 * delta, 100 * delta, color="0.6", alpha=0.3, lw=0, label=f"Huber delta = {delta:g}")
        ax.set_xscale("log")
        ax.set_xlabel(label)
    axes[0].set_ylabel("residual (% of predicted loss)")
    rms = float(np.sqrt(np.mean(r ** 2)))
    axes[0].set_title(f"{sm}: RMS residual {rms:.2g}% over {len(r)} runs")
    axes[1].set_title(f"largest |residual| {np.abs(r).max():.2g}%")
    if delta:
        axes[0].legend(loc="upper right")
    fig.colorbar(sc, ax=list(axes), label=C_LABEL)
    return Figure("residuals", title, caption, save(fig, out_dir, "residuals"))


def holdout(inp: Inputs, *, out_dir: Path) -> Figure:
    title = "Leave-largest-budget-out check"
    h = inp.result.holdout or {}
    caption = ("Each method refitted without the largest budget's runs, then asked to predict that budget: its "
               "runs (dots, with the parabola when bracketed) against each method's predicted compute-optimal "
               "size and loss (markers), and the errors. A method that cannot predict a budget it has not seen "
               "is not to be trusted at budgets far beyond the sweep.")
    rows = [r for r in holdout_rows(inp.result) if r["status"] == "ok"]
    if not rows:
        if not h:
            reason = "the hold-out check was not run (fit.holdout=false)"
        elif h.get("status") != "ok":
            reason = h.get("reason", "the hold-out check was skipped")
        elif h["methods"]:
            reason = "every refit failed: " + "; ".join(f"{m}: {e.get('reason')}" for m, e in h["methods"].items())
        else:
            reason = "no method the check refits (parametric, vpnls, isoflop, envelope) was fitted"
        return Figure("holdout", title, caption, missing=reason)
    top = h["budget"]
    fig = MplFigure(figsize=(13, 4.5))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.6, 1, 1], "wspace": 0.35})
    ax = axes[0]
    at = inp.runs[inp.runs["budget"] == top]
    ax.scatter(at["N"], at["loss"], color="k", s=20, label=f"held-out runs (C = {sci(top)})")
    prof = next((p for p in inp.profiles if p.budget == top and p.coef is not None), None)
    if prof is not None:
        xs = np.geomspace(prof.N.min() / 1.25, prof.N.max() * 1.25, 100)
        ax.plot(xs, prof.parabola(xs), color="k", lw=1, ls=":")
    for row in rows:
        ax.scatter([row["predicted_N_opt"]], [row["predicted_best_loss"]], marker="D", s=45,
                   color=registry.colour(row["method"]), edgecolor="k", zorder=5, label=row["method"])
    obs = h["observed"]
    ax.axhline(obs["best_loss"], color="0.4", lw=0.8, ls="--", label="observed best loss")
    ax.axvline(obs["N_opt"], color="0.4", lw=0.8, ls="-.", label=f"observed N_opt ({obs['N_opt_source']})")
    ax.set_xscale("log")
    count_axis(ax.xaxis)
    ax.set_xlabel("parameters N")
    ax.set_ylabel(f"final {LOSS_LABEL}")
    ax.set_title(f"held-out budget C = {sci(top)}")
    ax.legend(loc="best")
    names = [r["method"] for r in rows]
    ypos = np.arange(len(rows))
    cols = [registry.colour(n) for n in names]
    axes[1].barh(ypos, [100 * r["loss_rel_error"] for r in rows], color=cols)
    axes[1].axvline(0, color="k", lw=0.8)
    axes[1].set_xlabel("predicted - observed best loss (%)")
    axes[1].set_title("loss error")
    axes[2].barh(ypos, [math.log2(r["N_opt_ratio"]) for r in rows], color=cols)
    axes[2].axvline(0, color="k", lw=0.8)
    axes[2].set_xlabel("predicted / observed N_opt (log2 scale)")
    axes[2].set_title("N_opt ratio")
    ticks = np.arange(-3, 4)
    axes[2].set_xticks(ticks, [f"{2.0 ** t:g}" for t in ticks])
    lim = max(1.0, max(abs(math.log2(r["N_opt_ratio"])) for r in rows) * 1.2)
    axes[2].set_xlim(-lim, lim)
    axes[1].set_yticks(ypos, names)
    axes[2].set_yticks(ypos, [""] * len(names))
    for a in axes[1:]:
        a.set_ylim(len(rows) - 0.5, -0.5)
    return Figure("holdout", title, caption, save(fig, out_dir, "holdout"))
