"""What each `action=` does. Thin shells over the pure core (planner, fitting) and the runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from orchestrator.config import Config
from orchestrator.errors import RunFailure, UsageError
from orchestrator.fitting.command_line import CommandLine
from orchestrator.fitting.errors import FitError
from orchestrator.fitting.result import FitResult
from orchestrator.plan_view import format_plan, slots
from orchestrator.planner import Trial
from trainers.api import RESULTS, Status
from trainers.config import DataConfig

Datasets = dict[str, DataConfig]

_INVOKED: list[CommandLine] = []
"""The user's command line as the CLI saw it (cli.dispatch sets it; see `invoked_as`)."""


def invoked_as(command: CommandLine | None) -> None:
    """Remember the user's command line for this process's actions: the fixes the checks print are that command
    line plus the change (fitting/command_line.py)."""
    _INVOKED[:] = [command] if command is not None else []


def command_line(config: Config) -> CommandLine:
    """The user's command line, or (an action called without the CLI) `python -m orchestrator sweep=NAME`."""
    return _INVOKED[0] if _INVOKED else CommandLine.for_sweep(config.sweep.name)


def local_cpus(config: Config) -> int:
    return config.cluster.num_cpus or os.cpu_count() or 1


def action_plan(config: Config, *, trials: list[Trial], datasets: Datasets) -> int:  # noqa: ARG001
    """Print the plan with each trial's status in the store; run nothing, write nothing."""
    from orchestrator.preflight import check_data  # noqa: PLC0415
    from orchestrator.tracking import open_sweep_store  # noqa: PLC0415

    check_data(trials)  # a corpus smaller than a trial's D (without data.allow_repeat) is refused here as in a run
    forks = fork_plan(config, trials) if config.sweep.forks else None
    tracker = open_sweep_store(config, create=False)
    statuses = tracker.statuses() if tracker is not None else {}
    estimate = None
    if config.cluster.throughput == "probe":  # a few timed steps per shape (orchestrator/throughput.py)
        from orchestrator.throughput import estimate as probe_estimate, probe_concurrency  # noqa: PLC0415

        device = "cuda" if config.cluster.gpus_per_trial > 0 else "cpu"
        estimate = probe_estimate([t for t in trials if statuses.get(t.trial_id) != "finished"] or trials,
                                  device=device, threads=config.cluster.cpus_per_trial,
                                  concurrency=probe_concurrency(config.cluster,
                                                                slots=slots(config.cluster, cpus=local_cpus(config))))
    print(format_plan(trials, cluster=config.cluster, cpus=local_cpus(config), sweep=config.sweep.name,
                      statuses=statuses, estimate=estimate))
    if config.hparams.pilot:
        print(pilot_line(config))
    if forks is not None:
        from orchestrator.forks import format_forks  # noqa: PLC0415

        print(format_forks(forks))
    return 0


def pilot_line(config: Config) -> str:
    """Which of the plan's values came from a pilot (hparams=pilot_<name>, written by action=pilot)."""
    h = config.hparams
    centre = (f", IsoFLOP centre {h.centre_tokens_per_param:.4g} tokens per parameter (instead of "
              f"sweep.centre_tokens_per_param={config.sweep.centre_tokens_per_param:g})"
              if h.centre_tokens_per_param and config.sweep.kind == "isoflop" else "")
    return (f"from the pilot (hparams={h.name}): lr = {h.lr.describe()}, batch_tokens = {h.batch_tokens.describe()}"
            f"{centre}; {h.pilot}")


def fork_plan(config: Config, trials: list[Trial]):
    """The sweep's trunks and forks (sweep.forks=true; orchestrator/forks.py)."""
    from orchestrator.forks import checkpoint_root, plan_forks  # noqa: PLC0415

    if config.adaptive.enabled:
        raise UsageError("sweep.forks=true and adaptive.enabled=true are both set: adaptive placement adds sizes one "
                         "at a time, which a trunk cannot fork for; use one of them.")
    return plan_forks(trials, root=checkpoint_root(config))


def action_run(config: Config, *, trials: list[Trial], datasets: Datasets) -> int:
    """Run every pending trial, then write the sweep's frontier report.

    kind=lr_search runs the Optuna search over the planned points instead (no frontier report);
    adaptive.enabled=true runs the planned sizes as a first wave and places more (search/adaptive.py).
    """
    from orchestrator.preflight import check_run  # noqa: PLC0415
    from orchestrator.runner import run_sweep  # noqa: PLC0415

    check_run(config, trials=trials)  # trainer, its options, data, CPUs: before the store is touched
    if config.sweep.forks:
        fork_plan(config, trials)  # a sweep that cannot fork: one sentence before anything starts
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
    if config.adaptive.enabled:
        from orchestrator.search.adaptive import run_adaptive  # noqa: PLC0415

        code = run_adaptive(config, first_wave=trials, datasets=datasets)
    elif config.sweep.forks:
        from orchestrator.forks import ForkSource  # noqa: PLC0415
        from orchestrator.tracking import open_sweep_store  # noqa: PLC0415

        reader = open_sweep_store(config, create=False)
        done = {t for t, s in (reader.statuses() if reader is not None else {}).items()
                if s in RESULTS and not (config.cluster.retry_results and s in (Status.DIVERGED, Status.OOM))}
        code = run_sweep(config, trials=trials, source=ForkSource(fork_plan(config, trials), done_ids=done))
    else:
        code = run_sweep(config, trials=trials)
    if code in (0, 1):  # finished, possibly with failed trials: report what there is
        fit = None
        try:
            fit = write_sweep_report(config)
        except (UsageError, RunFailure) as err:  # too few runs to fit, a failed fit: the sweep itself ran
            print(f"report skipped: {err}")
        print_runs_url(config)
        if fit is not None:
            print_headline(fit.fit, name=fit.name)
    return code


def print_runs_url(config: Config) -> None:
    """The last line of a sweep: where its runs table is in the MLflow UI."""
    from orchestrator.tracking import open_sweep_store  # noqa: PLC0415

    tracker = open_sweep_store(config, create=False)
    if tracker is not None and tracker.experiment_id is not None:
        print(f"runs: {tracker.runs_url()}")


def action_prepare(config: Config, *, trials: list[Trial], datasets: Datasets) -> int:  # noqa: ARG001
    """Tokenize prepare.input into prepare.output for data=tokens (orchestrator/prepare)."""
    from orchestrator.prepare.run import prepare, summary  # noqa: PLC0415

    print(summary(prepare(config.prepare)))
    return 0


def sweep_runs(config: Config):
    """(tracker, runs table, per-step curves of the finished runs) of the sweep, read from MLflow."""
    from orchestrator.runs import curves_table, runs_table  # noqa: PLC0415
    from orchestrator.tracking import open_sweep_store  # noqa: PLC0415

    tracker = open_sweep_store(config, create=False)
    if tracker is None or tracker.experiment_id is None:
        raise UsageError(f"sweep={config.sweep.name} has no runs in the tracking store yet: run the sweep first, "
                         f"or fit a CSV with fit.runs_csv=PATH.")
    runs = runs_table(tracker)
    finished = runs[runs["status"] == Status.FINISHED]
    return tracker, runs, curves_table(tracker, list(finished["run_id"]))


def fit_sweep_or_csv(config: Config):
    """Fit fit.runs_csv when given, else the sweep's runs; returns (fit report, runs, curves, tracker).
    A fit that fails on valid input is a RunFailure (exit 1, one sentence), not a traceback."""
    if config.fit.runs_csv:
        return _fit(config.fit, command=command_line(config)), None, None, None
    from orchestrator.shape_rule import for_sweep  # noqa: PLC0415

    tracker, runs, curves = sweep_runs(config)
    from orchestrator.report.hparams_law import untuned_lines  # noqa: PLC0415  (named before the frontier fit)

    for line in untuned_lines(runs, rules=config.hparams)[:8]:
        if line:
            print(line.lstrip("# "))
    # One compute definition from plan to frontier: the frontier's C = k(N) N D uses the cost per token of the
    # shapes this sweep's shape rule gives each N (fitting/compute.py, orchestrator/shape_rule.py).
    rule = for_sweep(config.model, vocab_size=config.data.vocab_size, n_convention=config.fit.n_convention)
    # Runs that break the sweep's validity rules are left out of the fit, with the reason (orchestrator/hparams.py).
    options = replace(config.fit,
                      min_steps=config.hparams.min_steps if config.fit.min_steps is None else config.fit.min_steps,
                      min_warmup_steps=config.hparams.min_warmup_steps if config.fit.min_warmup_steps is None
                      else config.fit.min_warmup_steps)
    report = _fit(options, table=runs, curves=curves, name=config.sweep.name, shape_rule=rule,
                  command=command_line(config))
    if report.json_path is not None:
        tracker.log_to_latest_sweep_run(report.json_path)
    return report, runs, curves, tracker


def _fit(options, **kw):
    from orchestrator.fitting.run import run_fit  # noqa: PLC0415

    try:
        return run_fit(options, **kw)
    except FitError as err:
        raise RunFailure(f"the fit failed: {err}") from None


def action_fit(config: Config, *, trials: list[Trial], datasets: Datasets) -> int:  # noqa: ARG001
    """Fit scaling laws; print the summary; write fit.json (and log it to the sweep's parent run)."""
    from orchestrator.fitting.run import format_summary  # noqa: PLC0415

    report = fit_sweep_or_csv(config)[0]
    print(format_summary(report))
    print()
    print_headline(report.fit, name=report.name)
    return 0  # a fit that could not be done raised: FitInputError (exit 2) or FitError (as RunFailure, exit 1)


def action_report(config: Config, *, trials: list[Trial], datasets: Datasets) -> int:  # noqa: ARG001
    """Fit, then write reports/<name>/ (index.html, report.md, frontier.csv, runs.csv, fit.json, PNGs);
    for a sweep, log the same files to its newest parent run."""
    fit = write_sweep_report(config)
    print_headline(fit.fit, name=fit.name)
    return 0


def write_sweep_report(config: Config):
    """Fit and write reports/<name>/ (printing where); the fit report."""
    from orchestrator.report import write_report  # noqa: PLC0415

    fit, runs, curves, tracker = fit_sweep_or_csv(config)
    out_dir = fit.json_path.parent if fit.json_path is not None else None
    files = write_report(fit, runs=runs, curves=curves, out_dir=out_dir, config=config)
    if tracker is not None:
        for path in files:
            tracker.log_to_latest_sweep_run(path, artifact_path="report")
    print(f"report: {out_dir / 'index.html'}")
    return fit


def action_pilot(config: Config, *, trials: list[Trial], datasets: Datasets, dirs=None) -> int:  # noqa: ARG001
    """Measure the sweep's lr and batch rules, IsoFLOP centre and throughput; write hparams=pilot_<name>
    (orchestrator/pilot); with pilot.runs_csv, fit the law of a table of runs instead."""
    from orchestrator.conf_dirs import ConfigDirs  # noqa: PLC0415
    from orchestrator.pilot.run import run_pilot  # noqa: PLC0415

    return run_pilot(config, datasets=datasets, dirs=dirs if dirs is not None else ConfigDirs())


def action_compare(config: Config, *, trials: list[Trial], datasets: Datasets) -> int:  # noqa: ARG001
    """M(C) of compare.variants over compare.baseline with intervals; the report; a run in MLflow
    (orchestrator/compare)."""
    from orchestrator.compare.run import format_summary, run_compare  # noqa: PLC0415

    print(format_summary(run_compare(config)))
    return 0


def action_forecast(config: Config, *, trials: list[Trial], datasets: Datasets) -> int:  # noqa: ARG001
    """Each run of forecast.table's checkpoints: its last step seen, measured loss, and forecast final loss with a
    90% interval (orchestrator/forecast/table.py); prints only, writes nothing."""
    from orchestrator.forecast.law import ForecastError  # noqa: PLC0415
    from orchestrator.forecast.table import TableError, forecast_table  # noqa: PLC0415

    try:
        rows = forecast_table(config.forecast.table)
    except (TableError, ForecastError) as err:
        raise UsageError(f"forecast.table={config.forecast.table}: {err}") from None
    print(f"{'run':<24} {'last step':>9} {'loss':>8}  forecast final loss [90% interval]")
    for row in rows:
        f = row.forecast
        note = (f"  finished at {row.measured:.4f}; forecast from steps <= {row.seen_step}"
                if row.measured is not None else "")
        print(f"{row.run:<24} {row.last_step:>9d} {row.last_loss:>8.4f}  {f.loss:.4f} [{f.lo:.4f}, {f.hi:.4f}]{note}")
    return 0


def print_headline(result: FitResult, *, name: str) -> None:
    """The last lines of run, fit and report: the answer (orchestrator/headline.py)."""
    from orchestrator.headline import terminal_headline  # noqa: PLC0415

    print("\n".join(terminal_headline(result, name=name)))


ACTIONS: dict[str, Callable[..., int]] = {
    "plan": action_plan,
    "run": action_run,
    "fit": action_fit,
    "report": action_report,
    "compare": action_compare,
    "prepare": action_prepare,
    "pilot": action_pilot,
    "forecast": action_forecast,
}
