"""Adaptive IsoFLOP placement through the real CLI on the surrogate trainer."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient


def test_adaptive_placement_brackets_a_minimum_the_first_wave_missed(cli, tmp_path):
    # 400 tokens per parameter at the centre puts the whole first wave below N_opt (the surrogate's
    # optimum at 4e12 FLOPs is ~3e5 parameters), so the lowest loss sits at the largest size.
    out = cli("sweep=isoflop_adaptive_tiny", "sweep.budgets=[4.0e12]", "sweep.centre_tokens_per_param=400",
              "cluster.num_cpus=2")
    assert out.returncode in (0, 1), out.stderr  # 1 budget: the frontier report is skipped, not the sweep
    log = json.loads((tmp_path / "reports" / "isoflop_adaptive_tiny" / "adaptive_decisions.json").read_text())
    decisions = [d["decision"] for d in log["decisions"]]
    assert decisions[0] == "first wave" and "extend" in decisions and decisions[-1] == "stop"
    extend = next(d for d in log["decisions"] if d["decision"] == "extend")
    assert "largest size" in extend["reason"] and "adaptive C=4e+12: extend" in out.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("isoflop_adaptive_tiny")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    sizes = sorted(float(r.data.params["N_total"]) for r in runs if r.data.tags.get("kind") == "trial")
    n_opt = log["N_opt"][0]["N_opt"]
    assert sizes[0] < n_opt < sizes[-1]  # bracketed now
    assert abs(n_opt / 3.0e5 - 1) < 0.2
    parent = next(r for r in runs if r.data.tags.get("kind") == "sweep")
    assert "adaptive_decisions.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]
