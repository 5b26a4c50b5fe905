"""The runner's contract with whatever feeds it trials: `TrialSource`, a base class whose optional hooks are no-ops.

Modelled on Ray Tune's `Searcher` (ray/tune/search/searcher.py): `suggest` is what a searcher must write,
`on_trial_result` and `on_trial_complete` are no-ops on the base, so the loop calls every hook without asking
whether it exists. Here `next_trials` and `done` are what a source must write; the rest default to what a plain
list of trials needs. Every source subclasses it: `FixedList` (below), `LRSearch` (search/lr_search.py),
`AdaptiveIsoFLOP` (search/adaptive.py), `ForkSource` (forks.py). The loop (orchestrator/runner/__init__.py)
calls, for each round:

  next_trials(free)         when slots are free and not done(): the trials to submit now (any number <= free)
  run_dir(trial)            at submission: the folder it trains in (None: checkpoints/<sweep>/<trial id>)
  tags(trial), on_start     when its run opens: extra tags of the child run; then the run's id
  on_report(trial, metrics) every streamed report; True prunes (the task is cancelled, recorded `pruned`)
  on_result(trial, status, result)  its final outcome (retried attempts are not final and not passed)
  take_settled()            trials the source settled without running them: each recorded with its reason
  flops_of(trial)           what running it costs (the progress panel, time limits)
  outlook()                 once, before the first round: the header line (None: the plain count)

The loop stops once nothing is in flight and the source is `done()` or gave nothing. This module imports
neither Ray nor the store, so a source is driven in-process by tests (tests/test_trial_source.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

from orchestrator.planner import Trial
from trainers.api import Status


class Settled(NamedTuple):
    """A trial the source settled without running it (a fork whose trunk never reached its fork point)."""

    trial: Trial
    status: Status
    reason: str


class TrialSource(ABC):
    """A driver-side policy that feeds the trial loop as it goes (see the module docstring for the calls)."""

    @abstractmethod
    def next_trials(self, free_slots: int) -> list[Trial]:
        """Up to `free_slots` trials to submit now; [] while the source waits for results."""

    @abstractmethod
    def done(self) -> bool:
        """Nothing more will come from next_trials (the loop still waits for what is in flight)."""

    def on_report(self, trial: Trial, metrics: dict[str, Any]) -> bool:  # noqa: ARG002
        """A streamed report of a running trial; True prunes the trial (a result, not rerun)."""
        return False

    def on_result(self, trial: Trial, status: Status, result: dict[str, Any] | None) -> None:  # noqa: B027 (a hook)
        """The trial's final outcome: its status and the trainer's result (None when it has none)."""

    def on_start(self, trial: Trial, run_id: str) -> None:  # noqa: B027 (an optional hook: no-op by default)
        """The trial's MLflow run is open (its id, e.g. for a fork to link its trunk's run)."""

    def tags(self, trial: Trial) -> dict[str, str]:  # noqa: ARG002
        """Extra tags of the trial's child run (e.g. the Optuna study and trial number)."""
        return {}

    def run_dir(self, trial: Trial) -> str | None:  # noqa: ARG002
        """The folder the trial trains in; None: the runner's default (checkpoints/<sweep>/<trial id>)."""
        return None

    def flops_of(self, trial: Trial) -> float:
        """The FLOPs running `trial` costs (a fork only its cooldown: forks.py)."""
        return trial.cost.c_exact

    def take_settled(self) -> list[Settled]:
        """Trials settled without a run since the last call (each is recorded once, with its reason)."""
        return []

    def outlook(self) -> str | None:
        """The run's header line when the source plans in waves; None: the loop prints the plain count."""
        return None


class FixedList(TrialSource):
    """The default source: a fixed list of trials in order, never pruned."""

    def __init__(self, trials: list[Trial]) -> None:
        self.waiting = list(trials)

    def next_trials(self, free_slots: int) -> list[Trial]:
        taken, self.waiting = self.waiting[:free_slots], self.waiting[free_slots:]
        return taken

    def done(self) -> bool:
        return not self.waiting
