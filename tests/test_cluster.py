"""Slow tests against real servers: a two-node Ray cluster on 127.0.0.1 and a real `mlflow server`."""

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
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests' / 'plugins'}", "RAY_USAGE_STATS_ENABLED": "0",
       "RAY_AUTH_MODE": "token"}  # Ray >= 2.5x: nodes of one cluster share ~/.ray/auth_token
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trials(seeds, tokens=1e5) -> str:
    return "sweep.trials=[" + ",".join(
        f"{{n_layer:1,d_model:32,n_head:2,tokens:{tokens:g},seed:{s}}}" for s in seeds) + "]"


def orchestrator(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", "sweep=list_example", "trainer.target=behaviours:train",
                           "hparams.allow_invalid=true", *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_sweep_logs_to_a_real_mlflow_server(tmp_path, mlflow_server):
    work = tmp_path / "work"
    work.mkdir()
    result = orchestrator(work, trials([0, 5, 6]), f"tracking.uri={mlflow_server}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (work / "mlflow.db").exists()  # everything went to the server
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("list_example")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(children) == 3 and all(r.data.tags["status"] == "finished" for r in children)
    assert "trial_config.json" in [a.path for a in client.list_artifacts(children[0].info.run_id)]
    # A rerun against the server resumes: nothing left to do.
    again = orchestrator(work, trials([0, 5, 6]), f"tracking.uri={mlflow_server}")
    assert "3 already done, 0 to run" in again.stdout


@pytest.fixture
def two_node_cluster(tmp_path):
    """A head and one worker node on 127.0.0.1, started with `ray start`; yields (address, worker)."""
    port = free_port()
    ray = str(BIN / "ray")
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    subprocess.run([ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                   env=ENV, check=True, capture_output=True, timeout=120)
    worker = subprocess.Popen([ray, "start", f"--address=127.0.0.1:{port}", "--block", *common], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = subprocess.run([ray, "status", f"--address={address}"], env=ENV, capture_output=True, text=True)
        if status.stdout.count("node_") >= 2:
            break
        time.sleep(1)
    else:
        pytest.fail("the worker node did not join within 120 s")
    yield address, worker
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
    subprocess.run([ray, "stop", "--force"], env=ENV, capture_output=True, timeout=120)


def kill_worker_node(worker: subprocess.Popen) -> None:
    """SIGKILL the worker node's raylet and every worker process it started, and its `ray start`."""
    ps = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    raylets = [line.split(None, 1)[0] for line in ps.splitlines()
               if "/raylet/raylet " in line and "__internal_head__" not in line]
    assert raylets, "no worker raylet found"
    for raylet in raylets:
        children = subprocess.run(["pgrep", "-P", raylet], capture_output=True, text=True).stdout.split()
        for pid in [*children, raylet]:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    os.killpg(worker.pid, signal.SIGKILL)


def test_sweep_runs_across_two_nodes_and_survives_losing_one(tmp_path, two_node_cluster):
    address, worker = two_node_cluster
    seeds = list(range(5, 15))
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "sweep=list_example", "trainer.target=behaviours:train",
                             trials(seeds), "+trainer.options.sleep_s=2.0", f"cluster.address={address}",
                             "hparams.allow_invalid=true"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    db = tmp_path / "mlflow.db"
    hosts_seen: set[str] = set()
    deadline = time.monotonic() + 240
    # Wait until both nodes have finished work and both are running a trial right now (a trial sleeps 2 s
    # after its run opens): killing the worker node between two of its trials would lose nothing.
    busy_query = ("SELECT t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'worker_node' "
                  "WHERE r.status = 'RUNNING'")
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                done = con.execute("SELECT count(*) FROM tags WHERE key='status' AND value='finished'").fetchone()[0]
                pids = {r[0] for r in con.execute("SELECT value FROM tags WHERE key='worker_node'")}
                busy = {r[0] for r in con.execute(busy_query)}
        except sqlite3.Error:
            done, pids, busy = 0, set(), set()
        hosts_seen = pids
        if done >= 2 and len(pids) >= 2 and len(busy) >= 2:
            break
        time.sleep(0.2)
    assert len(hosts_seen) >= 2, "trials did not run on both nodes"
    kill_worker_node(worker)  # lose the worker node mid-sweep
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("list_example")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") == "trial"]
    finished = Counter(r.data.tags["trial_id"] for r in runs if r.data.tags["status"] == "finished")
    assert len(finished) == len(seeds) and set(finished.values()) == {1}  # nothing lost, nothing twice
    assert not any(r.info.status == "RUNNING" for r in runs)
    # the trial that was running on the dead node was rescheduled
    assert any(r.data.tags["status"] == "lost" for r in runs), [
        (r.data.tags["status"], r.data.tags.get("failure_reason")) for r in runs if r.data.tags["status"] != "finished"]


USER_TRAINER = '''\
"""A user's trainer that exists only in their folder on the head node."""
import math
import sys
import time
from pathlib import Path

HOME = Path({home!r})


def _shipped():
    """Copies of this package on this worker's path other than the user's folder: what Ray's runtime environment
    brought (on a second machine, the only copy there is)."""
    found = [Path(p) / "user_trainer_pkg" / "train.py" for p in sys.path if p]
    return [f for f in found if f.is_file() and not f.resolve().is_relative_to(HOME)]


def train(config, report, *, run_dir=None, device="cpu", threads=1):
    original = (HOME / "user_trainer_pkg" / "train.py").read_bytes()
    copies = _shipped()
    if not copies or any(f.read_bytes() != original for f in copies):
        raise RuntimeError(f"Ray's runtime environment did not bring user_trainer_pkg to this worker: {{sys.path}}")
    time.sleep(1.5)  # long enough that both nodes take trials
    loss = 2.0 + 100.0 / config["model"]["d_model"] + 300.0 / math.sqrt(config["tokens"])
    report({{"step": 1, "tokens": config["tokens"], "flops": 1.0, "train_loss": loss, "eval_loss": loss}})
    return {{"status": "finished", "final_train_loss": loss, "final_eval_loss": loss, "tokens": config["tokens"],
            "steps": 1}}
'''


def test_a_trainer_in_the_users_folder_reaches_the_other_node(tmp_path, two_node_cluster):
    # The module is in the driver's folder only: neither node's PYTHONPATH has it (ENV). Both nodes share this
    # machine's disk, and Ray also puts the driver's folder on every worker's path, so the trainer checks what a
    # second machine needs: that Ray's runtime environment (py_modules) put an identical copy of the package on
    # the path of every worker that ran a trial, on both nodes.
    address, _ = two_node_cluster
    home = tmp_path / "my_project"
    (home / "user_trainer_pkg").mkdir(parents=True)
    (home / "user_trainer_pkg" / "__init__.py").write_text("")
    (home / "user_trainer_pkg" / "train.py").write_text(USER_TRAINER.format(home=str(home)))
    seeds = list(range(6))
    result = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=list_example", trials(seeds),
                             "trainer.target=user_trainer_pkg.train:train", f"cluster.address={address}",
                             "hparams.allow_invalid=true", "action=run"],
                            cwd=home, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("list_example")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") == "trial"]
    assert sorted(r.data.tags["status"] for r in runs) == ["finished"] * len(seeds), [
        r.data.tags.get("failure_reason") for r in runs]
    assert len({r.data.tags["worker_node"] for r in runs}) == 2  # both nodes ran the user's code
