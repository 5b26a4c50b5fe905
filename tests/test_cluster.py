"""Slow tests against real servers: a two-node Ray cluster on 127.0.0.1 and a real `mlflow server`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests' / 'plugins'}", "RAY_USAGE_STATS_ENABLED": "0"}
pytestmark = pytest.mark.slow


@pytest.fixture
def ray_env(tmp_path):
    """The environment of a Ray cluster of this test's own, as Ray's docs set one up: its own HOME holding the
    token `ray get-auth-token --generate` writes (so `ray start` turns token auth on, Ray's default with a
    token), its own temp dir (RAY_TMPDIR: short, socket paths are limited to 107 bytes) and no RAY_AUTH_MODE.
    (Ray binds a node of a multi-node cluster to its routable address whatever --node-ip-address says; only its
    loopback mode, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, binds 127.0.0.1, and it refuses a second node.) Afterwards every
    process of that cluster is SIGKILLed by PID (never Ray's own stop command: it stops every Ray on the machine)."""
    home = tmp_path / "home"
    home.mkdir()
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = {k: v for k, v in ENV.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_TMPDIR=str(temp), PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True, capture_output=True,
                   timeout=60)
    assert (home / ".ray" / "auth_token").is_file()
    yield env
    stop_ray(temp)
    shutil.rmtree(temp, ignore_errors=True)


def ray_pids(temp: Path) -> list[int]:
    """The processes of the Ray cluster whose temp dir is `temp` (its path is in their command lines), and all
    their descendants (the workers they started)."""
    table = [line.split(None, 2) for line in subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="],
                                                             capture_output=True, text=True).stdout.splitlines()]
    rows = [(int(r[0]), int(r[1]), r[2] if len(r) > 2 else "") for r in table]
    pids = {pid for pid, _, args in rows if str(temp) in args and pid != os.getpid()}
    grew = True
    while grew:
        more = {pid for pid, ppid, _ in rows if ppid in pids} - pids
        pids |= more
        grew = bool(more)
    return sorted(pids)


def stop_ray(temp: Path) -> None:
    """SIGKILL every process of that cluster, by PID, until none is left."""
    deadline = time.monotonic() + 30
    while (pids := ray_pids(temp)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    assert not ray_pids(temp), "the test's Ray processes survived SIGKILL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trials(seeds, tokens=1e5) -> str:
    return "sweep.trials=[" + ",".join(
        f"{{n_layer:1,d_model:32,n_head:2,tokens:{tokens:g},seed:{s}}}" for s in seeds) + "]"


def orchestrator(cwd: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", "sweep=list_example", "trainer.target=behaviours:train",
                           "hparams.allow_invalid=true", *args], cwd=cwd, env=env or ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_sweep_logs_to_a_real_mlflow_server(tmp_path, mlflow_server):
    work = tmp_path / "work"
    work.mkdir()
    result = orchestrator(work, trials([0, 5, 6]), f"tracking.uri={mlflow_server}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (work / "mlflow.db").exists()  # everything went to the server
    assert "View run" not in result.stdout  # MLflow's two lines per run end are silenced
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
def two_node_cluster(ray_env):
    """A head and one worker node on 127.0.0.1, started with `ray start` (Ray's default token auth, the test's own
    temp dir); yields (address, worker, env). The fixture ray_env kills both by PID afterwards."""
    port = free_port()
    ray = str(BIN / "ray")
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    subprocess.run([ray, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
                   env=ray_env, check=True, capture_output=True, timeout=120)
    # A joining node turns token mode on only when told (the head does by itself when a token exists).
    worker = subprocess.Popen([ray, "start", f"--address=127.0.0.1:{port}", "--block", *common],
                              env={**ray_env, "RAY_AUTH_MODE": "token"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    wait_for_nodes(address, 2, env=ray_env)
    yield address, worker, ray_env
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)


def wait_for_nodes(address: str, count: int, *, env: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = subprocess.run([str(BIN / "ray"), "status", f"--address={address}"],
                                env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True)
        if status.stdout.count("node_") >= count:
            return
        time.sleep(1)
    pytest.fail(f"{count} nodes did not join within 120 s")


def kill_worker_node(worker: subprocess.Popen, env: dict[str, str]) -> None:
    """SIGKILL the worker node's raylet and every worker process it started, and its `ray start` (only this test's
    cluster: its temp dir is in the raylet's command line)."""
    temp = env["RAY_TMPDIR"]
    ps = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    raylets = [line.split(None, 1)[0] for line in ps.splitlines()
               if "/raylet/raylet " in line and "__internal_head__" not in line and temp in line]
    assert raylets, "no worker raylet found"
    for raylet in raylets:
        children = subprocess.run(["pgrep", "-P", raylet], capture_output=True, text=True).stdout.split()
        for pid in [*children, raylet]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    os.killpg(worker.pid, signal.SIGKILL)


def test_sweep_runs_across_two_nodes_and_survives_losing_one(tmp_path, two_node_cluster):
    address, worker, env = two_node_cluster
    seeds = list(range(5, 15))
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "sweep=list_example", "trainer.target=behaviours:train",
                             trials(seeds), "+trainer.options.sleep_s=2.0", f"cluster.address={address}",
                             "hparams.allow_invalid=true"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    kill_worker_node(worker, env)  # lose the worker node mid-sweep
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
import tempfile
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
    address, _, env = two_node_cluster
    home = tmp_path / "my_project"
    (home / "user_trainer_pkg").mkdir(parents=True)
    (home / "user_trainer_pkg" / "__init__.py").write_text("")
    (home / "user_trainer_pkg" / "train.py").write_text(USER_TRAINER.format(home=str(home)))
    seeds = list(range(6))
    result = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=list_example", trials(seeds),
                             "trainer.target=user_trainer_pkg.train:train", f"cluster.address={address}",
                             "hparams.allow_invalid=true", "action=run"],
                            cwd=home, env={**env, "PYTHONPATH": ENV["PYTHONPATH"]}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("list_example")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") == "trial"]
    assert sorted(r.data.tags["status"] for r in runs) == ["finished"] * len(seeds), [
        r.data.tags.get("failure_reason") for r in runs]
    assert len({r.data.tags["worker_node"] for r in runs}) == 2  # both nodes ran the user's code


def readme_cluster_commands() -> list[str]:
    """The command lines of docs/cluster.md's "Your cluster" block, as written (comments dropped)."""
    text = (REPO / "docs" / "cluster.md").read_text()
    block = text.split("## Your cluster", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_readme_cluster_runs_as_written(tmp_path, ray_env):
    # Ray's own setup (token generated, `ray start --head`, a second node joining) and the sweep attached with
    # cluster.address, the README's lines run by bash with only the port and HEAD_IP substituted. RAY_AUTH_MODE is
    # not set anywhere: the driver finds the token where Ray's CLI left it.
    commands = readme_cluster_commands()
    assert [c.split()[:2] for c in commands] == [["ray", "get-auth-token"], ["ray", "start"],
                                                 ["RAY_AUTH_MODE=token", "ray"], ["python", "-m"]]
    port = free_port()
    work = tmp_path / "work"
    work.mkdir()
    for line in commands:
        line = line.replace("6379", str(port)).replace("HEAD_IP", "127.0.0.1")
        if line.startswith("python "):
            wait_for_nodes(f"127.0.0.1:{port}", 2, env=ray_env)
            started = time.monotonic()
        done = subprocess.run(["bash", "-c", line], cwd=work, env=ray_env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (line, done.stdout[-3000:], done.stderr[-3000:])
    assert "auth_token" in os.listdir(Path(ray_env["HOME"]) / ".ray")
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = [r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
            if r.data.tags.get("kind") == "trial"]
    assert len(runs) == 6 and {r.data.tags["status"] for r in runs} == {"finished"}, done.stdout
    assert time.monotonic() - started < 300
    # The same head, with a token it does not know: one sentence, exit 2, within 10 s, nothing written.
    other = tmp_path / "other"
    other.mkdir()
    t0 = time.monotonic()
    refused = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer=surrogate",
                              f"cluster.address=127.0.0.1:{port}"], cwd=other,
                             env={**ray_env, "RAY_AUTH_TOKEN": "0" * 64}, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert time.monotonic() - t0 < 10 + 5  # 10 s for the answer, plus the interpreter's start on a loaded machine
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "refused the authentication token from RAY_AUTH_TOKEN" in lines[0], refused.stderr
    assert list(other.iterdir()) == []


def test_a_head_that_requires_a_token_this_machine_lacks(tmp_path, ray_env):
    # One node in Ray's loopback mode (it listens on 127.0.0.1 only): the driver must connect there too.
    ray_env = {**ray_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    port = free_port()
    subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                    "--disable-usage-stats"], env=ray_env, check=True, capture_output=True, timeout=120)
    sweep = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer=surrogate",
                            f"cluster.address=127.0.0.1:{port}", "action=run"], cwd=tmp_path, env=ray_env,
                           capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0 and "6 to run" in sweep.stdout, sweep.stdout + sweep.stderr
    elsewhere, work = tmp_path / "elsewhere", tmp_path / "work2"  # another HOME: no ~/.ray/auth_token there
    elsewhere.mkdir()
    work.mkdir()
    result = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer=surrogate",
                             f"cluster.address=127.0.0.1:{port}"], cwd=work,
                            env={**ray_env, "HOME": str(elsewhere)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "requires token authentication and this machine has no token" in result.stderr
    assert list(work.iterdir()) == []


def test_nothing_listening_is_one_sentence_within_10_s(tmp_path):
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer=surrogate",
                             f"cluster.address=127.0.0.1:{free_port()}"], cwd=tmp_path, env=ENV, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "nothing answers at 127.0.0.1:" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - t0 < 10 + 5
    assert list(tmp_path.iterdir()) == []


def test_a_two_worker_trial_spans_both_nodes_and_resumes_after_losing_a_worker(tmp_path, two_node_cluster):
    # One GPT trial of 2 workers on Ray Train, 1 CPU per node: its gang must take one worker on each node. Once it
    # has written a checkpoint, one of its worker processes is SIGKILLed: the attempt is recorded lost, the next
    # attempt resumes from that checkpoint, and the trial has exactly one FINISHED run.
    address, _, env = two_node_cluster
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "sweep=tiny", "sweep.budgets=[2e11]",
                             "sweep.sizes_per_budget=1", "cluster.workers_per_trial=2", f"cluster.address={address}",
                             "trainer.checkpoint_interval_tokens=65536"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    checkpoints = tmp_path / "checkpoints"
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name == "checkpoint.pt" for p in checkpoints.rglob("checkpoint.pt")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0]
    table = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    ours = set(ray_pids(Path(env["RAY_TMPDIR"])))
    train_workers = [int(line.split(None, 1)[0]) for line in table
                     if "RayTrainWorker" in line and int(line.split(None, 1)[0]) in ours]
    assert len(train_workers) == 2, table
    assert len({raylet_of(pid) for pid in train_workers}) == 2  # one worker on each node
    os.kill(train_workers[-1], signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = [r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
            if r.data.tags.get("kind") == "trial"]
    statuses = sorted(r.data.tags["status"] for r in runs)
    assert statuses.count("finished") == 1 and "lost" in statuses, [
        (r.data.tags["status"], r.data.tags.get("failure_reason")) for r in runs]
    finished = next(r for r in runs if r.data.tags["status"] == "finished")
    assert finished.data.metrics["workers"] == 2
    assert finished.data.metrics["resumed_from_tokens"] > 0  # from the last checkpoint, not from scratch
    lost = next(r for r in runs if r.data.tags["status"] == "lost")
    assert "a worker of the trial died" in lost.data.tags.get("failure_reason", ""), lost.data.tags


def raylet_of(pid: int) -> int:
    """The raylet (node) a process descends from."""
    rows = {int(r[0]): (int(r[1]), r[2] if len(r) > 2 else "") for r in (
        line.split(None, 2) for line in subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True,
                                                       text=True).stdout.splitlines())}
    while pid in rows and "/raylet/raylet " not in rows[pid][1]:
        pid = rows[pid][0]
    assert pid in rows, "no raylet above the process"
    return pid
