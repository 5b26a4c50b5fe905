"""The GPU check (`benchmarks/gpu_check.py`): its CPU smoke mode end to end, its CUDA sweeps as valid CLI
input, and the runner's GPU placement with Ray's GPUs declared on this CPU machine."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402

PLUGINS = REPO / "tests" / "plugins"


def trial_runs(db: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment} in {db}"
    return client.search_runs([exp.experiment_id], filter_string="tags.kind = 'trial'", max_results=1000)


@pytest.mark.slow
def test_smoke_mode_runs_every_step_and_writes_what_it_measured(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out),
                          "--budget-s", "600"],  # room for a loaded CI machine; the steps take what they need
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    for step in ("throughput", "sweep", "oom", "workers"):
        assert results[step]["status"] == "passed", (step, results[step].get("checks"), results[step].get("error"))

    rows = [r for r in results["throughput"]["rows"] if "mfu" in r]
    assert {(r["n_layer"], r["d_model"]) for r in rows if not r["compile"]} == {(1, 32), (1, 64), (2, 64)}
    assert any(r["compile"] for r in rows)  # torch.compile ran through the trainer
    for r in rows:
        assert 0 < r["mfu"] < 1 and r["tokens_per_s"] > 0 and math.isfinite(r["flops_per_s"])

    # Read the store as a user would, independently of the script: every sweep trial finished.
    sweep = trial_runs(out / "mlflow.db", "gpu_check_isoflop")
    assert len(sweep) == results["sweep"]["n_trials"] == 4
    assert all(r.data.tags["status"] == "finished" and r.data.tags["device"] == "cpu" for r in sweep)
    assert 0 < results["sweep"]["slot_utilisation"] <= 1 and results["sweep"]["max_concurrent"] == 2
    assert 0 < results["sweep"]["sweep_mfu"] < 1

    # One trial on 2 Ray Train workers (gloo on the CPU), and the probe's ETA against its measured time.
    workers = trial_runs(out / "mlflow.db", "gpu_check_workers")
    assert len(workers) == 1 and workers[0].data.metrics["workers"] == 2
    assert results["workers"]["estimated_s"] > 0 and math.isfinite(results["workers"]["eta_error"])

    # The model that cannot fit its memory limit is an oom result, with the allocator's own error;
    # the others finished and the sweep exited 0.
    oom = {int(r.data.params["seed"]): r for r in trial_runs(out / "mlflow.db", "gpu_check_oom")}
    assert oom[0].data.tags["status"] == "oom" and "can't allocate memory" in oom[0].data.tags["failure_reason"]
    assert float(oom[0].data.params["N_total"]) > 10e6
    assert [oom[s].data.tags["status"] for s in (1, 2)] == ["finished", "finished"]
    assert results["oom"]["exit_code"] == 0

    markdown = (out / "results.md").read_text()
    for heading in ("## 1. Throughput", "## 2. IsoFLOP sweep", "## 3. OOM sweep"):
        assert heading in markdown
    assert "| 3. OOM | passed | big trial: oom |" in run.stdout  # the table is printed at the end


def test_cuda_sweeps_are_valid_cli_input(tmp_path):
    # What the CUDA run would launch on an H200, planned (not run) through the real CLI.
    ctx = gpu_check.Context(out=tmp_path, mode=gpu_check.GPU, smoke=False, deadline=time.monotonic() + 420,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, n_gpus=1, gpu_name="NVIDIA H200",
                            gpu_memory_bytes=150_000_000_000, cpus=16)
    ctx.results["throughput"] = {"rows": [{"compile": False, "flops_per_s": 3e14}]}
    sweep, sizing = gpu_check.sweep_args(ctx, allowance=150)
    assert "cluster.gpus_per_trial=0.25" in sweep and sizing["slots"] == 4
    assert 1e13 <= sizing["c1"] and sizing["estimated_s"] <= sizing["target_s"]
    design = gpu_check.oom_design(ctx)
    oom = gpu_check.oom_args(ctx, design)
    # the big model's fp32 weights fill 50-60% of a quarter of the GPU: weights + gradients cannot fit
    n_big = 12 * design["trials"][0]["n_layer"] * design["trials"][0]["d_model"] ** 2
    assert 0.5 < 4 * n_big / (0.25 * ctx.gpu_memory_bytes) <= 0.6
    for args, trials in ((sweep, 8), (oom, 5)):
        plan = subprocess.run([sys.executable, "-m", "orchestrator", *args, "action=plan"], cwd=tmp_path,
                              env=ctx.env, capture_output=True, text=True, timeout=120)
        assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-2000:]
        assert f"{trials} trials" in plan.stdout


def test_isoflop_estimate_is_bound_by_flops_or_data():
    fast = dict(flops_per_s=1e20, tokens_per_s=1e20, slots=4, overhead_s=10.0)
    assert gpu_check.isoflop_seconds(1e15, **fast) == pytest.approx(20.0, rel=1e-3)  # 8 trials, 2 waves
    data_bound = gpu_check.isoflop_seconds(1e15, **{**fast, "tokens_per_s": 1e6})
    assert data_bound > gpu_check.isoflop_seconds(1e14, **{**fast, "tokens_per_s": 1e6}) > 20.0


@pytest.mark.slow
def test_without_the_cli_the_oom_step_runs_the_trials_as_plain_processes(tmp_path):
    # Where ray/mlflow are missing (a bare GPU image), step 3 still runs its trials at once, each in its
    # own process with the trainer's real memory limit: the big one ends oom, the small ones finish.
    ctx = gpu_check.Context(out=tmp_path, mode=gpu_check.SMOKE, smoke=True, deadline=time.monotonic() + 300,
                            env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'benchmarks'}"})
    design = gpu_check.oom_design(ctx)
    rows = gpu_check.run_direct(ctx, design, timeout=240)
    assert [r["status"] for r in rows] == ["oom", "finished", "finished"]
    assert "can't allocate memory" in rows[0]["reason"] and rows[0]["n_params"] > 10e6
    assert all(r["final_eval_loss"] > 0 and r["device"] == "cpu" for r in rows[1:])
    assert gpu_check.max_overlap(rows) >= 2  # they ran side by side


@pytest.mark.slow
def test_fractional_gpu_trials_get_a_fresh_worker_and_their_memory_share(cli, tmp_path):
    # One GPU declared to Ray (RAY_OVERRIDE_RESOURCES), 4 trials of a quarter GPU on 2 CPU slots: Ray
    # narrows each task to GPU 0, and each trial runs in its own process (a reused worker would keep
    # the CUDA context of the GPU its previous task had) under a quarter of the GPU's memory.
    trials = ",".join(f"{{n_layer:1,d_model:32,n_head:2,tokens:1e5,seed:{s}}}" for s in range(4))
    env = {"PYTHONPATH": f"{REPO}{os.pathsep}{PLUGINS}", "RAY_OVERRIDE_RESOURCES": '{"GPU": 1}'}
    result = cli("sweep=list_example", f"sweep.trials=[{trials}]", "trainer.target=gpu_probe:train",
                 "cluster.num_cpus=2", "cluster.gpus_per_trial=0.25", "fit.bootstrap=0", "hparams.allow_invalid=true",
                 env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = trial_runs(tmp_path / "mlflow.db", "list_example")
    assert len(runs) == 4 and all(r.data.tags["status"] == "finished" for r in runs)
    assert len({r.data.metrics["pid"] for r in runs}) == 4
    for r in runs:
        assert r.data.tags["device"] == "cuda"
        assert r.data.metrics["visible_gpus"] == 1 and r.data.metrics["visible_gpu"] == 0
        assert r.data.metrics["gpu_memory_fraction"] == 0.25
