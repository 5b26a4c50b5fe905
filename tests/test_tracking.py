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
    def do_GET(self):
        body = b"<html>a web app</html>"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


class _HealthOnly(_NotMlflow):
    def do_GET(self):
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
    from orchestrator.tracking import VIEW_KEY, open_store

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


def test_one_handle_per_store_and_experiment_for_the_whole_invocation(tmp_path):
    # Issue 23: every stage of an invocation (plan's statuses, the runner, the fit, the report) gets the same handle.
    from orchestrator.tracking import open_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert open_store(uri, experiment="one", timeout_s=10, create=False) is None  # nothing there: nothing written
    assert not (tmp_path / "mlflow.db").exists()
    writer = open_store(uri, experiment="one", timeout_s=10, create=True)
    assert open_store(uri, experiment="one", timeout_s=10, create=False) is writer
    assert open_store(uri, experiment="one", timeout_s=10, create=True) is writer
    assert open_store(uri, experiment="two", timeout_s=10, create=True) is not writer  # another experiment
    # A store file replaced under the same path (moved away, a fresh one made) is opened afresh.
    (tmp_path / "mlflow.db").rename(tmp_path / "old.db")
    fresh = open_store(uri, experiment="one", timeout_s=10, create=True)
    assert fresh is not writer and MlflowClient(uri).get_experiment(fresh.experiment_id).name == "one"


def _one_attempt(tracker, writer=None) -> str:
    """Open, stream to, flag and close one trial run: through `writer` (one round, committed) or, without it, one
    call at a time (Tracker.start_trial and end_trial, as the loop wrote before rounds were batched)."""
    parent = tracker.start_parent(sweep="w", config={"sweep": {"name": "w"}}, n_trials=1)
    opening = dict(parent_id=parent, sweep="w", name="N=1k D=1M", trial_id="t1", attempt=1,
                   config={"model": {"n_layer": 2, "widths": [1, 2]}, "tokens": 1e6, "trunk": {"x": 1}},
                   derived={"N_total": 1000, "D": 1e6, "C_exact": 6e9, "tokens_per_param": 1000.0, "trial_id": "t1"},
                   host="h", device="cpu", node="n1", tags={"stage": "s"})
    reports = [{"step": 1, "train_loss": 4.0, "flops": 1e9}, {"step": 2, "train_loss": 3.5, "eval_loss": float("nan")}]
    result = {"status": "crashed", "final_eval_loss": float("inf"), "final_train_loss": 3.25, "steps": 2,
              "extra": {"law_loss": 3.0}, "device": "cpu", "dtype": "fp32"}
    closing = dict(status="crashed", result=result, reason="boom", traceback="Traceback: boom",
                   reports=[{"step": 3, "train_loss": 3.25, "flops": 2e9}])
    if writer is None:
        run_id = tracker.start_trial(**opening)
        tracker.log_reports(run_id, reports)
        tracker.set_tags(run_id, {"flag.slow": "step 1: slow"})
        tracker.end_trial(run_id, **closing)
        return run_id
    run_id = writer.open_run(**opening)
    writer.log_reports(run_id, reports)
    writer.set_tags(run_id, {"flag.slow": "step 1: slow"})
    writer.close_run(run_id, **closing)
    writer.commit()
    return run_id


def _stored(uri: str, run_id: str) -> dict:
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    tags = {k: v for k, v in run.data.tags.items() if k not in ("mlflow.parentRunId", "heartbeat")}
    return {"status": run.info.status, "ended": run.info.end_time is not None, "name": run.info.run_name,
            "params": run.data.params, "tags": tags, "latest": {k: repr(v) for k, v in run.data.metrics.items()},
            "history": {k: sorted((m.step, repr(m.value)) for m in client.get_metric_history(run_id, k))
                        for k in run.data.metrics},
            "artifacts": sorted(a.path for a in client.list_artifacts(run_id))}


def test_a_round_written_as_one_transaction_stores_exactly_what_the_calls_one_by_one_store(tmp_path):
    from orchestrator.tracking import SqliteRunWriter, open_store

    stored = {}
    for mode in ("calls", "round"):
        uri = f"sqlite:///{tmp_path / mode / 'mlflow.db'}"
        (tmp_path / mode).mkdir()
        tracker = open_store(uri, experiment="w", timeout_s=10, create=True)
        writer = tracker.writer() if mode == "round" else None
        assert writer is None or isinstance(writer, SqliteRunWriter)
        stored[mode] = _stored(uri, _one_attempt(tracker, writer))
    assert stored["round"] == stored["calls"]
    assert stored["round"]["status"] == "FAILED" and stored["round"]["tags"]["status"] == "crashed"
    assert stored["round"]["history"]["train_loss"] == [(1, "4.0"), (2, "3.5"), (3, "3.25")]
    assert stored["round"]["latest"]["eval_loss"] == "nan" and "final_loss" in stored["round"]["latest"]
    assert stored["round"]["artifacts"] == ["traceback.txt", "trial_config.json"]


def test_outcomes_wait_for_their_commit_and_a_failed_commit_writes_nothing_and_keeps_the_round(tmp_path):
    from orchestrator.tracking import open_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = open_store(uri, experiment="w", timeout_s=10, create=True)
    writer, told = tracker.writer(), []
    parent = tracker.start_parent(sweep="w", config={}, n_trials=2)
    opening = dict(parent_id=parent, sweep="w", attempt=1, config={"seed": 0}, derived={"N_total": 10}, host="h",
                   device="cpu", node="n")
    first = writer.open_run(name="a", trial_id="a", **opening)
    writer.close_run(first, status="finished", result={"final_eval_loss": 2.0, "steps": 1})
    writer.after_commit(lambda: told.append("a"))
    assert told == [] and tracker.trial_runs() == []  # nothing in the store, nobody told
    writer.commit()
    assert told == ["a"] and [r.status for r in tracker.trial_runs()] == ["finished"]
    second = writer.open_run(name="b", trial_id="b", **opening)
    writer.set_tags(second, {"bad key \x00": "x"})  # MLflow refuses the key: the whole round fails
    writer.after_commit(lambda: told.append("b"))
    with pytest.raises(Exception, match="Names may only contain"):
        writer.commit()
    assert told == ["a"] and [r.trial_id for r in tracker.trial_runs()] == ["a"]
    assert writer._runs  # the round is kept for the next commit


@pytest.mark.slow
def test_a_round_behind_a_server_stores_what_the_calls_one_by_one_store(mlflow_server):
    # Against a server the round goes through MLflow's client: one log_batch per run, then the terminal status.
    from orchestrator.tracking import ClientRunWriter, open_store

    stored = {}
    for mode in ("calls", "round"):
        tracker = open_store(mlflow_server, experiment=f"w-{mode}", timeout_s=10, create=True)
        writer = tracker.writer() if mode == "round" else None
        assert writer is None or isinstance(writer, ClientRunWriter)
        stored[mode] = _stored(mlflow_server, _one_attempt(tracker, writer))
    assert stored["round"] == stored["calls"]
    assert stored["round"]["artifacts"] == ["traceback.txt", "trial_config.json"]
