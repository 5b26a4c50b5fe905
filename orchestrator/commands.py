"""What each `action=` does. Thin shells over the pure core (planner, fitting) and the runner."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import replace

from orchestrator.config import Config
from orchestrator.errors import RunFailure, UsageError
from orchestrator.fitting.errors import FitError
from orchestrator.plan_view import format_plan
from orchestrator.planner import Trial, plan
from trainers.config import DataConfig


def plan_trials(config: Config, *, datasets: dict[str, DataConfig]) -> list[Trial]:
    """The sweep's trials; with sweep.lr_from, each at the rate the named search's power law gives."""
    lr_law = None
    if config.sweep.lr_from:
        from orchestrator.search.lr_search import tuned_lr_law  # noqa: PLC0415

        try:
            lr_law = tuned_lr_law(config)
        except ValueError as err:  # the named search has no results yet: the user's sweep.lr_from
            raise UsageError(str(err)) from None
    return plan(config.sweep, model=config.model, trainer=config.trainer, datasets=datasets, lr_law=lr_law,
                hparams=config.hparams)


def local_cpus(config: Config) -> int:
    return config.cluster.num_cpus or os.cpu_count() or 1


def action_plan(config: Config, *, trials: list[Trial]) -> int:
    """Print the plan with each trial's status in the store; run nothing, write nothing."""
    from orchestrator.tracking import open_store  # noqa: PLC0415

    tracker = open_store(config.tracking.uri, experiment=config.tracking.experiment or config.sweep.name,
                         timeout_s=config.tracking.timeout_s, create=False)
    statuses = tracker.statuses() if tracker is not None else {}
    print(format_plan(trials, cluster=config.cluster, cpus=local_cpus(config), sweep=config.sweep.name,
                      statuses=statuses))
    return 0


def action_run(config: Config, *, trials: list[Trial]) -> int:
    """Run every pending trial, then write the sweep's frontier report.

    kind=lr_search runs the Optuna search over the planned points instead (no frontier report);
    sweep.adaptive=true runs the planned sizes as a first wave and places more (search/adaptive.py).
    """
    from orchestrator.preflight import check_run  # noqa: PLC0415
    from orchestrator.runner import run_sweep  # noqa: PLC0415

    check_run(config, trials=trials)  # trainer, its options, data, CPUs: before the store is touched
    invalid = [t for t in trials if t.invalid is not None]
    if invalid and not config.hparams.allow_invalid:
        first = invalid[0]
        raise UsageError(f"{len(invalid)} of {len(trials)} planned trials would not be valid scaling points (e.g. "
                         f"{first.name}: {first.invalid}); give them more steps (a smaller batch, hparams=cpu or "
                         f"hparams.batch_tokens rules, or larger budgets), or set hparams.allow_invalid=true to run "
                         f"them anyway (the fit leaves them out).")
    if config.sweep.kind == "lr_search":
        from orchestrator.search.lr_search import run_lr_search  # noqa: PLC0415

        return run_lr_search(config, points=trials)
    if config.sweep.adaptive:
        from orchestrator.search.adaptive import run_adaptive  # noqa: PLC0415

        code = run_adaptive(config, first_wave=trials)
    else:
        code = run_sweep(config, trials=trials)
    if code in (0, 1):  # finished, possibly with failed trials: report what there is
        try:
            action_report(config, trials=trials)
        except (UsageError, RunFailure) as err:  # too few runs to fit, a failed fit: the sweep itself ran
            print(f"report skipped: {err}")
    return code


def sweep_runs(config: Config):
    """(tracker, runs table, per-step curves of the finished runs) of the sweep, read from MLflow."""
    from orchestrator.runs import curves_table, runs_table  # noqa: PLC0415
    from orchestrator.tracking import open_store  # noqa: PLC0415

    experiment = config.tracking.experiment or config.sweep.name
    tracker = open_store(config.tracking.uri, experiment=experiment, timeout_s=config.tracking.timeout_s, create=False)
    if tracker is None or tracker.experiment_id is None:
        raise UsageError(f"sweep={config.sweep.name} has no runs in the tracking store yet: run the sweep first, "
                         f"or fit a CSV with fit.runs_csv=PATH.")
    runs = runs_table(tracker)
    finished = runs[runs["status"] == "finished"]
    return tracker, runs, curves_table(tracker, list(finished["run_id"]))


def fit_sweep_or_csv(config: Config):
    """Fit fit.runs_csv when given, else the sweep's runs; returns (fit report, runs, curves, tracker).
    A fit that fails on valid input is a RunFailure (exit 1, one sentence), not a traceback."""
    if config.fit.runs_csv:
        return _fit(config.fit), None, None, None
    from orchestrator.shape_rule import for_sweep  # noqa: PLC0415

    tracker, runs, curves = sweep_runs(config)
    # One compute definition from plan to frontier: the frontier's C = k(N) N D uses the cost per token of the
    # shapes this sweep's shape rule gives each N (fitting/compute.py, orchestrator/shape_rule.py).
    rule = for_sweep(config.model, vocab_size=config.data.vocab_size, n_convention=config.fit.n_convention)
    # Runs that break the sweep's validity rules are left out of the fit, with the reason (orchestrator/hparams.py).
    options = replace(config.fit,
                      min_steps=config.hparams.min_steps if config.fit.min_steps is None else config.fit.min_steps,
                      min_warmup_steps=config.hparams.min_warmup_steps if config.fit.min_warmup_steps is None
                      else config.fit.min_warmup_steps)
    report = _fit(options, table=runs, curves=curves, name=config.sweep.name, shape_rule=rule,
                  command=f"python -m orchestrator sweep={config.sweep.name}")
    if report.json_path is not None:
        tracker.log_to_latest_sweep_run(report.json_path)
    return report, runs, curves, tracker


def _fit(options, **kw):
    from orchestrator.fitting.run import run_fit  # noqa: PLC0415

    try:
        return run_fit(options, **kw)
    except FitError as err:
        raise RunFailure(f"the fit failed: {err}") from None


def action_fit(config: Config, *, trials: list[Trial]) -> int:
    """Fit scaling laws; print the summary; write fit.json (and log it to the sweep's parent run)."""
    from orchestrator.fitting.run import format_summary  # noqa: PLC0415

    report = fit_sweep_or_csv(config)[0]
    print(format_summary(report))
    return _exit(report)


def action_report(config: Config, *, trials: list[Trial]) -> int:
    """Fit, then write reports/<name>/ (index.html, report.md, frontier.csv, runs.csv, fit.json, PNGs);
    for a sweep, log the same files to its newest parent run."""
    from orchestrator.report import write_report  # noqa: PLC0415

    fit, runs, curves, tracker = fit_sweep_or_csv(config)
    out_dir = fit.json_path.parent if fit.json_path is not None else None
    files = write_report(fit, runs=runs, curves=curves, out_dir=out_dir, config=config)
    if tracker is not None:
        for path in files:
            tracker.log_to_latest_sweep_run(path, artifact_path="report")
    print(f"report: {out_dir / 'index.html'}")
    return _exit(fit)


def _exit(fit) -> int:
    """The fit's exit code (fitting/run.py decides: 0 written, 1 failed, 2 bad input), never without a sentence."""
    code = fit.exit_code
    if code:
        reasons = "; ".join(f"{method}: {reason}" for method, reason in fit.skipped.items()) or "see the summary above"
        print(f"error: the fit of {fit.name} did not succeed ({reasons}).", file=sys.stderr)
    return code


ACTIONS: dict[str, Callable[..., int]] = {
    "plan": action_plan,
    "run": action_run,
    "fit": action_fit,
    "report": action_report,
}
