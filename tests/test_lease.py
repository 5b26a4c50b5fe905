"""One driver per sweep (orchestrator/lease.py), against real stores: a second driver of a running sweep
refuses with one sentence naming the owner, no trial ever finishes twice (SQLite, and a real
`mlflow server --workers 1`), a stale lease is taken over, and a fresh store survives being created by
several processes at once."""

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

from orchestrator.lease import LeaseLost, SweepBusy, SweepLease
from orchestrator.tracking import open_store

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests' / 'plugins'}", "RAY_USAGE_STATS_ENABLED": "0"}
SWEEP = ["sweep=list_example", "trainer.target=behaviours:train", "cluster.num_cpus=2", "hparams.allow_invalid=true",
         "sweep.trials=[" + ",".join(f"{{n_layer:1,d_model:32,n_head:2,tokens:1e5,seed:{s}}}" for s in range(5, 13))
         + "]", "+trainer.options.sleep_s=4.0"]  # 8 trials of 4 s on 2 slots: about 16 s of running


# -- the lease itself, on a real SQLite store -------------------------------------------------------------
@pytest.fixture
def tracker(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="sweep", timeout_s=10, create=True)


def forge(tracker, *, host: str, pid: int, beat: float) -> None:
    """Put a holder into the store as another driver would have (its token and heartbeat)."""
    lease = SweepLease(tracker, sweep="sweep")
    run_id, _ = lease._lease_run()
    epoch = len([k for k in tracker.read_run(run_id)[0] if k.startswith("epoch.")]) + 1
    tracker.claim(run_id, f"epoch.{epoch}", f"{host}|{pid}|{beat:.3f}|forged")
    tracker.set_tags(run_id, {f"heartbeat.{epoch}": f"{beat:.3f}"})


def test_a_live_holder_on_this_host_refuses_and_a_dead_one_is_taken_over(tracker):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        forge(tracker, host=socket.gethostname(), pid=other.pid, beat=time.time())
        with pytest.raises(SweepBusy, match=rf"sweep sweep is already being run by {socket.gethostname()} pid "
                                            rf"{other.pid} \(since .*, last heartbeat \d+s ago\) in sqlite:///"):
            SweepLease(tracker, sweep="sweep").acquire()
    finally:
        other.kill()
        other.wait()
    taken = SweepLease(tracker, sweep="sweep").acquire()  # its pid is gone: no waiting for a stale heartbeat
    assert taken is not None and taken.pid == other.pid


def test_a_holder_on_another_host_is_taken_over_only_once_stale(tracker):
    forge(tracker, host="elsewhere", pid=1234, beat=time.time() - 30)
    with pytest.raises(SweepBusy, match="elsewhere pid 1234"):
        SweepLease(tracker, sweep="sweep", stale_s=120).acquire()
    taken = SweepLease(tracker, sweep="sweep", stale_s=20).acquire()
    assert taken is not None and taken.host == "elsewhere"


def test_a_driver_whose_lease_was_taken_over_stops_at_its_next_heartbeat(tracker):
    lease = SweepLease(tracker, sweep="sweep")
    assert lease.acquire() is None
    lease.renew()
    forge(tracker, host="elsewhere", pid=99, beat=time.time())  # took over after this driver stalled
    with pytest.raises(LeaseLost, match="elsewhere pid 99 .* took this sweep over"):
        lease.renew()


def test_a_released_lease_is_free_for_the_next_driver(tracker):
    first = SweepLease(tracker, sweep="sweep")
    first.acquire()
    first.release()
    second = SweepLease(tracker, sweep="sweep")
    assert second.acquire() is None  # free, not taken over
    run_id, _ = second._lease_run()
    params, tags = tracker.read_run(run_id)
    assert sorted(params) == ["epoch.1", "epoch.2"] and "released.1" in tags and "released.2" not in tags


# -- two drivers of one sweep through the CLI ------------------------------------------------------------
def driver(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *SWEEP, *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, out, err


def finished_per_trial(client: MlflowClient) -> Counter:
    exp = client.get_experiment_by_name("list_example")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    assert not any(r.info.status == "RUNNING" for r in runs)
    return Counter(r.data.tags["trial_id"] for r in runs
                   if r.data.tags.get("kind") == "trial" and r.info.status == "FINISHED")


def wait_for_running_sweep(client: MlflowClient, timeout: float = 300) -> None:
    """Until the first driver holds the lease and has a trial run (its parent run exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            exp = client.get_experiment_by_name("list_example")
            if exp and client.search_runs([exp.experiment_id], filter_string="tags.kind = 'trial'", max_results=1):
                return
        except Exception:  # noqa: BLE001  (not created yet)
            pass
        time.sleep(0.5)
    raise AssertionError(f"the first driver did not start a trial within {timeout}s")


def two_drivers(tmp_path: Path, uri: str | None) -> MlflowClient:
    """The second driver starts while the first runs: it refuses, naming the first; nothing runs twice."""
    extra = [f"tracking.uri={uri}"] if uri else []
    client = MlflowClient(uri or f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = driver(tmp_path, *extra)
    try:
        wait_for_running_sweep(client)
        code, out, err = finish(driver(tmp_path, *extra), timeout=300)
        assert code == 1, (out, err)
        message = err.strip()
        assert f"error: sweep list_example is already being run by {socket.gethostname()} pid {first.pid} (since " \
               in message and len(message.splitlines()) == 1, message
        assert "Traceback" not in err
    finally:
        code, out, err = finish(first)
    assert code == 0, out + err
    counts = finished_per_trial(client)
    assert len(counts) == 8 and set(counts.values()) == {1}  # every trial finished exactly once
    return client


@pytest.mark.slow
def test_a_second_driver_of_a_running_sweep_refuses_sqlite(tmp_path):
    two_drivers(tmp_path, None)
    code, out, err = finish(driver(tmp_path))  # once the first is done, the same command resumes: nothing left
    assert code == 0 and "8 already done, 0 to run" in out, out + err


@pytest.mark.slow
def test_two_drivers_started_at_once_in_a_fresh_folder_run_each_trial_once(tmp_path):
    # Before: the second died in MLflow's schema creation ("duplicate column name: step"), or, with a store,
    # both ran every trial.
    procs = [driver(tmp_path), driver(tmp_path)]
    results = [finish(p) for p in procs]
    for code, out, err in results:
        assert "Traceback" not in err, err
        assert code in (0, 1), out + err
        if code == 1:
            assert "is already being run by" in err and len(err.strip().splitlines()) == 1, err
    assert 0 in [code for code, _, _ in results]
    counts = finished_per_trial(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert len(counts) == 8 and set(counts.values()) == {1}


def test_a_fresh_store_created_by_four_processes_at_once(tmp_path):
    start = time.time() + 3
    code = (f"import time; from orchestrator.tracking import open_store; time.sleep(max({start} - time.time(), 0)); "
            f"t = open_store(None, experiment='sweep', timeout_s=10, create=True); print(t.experiment_id)")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1  # one experiment, the same id for all
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("SELECT count(*) FROM experiments WHERE name = 'sweep'").fetchone()[0] == 1


# -- the same against a real mlflow server ---------------------------------------------------------------
@pytest.mark.slow
def test_a_second_driver_of_a_running_sweep_refuses_server(tmp_path, mlflow_server):
    work = tmp_path / "work"
    work.mkdir()
    two_drivers(work, mlflow_server)
    assert not (work / "mlflow.db").exists()


@pytest.mark.slow
def test_a_claim_is_write_once_behind_a_server_too(tmp_path, mlflow_server):
    # The lease's compare-and-set: of two claims of one key, the first wins and the second learns the winner.
    tracker = open_store(mlflow_server, experiment="sweep", timeout_s=10, create=True)
    run_id = tracker.create_lease_run()
    assert tracker.claim(run_id, "epoch.1", "first") == "first"
    assert tracker.claim(run_id, "epoch.1", "second") == "first"
    assert tracker.claim(run_id, "epoch.1", "first") == "first"  # a retried request of the winner still wins
    lease = SweepLease(tracker, sweep="sweep")
    assert lease.acquire() is not None  # epoch 1 ("first", no live pid) is taken over as epoch 2
    assert lease.epoch == 2
