"""Sweeps on a real local Ray instance with every run in a real MLflow SQLite store, via the CLI."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugins"
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{PLUGINS}"}
# Trials of a few steps on purpose (scripted behaviours, not scaling points): hparams.allow_invalid.
SCRIPTED = ["sweep=list_example", "trainer.target=behaviours:train", "cluster.num_cpus=2", "hparams.allow_invalid=true"]


def trials_spec(seeds: list[int], tokens: float = 1e5) -> str:
    items = ",".join(f"{{n_layer:1,d_model:32,n_head:2,tokens:{tokens:g},seed:{s}}}" for s in seeds)
    return f"sweep.trials=[{items}]"


def cli_env(cli):
    return lambda *args, **kw: cli(*args, env=ENV, **kw)


def runs(tmp_path: Path, experiment: str = "list_example") -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=5000) if exp else []


def trial_runs(tmp_path: Path, experiment: str = "list_example") -> list:
    return [r for r in runs(tmp_path, experiment) if r.data.tags.get("kind") == "trial"]


@pytest.mark.slow
def test_failure_kinds_follow_their_policies(cli, tmp_path):
    result = cli_env(cli)(*SCRIPTED, trials_spec([0, 1, 2, 3, 4]), "cluster.max_retries=1")
    assert result.returncode == 1, result.stderr  # seed 4 still crashed after its retry
    by_seed: dict[int, list] = {}
    for run in trial_runs(tmp_path):
        by_seed.setdefault(int(run.data.params["seed"]), []).append(run)
    statuses = {s: sorted((int(r.data.tags["attempt"]), r.data.tags["status"], r.info.status) for r in rs)
                for s, rs in by_seed.items()}
    assert statuses[0] == [(1, "finished", "FINISHED")]
    assert statuses[1] == [(1, "crashed", "FAILED"), (2, "finished", "FINISHED")]  # retried, then fine
    assert statuses[2] == [(1, "diverged", "FAILED")]  # a result: not retried
    assert statuses[3] == [(1, "oom", "FAILED")]
    assert statuses[4] == [(1, "crashed", "FAILED"), (2, "crashed", "FAILED")]  # 1 + max_retries attempts
    crashed = by_seed[4][0]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    trace = client.download_artifacts(crashed.info.run_id, "traceback.txt", str(tmp_path))
    assert "scripted crash on every attempt" in Path(trace).read_text()
    assert "scripted crash" in crashed.data.tags["failure_reason"]
    assert by_seed[2][0].data.tags["failure_reason"] == "loss is nan at step 3"
    assert not any(r.info.status == "RUNNING" for r in runs(tmp_path))
    # A rerun reruns only the crashed trial (diverged and oom are results).
    again = cli_env(cli)(*SCRIPTED, trials_spec([0, 1, 2, 3, 4]), "cluster.max_retries=0")
    assert "4 already done, 1 to run" in again.stdout
    # Seed 4 crashes on every attempt, so the rerun ends as the first run did: a trial failed, exit 1.
    assert again.returncode == 1, again.stderr
    crashes = Counter(int(r.data.params["seed"]) for r in trial_runs(tmp_path) if r.data.tags["status"] == "crashed")
    assert crashes == {1: 1, 4: 3}  # one more attempt of seed 4 (max_retries=0), nothing else rerun


@pytest.mark.slow
def test_a_trainer_that_breaks_the_contract_is_a_crashed_trial_not_a_dead_driver(cli, tmp_path):
    # Before: a plug-in returning None (or an unknown status) killed the driver, leaving a child run and the
    # parent RUNNING. Now each is a recorded crash with the reason, not retried (it would break again).
    result = cli_env(cli)("sweep=list_example", "trainer.target=contract:train", "cluster.num_cpus=2",
                          "hparams.allow_invalid=true", trials_spec([0, 1, 2, 3]))
    assert result.returncode == 1, result.stderr  # finished, but some trials failed
    assert "Traceback" not in result.stderr
    by_seed = {int(r.data.params["seed"]): r for r in trial_runs(tmp_path)}
    assert len(by_seed) == 4 and len(trial_runs(tmp_path)) == 4  # one attempt each: no retries
    prefix = "trainer.target=contract:train broke the trainer contract (trainers/api.py): "
    reasons = {0: "it returned None, not a TrialResult dict",
               1: "it returned status 'great': allowed are finished, diverged, oom",
               2: "its final_eval_loss is '3.0', not a number"}
    for seed, reason in reasons.items():
        run = by_seed[seed]
        assert (run.data.tags["status"], run.info.status) == ("crashed", "FAILED")
        assert run.data.tags["failure_reason"] == prefix + reason
    assert by_seed[3].data.tags["status"] == "finished"
    (parent,) = [r for r in runs(tmp_path) if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FAILED"
    assert not any(r.info.status == "RUNNING" for r in runs(tmp_path))


@pytest.mark.slow
def test_mlflow_holds_nested_runs_with_params_metrics_and_config(cli, tmp_path):
    result = cli_env(cli)(*SCRIPTED, trials_spec([0, 5]))
    assert result.returncode == 0, result.stderr
    all_runs = runs(tmp_path)
    (parent,) = [r for r in all_runs if r.data.tags.get("kind") == "sweep"]
    children = [r for r in all_runs if r.data.tags.get("kind") == "trial"]
    assert len(children) == 2 and parent.info.status == "FINISHED"
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name.startswith("N=") and " D=" in child.info.run_name
        params = child.data.params
        for key in ("model.n_layer", "model.d_model", "trainer.lr", "data.name", "tokens", "seed",
                    "N_total", "N_nonembed", "D", "C_exact", "C_6ND"):
            assert key in params, key
        assert params["model.d_model"] == "32"
        tags = child.data.tags
        for key in ("sweep", "trial_id", "status", "attempt", "git_commit", "host", "device"):
            assert key in tags, key
        assert child.data.metrics["final_eval_loss"] > 2.0
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        history = client.get_metric_history(child.info.run_id, "train_loss")
        assert [m.step for m in history] == [0, 10]
        artifacts = [a.path for a in client.list_artifacts(child.info.run_id)]
        assert "trial_config.json" in artifacts
    # WAL mode, so `mlflow ui` and action=plan can read while a sweep writes.
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def most_at_once(runs: list) -> int:
    """Most runs whose [start, end] intervals hold one moment (an end before a start at the same millisecond)."""
    events = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs])
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def test_a_runs_times_are_when_its_trial_ran_so_no_more_overlap_than_there_are_slots(cli, tmp_path):
    # Two slots, six trials of 1.5 s: the driver hears of a start and a result up to a round late, and the next
    # trial starts the moment a slot frees. The store's start and end times are the workers' own, so what a user
    # reads (the UI's durations, the throughput figures) never shows three trials at once on two slots.
    result = cli_env(cli)(*SCRIPTED, trials_spec([5, 6, 7, 8, 9, 10]), "cluster.cpus_per_trial=1",
                          "+trainer.options.sleep_s=1.5")
    assert result.returncode == 0, result.stderr
    trials = trial_runs(tmp_path)
    assert len(trials) == 6 and all(r.data.tags["status"] == "finished" for r in trials)
    assert all(r.info.end_time - r.info.start_time >= 1500 for r in trials)
    assert most_at_once(trials) == 2


@pytest.mark.slow
def test_plan_shows_done_failed_and_pending(cli, tmp_path):
    cli_env(cli)(*SCRIPTED, trials_spec([0, 2]))
    result = cli_env(cli)(*SCRIPTED, trials_spec([0, 2, 6]), "action=plan")
    assert result.returncode == 0, result.stderr
    assert "status: diverged 1, finished 1, pending 1" in result.stdout


@pytest.mark.slow
def test_extending_a_sweep_runs_only_the_new_trials(cli, tmp_path):
    first = cli_env(cli)(*SCRIPTED, trials_spec([0, 5]))
    assert first.returncode == 0, first.stderr
    second = cli_env(cli)(*SCRIPTED, trials_spec([0, 5, 6, 7]))
    assert second.returncode == 0, second.stderr
    assert "2 already done, 2 to run" in second.stdout
    finished = Counter(r.data.tags["trial_id"] for r in trial_runs(tmp_path) if r.data.tags["status"] == "finished")
    assert len(finished) == 4 and set(finished.values()) == {1}


def _start_driver(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, **ENV}
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_finished(tmp_path: Path, n: int, timeout: float = 120) -> None:
    """Poll the store read-only with sqlite3: an MlflowClient here could race the driver's migrations."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM tags WHERE key = 'status' AND value = 'finished'"
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{tmp_path / 'mlflow.db'}?mode=ro", uri=True) as db:
                if db.execute(query).fetchone()[0] >= n:
                    return
        except sqlite3.Error:  # not created yet, or mid-migration
            pass
        time.sleep(0.5)
    raise AssertionError(f"fewer than {n} trials finished within {timeout}s")


@pytest.mark.slow
def test_kill_9_of_the_driver_then_rerun_finishes_every_trial_exactly_once(tmp_path):
    args = [*SCRIPTED, trials_spec([5, 6, 7, 8, 9, 10, 11, 12]), "+trainer.options.sleep_s=1.0"]
    driver = _start_driver(tmp_path, *args)
    _wait_finished(tmp_path, 2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything in its session
    driver.wait()
    assert any(r.info.status == "RUNNING" for r in runs(tmp_path))  # left behind by the dead driver
    rerun = _start_driver(tmp_path, *args)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert "reaped" in out
    assert f"took over the lease of {socket.gethostname()} pid {driver.pid} (gone)" in out  # no 120 s wait
    all_runs = runs(tmp_path)
    assert not any(r.info.status == "RUNNING" for r in all_runs)
    finished = Counter(r.data.tags["trial_id"] for r in all_runs
                       if r.data.tags.get("kind") == "trial" and r.data.tags["status"] == "finished")
    assert len(finished) == 8 and set(finished.values()) == {1}  # every trial finished exactly once


@pytest.mark.slow
def test_ctrl_c_marks_running_trials_killed_and_the_rerun_resumes(tmp_path):
    # 2 s per trial: 5 more trials on 2 slots leave about 5 s for the interrupt to land mid-sweep, even under load.
    args = [*SCRIPTED, trials_spec([5, 6, 7, 8, 9, 10]), "+trainer.options.sleep_s=2.0"]
    driver = _start_driver(tmp_path, *args)
    _wait_finished(tmp_path, 1)
    driver.send_signal(signal.SIGINT)
    out, _ = driver.communicate(timeout=60)
    assert driver.returncode == 130, out
    all_runs = runs(tmp_path)
    assert not any(r.info.status == "RUNNING" for r in all_runs)  # nothing left RUNNING
    assert any(r.data.tags.get("status") == "killed" for r in all_runs)
    rerun = _start_driver(tmp_path, *args)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    finished = Counter(r.data.tags["trial_id"] for r in trial_runs(tmp_path) if r.data.tags["status"] == "finished")
    assert len(finished) == 6 and set(finished.values()) == {1}


def test_unreachable_tracking_server_fails_fast_with_one_sentence(cli, tmp_path):
    start = time.monotonic()
    result = cli_env(cli)(*SCRIPTED, trials_spec([0]), "tracking.uri=http://127.0.0.1:9", "tracking.timeout_s=3")
    assert time.monotonic() - start < 10 + 5  # interpreter start included
    assert result.returncode == 2
    assert "tracking.uri=http://127.0.0.1:9 is unreachable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_misconfigured_tracking_uri_fails_with_one_sentence(cli, tmp_path):
    result = cli_env(cli)(*SCRIPTED, trials_spec([0]), "tracking.uri=file:///tmp/mlruns")
    assert result.returncode == 2
    assert "is not supported: use sqlite:///" in result.stderr


def _one_and_two_workers(tmp_path, *overrides: str) -> dict:
    """The same GPT trial on 1 and on 2 Ray Train workers of 1 thread each: each one's finished run."""
    out = {}
    for workers in (1, 2):
        work = tmp_path / f"w{workers}"
        work.mkdir()
        result = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "sweep.budgets=[1e10]",
                                 "sweep.sizes_per_budget=1", "cluster.num_cpus=2", f"cluster.workers_per_trial={workers}",
                                 *overrides, "trainer.micro_batch_tokens=640", "action=run"],
                                cwd=work, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        (run,) = trial_runs(work, "tiny")
        assert run.data.tags["status"] == "finished" and run.data.metrics["workers"] == workers
        out[workers] = run
    return out


def _losses(run) -> tuple[float, float, float, float]:
    m = run.data.metrics
    return m["final_eval_loss"], m["final_train_loss"], m["flops"], m["tokens"]


@pytest.mark.slow
def test_a_two_worker_gpt_trial_reaches_the_loss_of_one_worker(tmp_path):
    # The same trial (seed, global batch of 32 sequences, micro-batches of 10 so that each rank accumulates an
    # uneven 10 + 6) on 1 worker and on 2 workers of 1 thread each (Ray Train, DDP over gloo). Same data order,
    # the gradient of the same global batch mean: only float summation order differs, so the final losses agree
    # far inside 1e-4 relative (measured: about 1e-8).
    runs = _one_and_two_workers(tmp_path)
    losses = {w: _losses(r) for w, r in runs.items()}
    (eval1, train1, flops1, tokens1), (eval2, train2, flops2, tokens2) = losses[1], losses[2]
    assert abs(eval2 - eval1) / eval1 < 1e-4 and abs(train2 - train1) / train1 < 1e-4, losses
    assert (flops2, tokens2) == (flops1, tokens1)  # FLOP accounting unchanged


@pytest.mark.slow
def test_a_two_worker_fsdp_gpt_trial_reaches_the_loss_of_one_worker(tmp_path):
    # The DDP test's trial on 2 Ray Train workers sharded by FSDP (cluster.parallel=fsdp: fully_shard over gloo):
    # the same global batch and data order, gradients reduce-scattered instead of all-reduced, so again only float
    # summation order differs: 1e-6 relative holds (measured: 1.1e-8 in tests/trainers/test_parallel.py).
    runs = _one_and_two_workers(tmp_path, "cluster.parallel=fsdp")
    for workers, run in runs.items():
        sharded = run.data.metrics["params_per_worker"] / run.data.metrics["n_params"]
        assert sharded == 1.0 if workers == 1 else 0.5 <= sharded < 0.52, sharded  # rank 0 holds its half
    losses = {w: _losses(r) for w, r in runs.items()}
    (eval1, train1, flops1, tokens1), (eval2, train2, flops2, tokens2) = losses[1], losses[2]
    assert abs(eval2 - eval1) / eval1 < 1e-6 and abs(train2 - train1) / train1 < 1e-6, losses
    assert (flops2, tokens2) == (flops1, tokens1)


def test_an_unknown_cluster_parallel_is_one_sentence_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer=surrogate",
                             "cluster.parallel=zero3"], cwd=tmp_path, env={**os.environ, **ENV},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "cluster.parallel='zero3' is unknown: allowed are ddp, fsdp."), result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_gang_bigger_than_the_cluster_is_refused_before_anything_is_written(tmp_path):
    # 3 workers of 1 CPU on a 2-CPU local instance: Ray Train's placement group would wait forever.
    result = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer=surrogate", "cluster.num_cpus=2",
                             "cluster.workers_per_trial=3"], cwd=tmp_path, env={**os.environ, **ENV},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "a trial of 3 workers" in result.stderr and "holds 2 workers" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_the_live_eta_counts_the_running_trials_progress():
    # Before any trial ends, the running trials' reported FLOPs give the rate: 1e9 of 4e9 FLOPs in 10 s leaves
    # 3e9 at 1e8 FLOP/s, 30 s.
    from orchestrator.progress import SweepProgress

    progress = SweepProgress(sweep="s", total=4, planned_flops=4e9)
    assert progress.eta() == "?"
    progress.started -= 10.0
    progress.running_flops[("a", 1)] = 6e8
    progress.running_flops[("b", 1)] = 4e8
    assert progress.eta() in ("30s", "31s")
    progress.done_flops, progress.running_flops = 2e9, {}  # both finished at 1e9 each
    assert progress.eta() in ("10s", "11s")
