"""The comparison report's figures (orchestrator/compare): L_opt(C) of every compared sweep, and M(C) of each
variant over the baseline with its bootstrap band. Drawn here because this package is the one that imports
matplotlib; the numbers come from compare.json (compare/run.py) and no user string reaches a figure (sweeps are
labelled by their role and index, named in the page's caption)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure as MplFigure

from orchestrator.report.figures.base import C_LABEL, LOSS_LABEL, STYLE, log_axes, loss_axis, save
from orchestrator.report.page import Figure


def labels(result: dict) -> list[str]:
    """The figure's label of each compared sweep: 'baseline', 'variant 1', ... (the page maps them to names)."""
    return ["baseline" if s["role"] == "baseline" else f"variant {i}" for i, s in enumerate(result["sweeps"])]


def _colours(n: int) -> list:
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def draw_comparison(result: dict, *, out_dir: Path) -> list[Figure]:
    """loss.png and multiplier.png (a figure that cannot be drawn comes back missing, with the reason)."""
    out = []
    with rc_context(STYLE), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for fn, name, title in ((_loss, "loss", "Compute-optimal loss of every sweep"),
                                (_multiplier, "multiplier", "Effective compute multiplier M(C)")):
            try:
                out.append(fn(result, out_dir=out_dir, name=name, title=title))
            except (ArithmeticError, ValueError) as err:
                (out_dir / f"{name}.png").unlink(missing_ok=True)
                out.append(Figure(name, title, "", missing=f"could not be drawn ({type(err).__name__}: "
                                                           f"{(str(err).splitlines() or [''])[0][:200]})"))
    return out


def _loss(result: dict, *, out_dir: Path, name: str, title: str) -> Figure:
    fig = MplFigure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    seen: set[str] = set()
    values = []
    sweeps = result["sweeps"]
    for s, label, colour in zip(sweeps, labels(result), _colours(len(sweeps))):
        if s["name"] in seen and s["role"] != "baseline":  # a sweep compared with itself: one line
            continue
        seen.add(s["name"])
        curve = result["curves"][s["name"]]
        C, L = np.asarray(curve["C"]), np.asarray(curve["L"])
        inside = (C >= s["swept"][0] / 1.01) & (C <= s["swept"][1] * 1.01)
        ax.plot(C, L, color=colour, lw=1.2, ls="--")
        ax.plot(C[inside], L[inside], color=colour, lw=2, label=f"{label}: fitted L_opt(C)")
        best = s["best_loss"]
        ax.scatter(best["budget"], best["loss"], color=colour, s=24, zorder=5, label=f"{label}: best run per budget")
        values += [L[np.isfinite(L)], np.asarray(best["loss"], float)]
    log_axes(ax, y=False)
    ax.set_xlabel(C_LABEL)
    ax.set_ylabel(LOSS_LABEL)
    v = np.concatenate(values) if values else np.array([1.0])
    v = v[np.isfinite(v) & (v > 0)]
    ax.set_ylim(v.min() * 0.97, v.max() * 1.03)
    loss_axis(ax)
    ax.legend(loc="upper right")
    ax.set_title(title)
    caption = ("Each sweep's compute-optimal loss L_opt(C) from its fitted law (solid over its swept budgets, "
               "dashed beyond) and the lowest loss among its runs at each swept budget (dots). A variant below the "
               "baseline at C reaches a loss the baseline needs more compute for.")
    return Figure(name, title, caption, path=save(fig, out_dir, name))


def _multiplier(result: dict, *, out_dir: Path, name: str, title: str) -> Figure:
    fig = MplFigure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    level = result["level"]
    colours = _colours(len(result["sweeps"]))
    values = [np.array([1.0])]
    for comparisons, ls, suffix in ((result["comparisons"], "-", ""),
                                    ((result.get("joint") or {}).get("comparisons", []), ":", " (shared E)")):
        for k, c in enumerate(comparisons):
            i = k + 1
            colour = colours[i]
            curve = c["curve"]
            C, M = np.asarray(curve["C"]), np.asarray(curve["M"], float)
            measured = [r["C"] for r in c["rows"] if r["measured"]]
            lo_m, hi_m = (min(measured), max(measured)) if measured else (np.inf, -np.inf)
            inside = (C >= lo_m / 1.01) & (C <= hi_m * 1.01)
            ax.plot(C, M, color=colour, lw=1.2, ls="--" if ls == "-" else ls)
            ax.plot(C[inside], M[inside], color=colour, lw=2, ls=ls, label=f"variant {i}{suffix}")
            if curve["M_lo"] and ls == "-":
                lo, hi = np.asarray(curve["M_lo"], float), np.asarray(curve["M_hi"], float)
                ax.fill_between(C, np.where(np.isfinite(lo), lo, np.nan), np.where(np.isfinite(hi), hi, np.nan),
                                color=colour, alpha=0.2, lw=0, label=f"variant {i}: {level:.0%} interval")
                values += [lo[inside & np.isfinite(lo)], hi[inside & np.isfinite(hi)]]
            rows = c["rows"]
            ax.scatter([r["C"] for r in rows], [r["M"] for r in rows], color=colour, s=18, zorder=5)
            values.append(M[np.isfinite(M)])
    ax.axhline(1.0, color="k", lw=0.8, label="M = 1 (no difference)")
    v = np.concatenate(values)
    v = v[np.isfinite(v) & (v > 0)]
    lo, hi = float(v.min()), float(v.max())
    if hi / lo > 10:  # multipliers over decades (very different sweeps): a log axis
        log_axes(ax)
        ax.set_ylim(lo / 1.5, hi * 1.5)
    else:
        log_axes(ax, y=False)
        pad = max(0.05, 0.15 * (hi - lo))
        ax.set_ylim(max(lo - pad, 0.0), hi + pad)
    ax.set_xlabel(C_LABEL)
    ax.set_ylabel("M(C): baseline compute to match, / C")
    ax.legend(loc="best")
    ax.set_title(title)
    caption = (f"M(C) = C_base(L_variant(C)) / C for each variant (solid where both sweeps swept C, dashed where a law "
               f"is extrapolated), with its {level:.0%} bootstrap interval (band; each sweep's runs resampled "
               "independently) and the table's budgets (dots); dotted: the joint fit with a shared E, when asked "
               "for. Above 1 the variant is ahead: the baseline needs M times the compute for the same loss.")
    return Figure(name, title, caption, path=save(fig, out_dir, name))
