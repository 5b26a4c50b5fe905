"""`action=compare`: read the sweeps, fit each, compute M(C) with intervals, write the report, log it to MLflow.

    python -m orchestrator action=compare compare.baseline=SWEEP compare.variants=[SWEEP,...]

Order of work, so that bad input stops before anything is written (exit 2, one sentence): the names (two or
more sweeps), every sweep's runs (the store or a CSV; unknown names, no finished runs), every sweep's tidy table
(the fit's own exclusions), the budgets (a variant must share a budget range with the baseline). Then each
distinct sweep is fitted by the fitting stage (`fitting.run.run_fit`: every method, its bootstrap and checks,
under the `fit.*` options; each sweep's C = k(N) N D is the smoothed cost per token of its own runs), into a
staging folder; the comparison method is chosen (compare/fits.py), the comparison computed (compare/analysis.py),
and only then is <fit.out_dir>/<compare.name>/ written: compare.json, multiplier.csv, fits/<sweep>/fit.json,
index.html, report.md and the figures; last, the comparison is logged to MLflow as its own run (compare/track.py).
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, UTC
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrator.compare.analysis import Options, analyse, check_overlap
from orchestrator.compare.fits import SweepFit, common_method, sweep_fit
from orchestrator.compare.sources import Source, from_csv, is_csv, require_finished
from orchestrator.errors import RunFailure, UsageError
from orchestrator.fitting.errors import FitError
from orchestrator.fitting.result import FitResult
from orchestrator.fitting.run import FitReport, code_version, run_fit, safe_name, swept_budgets
from orchestrator.fitting.table import RunTable, tidy_runs

if TYPE_CHECKING:
    from orchestrator.config import Config

MAX_NAME = 100


@dataclass(frozen=True)
class CompareReport:
    """What a comparison produced: compare.json's content, the folder and files written, the MLflow run."""

    name: str
    result: dict
    folder: Path
    files: list[Path]
    mlflow: dict | None


def default_name(baseline: Source, variants: list[Source]) -> str:
    """compare-<baseline>-vs-<variant>[-<variant>...], cut to 100 characters, safe as a folder name."""
    raw = f"compare-{baseline.name}-vs-" + "-".join(v.name for v in variants)
    return safe_name("".join(c if c.isalnum() or c in "_.-" else "_" for c in raw)[:MAX_NAME], fallback="compare")


def run_compare(config: Config) -> CompareReport:
    """The stage (module docstring); UsageError for bad input, RunFailure when a valid sweep cannot be fitted."""
    t0 = time.perf_counter()
    opts, fit_opts = config.compare, config.fit
    if not opts.baseline:
        raise UsageError("action=compare needs the baseline sweep: compare.baseline=SWEEP and "
                         "compare.variants=[SWEEP,...] (sweep names in the tracking store, or CSV paths).")
    if not opts.variants:
        raise UsageError(f"action=compare needs at least two sweeps but got one (compare.baseline={opts.baseline}): "
                         "name the sweeps to judge against it with compare.variants=[SWEEP,...].")
    entries = [("compare.baseline", opts.baseline)] + [("compare.variants", v) for v in opts.variants]
    sources: dict[str, Source] = {}
    for key, entry in entries:
        if entry not in sources:
            sources[entry] = _load(entry, key=key, config=config)
    tables = {entry: _tidy(source, fit_opts) for entry, source in sources.items()}
    base_entry = opts.baseline
    for entry in opts.variants:
        check_overlap(baseline=sources[base_entry].name, base_swept=_range(tables[base_entry]),
                      variant=sources[entry].name, var_swept=_range(tables[entry]))
    ordered = [sources[e] for _, e in entries]
    name = opts.name or default_name(ordered[0], ordered[1:])
    if name in {s.name for s in ordered if s.experiment_id is not None}:
        raise UsageError(f"compare.name={name} is the name of a compared sweep: the comparison is logged as its own "
                         "MLflow experiment, so give it another name.")
    folder = Path(fit_opts.out_dir) / name
    with tempfile.TemporaryDirectory(prefix="compare-") as staging:
        fits, reports = {}, {}
        for i, (entry, source) in enumerate(sources.items()):
            reports[entry] = _fit(source, fit_opts, out_dir=Path(staging) / f"{i}")
        method = common_method({sources[e].name: r.fit for e, r in reports.items()}, requested=opts.method)
        for entry, source in sources.items():  # the fitting stage's own estimate: each sweep is fitted once
            report = reports[entry]
            fits[entry] = sweep_fit(source.name, report.table.runs, method=method, fit=report.estimates[method],
                                    compute=report.compute, huber_delta=fit_opts.huber_delta, floor=report.fit.floor)
        core = analyse(fits[base_entry], [fits[e] for e in opts.variants],
                       options=Options(targets=tuple(opts.budgets), resamples=opts.bootstrap, level=opts.ci,
                                       seed=opts.seed, joint_E=opts.joint_E))
        (folder / "fits").mkdir(parents=True, exist_ok=True)
        fit_files = []
        for i, source in enumerate(sources.values()):
            target = folder / "fits" / safe_name(source.name, fallback=f"sweep{i}")
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(staging) / f"{i}" / "fit.json", target / "fit.json")
            fit_files.append(target / "fit.json")
    result = {"name": name, "baseline": ordered[0].name, "variants": [s.name for s in ordered[1:]], **core,
              "sweeps": [_sweep_entry(sources[e], fits[e], reports[e].fit, tables[e], role="baseline" if i == 0 else
                                      "variant") for i, (_, e) in enumerate(entries)],
              "curves": _curves(list(fits.values()), core),
              "provenance": {"compare": asdict(opts), "fit": asdict(fit_opts), "code": code_version(),
                             "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}}
    result["provenance"]["seconds"] = round(time.perf_counter() - t0, 3)
    from orchestrator.compare.report import write_report  # noqa: PLC0415  (matplotlib only when drawing)

    files = write_report(result, folder=folder) + fit_files
    from orchestrator.compare.track import log_comparison  # noqa: PLC0415

    experiment_id, run_id = log_comparison(uri=config.tracking.uri, timeout_s=config.tracking.timeout_s, name=name,
                                           options=opts, sources=ordered, result=result, files=files, folder=folder)
    return CompareReport(name=name, result=result, folder=folder, files=files,
                         mlflow={"experiment": name, "experiment_id": experiment_id, "run_id": run_id})


def _load(entry: str, *, key: str, config: Config) -> Source:
    """A compared sweep's runs: a CSV path (ending in .csv) or a sweep in the tracking store."""
    if is_csv(entry):
        return from_csv(entry, key=key, columns=config.fit.columns)
    from orchestrator.compare.track import read_sweep  # noqa: PLC0415  (mlflow only for a stored sweep)

    source = read_sweep(entry, key=key, uri=config.tracking.uri, timeout_s=config.tracking.timeout_s)
    require_finished(source)
    return source


def _tidy(source: Source, options) -> RunTable:
    """The fitting stage's tidy table of one sweep (its exclusions); bad input names the compared sweep."""
    try:
        return tidy_runs(source.table, options=options)
    except UsageError as err:
        raise UsageError(f"{source.key}={source.entry!r}: {err}") from None


def _range(table: RunTable) -> tuple[float, float]:
    budgets = swept_budgets(table)
    return min(budgets), max(budgets)


def _fit(source: Source, options, *, out_dir: Path) -> FitReport:
    """run_fit of one sweep into `out_dir` (every method, checks; the runs' own compute model)."""
    try:
        return run_fit(replace(options, runs_csv=None), table=source.table, name=source.name, out_dir=str(out_dir),
                       command=None if source.experiment_id is None else f"python -m orchestrator sweep={source.name}")
    except UsageError as err:
        raise UsageError(f"{source.key}={source.entry!r}: {err}") from None
    except FitError as err:
        raise RunFailure(f"the fit of {source.name} failed: {err}") from None


def _sweep_entry(source: Source, fit: SweepFit, result: FitResult, table: RunTable, *, role: str) -> dict:
    runs = table.runs
    best = runs.loc[np.isfinite(runs["budget"].to_numpy(float))].groupby("budget")["loss"].min()
    return {"name": source.name, "role": role, "origin": source.origin, "entry": source.entry,
            "sha256": source.sha256, "experiment_id": source.experiment_id, "parent_run_id": source.parent_run_id,
            "n_runs": len(runs), "n_excluded": len(table.excluded), "n_input": table.n_input,
            "budgets": fit.budgets, "swept": list(fit.swept), "N_range": list(fit.span("N")),
            "D_range": list(fit.span("D")), "method": fit.method, "law": fit.parameters(),
            "compute": result.compute_source, "headline_method": result.headline_method,
            "trustworthy": result.trustworthy, "checks": [c.to_json() for c in result.checks],
            "best_loss": {"budget": best.index.tolist(), "loss": best.to_list()},
            "fit_json": (Path("fits") / safe_name(source.name, fallback="sweep") / "fit.json").as_posix()}


def _curves(fits: list[SweepFit], core: dict) -> dict:
    """L_opt(C) of every sweep on one grid over every budget of every comparison's table (for the figure)."""
    budgets = [r["C"] for c in core["comparisons"] for r in c["rows"]]
    x = np.linspace(np.log(min(budgets) / 1.5), np.log(max(budgets) * 1.5), 60)
    return {f.name: {"C": np.exp(x).tolist(), "L": f.frontier.loss(x)[0].tolist(), "swept": list(f.swept)}
            for f in fits}


def format_summary(report: CompareReport) -> str:
    """The printed table: M(C) per variant with its interval and verdict, then the warnings and where it went."""
    r = report.result
    level = f"{r['level']:.0%}"
    lines = [f"compare {report.name}: baseline {r['baseline']}, method {r['method']}"
             + (f", {r['bootstrap']['resamples']} resamples per sweep" if r.get("bootstrap") else ", no bootstrap")]
    for s in r["sweeps"]:
        lines.append(f"  {s['role']:<9}{s['name']}: {s['n_runs']} runs, budgets {s['swept'][0]:.3g} to "
                     f"{s['swept'][1]:.3g}, frontier {'passes its checks' if s['trustworthy'] else 'NOT trustworthy'}")
    for title, comparisons in (("", r["comparisons"]), (" (joint fit, shared E)", (r.get("joint") or {}).get(
            "comparisons", []))):
        for c in comparisons:
            lines += ["", f"{c['variant']} over {c['baseline']}{title}: M(C) = C_base(L_variant(C)) / C ({level} CI)",
                      f"{'C':<9} {'M':<9} {'interval':<21} {'verdict':<15} {'M_N':<9} {'M_D':<9} notes"]
            for row in c["rows"]:
                lo, hi = row["M_ci"]
                lines.append(f"{_g(row['C']):<9} {_g(row['M']):<9} {f'[{_g(lo)}, {_g(hi)}]':<21} "
                             f"{row['verdict'] or '-':<15} {_g(row.get('M_N')):<9} {_g(row.get('M_D')):<9} "
                             + "; ".join(row["notes"]))
            if c["warnings"]:
                lines += ["warnings:"] + [f"  - {w}" for w in c["warnings"]]
    lines += ["", f"written: {report.folder / 'index.html'}"]
    if report.mlflow:
        lines.append(f"logged: MLflow experiment {report.mlflow['experiment']}, run {report.mlflow['run_id']}")
    return "\n".join(lines)


def _g(x: float | None) -> str:
    """A number in the printed table: 4 significant digits, 'inf' for unbounded, '-' for none."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return "inf" if math.isinf(x) else f"{x:.4g}"
