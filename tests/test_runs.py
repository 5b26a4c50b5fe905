"""Reading a sweep back from a real SQLite MLflow store: one row per trial by the finished-beats-newer rule,
numeric columns as numbers, training curves per step."""

from __future__ import annotations

import time

import pytest

from orchestrator.runs import COLUMNS, curves_table, runs_table
from orchestrator.tracking import best_per_trial, open_store
from trainers.api import Status


@pytest.fixture
def tracker(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="sweep", timeout_s=10, create=True)


def attempt(tracker, parent, trial_id, status, *, loss=None, attempt=1, reports=()):
    run = tracker.start_trial(parent_id=parent, sweep="sweep", name=f"{trial_id}-{attempt}", trial_id=trial_id,
                              attempt=attempt, config={"trainer": {"lr": 0.01, "batch_tokens": 2048}, "seed": 0},
                              derived={"N_total": 1.5e5, "D": 3e6, "C_exact": 4.1e12, "budget": 4e12,
                                       "dataset": "synthetic"},
                              host="h", device="cpu", node="n")
    if status != Status.RUNNING:
        result = {"status": status, "final_eval_loss": loss, "steps": 10} if loss is not None else None
        tracker.end_trial(run, status=status, result=result, reason=None if loss else f"{status} on purpose",
                          reports=list(reports))
    time.sleep(0.01)  # distinct start times: "newest" is well defined
    return run


def test_a_finished_run_speaks_for_its_trial_even_when_a_newer_attempt_failed(tracker):
    parent = tracker.start_parent(sweep="sweep", config={}, n_trials=3)
    finished = attempt(tracker, parent, "a", Status.FINISHED, loss=3.1)
    attempt(tracker, parent, "a", Status.CRASHED, attempt=2)
    attempt(tracker, parent, "b", Status.CRASHED)
    newest_b = attempt(tracker, parent, "b", Status.OOM, attempt=2)
    running = attempt(tracker, parent, "c", Status.RUNNING)

    table = runs_table(tracker)
    assert list(table.columns) == COLUMNS
    assert list(table["trial_id"]) == ["a", "b", "c"]
    rows = table.set_index("trial_id")
    assert (rows.loc["a", "status"], rows.loc["a", "run_id"], rows.loc["a", "final_eval_loss"]) == (
        Status.FINISHED, finished, 3.1)
    assert (rows.loc["b", "status"], rows.loc["b", "run_id"], rows.loc["b", "attempt"]) == (Status.OOM, newest_b, 2)
    assert rows.loc["b", "reason"] == "oom on purpose"
    assert (rows.loc["c", "status"], rows.loc["c", "run_id"]) == (Status.RUNNING, running)
    assert rows.loc["a", "N_total"] == 1.5e5 and rows.loc["a", "lr"] == 0.01 and rows.loc["a", "batch_tokens"] == 2048
    # the plan's status column and resumption read the same rule
    assert tracker.statuses() == {"a": Status.FINISHED, "b": Status.OOM, "c": Status.RUNNING}


def test_best_per_trial_keeps_the_newest_when_nothing_finished(tracker):
    parent = tracker.start_parent(sweep="sweep", config={}, n_trials=1)
    attempt(tracker, parent, "x", Status.LOST)
    newest = attempt(tracker, parent, "x", Status.KILLED, attempt=2)
    records = tracker.trial_runs()
    assert [r.status for r in records] == [Status.KILLED, Status.LOST]  # newest first
    assert best_per_trial(records)["x"].run_id == newest


def test_curves_come_back_per_step(tracker):
    parent = tracker.start_parent(sweep="sweep", config={}, n_trials=1)
    reports = [{"step": s, "tokens": 1000 * s, "flops": 1e9 * s, "train_loss": 4 - 0.1 * s, "lr": 0.01}
               for s in (1, 2, 3)] + [{"step": 3, "tokens": 3000, "flops": 3e9, "train_loss": 3.7, "eval_loss": 3.75}]
    run = attempt(tracker, parent, "a", Status.FINISHED, loss=3.75, reports=reports)
    curves = curves_table(tracker, [run])
    assert list(curves["step"]) == [1, 2, 3]
    assert set(curves["trial_id"]) == {"a"}
    assert list(curves["tokens"]) == [1000, 2000, 3000]
    assert curves["eval_loss"].iloc[-1] == 3.75 and curves["eval_loss"].iloc[:2].isna().all()


def test_an_empty_store_reads_as_empty_tables(tmp_path):
    reader = open_store(f"sqlite:///{tmp_path / 'none.db'}", experiment="sweep", timeout_s=10, create=False)
    assert reader is None  # nothing is created by a reader
    tracker = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="sweep", timeout_s=10, create=True)
    assert runs_table(tracker).empty and list(runs_table(tracker).columns) == COLUMNS
    assert curves_table(tracker, []).empty
