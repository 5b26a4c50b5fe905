"""MLflow tracking, owned by the driver: one experiment per sweep, a parent run per invocation, a
child run per trial attempt. Workers never touch the store; they stream reports to the driver, so
a multi-node cluster works with a SQLite file that only the head node holds, and with a server.

Run statuses: MLflow's FINISHED / FAILED / KILLED, plus our own tag `status`: finished, crashed,
oom, diverged, killed, lost (with `failure_reason`) or pruned (stopped early by a search's pruner).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from orchestrator.config import Config
from orchestrator.errors import UsageError
from orchestrator.run_tags import RunKind
from trainers.api import Status


def _configure_once() -> None:
    """Process settings the store needs, applied when a store is first opened (never at import):
    no HTTP retries (a dead server is one sentence, not minutes of backoff), no telemetry calls, MLflow's
    own logging at WARNING, and SQLite's synchronous=NORMAL on every new connection."""
    if _CONFIGURED:
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls from the driver
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    event.listen(Engine, "connect", _sqlite_wal_normal)
    _CONFIGURED.append(True)


_CONFIGURED: list[bool] = []


def _sqlite_wal_normal(dbapi_connection, connection_record) -> None:  # noqa: ARG001
    """WAL with synchronous=NORMAL: a commit no longer waits for fsync (safe against crashes of
    any process; only a power loss can drop the last commits). Halves the driver's cost per run."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


TRIAL_METRICS = ("N", "D", "C", "tokens_per_param", "final_loss")
"""What a researcher reads first, logged on each trial run as metrics (numbers: they sort as numbers, which
params, stored as text, do not): N = N_total parameters, D tokens, C = C_exact FLOPs, D/N, and the final loss
(the eval loss at D, else the train loss). tokens_per_param is rounded to 4 significant digits and final_loss to 5
so that the table's cells read whole; the exact numbers stay in the params under their planner names and in the
metric final_eval_loss."""
CURVES = {"train_loss": "loss/train", "eval_loss": "loss/eval"}
"""The loss curves, logged a second time under a `loss/` prefix: MLflow 3.17's run page (Model metrics) draws
prefixed sections before its alphabetical section of the rest, so a trial's page opens on its loss curves rather
than on bar charts of its single numbers. The trainer's own names (train_loss, eval_loss) are what is read back."""
VIEW = {"searchFilter": f"tags.kind = '{RunKind.TRIAL}'", "orderByKey": "metrics.`C`", "orderByAsc": True,
        "selectedColumns": [f"metrics.`{m}`" for m in TRIAL_METRICS] + ["tags.`status`"],
        "columnOrder": ["attributes.`Run Name`", *(f"metrics.`{m}`" for m in TRIAL_METRICS), "tags.`status`"],
        "columnWidths": {"attributes.`Run Name`": 290}, "runListHidden": False, "viewMaximized": False}
"""The runs table the printed URL opens: trials only (not the sweep's parent runs, not its lease), by budget, with
N, D, C, tokens per parameter, final loss and status as its columns. MLflow 3.17's UI reads such a view from the
experiment tag `mlflow.sharedViewState.<key>` named by `?viewStateShareKey=<key>` in the page's URL (its Share
button's mechanism; plain JSON is accepted: mlflow/server/js, useSharedExperimentViewState): the search facets
`searchFilter`, `orderByKey`, `orderByAsc` and the UI state keys `selectedColumns`, `columnOrder`, `columnWidths`;
a column's key is its kind and its backquoted name (metrics.`N`, tags.`status`, attributes.`Run Name`)."""
VIEW_KEY = "trials-" + hashlib.sha256(json.dumps(VIEW, sort_keys=True).encode()).hexdigest()[:12]
"""Content-addressed, so a changed view is a new key (an old URL still opens the view it was printed with)."""
DESCRIPTION = """**Scaling-law sweep `{name}`**, tracked by scaling-orchestrator.

- One run per trial attempt, named by what it trains: `C=` budget (FLOPs), `N=` parameters, `D=` tokens.
- Columns: `N` (N_total parameters), `D` (training tokens), `C` (C_exact FLOPs), `tokens_per_param` (D/N),
  `final_loss` (eval loss at D, else train loss), `status`. Every config key is a param under its dotted name.
- A trial's page, *Model metrics*: its loss curves by step first (`loss/train`, `loss/eval`; the same as
  `train_loss`, `eval_loss`).
- The view opens filtered to trials (`tags.kind = 'trial'`); clear the filter to see each invocation's parent
  run (`kind = sweep`: fit.json and the report as artifacts) and the sweep's lease (`kind = lease`).
"""
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development", f"mlflow.sharedViewState.{VIEW_KEY}":
                   json.dumps(VIEW, sort_keys=True)}
"""MLflow 3's UI opens an experiment without `mlflow.experimentKind` as a GenAI trace overview;
`custom_model_development` is its kind for model training (the experiment page's kind selector;
mlflow/server/js, ExperimentKind). The view is `VIEW`; the description (`mlflow.note.content`, which the UI shows
as the experiment's description) is `DESCRIPTION`."""
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
HEARTBEAT_S = 30.0
SQLITE_HEADER = b"SQLite format 3\x00"
MLFLOW_TABLES = ("experiments", "runs", "params", "tags", "metrics", "alembic_version")
CREATE_LOCK_WAIT_S = 120.0
"""How long a driver waits for another process that is creating the same SQLite store's schema."""
QUICK_CHECK_S = 1.0
"""Most time spent on SQLite's quick_check of an existing store (a large store is only partly checked)."""


_CHECKED: set[Path] = set()
"""SQLite stores this process has checked (or created)."""


class TrackingError(UsageError):
    """The tracking store is unreachable or misconfigured (one sentence naming the resolved URI)."""


def resolve_uri(uri: str | None, *, cwd: Path | None = None) -> str:
    """MLflow's own default location: sqlite:///<absolute cwd>/mlflow.db."""
    if uri:
        return uri
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///").replace("sqlite:////", "/")) if uri.startswith("sqlite:///") else None


def check_store(uri: str, *, timeout_s: float, create: bool = True) -> None:
    """Fail within `timeout_s` with one sentence when the store cannot be used; writes nothing.

    A server must answer as an MLflow server (/health and /version), not merely answer. A SQLite file
    that exists must be an MLflow store: not empty, a SQLite database, not truncated or damaged, with
    MLflow's tables (MLflow would otherwise write its schema into someone else's database, or retry a
    damaged one for minutes). With create=False (plan, fit, report) a missing file is fine: nothing to read.
    """
    _configure_once()
    if uri.startswith(("http://", "https://")):
        _check_server(uri, timeout_s=timeout_s)
        return
    path = sqlite_path(uri)
    if path is None:
        raise TrackingError(f"tracking.uri={uri} is not supported: use sqlite:///ABSOLUTE/PATH.db or http://host:port.")
    if not path.parent.is_dir() or (create and not os.access(path.parent, os.W_OK)):
        raise TrackingError(f"tracking.uri={uri}: folder {path.parent} does not exist or is not writable.")
    if path.is_dir():
        raise TrackingError(f"tracking.uri={uri} is a folder: give the path of a SQLite file (e.g. .../mlflow.db).")
    if path.exists() and path not in _CHECKED:
        with _schema_lock(path, exclusive=False, create=False):  # wait while another driver creates the schema
            _check_sqlite(path, uri=uri, timeout_s=timeout_s)
        # Once per process: a read-only connection beside this process's own open store fails in WAL mode
        # ("disk I/O error": the shared-memory index is already mapped read-write here).
        _CHECKED.add(path)


def _check_server(uri: str, *, timeout_s: float) -> None:
    """/health answers "OK" and /version a version number, as `mlflow server` does (mlflow/server/__init__.py)."""
    deadline = time.monotonic() + timeout_s
    # Later MLflow requests get the same bound (MLflow reads the variable per request).
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(timeout_s)))
    bodies = {}
    for route in ("/health", "/version"):
        url = uri.rstrip("/") + route
        try:
            with urllib.request.urlopen(url, timeout=max(deadline - time.monotonic(), 0.1)) as response:
                bodies[route] = response.read(200).decode("utf-8", "replace").strip()
        except urllib.error.HTTPError as err:  # it answered, but not as MLflow does
            raise TrackingError(f"tracking.uri={uri} is not an MLflow server: it answered HTTP {err.code} at {route}; "
                                f"check the address and port.") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(f"tracking.uri={uri} is unreachable within {timeout_s:g}s ({reason}); "
                                f"start the server or fix the address.") from None
    if bodies["/health"] != "OK" or not re.match(r"\d+\.\d+", bodies["/version"]):
        raise TrackingError(f"tracking.uri={uri} is not an MLflow server: its /health and /version answers are not "
                            f"MLflow's; check the address and port.")


def _check_sqlite(path: Path, *, uri: str, timeout_s: float) -> None:
    """An existing SQLite file is an intact MLflow store (read-only checks, bounded by timeout_s)."""
    size = path.stat().st_size
    if size == 0:
        raise TrackingError(f"tracking.uri={uri} is an empty file (0 bytes), not an MLflow store: delete it to start "
                            f"a new store there, or point tracking.uri at an existing store.")
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise TrackingError(f"tracking.uri={uri} is not a SQLite database (its first bytes are not SQLite's header): "
                            f"point tracking.uri at an MLflow store, or at a file that does not exist yet.")
    deadline = time.monotonic() + timeout_s
    db = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True, timeout=timeout_s)
    try:
        db.set_progress_handler(lambda: time.monotonic() > deadline, 1000)  # a nonzero return aborts the query
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in MLFLOW_TABLES if t not in tables]
        if missing:
            what = "holds no tables" if not tables else f"has no {missing[0]!r} table"
            raise TrackingError(f"tracking.uri={uri} is a SQLite database but not an MLflow store (it {what}); MLflow "
                                f"would write its schema into it: point tracking.uri at an MLflow store or a new file.")
        check_until = min(deadline, time.monotonic() + QUICK_CHECK_S)
        db.set_progress_handler(lambda: time.monotonic() > check_until, 1000)
        try:
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        except sqlite3.OperationalError as err:  # interrupted: a large store, checked as far as time allowed
            verdict = "ok" if "interrupt" in str(err) else str(err)
        if verdict != "ok":
            raise sqlite3.DatabaseError(verdict)
    except sqlite3.OperationalError as err:
        if "interrupt" in str(err):
            raise TrackingError(f"tracking.uri={uri} could not be read within tracking.timeout_s={timeout_s:g}s.") from None
        raise TrackingError(f"tracking.uri={uri} cannot be read ({err}).") from None
    except sqlite3.DatabaseError as err:
        raise TrackingError(f"tracking.uri={uri} is damaged or truncated ({err}): restore it from a backup, or move it "
                            f"away to start a new store.") from None
    finally:
        db.close()


@contextlib.contextmanager
def _schema_lock(path: Path, *, exclusive: bool, create: bool) -> Iterator[None]:
    """An flock on `<db>-lock` around MLflow's first touch of a SQLite store.

    Two processes creating a fresh store at once crash in MLflow's migrations ("duplicate column name"):
    the creator holds the lock exclusively while MLflow creates the schema; readers take it shared, so they
    never see half a schema. A reader (create=False) never creates the lock file, so plan writes nothing.
    """
    lock = path.with_name(path.name + "-lock")
    if not create and not lock.exists():
        yield
        return
    fd = os.open(lock, (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY, 0o644)
    try:
        deadline = time.monotonic() + CREATE_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingError(f"the store {path} has been locked by another process (its schema being "
                                        f"created) for {CREATE_LOCK_WAIT_S:.0f}s; is that process stuck?") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"n_layer": 2}} -> {"model.n_layer": 2}: the YAML's dotted names."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@dataclass
class TrialRecord:
    """One trial run (an attempt) as the store holds it: its status tag (`running` while MLflow says RUNNING),
    params, final metrics and tags."""

    trial_id: str
    status: str
    run_id: str
    final_eval_loss: float | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def best_per_trial(records: list[TrialRecord]) -> dict[str, TrialRecord]:
    """trial_id -> the run that speaks for it: its newest finished run, else its newest run.

    The one rule for reading results back (resumption, the plan's status column, the fit's runs table,
    searches): a finished run beats every other, whatever came after it. `records` are newest first.
    """
    best: dict[str, TrialRecord] = {}
    for record in records:
        held = best.get(record.trial_id)
        if held is None or (record.status == Status.FINISHED and held.status != Status.FINISHED):
            best[record.trial_id] = record
    return best


class Tracker:
    """The driver's handle on the store. `open_store` creates the DB and experiment once."""

    def __init__(self, uri: str, experiment: str, *, create: bool) -> None:
        _configure_once()
        self.uri = uri
        self.experiment = experiment
        self.commit = _git_commit()
        self.host = socket.gethostname()
        path = sqlite_path(uri)
        with _schema_lock(path, exclusive=create, create=create) if path else contextlib.nullcontext():
            self.client = MlflowClient(tracking_uri=uri)  # MLflow creates a new store's schema here, or below
            found = self.client.get_experiment_by_name(experiment)
            if path is not None and create:
                _use_wal(path)
                _CHECKED.add(path)
        if found is not None and found.lifecycle_stage != "active":
            raise TrackingError(f"the experiment {experiment!r} in {uri} is deleted: restore it (mlflow experiments "
                                f"restore --experiment-id {found.experiment_id}) or set tracking.experiment to another name.")
        if found is None and not create:
            self.experiment_id = None
            return
        tags = {**EXPERIMENT_TAGS, "mlflow.note.content": DESCRIPTION.format(name=experiment)}
        if found is None:
            location = (path.parent / "mlruns").as_uri() if path else None
            try:
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location, tags=tags)
            except MlflowException as err:  # another driver created it a moment ago: use theirs
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                self.experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            self.experiment_id = found.experiment_id
            if create and not tags.items() <= found.tags.items():  # made before these tags existed
                for key, value in tags.items():
                    if key != "mlflow.note.content" or key not in found.tags:  # a description the user wrote stays
                        self.client.set_experiment_tag(self.experiment_id, key, value)

    def runs_url(self) -> str:
        """Where the sweep's runs table is in the MLflow UI: the server's page, or, for a SQLite store, the page of
        `mlflow ui` (default port) started on that store."""
        # workflowType: the UI's sidebar otherwise stays in GenAI mode (mlflow/server/js, WorkflowTypeProvider).
        page = f"#/experiments/{self.experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"
        if self.uri.startswith(("http://", "https://")):
            return f"{self.uri.rstrip('/')}/{page}"
        return f"http://127.0.0.1:5000/{page}  (after: mlflow ui --backend-store-uri {self.uri})"

    # -- reading ---------------------------------------------------------------------------------
    def _search(self, kind: RunKind, *, limit: int | None = None) -> Iterator[Any]:
        """The experiment's active runs tagged kind=`kind`, newest first, every page (MLflow returns at
        most 5000 a page)."""
        if self.experiment_id is None:
            return
        token, seen = None, 0
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=f"tags.kind = '{kind}'",
                                           run_view_type=ViewType.ACTIVE_ONLY, max_results=min(limit or 5000, 5000),
                                           order_by=["attributes.start_time DESC"], page_token=token)
            for run in page:
                yield run
                seen += 1
                if limit is not None and seen >= limit:
                    return
            token = page.token
            if not token:
                return

    def trial_runs(self) -> list[TrialRecord]:
        """Every trial run of the experiment (all invocations and attempts), newest first."""
        records = []
        for run in self._search(RunKind.TRIAL):
            tags = run.data.tags
            status = tags.get("status", Status.RUNNING) if run.info.status != "RUNNING" else Status.RUNNING
            records.append(TrialRecord(tags.get("trial_id", ""), status, run.info.run_id,
                                       run.data.metrics.get("final_eval_loss"), dict(run.data.params),
                                       dict(run.data.metrics), dict(tags)))
        return records

    def trunk_runs(self) -> list[TrialRecord]:
        """Every WSD trunk run (orchestrator/forks.py), newest first."""
        return [TrialRecord(r.data.tags.get("trial_id", ""),
                            Status.RUNNING if r.info.status == "RUNNING" else r.data.tags.get("status", Status.RUNNING),
                            r.info.run_id, r.data.metrics.get("final_eval_loss"), dict(r.data.params),
                            dict(r.data.metrics), dict(r.data.tags)) for r in self._search(RunKind.TRUNK)]

    def results(self) -> dict[str, TrialRecord]:
        """trial_id -> the run that speaks for it (`best_per_trial`)."""
        return best_per_trial(self.trial_runs())

    def statuses(self) -> dict[str, str]:
        """trial_id -> the status of the run that speaks for it (a finished run beats every newer one)."""
        return {trial_id: record.status for trial_id, record in self.results().items()}

    def metric_history(self, run_id: str, keys: tuple[str, ...]) -> dict[str, dict[int, float]]:
        """{metric: {step: value}} of one run, for the metrics in `keys` it has."""
        out: dict[str, dict[int, float]] = {}
        for key in keys:
            for metric in self.client.get_metric_history(run_id, key):
                out.setdefault(key, {})[metric.step] = metric.value
        return out

    # -- writing ---------------------------------------------------------------------------------
    def reap_stale(self) -> int:
        """Mark RUNNING runs whose driver is gone as killed; returns how many."""
        if self.experiment_id is None:
            return 0
        reaped = 0
        runs = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                       max_results=5000)
        for run in runs:
            tags = run.data.tags
            if self._driver_alive(tags):
                continue
            if tags.get("kind") in (RunKind.TRIAL, RunKind.TRUNK):
                self.client.set_tag(run.info.run_id, "status", Status.KILLED)
                self.client.set_tag(run.info.run_id, "failure_reason", "the driver process died (reaped)")
            self.client.set_terminated(run.info.run_id, status="KILLED")
            reaped += 1
        return reaped

    def _driver_alive(self, tags: dict[str, str]) -> bool:
        if tags.get("driver_host") == self.host:
            try:
                os.kill(int(tags.get("driver_pid", "0")), 0)
                return int(tags.get("driver_pid", "0")) != 0
            except (OSError, ValueError):
                return False
        beat = float(tags.get("heartbeat", "0"))
        return time.time() - beat < 4 * HEARTBEAT_S

    def _driver_tags(self) -> dict[str, str]:
        return {"driver_host": self.host, "driver_pid": str(os.getpid()), "heartbeat": f"{time.time():.0f}",
                "git_commit": self.commit, "host": self.host}

    def start_parent(self, *, sweep: str, config: dict[str, Any], n_trials: int) -> str:
        tags = {"kind": RunKind.SWEEP, "sweep": sweep, **self._driver_tags()}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{sweep} {time.strftime('%Y-%m-%d %H:%M:%S')}")
        params = {k: v for k, v in flatten(config).items() if k.startswith(("sweep.", "cluster.", "adaptive."))}
        params["n_trials"] = n_trials
        self._log_params(run.info.run_id, params)
        self.client.log_dict(run.info.run_id, config, "sweep_config.json")
        return run.info.run_id

    def heartbeat(self, run_id: str) -> None:
        self.client.set_tag(run_id, "heartbeat", f"{time.time():.0f}")

    def start_trial(self, *, parent_id: str, sweep: str, name: str, trial_id: str, attempt: int,
                    config: dict[str, Any], derived: dict[str, Any], host: str, device: str, node: str,
                    tags: dict[str, str] | None = None) -> str:
        """A child run of `parent_id`; `tags` are extra tags (e.g. optuna_trial, stage; kind=trunk for a WSD trunk,
        which is not a trial: orchestrator/forks.py)."""
        tags = {"kind": RunKind.TRIAL, **(tags or {}), "mlflow.parentRunId": parent_id, "sweep": sweep,
                "trial_id": trial_id, "attempt": str(attempt), "status": Status.RUNNING, "device": device,
                **self._driver_tags(), "host": host, "worker_node": node}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        # A trunk's fork list (whole fork configs) is in trial_config.json, too long for a param.
        params = {**flatten({k: v for k, v in config.items() if k != "trunk"}),
                  **{k: v for k, v in derived.items() if k != "trial_id"}}
        self._log_params(run.info.run_id, params, metrics=trial_metrics(derived))
        self._log_json(run, config, "trial_config.json")
        return run.info.run_id

    def _log_json(self, run, data: dict[str, Any], name: str) -> None:
        """An artifact; written in place when the artifact store is a local folder (no temp copy)."""
        uri = run.info.artifact_uri
        if uri.startswith("file://") or uri.startswith("/"):
            folder = Path(uri.removeprefix("file://"))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True))
        else:
            self.client.log_dict(run.info.run_id, data, name)

    def _log_params(self, run_id: str, params: dict[str, Any], *, metrics: list[Metric] = ()) -> None:
        """Params 100 a request (MLflow's batch limit); `metrics` (at most 1000) ride on the first request."""
        items = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in sorted(params.items())]
        for i in range(0, max(len(items), 1), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i:i + MAX_PARAMS_PER_BATCH],
                                  metrics=list(metrics) if i == 0 else [], synchronous=True)

    def _report_metrics(self, reports: list[dict[str, Any]]) -> list[Metric]:
        stamp = int(time.time() * 1000)
        return [Metric(name, float(value), stamp, int(report.get("step", 0)))
                for report in reports for key, value in report.items()
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
                for name in (key, *([CURVES[key]] if key in CURVES else []))]

    def _log_metrics(self, run_id: str, metrics: list[Metric], tags: list[RunTag] = ()) -> None:
        """One request per 1000 metrics (MLflow's batch limit); tags ride on the first."""
        for i in range(0, max(len(metrics), 1), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS_PER_BATCH],
                                  tags=list(tags) if i == 0 else [], synchronous=True)

    def log_reports(self, run_id: str, reports: list[dict[str, Any]]) -> None:
        """Every numeric key of every report as a metric at its step."""
        if reports:
            self._log_metrics(run_id, self._report_metrics(reports))

    def end_trial(self, run_id: str, *, status: str, result: dict[str, Any] | None = None,
                  reason: str | None = None, traceback: str | None = None,
                  reports: list[dict[str, Any]] = ()) -> None:
        """Final metrics (with any reports not yet logged), status tags, traceback, terminal status."""
        result = result or {}
        tags = [RunTag("status", status)]
        if reason:
            tags.append(RunTag("failure_reason", reason[:4000]))
        stamp = int(time.time() * 1000)
        metrics = self._report_metrics(list(reports))
        numbers = {**{k: v for k, v in result.items() if k != "extra"}, **(result.get("extra") or {})}
        final = numbers.get("final_eval_loss")
        final = final if isinstance(final, (int, float)) and math.isfinite(final) else numbers.get("final_train_loss")
        if isinstance(final, (int, float)) and math.isfinite(final):
            metrics.append(Metric("final_loss", float(f"{final:.5g}"), stamp, int(result.get("steps", 0))))
        for key, value in numbers.items():
            if key in ("device", "dtype"):
                tags.append(RunTag(key, str(value)))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics.append(Metric(key, float(value), stamp, int(result.get("steps", 0))))
        self._log_metrics(run_id, metrics, tags)
        if traceback:
            self.client.log_text(run_id, traceback, "traceback.txt")
        self.client.set_terminated(run_id, status=Status(status).mlflow)

    # -- the sweep lease (orchestrator/lease.py): a run tagged kind=lease, write-once params as its claims --
    def lease_runs(self) -> list[tuple[str, dict[str, str], dict[str, str]]]:
        """(run_id, params, tags) of the experiment's lease runs."""
        return [(r.info.run_id, dict(r.data.params), dict(r.data.tags)) for r in self._search(RunKind.LEASE, limit=100)]

    def create_lease_run(self) -> str:
        """A lease run: terminated at once (params and tags can still be logged to it), never reaped."""
        run = self.client.create_run(self.experiment_id, tags={"kind": RunKind.LEASE}, run_name="sweep lease")
        self.client.set_terminated(run.info.run_id, status="FINISHED")
        return run.info.run_id

    def delete_run(self, run_id: str) -> None:
        self.client.delete_run(run_id)

    def read_run(self, run_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """(params, tags) of a run."""
        data = self.client.get_run(run_id).data
        return dict(data.params), dict(data.tags)

    def claim(self, run_id: str, key: str, value: str) -> str:
        """Write `key`=`value` once; returns the value stored, which is `value` only if this call won.

        MLflow params are write-once, checked by the database's primary key inside the insert's transaction
        (SqlAlchemyStore.log_param), in SQLite and behind a server alike: of two drivers claiming one key at
        once, exactly one wins, and the other gets INVALID_PARAMETER_VALUE.
        """
        try:
            self.client.log_param(run_id, key, value)
            return value
        except MlflowException as err:
            if err.error_code != "INVALID_PARAMETER_VALUE":
                raise
            stored = self.client.get_run(run_id).data.params.get(key)
            if stored is None:
                raise
            return stored

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)

    def log_to_latest_sweep_run(self, path: Path, *, artifact_path: str | None = None) -> None:
        """Attach a file (fit.json, a report) to the newest sweep invocation's parent run."""
        for run in self._search(RunKind.SWEEP, limit=1):
            self.client.log_artifact(run.info.run_id, str(path), artifact_path)

    def latest_sweep_run(self) -> str | None:
        """The run id of the newest sweep invocation's parent run, None when there is none."""
        return next((run.info.run_id for run in self._search(RunKind.SWEEP, limit=1)), None)

    def experiment_names(self, *, exclude_kind: str | None = None) -> list[str]:
        """Names of the store's experiments (not MLflow's Default, nor those tagged kind=`exclude_kind`)."""
        return [e.name for e in self.client.search_experiments()
                if e.name != "Default" and (exclude_kind is None or e.tags.get("kind") != exclude_kind)]

    def record_run(self, *, name: str, tags: dict[str, str], params: dict[str, str], metrics: dict[str, float],
                   artifacts: list[tuple[Path, str]], experiment_tags: dict[str, str] | None = None) -> str:
        """A finished top-level run of this experiment in one go (e.g. a comparison of sweeps): tags, params,
        metrics and (file, artifact folder) pairs; returns its run id."""
        for key, value in (experiment_tags or {}).items():
            self.client.set_experiment_tag(self.experiment_id, key, value)
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        run_id = run.info.run_id
        self._log_params(run_id, {k: v[:6000] for k, v in params.items()})
        stamp = int(time.time() * 1000)
        self._log_metrics(run_id, [Metric(k, float(v), stamp, 0) for k, v in metrics.items()])
        for path, folder in artifacts:
            self.client.log_artifact(run_id, str(path), folder)
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def end_parent(self, run_id: str, *, status: str, summary: dict[str, Any]) -> None:
        metrics = [Metric(k, float(v), int(time.time() * 1000), 0) for k, v in summary.items()
                   if isinstance(v, (int, float))]
        self.client.log_batch(run_id, metrics=metrics, synchronous=True)
        self.client.set_terminated(run_id, status=status)


def trial_metrics(derived: dict[str, Any]) -> list[Metric]:
    """A trial's N, D, C and tokens per parameter (`TRIAL_METRICS`) from its planned record, at step 0."""
    stamp = int(time.time() * 1000)
    values = {"N": derived.get("N_total"), "D": derived.get("D"), "C": derived.get("C_exact"),
              "tokens_per_param": derived.get("tokens_per_param")}
    return [Metric(key, float(f"{value:.4g}") if key == "tokens_per_param" else float(value), stamp, 0)
            for key, value in values.items() if isinstance(value, (int, float)) and math.isfinite(value)]


def _use_wal(path: Path) -> None:
    """WAL: readers (mlflow ui, action=plan) never block the driver's writes. Persistent once set; a store that
    another process holds open cannot switch now, which only costs speed."""
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass


def experiment_name(config: Config) -> str:
    """The sweep's MLflow experiment: tracking.experiment, else the sweep's name."""
    return config.tracking.experiment or config.sweep.name


def open_sweep_store(config: Config, *, create: bool) -> Tracker | None:
    """The sweep's store, opened the one way every stage opens it (tracking.uri, `experiment_name`,
    tracking.timeout_s). With create=False nothing is written and a store that does not exist yet is None."""
    return open_store(config.tracking.uri, experiment=experiment_name(config), timeout_s=config.tracking.timeout_s,
                      create=create)


def open_store(uri: str | None, *, experiment: str, timeout_s: float, create: bool) -> Tracker | None:
    """Check, then open, the store. With create=False a missing SQLite file is not created (None), and nothing
    is written. Every failure is one sentence naming the resolved URI (TrackingError, exit 2)."""
    resolved = resolve_uri(uri)
    check_store(resolved, timeout_s=timeout_s, create=create)
    path = sqlite_path(resolved)
    if not create and path is not None and not path.exists():
        return None
    try:
        return Tracker(resolved, experiment, create=create)
    except TrackingError:
        raise
    except (MlflowException, SQLAlchemyError, sqlite3.Error, OSError) as err:  # the store's fault, not our code's
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise TrackingError(f"tracking.uri={resolved}: the store cannot be opened ({first}).") from None
