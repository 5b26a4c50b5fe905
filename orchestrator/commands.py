"""What each `action=` does. Thin shells over the pure core (planner, fitting) and the runner."""

from __future__ import annotations

import os
from collections.abc import Callable

from orchestrator.config import Config
from orchestrator.plan_view import format_plan
from orchestrator.planner import Trial, plan
from trainers.config import DataConfig


def plan_trials(config: Config, *, datasets: dict[str, DataConfig]) -> list[Trial]:
    return plan(config.sweep, model=config.model, trainer=config.trainer, datasets=datasets)


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
    from orchestrator.runner import run_sweep  # noqa: PLC0415

    return run_sweep(config, trials=trials)


def action_fit(config: Config, *, trials: list[Trial]) -> int:
    from orchestrator.fitting.run import format_summary, run_fit  # noqa: PLC0415

    report = run_fit(config.fit, name=None)
    print(format_summary(report))
    return 0


ACTIONS: dict[str, Callable[..., int]] = {
    "plan": action_plan,
    "run": action_run,
    "fit": action_fit,
}
