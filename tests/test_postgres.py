"""A team's tracking server on a real database: `mlflow server` on PostgreSQL (started here with initdb/pg_ctl on
127.0.0.1, in a temp dir, as the `postgres` user when run as root), a sweep logging to it through the CLI.
Skipped where PostgreSQL is not installed (`make setup-postgres` installs Debian's)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin(name: str) -> str | None:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    return found


@pytest.fixture
def postgres():
    """A PostgreSQL server of this test's own on 127.0.0.1 (trust auth, user and database mlflow); yields its
    port; stopped afterwards by its postmaster's PID."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL is not installed (make setup-postgres)")
    pytest.importorskip("psycopg")
    data = Path(tempfile.mkdtemp(prefix="pg"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_user, initdb, "-D", str(data / "db"), "-U", "mlflow", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, pg_ctl, "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-o",
                    f"-h 127.0.0.1 -p {port} -k {data}", "start"], check=True, capture_output=True, timeout=120)
    pid = int((data / "db" / "postmaster.pid").read_text().split()[0])
    try:
        subprocess.run([*as_user, pg_bin("createdb") or "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow",
                        "mlflow"], check=True, capture_output=True, timeout=60)
        yield port
    finally:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.2)
        shutil.rmtree(data, ignore_errors=True)


def test_a_sweep_logs_to_mlflow_server_on_postgresql(tmp_path, postgres):
    uri = f"postgresql+psycopg://mlflow@127.0.0.1:{postgres}/mlflow"  # psycopg 3, as SQLAlchemy 2.1 expects
    port = free_port()
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers",
                               "1", "--backend-store-uri", uri, "--artifacts-destination", str(tmp_path / "artifacts")],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        work = tmp_path / "work"
        work.mkdir()
        result = subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer=surrogate",
                                 f"tracking.uri={url}"], cwd=work, env={**os.environ, "PYTHONPATH": str(REPO)},
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "View run" not in result.stdout  # MLflow's two lines per run end are silenced
        assert not (work / "mlflow.db").exists()
        client = MlflowClient(url)
        runs = [r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
                if r.data.tags.get("kind") == "trial"]
        assert len(runs) == 6 and {r.data.tags["status"] for r in runs} == {"finished"}
        # The rows are in PostgreSQL itself.
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={postgres} user=mlflow dbname=mlflow") as con:
            count = con.execute("SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                                "WHERE t.key = 'kind' AND t.value = 'trial'").fetchone()[0]
        assert count == 6
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
