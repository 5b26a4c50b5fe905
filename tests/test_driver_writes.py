"""The driver's batched tracking writes (orchestrator/tracking.py, RunWriter) under a SIGKILL: a round is in the store
whole or not at all, and an outcome is acted on (printed, counted, told to the source) only once it is committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests' / 'plugins'}"}
N_TRIALS = 40
# Seeds 5 and up finish after trainer.options.sleep_s (tests/plugins/behaviours.py): quick trials on 2 slots, so
# that rounds follow each other fast and the kill lands between (or inside) commits.
ARGS = ["sweep=list_example", "trainer.target=behaviours:train", "cluster.num_cpus=2", "hparams.allow_invalid=true",
        "sweep.trials=[" + ",".join(f"{{n_layer:1,d_model:32,n_head:2,tokens:1e5,seed:{s}}}"
                                    for s in range(5, 5 + N_TRIALS)) + "]",
        "+trainer.options.sleep_s=0.05"]


def _driver(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *ARGS], cwd=cwd, env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finished_in_store(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT count(*) FROM tags WHERE key = 'status' AND value = 'finished'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or mid-migration
        return 0


def _trial_runs(db: Path) -> list:
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("list_example")
    return [r for r in client.search_runs([exp.experiment_id], max_results=5000) if r.data.tags.get("kind") == "trial"]


def _printed_finished(out: str) -> set[str]:
    """The trials the driver said were finished ("finished NAME eval_loss=..." lines)."""
    return {line[len("finished "):line.index(" eval_loss=")] for line in out.splitlines()
            if line.startswith("finished ") and " eval_loss=" in line}


@pytest.mark.slow
def test_a_driver_killed_mid_sweep_loses_no_finished_trial_and_the_rerun_finishes_each_once(tmp_path):
    db = tmp_path / "mlflow.db"
    driver = _driver(tmp_path)
    deadline = time.monotonic() + 240
    while _finished_in_store(db) < 10 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert driver.poll() is None, "the sweep ended before it could be killed mid-way"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver, its Ray and its workers: no handler runs
    out, _ = driver.communicate()
    said = _printed_finished(out)
    assert said, out  # it had reported finished trials before the kill

    before = _trial_runs(db)
    assert len(before) < N_TRIALS or any(r.info.status == "RUNNING" for r in before)  # killed mid-way indeed
    # Every run in the store is whole: a round is one transaction, so no run lacks its params or its N/D/C metrics,
    # and every closed run has its status tag and final metrics.
    for run in before:
        assert run.data.params.get("seed") is not None and {"N", "D", "C"} <= run.data.metrics.keys(), run.info
        if run.info.status != "RUNNING":
            assert run.data.tags["status"] == "finished" and "final_loss" in run.data.metrics, run.info
    finished_before = {r.info.run_name: r.info.run_id for r in before if r.info.status == "FINISHED"}
    assert len(finished_before) == len({r.data.tags["trial_id"] for r in before if r.info.status == "FINISHED"})
    # What the driver said was finished was committed first: nothing it counted is lost.
    assert said <= finished_before.keys(), said - finished_before.keys()

    rerun = _driver(tmp_path)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    after = _trial_runs(db)
    assert not any(r.info.status == "RUNNING" for r in after)  # the dead driver's runs were reaped as killed
    finished = Counter(r.data.tags["trial_id"] for r in after if r.info.status == "FINISHED")
    assert len(finished) == N_TRIALS and set(finished.values()) == {1}  # one FINISHED run per trial
    runs_after = {r.info.run_id for r in after if r.info.status == "FINISHED"}
    assert set(finished_before.values()) <= runs_after  # a trial finished before the kill was not run again
    assert f"{len(finished_before)} already done, {N_TRIALS - len(finished_before)} to run" in out
