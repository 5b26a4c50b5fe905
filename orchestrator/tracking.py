"""MLflow tracking, owned by the driver: one experiment per sweep, a parent run per invocation, a
child run per trial attempt. Workers never touch the store; they stream reports to the driver, so
a multi-node cluster works with a SQLite file that only the head node holds, and with a server.

The driver's loop writes trial runs a scheduling round at a time (`RunWriter`): against a SQLite store a round is
one transaction, against a server one batch per run; what a round decided (a trial counted finished, a source told
its result) is acted on only after the round is committed. A process holds one handle per store and experiment
(`open_store`).

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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.utils.uri import append_to_uri_path
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH, _validate_param, _validate_tag
from sqlalchemy import bindparam, event, insert, tuple_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
        dbapi_connection.execute("PRAGMA busy_timeout=20000")  # as MLflow's sessions set it (mlflow/store/db/utils.py)


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
            raise TrackingError(f"tracking.uri={uri} could not be read within "
                                f"tracking.timeout_s={timeout_s:g}s.") from None
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
        self.created = False
        """True once opened with create=True (the store, experiment and its tags exist)."""
        self.identity = _file_identity(uri)
        self._connect(create=create)

    def _connect(self, *, create: bool) -> None:
        """Open the client and find (with create=True: make) the experiment."""
        uri, experiment = self.uri, self.experiment
        path = sqlite_path(uri)
        with _schema_lock(path, exclusive=create, create=create) if path else contextlib.nullcontext():
            self.client = MlflowClient(tracking_uri=uri)  # MLflow creates a new store's schema here, or below
            found = self.client.get_experiment_by_name(experiment)
            if path is not None and create:
                _use_wal(path)
                _CHECKED.add(path)
        if found is not None and found.lifecycle_stage != "active":
            raise TrackingError(f"the experiment {experiment!r} in {uri} is deleted: restore it (mlflow experiments "
                                f"restore --experiment-id {found.experiment_id}) or set tracking.experiment to "
                                f"another name.")
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
        self.created = create
        self.identity = _file_identity(uri)

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
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{sweep} {stamp}")
        params = {k: v for k, v in flatten(config).items() if k.startswith(("sweep.", "cluster.", "adaptive."))}
        params["n_trials"] = n_trials
        self._log_params(run.info.run_id, params)
        self.client.log_dict(run.info.run_id, config, "sweep_config.json")
        return run.info.run_id

    def heartbeat(self, run_id: str) -> None:
        self.client.set_tag(run_id, "heartbeat", f"{time.time():.0f}")

    def trial_run(self, *, parent_id: str, sweep: str, name: str, trial_id: str, attempt: int,
                  config: dict[str, Any], derived: dict[str, Any], host: str, device: str, node: str,
                  tags: dict[str, str] | None = None) -> TrialRun:
        """What a trial attempt's run holds when it opens (`start_trial`, `RunWriter.open_run`)."""
        tags = {"kind": RunKind.TRIAL, **(tags or {}), "mlflow.parentRunId": parent_id, "sweep": sweep,
                "trial_id": trial_id, "attempt": str(attempt), "status": Status.RUNNING, "device": device,
                **self._driver_tags(), "host": host, "worker_node": node}
        # A trunk's fork list (whole fork configs) is in trial_config.json, too long for a param.
        params = {**flatten({k: v for k, v in config.items() if k != "trunk"}),
                  **{k: v for k, v in derived.items() if k != "trial_id"}}
        return TrialRun(name=name, tags=tags, params=params, metrics=trial_metrics(derived), config=config)

    def start_trial(self, *, parent_id: str, sweep: str, name: str, trial_id: str, attempt: int,
                    config: dict[str, Any], derived: dict[str, Any], host: str, device: str, node: str,
                    tags: dict[str, str] | None = None, start_ms: int | None = None) -> str:
        """A child run of `parent_id`, written at once; `tags` are extra tags (e.g. optuna_trial, stage; kind=trunk
        for a WSD trunk, which is not a trial: orchestrator/forks.py); `start_ms` is when the trial began (epoch ms;
        None: now). The driver's loop writes through a `RunWriter` instead; this is the same run, one call at a time."""
        content = self.trial_run(parent_id=parent_id, sweep=sweep, name=name, trial_id=trial_id, attempt=attempt,
                                 config=config, derived=derived, host=host, device=device, node=node, tags=tags)
        run = self.client.create_run(self.experiment_id, tags=content.tags, run_name=content.name,
                                     start_time=start_ms)
        self._log_params(run.info.run_id, content.params, metrics=content.metrics)
        self._log_json(run.info.artifact_uri, run.info.run_id, content.config, "trial_config.json")
        return run.info.run_id

    def _log_json(self, artifact_uri: str, run_id: str, data: dict[str, Any], name: str) -> None:
        """An artifact; written in place when the artifact store is a local folder (no temp copy)."""
        self._log_file(artifact_uri, run_id, json.dumps(data, indent=2, sort_keys=True), name)

    def _log_file(self, artifact_uri: str, run_id: str, text: str, name: str) -> None:
        if artifact_uri.startswith("file://") or artifact_uri.startswith("/"):
            folder = Path(urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path)
                          if artifact_uri.startswith("file://") else artifact_uri)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        else:
            self.client.log_text(run_id, text, name)

    def _log_params(self, run_id: str, params: dict[str, Any], *, metrics: list[Metric] = ()) -> None:
        """Params 100 a request (MLflow's batch limit); `metrics` (at most 1000) ride on the first request."""
        items = _params(params)
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

    def trial_end(self, *, status: str, result: dict[str, Any] | None = None, reason: str | None = None,
                  reports: list[dict[str, Any]] = ()) -> tuple[list[Metric], list[RunTag]]:
        """What closing a trial's run logs (`end_trial`, `RunWriter.close_run`): final metrics (with any reports
        not yet logged) and status tags."""
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
        return metrics, tags

    def end_trial(self, run_id: str, *, status: str, result: dict[str, Any] | None = None,
                  reason: str | None = None, traceback: str | None = None,
                  reports: list[dict[str, Any]] = (), end_ms: int | None = None) -> None:
        """Final metrics (with any reports not yet logged), status tags, traceback, terminal status (at `end_ms`, when
        the trial ended, epoch ms; None: now); written at once."""
        metrics, tags = self.trial_end(status=status, result=result, reason=reason, reports=reports)
        self._log_metrics(run_id, metrics, tags)
        if traceback:
            self.client.log_text(run_id, traceback, "traceback.txt")
        self.client.set_terminated(run_id, status=Status(status).mlflow, end_time=end_ms)

    def writer(self) -> RunWriter:
        """The driver loop's writer (`RUN_WRITES`): a SQLite store's rounds as transactions, a server's as batches."""
        if RUN_WRITES == "per-call":
            return PerCallWriter(self)
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        if type(store) is SqlAlchemyStore and store.db_type == "sqlite":  # not a workspace-aware subclass
            return SqliteRunWriter(self, store)
        return ClientRunWriter(self)

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


RUN_WRITES = "batched"
"""How the driver's loop writes trial runs (`Tracker.writer`): "batched" (a round at a time: one SQLite transaction,
or one batch per run against a server) or "per-call" (every write at once, as `start_trial` and `end_trial` do;
benchmarks/scale.py measures both)."""


@dataclass
class TrialRun:
    """What a trial attempt's run holds when it opens: its name, tags, params, the N/D/C metrics at step 0, and the
    config written beside it as trial_config.json."""

    name: str
    tags: dict[str, str]
    params: dict[str, Any]
    metrics: list[Metric]
    config: dict[str, Any]


@dataclass
class _RunWrites:
    """One run's writes waiting for the round's commit."""

    run_id: str
    opened: TrialRun | None = None
    """Set when the run opens in this round (not yet in the store, for a SQLite store)."""
    artifact_uri: str = ""
    start_time: int | None = None
    """When the trial began (epoch ms), when the run opens in this round."""
    metrics: list[Metric] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    status: str | None = None
    """MLflow's terminal status (FINISHED, FAILED, KILLED) when the run closes in this round."""
    end_time: int | None = None
    traceback: str | None = None


class RunWriter:
    """The trial runs' writes of one scheduling round of the driver's loop, committed together by `commit`.

    The loop opens runs (`open_run`: tags, params, N/D/C metrics, trial_config.json), logs live reports
    (`log_reports`), sets flag tags (`set_tags`) and closes runs (`close_run`: final metrics, status tags,
    traceback, terminal status); `commit` writes the round and then runs the callbacks given to `after_commit`
    (a trial counted finished, a source told its result), in order. An outcome is thus acted on only once the
    store holds it: a driver killed before a commit has told nobody about the round it loses, so its trials rerun
    on the next invocation, and one killed after has lost nothing. A commit that fails keeps the round for the next
    commit (`run_id`s stay valid). What the runs hold is what `Tracker.start_trial` and `Tracker.end_trial` write
    (the same `Tracker.trial_run` and `Tracker.trial_end`). Subclasses write a round their way (`_write`).
    """

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self._runs: dict[str, _RunWrites] = {}
        self._callbacks: list[Callable[[], None]] = []

    def open_run(self, *, parent_id: str, sweep: str, name: str, trial_id: str, attempt: int,
                 config: dict[str, Any], derived: dict[str, Any], host: str, device: str, node: str,
                 tags: dict[str, str] | None = None, start_ms: int | None = None) -> str:
        """A child run of `parent_id` (`Tracker.start_trial`'s arguments); returns its run id at once."""
        content = self.tracker.trial_run(parent_id=parent_id, sweep=sweep, name=name, trial_id=trial_id,
                                         attempt=attempt, config=config, derived=derived, host=host, device=device,
                                         node=node, tags=tags)
        start_ms = _now_ms() if start_ms is None else start_ms
        run_id, artifact_uri = self._create(content, start_ms)
        writes = self._of(run_id)
        writes.opened, writes.artifact_uri, writes.start_time = content, artifact_uri, start_ms
        return run_id

    def log_reports(self, run_id: str, reports: list[dict[str, Any]]) -> None:
        """Every numeric key of every report as a metric at its step."""
        if reports:
            self._of(run_id).metrics.extend(self.tracker._report_metrics(reports))

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._of(run_id).tags.update(tags)

    def close_run(self, run_id: str, *, status: str, result: dict[str, Any] | None = None,
                  reason: str | None = None, traceback: str | None = None, reports: list[dict[str, Any]] = (),
                  end_ms: int | None = None) -> None:
        """`Tracker.end_trial`'s writes, in this round (`end_ms`: when the trial ended, epoch ms; None: now)."""
        metrics, tags = self.tracker.trial_end(status=status, result=result, reason=reason, reports=reports)
        writes = self._of(run_id)
        writes.metrics.extend(metrics)
        writes.tags.update({tag.key: tag.value for tag in tags})
        writes.status, writes.end_time = Status(status).mlflow, _now_ms() if end_ms is None else end_ms
        writes.traceback = traceback or writes.traceback

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once everything written so far is committed."""
        self._callbacks.append(callback)

    def commit(self) -> None:
        """Write the round, then run its callbacks."""
        runs, self._runs = self._runs, {}
        if runs:
            try:
                self._write(list(runs.values()))
            except BaseException:
                self._runs = runs  # nothing of the round counts as written: the next commit writes it again
                raise
        while self._callbacks:
            self._callbacks.pop(0)()

    def _of(self, run_id: str) -> _RunWrites:
        writes = self._runs.get(run_id)
        if writes is None:
            writes = self._runs[run_id] = _RunWrites(run_id)
        return writes

    def _create(self, content: TrialRun, start_ms: int) -> tuple[str, str]:
        """(run id, artifact URI) of a run about to open (at `start_ms`)."""
        raise NotImplementedError

    def _write(self, runs: list[_RunWrites]) -> None:
        raise NotImplementedError

    def _files(self, runs: list[_RunWrites]) -> None:
        """The round's artifacts (trial_config.json, traceback.txt), written before the runs that name them."""
        for writes in runs:
            if writes.opened is not None:
                self.tracker._log_json(writes.artifact_uri, writes.run_id, writes.opened.config, "trial_config.json")
            if writes.traceback:
                uri = writes.artifact_uri or self._artifact_uri(writes.run_id)
                self.tracker._log_file(uri, writes.run_id, writes.traceback, "traceback.txt")

    def _artifact_uri(self, run_id: str) -> str:
        return self.tracker.client.get_run(run_id).info.artifact_uri


class PerCallWriter(RunWriter):
    """Every write at once through MLflow's client (`Tracker.start_trial`, `end_trial`): a run's opening is
    several requests (transactions), its closing two more. What the loop did before rounds were batched."""

    def open_run(self, **opening: Any) -> str:
        return self.tracker.start_trial(**opening)

    def log_reports(self, run_id: str, reports: list[dict[str, Any]]) -> None:
        self.tracker.log_reports(run_id, reports)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.tracker.set_tags(run_id, tags)

    def close_run(self, run_id: str, **closing: Any) -> None:
        self.tracker.end_trial(run_id, **closing)


class ClientRunWriter(RunWriter):
    """A round through MLflow's client, for a tracking server: a run is created at once (the server names it),
    and the round's params, metrics and tags of each run go out as one `log_batch` (more only past MLflow's
    limits of 100 params, 100 tags, 1000 metrics and 1000 items a request), then the terminal status."""

    def _create(self, content: TrialRun, start_ms: int) -> tuple[str, str]:
        info = self.tracker.client.create_run(self.tracker.experiment_id, tags=content.tags, run_name=content.name,
                                              start_time=start_ms).info
        return info.run_id, info.artifact_uri

    def _write(self, runs: list[_RunWrites]) -> None:
        self._files(runs)
        client = self.tracker.client
        for writes in runs:
            params = _params(writes.opened.params) if writes.opened is not None else []
            metrics = (writes.opened.metrics if writes.opened is not None else []) + writes.metrics
            tags = [RunTag(k, v) for k, v in writes.tags.items()]
            while params or metrics or tags:
                p, params = params[:MAX_PARAMS_PER_BATCH], params[MAX_PARAMS_PER_BATCH:]
                t, tags = tags[:MAX_PARAMS_PER_BATCH], tags[MAX_PARAMS_PER_BATCH:]
                room = MAX_METRICS_PER_BATCH - len(p) - len(t)
                m, metrics = metrics[:room], metrics[room:]
                client.log_batch(writes.run_id, metrics=m, params=p, tags=t, synchronous=True)
            if writes.status is not None:
                client.set_terminated(writes.run_id, status=writes.status, end_time=writes.end_time)


class SqliteRunWriter(RunWriter):
    """A round as one SQLite transaction, written with MLflow's own table models (SqlAlchemyStore's schema) as a
    handful of multi-row statements: the runs that open (with their tags and params), the metrics (and the
    latest-metric rows MLflow's run table shows), the tags, the terminal statuses. A cProfile of the per-call
    writes put most of the driver's time in them: MLflow's log_batch is four transactions and a dozen queries
    (docs/benchmarks.md, scale.py). What is written is what SqlAlchemyStore.create_run, log_batch and
    update_run_info write: the same rows, MLflow's validation and truncation of keys and values, duplicate
    metrics dropped, a latest metric replaced only by a later (step, timestamp, value)."""

    def __init__(self, tracker: Tracker, store: SqlAlchemyStore) -> None:
        super().__init__(tracker)
        self.store = store
        self.artifact_root = tracker.client.get_experiment(tracker.experiment_id).artifact_location
        self._checked_keys: set[tuple[str, str]] = set()
        self._statements = _sqlite_statements()

    def _create(self, content: TrialRun, start_ms: int) -> tuple[str, str]:  # noqa: ARG002
        run_id = uuid.uuid4().hex
        return run_id, append_to_uri_path(self.artifact_root, run_id, SqlAlchemyStore.ARTIFACTS_FOLDER_NAME)

    def _write(self, runs: list[_RunWrites]) -> None:
        self._files(runs)
        new_runs, params, tags, metrics, ends = [], [], [], {}, []
        for writes in runs:
            rid, opened = writes.run_id, writes.opened
            if opened is not None:
                new_runs.append({"run_uuid": rid, "name": opened.name, "artifact_uri": writes.artifact_uri,
                                 "experiment_id": int(self.tracker.experiment_id), "source_type": "UNKNOWN",
                                 "source_name": "", "entry_point_name": "", "source_version": "",
                                 "user_id": opened.tags.get("mlflow.user", "unknown"), "status": "RUNNING",
                                 "start_time": writes.start_time,
                                 "end_time": None, "deleted_time": None, "lifecycle_stage": "active"})
                params += [{"run_uuid": rid, "key": p.key, "value": p.value} for p in self._valid_params(opened.params)]
                run_tags = {**opened.tags, "mlflow.runName": opened.name, **writes.tags}
            else:
                run_tags = writes.tags
            tags += [{"run_uuid": rid, **self._valid_tag(k, v)} for k, v in run_tags.items()]
            for metric in (opened.metrics if opened is not None else []) + writes.metrics:
                is_nan, value = self.store.sanitize_metric_value(float(metric.value))
                row = {"run_uuid": rid, "key": metric.key, "value": value, "timestamp": metric.timestamp,
                       "step": metric.step, "is_nan": is_nan}
                metrics[tuple(row.values())] = row  # duplicates within the round are one row, as in log_batch
            if writes.status is not None:
                ends.append({"b_run": rid, "b_status": writes.status, "b_end": writes.end_time})
        statements = self._statements
        # The store's engine, one transaction (BEGIN ... COMMIT; a failure rolls all of it back). Its connections wait
        # up to 20 s for another writer's lock, as MLflow's own sessions do (_sqlite_wal_normal).
        with self.store.engine.begin() as db:
            for name, rows in (("runs", new_runs), ("params", params), ("tags", tags),
                               ("metrics", list(metrics.values())), ("latest", _latest(metrics.values())),
                               ("ends", ends)):
                if rows:
                    db.execute(statements[name], rows)

    def _valid_params(self, params: dict[str, Any]) -> list[Param]:
        return [self._valid(p.key, p.value, kind="param", limit=MAX_PARAM_VAL_LENGTH, check=_validate_param)
                for p in _params(params)]

    def _valid_tag(self, key: str, value: str) -> dict[str, str]:
        tag = self._valid(key, value, kind="tag", limit=MAX_TAG_VAL_LENGTH, check=_validate_tag)
        return {"key": tag.key, "value": tag.value}

    def _valid(self, key: str, value: str, *, kind: str, limit: int, check: Callable[[str, str], Any]):
        """MLflow's check of a key and value (its error, or the value truncated), once per key: the same keys
        recur on every run of a sweep."""
        if (kind, key) in self._checked_keys and len(value) <= limit:
            return Param(key, value)
        checked = check(key, value)
        self._checked_keys.add((kind, key))
        return checked


def _params(params: dict[str, Any]) -> list[Param]:
    """A run's params as MLflow stores them: lists and dicts as JSON, the rest as text."""
    return [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in sorted(params.items())]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _latest(rows) -> list[dict[str, Any]]:
    """The latest value of each (run, metric) among `rows`: the largest (step, timestamp, value), as MLflow's
    SqlAlchemyStore._update_latest_metrics_if_necessary decides."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["run_uuid"], row["key"])
        held = latest.get(key)
        if held is None or (row["step"], row["timestamp"], row["value"]) > (held["step"], held["timestamp"],
                                                                            held["value"]):
            latest[key] = row
    return list(latest.values())


def _sqlite_statements() -> dict[str, Any]:
    """The statements of a round, on MLflow's tables (built once: SQLAlchemy caches their compiled SQL).

    runs, params: new rows. tags: insert or overwrite (MLflow's _set_tags). metrics: insert, a row already there
    (the same key, timestamp, step and value) left alone (log_batch's duplicate handling). latest: insert, or
    replace the stored latest metric when this one is later by (step, timestamp, value)
    (_update_latest_metrics_if_necessary). ends: a run's terminal status and end time (update_run_info)."""
    runs, latest = SqlRun.__table__, SqlLatestMetric.__table__
    tags = sqlite_insert(SqlTag.__table__)
    upsert = sqlite_insert(latest)
    new = upsert.excluded
    return {
        "runs": insert(runs),
        "params": insert(SqlParam.__table__),
        "tags": tags.on_conflict_do_update(index_elements=["key", "run_uuid"], set_={"value": tags.excluded.value}),
        "metrics": sqlite_insert(SqlMetric.__table__).on_conflict_do_nothing(),
        "latest": upsert.on_conflict_do_update(
            index_elements=["key", "run_uuid"],
            set_={"value": new.value, "timestamp": new.timestamp, "step": new.step, "is_nan": new.is_nan},
            where=tuple_(new.step, new.timestamp, new.value) > tuple_(latest.c.step, latest.c.timestamp,
                                                                      latest.c.value)),
        "ends": update(runs).where(runs.c.run_uuid == bindparam("b_run")).values(status=bindparam("b_status"),
                                                                                end_time=bindparam("b_end")),
    }


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


_OPEN: dict[tuple[str, str], Tracker] = {}
"""The handles this process holds, by (resolved URI, experiment): one per store and experiment for the whole
invocation (issue 23), however many stages ask for it."""


def open_store(uri: str | None, *, experiment: str, timeout_s: float, create: bool) -> Tracker | None:
    """Check, then open, the store: once per process and experiment; every later call (a stage of the same
    invocation: plan's statuses, the runner, the fit, the report, the search's log) gets the same handle. With
    create=False a missing SQLite file is not created (None), and nothing is written; create=True on a handle
    opened for reading creates what is missing in place. Every failure is one sentence naming the resolved URI
    (TrackingError, exit 2)."""
    resolved = resolve_uri(uri)
    held = _OPEN.get((resolved, experiment))
    if held is not None and held.identity != _file_identity(resolved):  # the store's file was replaced
        held = None
    if held is not None and (held.created or (not create and held.experiment_id is not None)):
        return held
    check_store(resolved, timeout_s=timeout_s, create=create)
    if held is not None and create:
        _opening(resolved, lambda: held._connect(create=True))
        return held
    path = sqlite_path(resolved)
    if not create and path is not None and not path.exists():
        return None
    tracker = _opening(resolved, lambda: Tracker(resolved, experiment, create=create))
    _OPEN[(resolved, experiment)] = tracker
    return tracker


def _file_identity(uri: str) -> tuple[int, int] | None:
    """A SQLite store's file (device, inode), None for a server or a file not there."""
    path = sqlite_path(uri)
    try:
        info = path.stat() if path is not None else None
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if info is not None else None


def _opening(resolved: str, open_it: Callable[[], Any]) -> Any:
    """Open (`open_it`); a failure of the store (not of our code) is one sentence naming it."""
    try:
        return open_it()
    except TrackingError:
        raise
    except (MlflowException, SQLAlchemyError, sqlite3.Error, OSError) as err:  # the store's fault, not our code's
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise TrackingError(f"tracking.uri={resolved}: the store cannot be opened ({first}).") from None
