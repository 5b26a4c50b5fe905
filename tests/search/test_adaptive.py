"""Adaptive IsoFLOP placement through the real CLI on the surrogate trainer."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_adaptive_placement_brackets_a_minimum_the_first_wave_missed(cli, tmp_path):
    # 400 tokens per parameter at the centre puts the whole first wave below N_opt (the surrogate's
    # optimum at 4e12 FLOPs is ~3e5 parameters), so the lowest loss sits at the largest size.
    out = cli("sweep=isoflop_adaptive_tiny", "sweep.budgets=[4.0e12]", "sweep.centre_tokens_per_param=400",
              "cluster.num_cpus=2")
    # Exit 0: the surrogate injects no failure, so every trial finishes, and a run's exit code is its trials'
    # (commands.action_run: 1 only when a trial failed; the frontier report of one budget does not change it).
    assert out.returncode == 0, out.stderr
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
    # The adaptive group's settings are recorded on the parent run beside the sweep's.
    assert (parent.data.params["adaptive.enabled"], parent.data.params["adaptive.tolerance"]) == ("True", "0.1")


@pytest.mark.parametrize("args, sentence", [
    (["sweep=grid_example", "adaptive.enabled=true"], "adaptive.enabled=true needs sweep.kind=isoflop, not 'grid'"),
    (["sweep=isoflop_adaptive_tiny", "adaptive.max_sizes=2"], "adaptive.max_sizes=2 is invalid: it must be >= 3"),
    (["sweep=isoflop_adaptive_tiny", "adaptive.tolerance=0"], "adaptive.tolerance=0.0 is invalid: it must be > 0."),
    (["sweep=isoflop_adaptive_tiny", "adaptive.max_flops=-1"], "adaptive.max_flops=-1.0 is invalid: it must be >= 0"),
    (["sweep=isoflop_adaptive_tiny", "adaptive.tolerence=0.2"], "adaptive.tolerence is not a config key; adaptive "
                                                                "has: enabled, tolerance"),
])
def test_bad_adaptive_settings_are_one_sentence_and_exit_2(cli, tmp_path, args, sentence):
    out = cli(*args)
    assert out.returncode == 2, out.stderr
    assert sentence in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.slow
def test_sizes_placed_later_keep_the_users_data_overrides_with_a_dataset_axis(cli, tmp_path):
    # sweep.datasets composes each dataset's config once, with the user's data.* overrides; the sizes adaptive
    # placement adds later must be planned with that same data config (the same trial identity), not a fresh
    # composition without the overrides.
    out = cli("sweep=isoflop_adaptive_tiny", "sweep.budgets=[4.0e12]", "sweep.centre_tokens_per_param=400",
              "sweep.datasets=[synthetic]", "data.seed=77", "cluster.num_cpus=2")
    assert out.returncode == 0, out.stderr
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("isoflop_adaptive_tiny")
    trials = [r for r in client.search_runs([exp.experiment_id], max_results=100) if r.data.tags.get("kind") == "trial"]
    assert len(trials) > 3  # the first wave of 3 and at least one placed later
    assert {r.data.params["data.seed"] for r in trials} == {"77"}
