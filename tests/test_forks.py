"""WSD trunks with cooldown forks (orchestrator/forks.py): a fork is the independent run, bit for bit; the
forked sweep saves compute, runs as a dependency graph on real Ray, records trunks and forks in a real MLflow
store, prunes its checkpoints, and survives kill -9 of the driver without losing or repeating work."""

from __future__ import annotations

import copy
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainers.gpt import train
from trainers.schedule import Schedule

REPO = Path(__file__).resolve().parents[1]
FORKS = ["sweep=forks_tiny", "cluster.num_cpus=2"]
WSD = {"model": {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32}, "data": {},
       "trainer": {"lr": 1e-2, "batch_tokens": 512, "eval_tokens": 8192, "warmup_tokens": 1024, "schedule": "wsd",
                   "min_lr_ratio": 0.0, "decay_fraction": 0.2}, "tokens": 512 * 20, "seed": 0}


def config(D: int, **trainer) -> dict:
    c = copy.deepcopy(WSD)
    c["tokens"] = D
    c["trainer"].update(trainer)
    return c


def fork_point(D: int) -> int:
    t = WSD["trainer"]
    s = Schedule.for_trial(peak=t["lr"], total_tokens=D, warmup_tokens=t["warmup_tokens"], kind="wsd",
                           min_ratio=0.0, decay_fraction=t["decay_fraction"])
    return s.decay_start // t["batch_tokens"] * t["batch_tokens"]


def no_report(metrics):
    pass


def test_a_fork_is_the_independent_wsd_run_of_its_d(tmp_path):
    Ds = [512 * 10, 512 * 20, 512 * 40]
    independent = {D: train(config(D), no_report)["final_eval_loss"] for D in Ds}
    trunk = config(Ds[-1])
    trunk["trunk"] = {"stop_at": fork_point(Ds[-1]),
                      "forks": [{"at": fork_point(D), "config": config(D), "dir": str(tmp_path / str(D))} for D in Ds]}
    reports = []
    result = train(trunk, reports.append, run_dir=str(tmp_path / "trunk"))
    assert result["status"] == "finished" and result["tokens"] == fork_point(Ds[-1])
    assert [r["fork_ready"] for r in reports if "fork_ready" in r] == [fork_point(D) for D in Ds]
    for D in Ds:
        fork = train(config(D), no_report, run_dir=str(tmp_path / str(D)))
        assert fork["extra"]["resumed_from_tokens"] == fork_point(D) > 0  # it did resume from the trunk
        assert fork["tokens"] == D
        assert abs(fork["final_eval_loss"] - independent[D]) < 1e-3  # deterministic on CPU: in fact equal


def test_a_wsd_fork_matches_a_cosine_run_of_the_same_d_within_two_standard_errors():
    D = 512 * 40
    cosine = train(config(D, schedule="cosine", min_lr_ratio=0.1), no_report)
    wsd = train(config(D), no_report)
    se = (cosine["eval_loss_se"] ** 2 + wsd["eval_loss_se"] ** 2) ** 0.5
    assert abs(wsd["final_eval_loss"] - cosine["final_eval_loss"]) < 2 * se


def test_the_plan_shows_trunks_forks_and_a_saving_of_at_least_35_percent(cli, tmp_path):
    result = cli(*FORKS, "action=plan")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"forks: 2 trunks, 8 forks; .* \(saves (\d+)%\)", out)
    assert int(re.search(r"saves (\d+)%", out).group(1)) >= 35  # 1, 2, 4, 8x with 20% cooldowns: 37%
    assert out.count("  trunk trunk-") == 2 and out.count("    fork ") == 8
    assert not (tmp_path / "mlflow.db").exists()  # a plan writes nothing


@pytest.mark.parametrize(("override", "phrase"), [
    ("trainer.schedule=cosine", "sweep.forks=true needs trainer.schedule=wsd"),
    ("trainer.decay_fraction=1.0", "trainer.decay_fraction=1.0 is invalid with sweep.forks=true"),
    ("trainer.warmup_tokens=0", "sweep.forks=true needs a warmup that does not depend on D"),
    ("sweep.tokens=[4096,65536] sweep.min_tokens_per_param=0", "D=4096"),
    ("sweep.tokens=[65536]", "found no trials that differ only in D"),
    ("trainer.target=trainers.surrogate:train", "needs a trainer that can train a trunk"),
])
@pytest.mark.parametrize("action", ["plan", "run"])
def test_a_sweep_that_cannot_fork_is_one_sentence_and_nothing_starts(cli, tmp_path, override, phrase, action):
    result = cli(*FORKS, *override.split(), f"action={action}")
    assert result.returncode == 2, result.stderr
    assert phrase in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "checkpoints").exists()


def test_forks_with_adaptive_placement_or_a_list_sweep_are_refused(cli):
    result = cli("sweep=isoflop_adaptive_tiny", "sweep.forks=true", "trainer.schedule=wsd",
                 "trainer.warmup_tokens=4096", "action=plan")
    assert result.returncode == 2 and "adaptive.enabled=true are both set" in result.stderr, result.stderr
    result = cli("sweep=list_example", "sweep.forks=true", "action=plan")
    assert result.returncode == 2 and "forks are for grid and isoflop sweeps" in result.stderr, result.stderr


def store(tmp_path: Path, experiment: str = "forks_tiny") -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=5000) if exp else []


@pytest.mark.slow
def test_a_forked_sweep_runs_records_trunks_and_forks_and_prunes_its_checkpoints(cli, tmp_path):
    result = cli(*FORKS, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = store(tmp_path)
    trunks = [r for r in runs if r.data.tags.get("kind") == "trunk"]
    forks = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(trunks) == 2 and all(r.data.tags["status"] == "finished" for r in trunks)
    assert len(forks) == 8 and all(r.data.tags["status"] == "finished" for r in forks)
    trunk_runs = {r.info.run_id: r.data.tags["trial_id"] for r in trunks}
    for fork in forks:
        tags, metrics = fork.data.tags, fork.data.metrics
        assert tags["role"] == "fork" and trunk_runs[tags["trunk_run_id"]] == tags["trunk_id"]
        assert metrics["resumed_from_tokens"] == float(tags["fork_point"]) > 0
        assert metrics["tokens"] == float(fork.data.params["D"])
    assert Counter(r.data.tags["trunk_id"] for r in forks) == Counter({t: 4 for t in trunk_runs.values()})
    leftovers = [p for p in (tmp_path / "checkpoints" / "forks_tiny").rglob("*.pt")]
    assert leftovers == []  # pruned: every fork of every trunk has its result
    # A fork keeps its independent run's trial id: the same sweep without forks has nothing left to run.
    plain = cli(*FORKS, "sweep.forks=false", "action=plan")
    assert "status: finished 8" in plain.stdout, plain.stdout
    again = cli(*FORKS, timeout=300)
    assert again.returncode == 0 and len(store(tmp_path)) == len(runs)  # a rerun trains nothing
    # The fit uses the forks only, and its report says the bootstrap drew whole trunks.
    fit = cli(*FORKS, "action=fit", "fit.bootstrap=50")
    assert fit.returncode == 0, fit.stdout + fit.stderr
    assert "forks of each of 2 WSD trunks together" in (tmp_path / "reports" / "forks_tiny" / "fit.json").read_text()


def _start_driver(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _rows(tmp_path: Path, query: str) -> list:
    try:
        with sqlite3.connect(f"file:{tmp_path / 'mlflow.db'}?mode=ro", uri=True) as db:
            return [row[0] for row in db.execute(query).fetchall()]
    except sqlite3.Error:
        return []


def _count(tmp_path: Path, query: str) -> int:
    try:
        with sqlite3.connect(f"file:{tmp_path / 'mlflow.db'}?mode=ro", uri=True) as db:
            return db.execute(query).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_9_mid_trunk_then_rerun_keeps_the_trunks_progress_and_every_fork(tmp_path):
    # One trial at a time and a checkpoint every 16 steps, so the kill lands inside a trunk with forks done.
    args = [*FORKS, "cluster.max_concurrent=1", "trainer.checkpoint_interval_tokens=65536"]
    driver = _start_driver(tmp_path, *args)
    root = tmp_path / "checkpoints" / "forks_tiny"
    finished_trunks = ("SELECT t.value FROM tags t JOIN tags k ON k.run_uuid = t.run_uuid AND k.key = 'kind' AND "
                       "k.value = 'trunk' JOIN tags s ON s.run_uuid = t.run_uuid AND s.key = 'status' AND "
                       "s.value = 'finished' WHERE t.key = 'trial_id'")

    def reached(trunk_id: str) -> int:
        """Fork points the trunk has passed: forks waiting on their checkpoint, plus forks already finished."""
        waiting = len(list((root / "trunks" / trunk_id).glob("*/checkpoint.pt")))
        done = _rows(tmp_path, "SELECT count(*) FROM tags t JOIN tags s ON s.run_uuid = t.run_uuid AND s.key = "
                               f"'status' AND s.value = 'finished' WHERE t.key = 'trunk_id' AND t.value = '{trunk_id}'")
        return waiting + (done[0] if done else 0)

    def mid_trunk() -> set[str]:
        """Trunks with a checkpoint of their own, unfinished, with fork points still ahead: a kill lands inside."""
        started = {p.parent.name for p in root.glob("trunk-*/checkpoint.pt")} - set(_rows(tmp_path, finished_trunks))
        return {t for t in started if reached(t) < 4}

    deadline = time.monotonic() + 300
    finished = "SELECT count(*) FROM tags WHERE key = 'status' AND value = 'finished'"
    while not (_count(tmp_path, finished) >= 1 and mid_trunk()) and time.monotonic() < deadline:
        time.sleep(0.1)
    interrupted = mid_trunk()
    assert interrupted, "no trunk was caught mid-way with a fork finished"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its Ray instance, mid-trunk
    driver.wait()
    interrupted -= set(_rows(tmp_path, finished_trunks))  # one that finished in the last moment was not interrupted
    ahead = {p.parent.name for p in (root / "trunks").rglob("checkpoint.pt")}
    rerun = _start_driver(tmp_path, *args)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    runs = store(tmp_path)
    assert not any(r.info.status == "RUNNING" for r in runs)
    forks = Counter(r.data.tags["trial_id"] for r in runs
                    if r.data.tags.get("kind") == "trial" and r.data.tags["status"] == "finished")
    assert len(forks) == 8 and set(forks.values()) == {1}  # nothing lost, nothing run twice
    trunks = [r for r in runs if r.data.tags.get("kind") == "trunk"]
    for trunk_id in interrupted:
        # The trunk's progress is kept: run again, it went on from its checkpoint, not from scratch; or it was not
        # needed again (its fork points were all written: a worker can outlive its killed driver by a moment).
        again = [r for r in trunks if r.data.tags["trial_id"] == trunk_id and r.data.tags["status"] == "finished"]
        assert all(r.data.metrics["resumed_from_tokens"] > 0 for r in again), [r.data.metrics for r in again]
    # Forks whose checkpoint the first driver left ran without waiting for their trunk: with one slot, each
    # started before its trunk's second run did.
    trunk_start = {r.data.tags["trial_id"]: r.info.start_time for r in trunks
                   if r.data.tags["status"] == "finished" and r.data.metrics.get("resumed_from_tokens", 0) > 0}
    early = [r for r in runs if r.data.tags.get("trial_id") in ahead and r.data.tags.get("status") == "finished"]
    assert len(early) == len(ahead)
    for fork in early:
        if fork.data.tags["trunk_id"] in trunk_start:
            assert fork.info.start_time < trunk_start[fork.data.tags["trunk_id"]]


@pytest.mark.slow
def test_a_trunk_that_diverges_settles_its_forks_with_that_reason(cli, tmp_path):
    result = cli(*FORKS, "sweep.sizes=[20000]", "trainer.lr=50", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr  # diverged is a result, not a failure of the sweep
    runs = store(tmp_path)
    (trunk,) = [r for r in runs if r.data.tags.get("kind") == "trunk"]
    assert trunk.data.tags["status"] == "diverged"
    forks = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(forks) == 4 and {r.data.tags["status"] for r in forks} == {"diverged"}
    for fork in forks:
        reason = fork.data.tags["failure_reason"]
        assert reason.startswith(f"its trunk {trunk.data.tags['trial_id']} did not reach the fork point: train loss")
    assert "status: diverged 4" in cli(*FORKS, "sweep.sizes=[20000]", "trainer.lr=50", "action=plan").stdout
