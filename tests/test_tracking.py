"""A tracking store that cannot be used fails fast with one sentence naming the resolved URI (exit 2), and
nothing is written into it: a text file, a truncated or garbage store, an empty or unrelated SQLite file,
a 0-byte mlflow.db, a server that is not MLflow. Through the real CLI, each from an empty folder."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

TINY = ["sweep=tiny", "trainer=surrogate"]
ACTIONS = ["action=plan", "action=report", "action=run"]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> Path:
    """A real MLflow SQLite store (schema, one experiment, one run), to damage copies of."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    client = MlflowClient(f"sqlite:///{path}")
    exp = client.create_experiment("tiny", artifact_location=(path.parent / "mlruns").as_uri())
    client.create_run(exp, tags={"kind": "sweep"})
    return path


def fails_fast(result, phrase: str, *, seconds: float, limit: float = 15.0) -> str:
    """Exit 2 with one sentence holding `phrase`, within `limit` seconds (interpreter start included)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    message = result.stderr.strip()
    assert phrase in message, message
    assert len(message.splitlines()) == 1 and "Traceback" not in message, message
    assert "tracking.uri=None" not in message
    assert seconds < limit, f"took {seconds:.1f}s"
    return message


def timed(cli, *args):
    start = time.monotonic()
    result = cli(*args, timeout=120)
    return result, time.monotonic() - start


@pytest.mark.parametrize("action", ACTIONS)
def test_a_text_file_as_the_store_fails_fast_and_is_left_alone(cli, tmp_path, action):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n" * 100)
    result, seconds = timed(cli, *TINY, action, f"tracking.uri=sqlite:///{notes}", "tracking.timeout_s=3")
    fails_fast(result, f"tracking.uri=sqlite:///{notes} is not a SQLite database", seconds=seconds)
    assert notes.read_text() == "my notes\n" * 100
    assert {p.name for p in tmp_path.iterdir()} == {"notes.txt"}


@pytest.mark.parametrize("damage, action", [("truncated", "action=plan"), ("truncated", "action=report"),
                                            ("truncated", "action=run"), ("garbage", "action=plan")])
def test_a_damaged_store_fails_fast_instead_of_minutes_of_retries(cli, tmp_path, real_store, action, damage):
    data = real_store.read_bytes()
    broken = data[: len(data) // 2] if damage == "truncated" else data[:100] + os.urandom(len(data) - 100)
    (tmp_path / "mlflow.db").write_bytes(broken)
    result, seconds = timed(cli, *TINY, action, "tracking.timeout_s=3")
    fails_fast(result, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'} is damaged or truncated", seconds=seconds)
    assert (tmp_path / "mlflow.db").read_bytes() == broken


@pytest.mark.parametrize("action", ["action=plan", "action=run"])
def test_an_unrelated_sqlite_database_is_never_given_mlflows_schema(cli, tmp_path, action):
    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE recipes (name TEXT, minutes INTEGER)")
        db.execute("INSERT INTO recipes VALUES ('soup', 30)")
    before = path.read_bytes()
    result, seconds = timed(cli, *TINY, action)
    fails_fast(result, f"tracking.uri=sqlite:///{path} is a SQLite database but not an MLflow store (it has no "
                       f"'experiments' table)", seconds=seconds)
    assert path.read_bytes() == before
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["recipes"]


def test_an_empty_sqlite_database_is_not_an_mlflow_store(cli, tmp_path):
    path = tmp_path / "mlflow.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 7")  # a valid database file with no tables
    result, seconds = timed(cli, *TINY, "action=plan")
    fails_fast(result, "is a SQLite database but not an MLflow store (it holds no tables)", seconds=seconds)


@pytest.mark.parametrize("action", ["action=plan", "action=run"])
def test_a_zero_byte_store_is_refused_not_silently_reinitialised(cli, tmp_path, action):
    path = tmp_path / "mlflow.db"
    path.touch()
    result, seconds = timed(cli, *TINY, action)
    fails_fast(result, f"tracking.uri=sqlite:///{path} is an empty file (0 bytes), not an MLflow store: delete it "
                       f"to start a new store there", seconds=seconds)
    assert path.stat().st_size == 0
    assert {p.name for p in tmp_path.iterdir()} == {"mlflow.db"}


def test_plan_against_a_real_store_writes_nothing(cli, tmp_path, real_store):
    shutil.copy(real_store, tmp_path / "mlflow.db")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = cli(*TINY, "action=plan")
    assert result.returncode == 0, result.stderr
    assert "status: pending 6" in result.stdout
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no lock file, no WAL left behind


class _NotMlflow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802  (http.server's naming)
        body = b"<html>a web app</html>"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


class _HealthOnly(_NotMlflow):
    def do_GET(self):  # noqa: N802
        body = b"OK"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_server(request):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("http_server, phrase, action", [
    (_NotMlflow, "is not an MLflow server: it answered HTTP 404 at /health", "action=plan"),
    (_HealthOnly, "is not an MLflow server: its /health and /version answers are not MLflow's", "action=run"),
], indirect=["http_server"])
def test_an_http_server_that_is_not_mlflow_is_named_as_such_not_unreachable(cli, tmp_path, http_server, phrase,
                                                                              action):
    result, seconds = timed(cli, *TINY, action, f"tracking.uri={http_server}", "tracking.timeout_s=3")
    message = fails_fast(result, f"tracking.uri={http_server} {phrase}", seconds=seconds)
    assert "unreachable" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_run_names_the_resolved_store_never_none(cli, tmp_path):
    (tmp_path / "mlflow.db").write_text("not a database")
    result, seconds = timed(cli, *TINY)
    message = fails_fast(result, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", seconds=seconds)
    assert "None" not in message


def test_experiments_are_tagged_as_model_training_and_the_runs_url_points_at_them(tmp_path, real_store):
    # MLflow 3's UI opens an experiment without mlflow.experimentKind as a GenAI trace overview.
    from orchestrator.tracking import VIEW_KEY, open_store  # noqa: PLC0415

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = open_store(uri, experiment="fresh", timeout_s=10, create=True)
    client = MlflowClient(uri)
    assert client.get_experiment(tracker.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert tracker.runs_url() == (f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}/runs?viewStateShareKey="
                                  f"{VIEW_KEY}&workflowType=machine_learning  (after: mlflow ui --backend-store-uri {uri})")
    # The view the URL names is an experiment tag the UI reads (tests/e2e/test_mlflow_ui.py opens it in chromium), and the
    # experiment carries its description.
    tags = client.get_experiment(tracker.experiment_id).tags
    assert json.loads(tags[f"mlflow.sharedViewState.{VIEW_KEY}"])["searchFilter"] == "tags.kind = 'trial'"
    assert tags["mlflow.note.content"].startswith("**Scaling-law sweep `fresh`**")
    # An experiment made before the tag existed gets it when a sweep next opens it for writing, not when read.
    old = tmp_path / "old.db"
    shutil.copy(real_store, old)
    reader = open_store(f"sqlite:///{old}", experiment="tiny", timeout_s=10, create=False)
    assert "mlflow.experimentKind" not in MlflowClient(f"sqlite:///{old}").get_experiment(reader.experiment_id).tags
    writer = open_store(f"sqlite:///{old}", experiment="tiny", timeout_s=10, create=True)
    tags = MlflowClient(f"sqlite:///{old}").get_experiment(writer.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
