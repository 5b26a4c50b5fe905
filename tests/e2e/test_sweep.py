"""The user's day on a real tiny sweep: GPT on the synthetic language, on Ray, in MLflow, reported."""

from __future__ import annotations

import pytest

import math
from pathlib import Path

from mlflow.tracking import MlflowClient


def test_tiny_gpt_sweep_end_to_end(cli, tmp_path: Path):
    result = cli("sweep=tiny", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "6 to run" in result.stdout and "finished" in result.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(parents) == 1 and len(children) == 6
    for run in children:
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "finished"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        params, metrics = run.data.params, run.data.metrics
        # exact accounting recorded beside 6ND; the trial hit its budget
        c_exact, budget = float(params["C_exact"]), float(params["budget"])
        assert abs(c_exact - budget) / budget <= 0.01
        assert float(params["C_6ND"]) == 6 * int(params["N_total"]) * int(params["D"])
        # a real training run: loss below the unigram entropy of the language, above its floor
        floor = metrics["entropy_floor"]
        assert floor < metrics["final_eval_loss"] < math.log(256)
        assert metrics["tokens"] == int(params["D"])
        history = client.get_metric_history(run.info.run_id, "eval_loss")
        assert len(history) >= 2  # periodic evaluation, not only the final one
        assert run.data.tags["device"] == "cpu"

    # Resume: everything is done, nothing reruns.
    again = cli("sweep=tiny", "action=plan")
    assert "status: finished 6" in again.stdout


@pytest.mark.slow
def test_plug_in_and_surrogate_trainers_run_as_sweeps(cli, tmp_path: Path):
    # A user's own trainer (trainer.target) and the surrogate go through the same runner and store.
    for trainer, experiment in (("mlp", "tiny"), ("surrogate", "tiny_surrogate")):
        result = cli("sweep=tiny", f"trainer={trainer}", f"tracking.experiment={experiment}", timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        exp = client.get_experiment_by_name(experiment)
        children = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") == "trial"]
        assert len(children) == 6 and all(r.data.tags["status"] == "finished" for r in children)
        assert {r.data.params["trainer.target"] for r in children} == {f"trainers.{'examples.mlp' if trainer == 'mlp' else 'surrogate'}:train"}
