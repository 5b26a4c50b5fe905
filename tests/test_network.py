"""Nothing a local sweep starts listens beyond this machine: the driver, Ray's GCS, raylet, workers, agents
and its Prometheus metrics endpoints all bind loopback (runner._loopback_node). Read from the kernel's
socket table (/proc/net/tcp, /proc/net/tcp6) for the driver and every process it started."""

from __future__ import annotations

import ipaddress
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests' / 'plugins'}", "RAY_USAGE_STATS_ENABLED": "0"}
pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc socket table")


def _address(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])  # /proc prints IPv4 in host (little-endian) order
    return ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))  # four host-order words


def listeners() -> dict[int, tuple[str, int, bool]]:
    """Socket inode -> (address, port, is loopback) of every listening TCP socket."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            ip = _address(hex_ip)
            mapped = getattr(ip, "ipv4_mapped", None)
            out[int(fields[9])] = (str(ip), int(hex_port, 16), ip.is_loopback or bool(mapped and mapped.is_loopback))
    return out


def process_tree(root: int) -> dict[int, str]:
    """pid -> command name of `root` and all its descendants."""
    parents, names = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        parents[int(entry.name)], names[int(entry.name)] = int(rest[1]), name
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: names.get(pid, "?") for pid in tree}


def sockets_of(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def finished_trials(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM tags WHERE key = 'status' AND value = 'finished'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_local_sweep_listens_on_loopback_only(tmp_path):
    trials = "[" + ",".join(f"{{n_layer:1,d_model:32,n_head:2,tokens:1e5,seed:{s}}}" for s in range(5, 11)) + "]"
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator", "sweep=list_example", "cluster.num_cpus=2",
                               "trainer.target=behaviours:train", f"sweep.trials={trials}", "hparams.allow_invalid=true",
                               "+trainer.options.sleep_s=3.0"],
                              cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    seen: dict[tuple[str, int], str] = {}
    names: set[str] = set()
    try:
        deadline = time.monotonic() + 300
        while finished_trials(tmp_path / "mlflow.db") < 1:  # Ray is up and workers have run a trial
            assert driver.poll() is None and time.monotonic() < deadline, driver.stdout.read() if driver.poll() else ""
            time.sleep(0.5)
        for _ in range(6):  # a few samples while trials run (workers and agents come and go)
            table = listeners()
            for pid, name in process_tree(driver.pid).items():
                names.add(name)
                for inode in sockets_of(pid) & set(table):
                    ip, port, loopback = table[inode]
                    seen[(ip, port)] = f"{name} (pid {pid}){'' if loopback else ' NOT LOOPBACK'}"
            time.sleep(1)
    finally:
        os.killpg(driver.pid, signal.SIGTERM)
        try:
            driver.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
    assert "gcs_server" in names and "raylet" in names  # the tree was found: this test can fail
    assert len(seen) >= 4, seen  # GCS, raylet, the driver's and the workers' gRPC servers, agents
    exposed = {addr: who for addr, who in seen.items() if who.endswith("NOT LOOPBACK")}
    assert not exposed, exposed
