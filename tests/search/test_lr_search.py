"""Per-size learning-rate search through the real CLI: Optuna + Ray + MLflow on the surrogate trainer,
whose best rate is known (lr_opt(N) = 3e-3 (N / 1e6)^-0.3 in conf/sweep/lr_search_tiny.yaml)."""

from __future__ import annotations

import pytest

import json
import re
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

SEARCH = ["sweep=lr_search_tiny", "sweep.sizes=[3.0e4,3.0e5]", "search.trials_per_size=4", "cluster.num_cpus=2"]


def true_lr(n: float) -> float:
    return 3e-3 * (n / 1e6) ** -0.3


def child_runs(tmp_path: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lr_search_tiny")
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000) if r.data.tags.get("kind") == "trial"]


def plan_rows(stdout: str) -> list[dict[str, str]]:
    """The plan table (orchestrator/plan_view.py) as one dict per trial row, keyed by the column names: the
    dashed rule under the header gives each fixed-width column's span."""
    lines = stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    names = [lines[rule - 1][a:b].strip() for a, b in spans]
    rows = [line for line in lines[rule + 1:] if re.match(r"[0-9a-f]{16}\s", line)]
    return [{name: line[a:b].strip() for name, (a, b) in zip(names, spans)} for line in rows]


def studies(tmp_path: Path) -> list[optuna.study.Study]:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    return [optuna.load_study(study_name=n, storage=storage) for n in optuna.study.get_all_study_names(storage)]


@pytest.mark.slow
def test_search_prunes_resumes_and_hands_tuned_rates_to_a_sweep(cli, tmp_path):
    # One scenario, because each step needs the previous one's store (and Ray starts once per step).
    out = cli(*SEARCH)
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "reports" / "lr_search_tiny" / "lr_search.json").read_text())
    assert len(data["sizes"]) == 2
    for size in data["sizes"]:  # the search finds the known optimum within 20% with 4 trials per size
        assert abs(size["lr_opt"] / true_lr(size["N_total"]) - 1) < 0.2, size
    runs = child_runs(tmp_path)
    assert len(runs) == 8
    # every trial is a child of the search's parent run, tagged with its Optuna trial number
    assert all(r.data.tags["stage"] == "lr_search" and r.data.tags["optuna_trial"].isdigit() and
               r.data.tags["mlflow.parentRunId"] for r in runs)
    assert any(r.data.tags["status"] == "pruned" for r in runs)  # the median pruner stopped weak rates
    assert (tmp_path / "optuna.journal").exists()  # the default storage sits next to mlflow.db

    # A driver that died mid-trial leaves an Optuna trial RUNNING: the rerun fails it and asks again.
    first = studies(tmp_path)[0]
    first.ask()
    out = cli(*SEARCH[:-2], "search.trials_per_size=5", "cluster.num_cpus=2")
    assert out.returncode == 0, out.stderr
    assert "8 already done" in out.stdout  # nothing of the first run is rerun
    for study in studies(tmp_path):
        counted = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
        assert len(counted) == 5
        assert not study.get_trials(states=(TrialState.RUNNING,))
    assert 8 < len(child_runs(tmp_path)) <= 10  # new runs only (a rate told from a stored run needs none)
    assert studies(tmp_path)[0].get_trials(states=(TrialState.FAIL,))

    # hyperparameters.lr=tuned: a scaling sweep takes each trial's rate from the fitted power law.
    law = json.loads((tmp_path / "reports" / "lr_search_tiny" / "lr_search.json").read_text())["law"]
    out = cli("sweep=tiny", "trainer=surrogate", "sweep.lr_from=lr_search_tiny", "action=plan")
    assert out.returncode == 0, out.stderr
    rows = plan_rows(out.stdout)
    assert len(rows) == 6, out.stdout
    lrs = {float(row["lr"]) for row in rows}
    assert 0.003 not in lrs and len(lrs) > 1  # no longer the default rate, and one per size
    assert all(1e-3 < lr < 3e-2 for lr in lrs), (lrs, law)
    assert law["p"] < 0  # smaller models get larger rates, as in the surrogate (p = -0.3)


def test_tuned_rates_without_a_search_and_unknown_sampler_are_one_sentence_errors(cli, tmp_path):
    out = cli("sweep=tiny", "trainer=surrogate", "sweep.lr_from=nothing_here", "action=plan")
    assert out.returncode == 2
    assert "sweep.lr_from=nothing_here" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = cli("sweep=lr_search_tiny", "search.sampler=cmaes", "action=plan")
    assert out.returncode == 2 and "search.sampler" in out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.journal").exists()
