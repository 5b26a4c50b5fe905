"""A real sweep (Ray, MLflow SQLite, the GPT trainer): a trial with a rate far too high is stopped as diverged,
with its step, before its planned end; the healthy trials log live forecasts of their final loss per step."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_a_diverging_trial_is_stopped_with_its_step_and_healthy_ones_get_forecasts(cli, tmp_path):
    # Three short trials on 2 slots, then a longer one: its forecasts start once the three have finished (the
    # fewest that calibrate an interval: forecast/live.py MIN_CURVES).
    items = ",".join(f"{{n_layer:1,d_model:32,n_head:2,tokens:{t:g},seed:{s}}}"
                     for t, s in ((2e5, 0), (2e5, 1), (2e5, 3), (1.6e6, 2)))
    ok = cli("sweep=list_example", f"sweep.trials=[{items}]", "cluster.num_cpus=2", "hparams.allow_invalid=true",
             "trainer.evals_per_run=20")
    assert ok.returncode == 0, ok.stderr
    bad = cli("sweep=list_example", "sweep.name=diverging",
              "sweep.trials=[{n_layer:1,d_model:32,n_head:2,tokens:3e5,seed:2}]", "cluster.num_cpus=2",
              "hparams.allow_invalid=true", "trainer.lr=30.0", "trainer.evals_per_run=10")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    trials = []
    for name in ("list_example", "diverging"):
        exp = client.get_experiment_by_name(name)
        trials += [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") == "trial"]
    diverged = [r for r in trials if r.data.tags["status"] == "diverged"]
    assert len(diverged) == 1, bad.stdout + bad.stderr
    run = diverged[0]
    reason = run.data.tags["failure_reason"]
    assert "step" in reason
    planned = math.ceil(3e5 / int(run.data.params["trainer.batch_tokens"]))
    assert 0 < run.data.metrics["steps"] < planned  # stopped at once, not trained to the end
    healthy = [r for r in trials if r.data.tags["status"] == "finished"]
    assert len(healthy) == 4
    (longest,) = [r for r in healthy if r.data.params["tokens"] == "1600000"]
    history = client.get_metric_history(longest.info.run_id, "forecast_final_loss")
    lo = client.get_metric_history(longest.info.run_id, "forecast_final_loss_lo")
    hi = client.get_metric_history(longest.info.run_id, "forecast_final_loss_hi")
    assert len(history) >= 2 and len(lo) == len(hi) == len(history)
    assert all(0 < a.value <= b.value <= c.value for a, b, c in zip(lo, history, hi))
    final = longest.data.metrics["final_eval_loss"]
    assert abs(history[-1].value - final) / final < 0.05  # its last forecast, late in the run
