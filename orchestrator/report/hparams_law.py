"""The report section of an hparams law (fitting/hparams_law.py): the law with its intervals, each cell's optimum,
the figure, and the runs whose rate or batch lie off the law's optimum (named before a frontier is fitted).

Its own module with two hooks: `write_section` (a pilot's or a table's section: hparams_law.md and its PNG) and
`untuned_lines` (the frontier report's list of untuned cells, from the sweep's runs and its hparams law).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from orchestrator.fitting.hparams_law import CellOptimum, HParamsLaw, Interval, off_optimum
from orchestrator.hparams import HParamsConfig

UNTUNED_FACTOR = 2.0
"""A run whose rate or batch lies more than this factor from the law's optimum is named untuned. Within a factor
of 2 of lr* the final loss is within about 1% of its optimum on the Step Law landscapes (Li et al. 2025, fig. 2:
the basin is flat in ln lr and ln B); beyond it the point biases a frontier fit (Porian et al. 2024)."""


def _ci(i: Interval) -> str:
    return "" if math.isnan(i.lo) else f" (95% interval {i.lo:.3f} to {i.hi:.3f})"


def section_lines(law: HParamsLaw, optima: list[CellOptimum], *, title: str, figure: str | None,
                  predict: tuple[float, float] | None = None) -> list[str]:
    """The section in Markdown."""
    lines = [f"## {title}", "",
             f"Fitted through the optimum of each of {law.n_cells} cells (one size N at one token count D): the "
             "vertex of a quadratic in (ln lr, ln B) through the cell's best runs, else its best run (Li et al. 2025, "
             "Step Law form).", ""]
    size = f" N^{law.alpha:.3f}" if law.alpha_free else ""
    lines += [f"- lr*(N, D) = {law.k_lr:.4g}{size} D^{law.beta:.3f}: "
              + (f"alpha = {law.alpha:.3f}{_ci(law.alpha_ci)}, " if law.alpha_free else "(one size per D: no N term), ")
              + f"beta = {law.beta:.3f}{_ci(law.beta_ci)}"
              + ("" if law.n_cells and "pooled" in law.resampling else
                 f"; cells scatter {100 * law.lr_rmse:.0f}% (rms) about it"),
              ("- B*(D) not fitted: in most cells the loss kept falling past the batches tried (see `how` below)"
               if "(linear)" in law.resampling else
               f"- B*(D) = {law.k_B:.4g} D^{law.gamma:.3f}: gamma = {law.gamma:.3f}{_ci(law.gamma_ci)}"
               + ("" if math.isnan(law.batch_rmse) else f"; cells scatter {100 * law.batch_rmse:.0f}% (rms)")),
              f"- intervals: {law.n_valid} of {law.n_resamples} bootstrap resamples ({law.resampling})"]
    if law.note:
        lines.append(f"- note: {law.note}")
    if predict is not None:
        pr = law.predict(N=predict[0], D=predict[1])
        lines.append(f"- predicted at N = {pr.N:.4g}, D = {pr.D:.4g}: lr* = {pr.lr:.4g} ({pr.lr_ci.lo:.4g} to "
                     f"{pr.lr_ci.hi:.4g}), B* = {pr.batch:.4g} ({pr.batch_ci.lo:.4g} to {pr.batch_ci.hi:.4g})")
    if figure:
        lines += ["", f"![hparams law]({figure})"]
    lines += ["", "| N | D | runs | lr* | B* | loss there | how | best run: lr, B, loss |",
              "|---|---|---|---|---|---|---|---|"]
    for c in optima:
        how = c.how + (f" ({c.edge})" if c.edge else "")
        lines.append(f"| {c.N:.4g} | {c.D:.4g} | {c.n_runs} | {c.lr_opt:.3g} | {c.batch_opt:.4g} | {c.loss_opt:.4f} | "
                     f"{how} | {c.lr_best_run:.3g}, {c.batch_best_run:.4g}, {c.loss_best_run:.4f} |")
    return lines + [""]


def write_section(law: HParamsLaw, optima: list[CellOptimum], *, out_dir: Path, title: str,
                  predict: tuple[float, float] | None = None) -> list[Path]:
    """hparams_law.md and hparams_law.png in out_dir; returns both."""
    from orchestrator.report.figures.hparams_law import hparams_law  # noqa: PLC0415  (matplotlib only here)

    png = hparams_law(law, optima, out_dir=out_dir, predict=predict)
    md = out_dir / "hparams_law.md"
    md.write_text("\n".join(section_lines(law, optima, title=title, figure=png.name, predict=predict)),
                  encoding="utf-8")
    return [md, png]


def rules_law(rules: HParamsConfig) -> HParamsLaw | None:
    """The law an hparams option holds when it is a fitted one (a pilot's: lr of N and D, or of D; batch of D)."""
    lr, batch = rules.lr, rules.batch_tokens
    if not (rules.pilot and lr.on and batch.on and batch.of == "D"):
        return None
    factors = {lr.of: lr.exponent, **({lr.of2: lr.exponent2} if lr.of2 else {})}
    if set(factors) - {"N", "D"}:
        return None
    nan = Interval(math.nan, math.nan)
    return HParamsLaw(k_lr=lr.coef, alpha=factors.get("N", 0.0), beta=factors.get("D", 0.0), k_B=batch.coef,
                      gamma=batch.exponent, alpha_ci=nan, beta_ci=nan, gamma_ci=nan, n_cells=0,
                      alpha_free="N" in factors, resampling="", n_resamples=0, n_valid=0, lr_rmse=math.nan,
                      batch_rmse=math.nan)


def untuned_lines(runs: pd.DataFrame | None, *, rules: HParamsConfig | None,
                  factor: float = UNTUNED_FACTOR) -> list[str]:
    """Markdown lines naming the runs whose lr or batch lie more than `factor` from the sweep's fitted optimum
    (its hparams option's law; clipped rules and explicit sweep axes put runs there). Empty without a law."""
    law = rules_law(rules) if rules is not None else None
    if law is None or runs is None or not len(runs):
        return []
    finished = runs[runs["status"] == "finished"]
    cells = off_optimum(finished["N_total"].to_numpy(float), finished["D"].to_numpy(float),
                        pd.to_numeric(finished["lr"], errors="coerce").to_numpy(float),
                        pd.to_numeric(finished["batch_tokens"], errors="coerce").to_numpy(float),
                        law=law, factor=factor)
    head = [f"### Untuned cells (rate or batch more than {factor:g}x from the fitted optimum of hparams={rules.name})",
            ""]
    if not cells:
        return head + [f"None of the {len(finished)} finished runs: every rate and batch lies within {factor:g}x of "
                       f"lr*(N, D) and B*(D).", ""]
    lines = head + [f"{len(cells)} of {len(finished)} finished runs; their points bias the frontier (Porian et al. "
                    f"2024):", ""]
    lines += [f"- N={c.N:.4g} D={c.D:.4g}: lr {c.lr:.3g} (lr* {c.lr_opt:.3g}), batch {c.batch:.4g} (B* "
              f"{c.batch_opt:.4g}): {c.what}" for c in cells[:20]]
    if len(cells) > 20:
        lines.append(f"- ... and {len(cells) - 20} more")
    return lines + [""]


def insert_untuned(md_path: Path, html_path: Path, lines: list[str]) -> None:
    """Put the untuned-cells section into a written frontier report, before its first section (after the
    headline), so a reader meets it before the fitted frontier."""
    if not lines:
        return
    md = md_path.read_text(encoding="utf-8").split("\n")
    at = next((i for i, line in enumerate(md) if line.startswith("## ")), len(md))
    md_path.write_text("\n".join([*md[:at], *lines, *md[at:]]), encoding="utf-8")
    text = html_path.read_text(encoding="utf-8")
    body = [f"<h3>{html.escape(lines[0].lstrip('# '))}</h3>"]
    items = [f"<li>{html.escape(line[2:])}</li>" for line in lines[1:] if line.startswith("- ")]
    body += [f"<p>{html.escape(line)}</p>" for line in lines[1:] if line and not line.startswith("- ")]
    body += ["<ul>", *items, "</ul>"] if items else []
    at = text.find("<h2")
    at = at if at >= 0 else text.rfind("</body>")
    html_path.write_text(text[:at] + '<section id="untuned">' + "".join(body) + "</section>" + text[at:],
                         encoding="utf-8")
