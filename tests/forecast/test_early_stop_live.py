"""sweep.early_stop in the driver: off by default, for IsoFLOP sweeps only, and in a real sweep (Ray, MLflow
SQLite, the GPT trainer) it never stops a trial needed to bracket a budget's minimum, and the run still fits."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.config import SweepConfig
from orchestrator.forecast.early_stop import BRACKET


def test_early_stop_is_off_by_default():
    assert SweepConfig().early_stop is False
    assert SweepConfig(kind="isoflop", budgets=[1e10]).early_stop is False


def test_early_stop_outside_an_isoflop_sweep_is_one_sentence_naming_the_key():
    with pytest.raises(ValueError, match=r"^sweep\.early_stop=true with sweep\.kind=grid: .*kind=isoflop"):
        SweepConfig(kind="grid", tokens=[1e5], early_stop=True)


def test_early_stop_on_a_grid_sweep_exits_2_from_the_command_line(cli, tmp_path):
    proc = cli("sweep=grid_example", "sweep.early_stop=true")
    assert proc.returncode == 2
    assert "sweep.early_stop" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_an_early_stopped_isoflop_sweep_keeps_every_bracketing_trial_and_still_fits(cli, tmp_path):
    # Sizes over a factor 30 around each minimum (~150 tokens per parameter here): the largest lie far past it,
    # and at 40 evaluations a run their forecasts tighten before they end.
    proc = cli("sweep=tiny", "sweep.name=early", "sweep.budgets=[1e11,2e11]", "sweep.sizes_per_budget=7",
               "sweep.span=30", "sweep.centre_tokens_per_param=150", "sweep.min_tokens_per_param=0",
               "sweep.early_stop=true", "trainer.evals_per_run=40", "cluster.num_cpus=2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("early")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") == "trial"]
    assert runs
    by_budget: dict[float, list] = {}
    for r in runs:
        by_budget.setdefault(float(r.data.params["budget"]), []).append(r)
    for budget, profile in by_budget.items():
        profile.sort(key=lambda r: float(r.data.params["N_total"]))
        statuses = [r.data.tags["status"] for r in profile]
        assert set(statuses) <= {"finished", "pruned"}, statuses
        stopped = [i for i, s in enumerate(statuses) if s == "pruned"]
        for i in stopped:  # recorded as a result with its reason, never rerun
            assert profile[i].data.tags["failure_reason"].startswith("early stop: "), profile[i].data.tags
            assert profile[i].data.metrics["steps"] < int(profile[i].data.params["steps"])  # stopped before its end
        finished = [i for i, s in enumerate(statuses) if s == "finished"]
        best = min(finished, key=lambda i: profile[i].data.metrics["final_eval_loss"])
        near = set(range(max(best - BRACKET, 0), min(best + BRACKET, len(profile) - 1) + 1))
        assert not near & set(stopped), (budget, best, stopped)
    fit = json.loads((tmp_path / "reports" / "early" / "fit.json").read_text())
    assert fit["parametric"]["status"] == "ok"
    assert fit["isoflop"]["status"] == "ok", fit["isoflop"]
