"""write_report: the fit of a sweep (or of a CSV of runs) as files a team can read and check.

Writes to the fit's folder (`reports/<name>/`): index.html (self-contained), report.md, frontier.csv,
runs.csv (the tidy table that was fitted, as the fit kept it), fit.json and one PNG per figure. Returns the
paths, so the caller can log them to the sweep's parent MLflow run.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from orchestrator.fitting.result import FitResult
from orchestrator.report import derived, tables
from orchestrator.report.page import Page

if TYPE_CHECKING:
    from orchestrator.config import Config
    from orchestrator.fitting.run import FitReport

FILES = {
    "index.html": "this report, self-contained (figures embedded)",
    "report.md": "the same report in Markdown (figures as the PNGs beside it)",
    "frontier.csv": "one row per method and target budget: C, N_opt, D_opt, tokens per parameter, loss, CI bounds",
    "runs.csv": "the tidy runs table that was fitted (N, D, C, loss under the fit's conventions)",
    "fit.json": "every method's parameters, intervals, predictions, exclusions, hold-out and provenance",
}


def write_report(fit: FitReport, *, runs: pd.DataFrame | None = None, curves: pd.DataFrame | None = None,
                 out_dir: str | Path | None = None, config: Config | None = None) -> list[Path]:
    """Write the report of `fit` (see module docstring): its FitResult, the tidy runs table it fitted and its
    options, as run_fit returned them; `runs`/`curves` are the sweep's raw tables (None for a CSV fit: the
    report's cost section then has no runs to count). Returns every file written, fit.json included."""
    from orchestrator.report import figures, html, markdown  # noqa: PLC0415  (matplotlib only when drawing)

    t0 = time.perf_counter()
    result, options = fit.fit, fit.options
    assert fit.table is not None and options is not None, "write_report takes the FitReport run_fit returned"
    folder = Path(out_dir) if out_dir is not None else (
        fit.json_path.parent if fit.json_path is not None else Path(options.out_dir) / fit.name)
    folder.mkdir(parents=True, exist_ok=True)
    fitted = fit.table.runs
    swept = tables.swept_range(result)
    floors = tables.entropy_floors(runs)
    frontier = tables.frontier_rows(result, swept=swept)

    written = [folder / "frontier.csv", folder / "runs.csv"]
    frontier.to_csv(written[0], index=False)
    fitted.to_csv(written[1], index=False)
    fit_json = folder / "fit.json"
    if fit.json_path is not None and Path(fit.json_path).resolve() != fit_json.resolve():
        shutil.copyfile(fit.json_path, fit_json)
    if fit_json.is_file():
        written.append(fit_json)

    points = derived.curve_points(curves, fitted, metric=options.metric, c_convention=options.c_convention)
    inputs = figures.Inputs(result=result, runs=fitted, curves=points, profiles=derived.profiles(fitted, result),
                            swept=swept, floors=floors)
    drawn = figures.draw_all(inputs, out_dir=folder)
    written += [f.path for f in drawn if f.path is not None]

    cluster = config.cluster if config is not None else None
    cost = tables.cost_summary(runs, cpus_per_trial=cluster.cpus_per_trial if cluster else 1,
                               gpus_per_trial=cluster.gpus_per_trial if cluster else 0.0)
    page = Page(name=fit.name, source=_source(result, config=config), result=result, frontier=frontier,
                exponents=tables.exponent_rows(result), holdout=tables.holdout_rows(result),
                exclusions=tables.exclusions(result), warnings=tables.warnings(result, swept=swept, floors=floors),
                cost=cost, floors=floors, swept=swept, primary=tables.primary_method(result), figures=drawn,
                generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                sweep=_sweep(config) if runs is not None else None, files=FILES)
    md_path, html_path = folder / "report.md", folder / "index.html"
    md_path.write_text(markdown.render(page), encoding="utf-8")
    html_path.write_text(html.render(page, seconds=time.perf_counter() - t0), encoding="utf-8")
    if config is not None:  # runs off the sweep's fitted hparams optimum, named before the frontier (issue 22)
        from orchestrator.report.hparams_law import insert_untuned, untuned_lines  # noqa: PLC0415

        insert_untuned(md_path, html_path, untuned_lines(runs, rules=config.hparams))
    return [html_path, md_path, *written]


def _source(result: FitResult, *, config: Config | None) -> str:
    prov = result.provenance
    if prov.get("runs_csv"):
        return f"CSV of runs {prov['runs_csv']} (sha256 {prov.get('sha256', '?')[:12]})"
    if config is not None:
        return f"sweep {config.sweep.name} (MLflow experiment {config.tracking.experiment or config.sweep.name})"
    return f"runs table {result.name}"


def _sweep(config: Config | None) -> dict | None:
    """The sweep's plan as the page lists it (kind, budgets, sizes per budget, description)."""
    if config is None:
        return None
    s = asdict(config.sweep)
    s["budgets"] = [f"{b:.3g}" for b in s["budgets"]]
    return {k: s[k] for k in ("name", "kind", "description", "budgets", "sizes_per_budget", "span", "seeds",
                              "datasets") if s.get(k) not in (None, "", [])} | {
        "trainer": getattr(config.trainer, "target", None)}
