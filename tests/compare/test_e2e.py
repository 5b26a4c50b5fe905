"""Real sweeps on Ray into a real MLflow store, compared through the CLI (slow: three sweeps, each a Ray start).

Two surrogate sweeps, the variant's law the baseline's with compute scaled by k = 1.25 (B -> B k^-beta: the true
M(C) is 1.25 at every budget under exact FLOP accounting too), and a third whose every trial fails.
"""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

K = 1.25
SWEEP = ["sweep=tiny", "trainer=surrogate", "sweep.budgets=[1e10,3e10,1e11,3e11]", "sweep.sizes_per_budget=7",
         "sweep.span=8", "sweep.centre_tokens_per_param=5", "sweep.min_tokens_per_param=0", "fit.bootstrap=0"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(sim, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("compare_e2e")
    for args in (["sweep.name=base"], ["sweep.name=variant", f"trainer.surrogate.B={410.7 * K ** -0.28!r}"]):
        proc = sim.run_cli(*SWEEP, *args, cwd=cwd)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    broken = sim.run_cli("sweep=tiny", "trainer=surrogate", "sweep.name=broken", "sweep.budgets=[1e10]",
                         "trainer.surrogate.diverge_prob=1.0", cwd=cwd)
    assert "diverged" in broken.stdout + broken.stderr, broken.stdout[-2000:] + broken.stderr[-2000:]
    return cwd


def test_planted_sweeps_compare_end_to_end(sim, store):
    proc = sim.run_cli("action=compare", "compare.baseline=base", "compare.variants=[variant]",
                       "compare.bootstrap=300", "fit.bootstrap=0", cwd=store)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    folder = store / "reports" / "compare-base-vs-variant"
    result = json.loads((folder / "compare.json").read_text())
    rows = [r for r in result["comparisons"][0]["rows"] if r["measured"]]
    assert [r["C"] for r in rows] == [1e10, 3e10, 1e11, 3e11]
    for r in rows:  # recovered within 5% at every swept budget, significantly above 1
        assert abs(r["M"] / K - 1) < 0.05 and r["M_ci"][0] > 1, r
    # The comparison is its own MLflow run, linking each compared sweep's experiment and newest parent run.
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("compare-base-vs-variant").experiment_id])[0]
    for i, name in enumerate(("base", "variant")):
        experiment = client.get_experiment_by_name(name)
        parent = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'sweep'")[0]
        assert run.data.tags[f"compared.{i}.experiment_id"] == experiment.experiment_id
        assert run.data.tags[f"compared.{i}.parent_run_id"] == parent.info.run_id
        assert f"#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}" in run.data.tags[
            "mlflow.note.content"]
    assert run.data.metrics[f"M.variant.C_{'1e10'}"] == pytest.approx(rows[0]["M"])


def test_a_stored_sweep_compared_with_itself_is_exactly_one(sim, store):
    proc = sim.run_cli("action=compare", "compare.baseline=base", "compare.variants=[base]", "compare.bootstrap=200",
                       "fit.bootstrap=0", cwd=store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((store / "reports" / "compare-base-vs-base" / "compare.json").read_text())["comparisons"][0][
        "rows"]
    assert all(r["M"] == 1.0 and r["M_ci"][0] <= 1.0 <= r["M_ci"][1] for r in rows)


def test_a_stored_sweep_without_finished_runs_or_an_unknown_name_is_exit_2(sim, store):
    proc = sim.run_cli("action=compare", "compare.baseline=base", "compare.variants=[broken]", cwd=store)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "compare.variants='broken': sweep broken" in proc.stderr and "has no finished runs (" in proc.stderr
    assert "diverged)" in proc.stderr
    proc = sim.run_cli("action=compare", "compare.baseline=bse", "compare.variants=[variant]", cwd=store)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "compare.baseline='bse' names no sweep in the tracking store" in proc.stderr
    assert "base" in proc.stderr and "variant" in proc.stderr
