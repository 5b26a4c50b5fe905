"""MLflow tracking, owned by the driver: one experiment per sweep, a parent run per invocation, a
child run per trial attempt. Workers never touch the store; they stream reports to the driver, so
a multi-node cluster works with a SQLite file that only the head node holds, and with a server.

Run statuses: MLflow's FINISHED / FAILED / KILLED, plus our own tag `status`: finished, crashed,
oom, diverged, killed, lost (with `failure_reason`) or pruned (stopped early by a search's pruner).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Fail fast against an unreachable server instead of MLflow's default minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network calls from the driver

from mlflow.entities import Metric, Param, RunTag, ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.WARNING)  # after import: mlflow sets its own level


@event.listens_for(Engine, "connect")
def _sqlite_wal_normal(dbapi_connection, connection_record) -> None:  # noqa: ARG001
    """WAL with synchronous=NORMAL: a commit no longer waits for fsync (safe against crashes of
    any process; only a power loss can drop the last commits). Halves the driver's cost per run."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MLFLOW_STATUS = {"finished": "FINISHED", "pruned": "FINISHED", "diverged": "FAILED", "oom": "FAILED", "crashed": "FAILED",
                 "lost": "FAILED", "killed": "KILLED"}
HEARTBEAT_S = 30.0


class TrackingError(ValueError):
    """The tracking store is unreachable or misconfigured (one sentence)."""


def resolve_uri(uri: str | None, *, cwd: Path | None = None) -> str:
    """MLflow's own default location: sqlite:///<absolute cwd>/mlflow.db."""
    if uri:
        return uri
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///").replace("sqlite:////", "/")) if uri.startswith("sqlite:///") else None


def check_store(uri: str, *, timeout_s: float) -> None:
    """Fail within `timeout_s` with one sentence when the store cannot be used; touches nothing."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(f"tracking.uri={uri} answered HTTP {response.status} at /health: is it an mlflow server?")
        except (urllib.error.URLError, OSError) as err:
            raise TrackingError(f"tracking.uri={uri} is unreachable within {timeout_s:g}s ({getattr(err, 'reason', err)}); "
                                f"start the server or fix the address.") from None
        return
    path = sqlite_path(uri)
    if path is None:
        raise TrackingError(f"tracking.uri={uri} is not supported: use sqlite:///ABSOLUTE/PATH.db or http://host:port.")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise TrackingError(f"tracking.uri={uri}: folder {path.parent} does not exist or is not writable.")


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
    """What the store says about one trial id."""

    trial_id: str
    status: str
    run_id: str
    final_eval_loss: float | None


class Tracker:
    """The driver's handle on the store. `open_store` creates the DB and experiment once."""

    def __init__(self, uri: str, experiment: str, *, create: bool) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.commit = _git_commit()
        self.host = socket.gethostname()
        found = self.client.get_experiment_by_name(experiment)
        if found is None and not create:
            self.experiment_id = None
            return
        if found is None:
            path = sqlite_path(uri)
            location = (path.parent / "mlruns").as_uri() if path else None
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            self.experiment_id = found.experiment_id
        path = sqlite_path(uri)
        if path is not None and create:
            # WAL: readers (mlflow ui, action=plan) never block the driver's writes.
            with sqlite3.connect(path) as db:
                db.execute("PRAGMA journal_mode=WAL")

    # -- reading ---------------------------------------------------------------------------------
    def trial_runs(self) -> list[TrialRecord]:
        """Every child run of the experiment (all invocations), newest first."""
        if self.experiment_id is None:
            return []
        records, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string="tags.kind = 'trial'",
                                           run_view_type=ViewType.ACTIVE_ONLY, max_results=5000,
                                           order_by=["attributes.start_time DESC"], page_token=token)
            for run in page:
                tags = run.data.tags
                status = tags.get("status", "running") if run.info.status != "RUNNING" else "running"
                records.append(TrialRecord(tags.get("trial_id", ""), status, run.info.run_id,
                                           run.data.metrics.get("final_eval_loss")))
            token = page.token
            if not token:
                return records

    def statuses(self) -> dict[str, str]:
        """trial_id -> best status over its runs (finished beats everything, then the newest)."""
        result: dict[str, str] = {}
        for record in self.trial_runs():  # newest first
            if record.status == "finished":
                result[record.trial_id] = "finished"
            else:
                result.setdefault(record.trial_id, record.status)
        return result

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
            if tags.get("kind") == "trial":
                self.client.set_tag(run.info.run_id, "status", "killed")
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
        tags = {"kind": "sweep", "sweep": sweep, **self._driver_tags()}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{sweep} {time.strftime('%Y-%m-%d %H:%M:%S')}")
        params = {k: v for k, v in flatten(config).items() if k.startswith("sweep.") or k.startswith("cluster.")}
        params["n_trials"] = n_trials
        self._log_params(run.info.run_id, params)
        self.client.log_dict(run.info.run_id, config, "sweep_config.json")
        return run.info.run_id

    def heartbeat(self, run_id: str) -> None:
        self.client.set_tag(run_id, "heartbeat", f"{time.time():.0f}")

    def start_trial(self, *, parent_id: str, sweep: str, name: str, trial_id: str, attempt: int,
                    config: dict[str, Any], derived: dict[str, Any], host: str, device: str, node: str,
                    tags: dict[str, str] | None = None) -> str:
        """A child run of `parent_id`; `tags` are extra tags (e.g. optuna_trial, stage)."""
        tags = {**(tags or {}), "kind": "trial", "mlflow.parentRunId": parent_id, "sweep": sweep,
                "trial_id": trial_id, "attempt": str(attempt), "status": "running", "device": device,
                **self._driver_tags(), "host": host, "worker_node": node}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        params = {**flatten(config), **{k: v for k, v in derived.items() if k != "trial_id"}}
        self._log_params(run.info.run_id, params)
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

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i:i + MAX_PARAMS_PER_BATCH], synchronous=True)

    def _report_metrics(self, reports: list[dict[str, Any]]) -> list[Metric]:
        stamp = int(time.time() * 1000)
        return [Metric(key, float(value), stamp, int(report.get("step", 0)))
                for report in reports for key, value in report.items()
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)]

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
        for key, value in numbers.items():
            if key in ("device", "dtype"):
                tags.append(RunTag(key, str(value)))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics.append(Metric(key, float(value), stamp, int(result.get("steps", 0))))
        self._log_metrics(run_id, metrics, tags)
        if traceback:
            self.client.log_text(run_id, traceback, "traceback.txt")
        self.client.set_terminated(run_id, status=MLFLOW_STATUS[status])

    def log_to_latest_sweep_run(self, path: Path, *, artifact_path: str | None = None) -> None:
        """Attach a file (fit.json, a report) to the newest sweep invocation's parent run."""
        runs = self.client.search_runs([self.experiment_id], filter_string="tags.kind = 'sweep'", max_results=1,
                                       order_by=["attributes.start_time DESC"])
        if runs:
            self.client.log_artifact(runs[0].info.run_id, str(path), artifact_path)

    def end_parent(self, run_id: str, *, status: str, summary: dict[str, Any]) -> None:
        metrics = [Metric(k, float(v), int(time.time() * 1000), 0) for k, v in summary.items()
                   if isinstance(v, (int, float))]
        self.client.log_batch(run_id, metrics=metrics, synchronous=True)
        self.client.set_terminated(run_id, status=status)


def open_store(uri: str | None, *, experiment: str, timeout_s: float, create: bool) -> Tracker | None:
    """Check, then open, the store. With create=False a missing SQLite file is not created (None)."""
    resolved = resolve_uri(uri)
    check_store(resolved, timeout_s=timeout_s)
    path = sqlite_path(resolved)
    if not create and path is not None and not path.exists():
        return None
    return Tracker(resolved, experiment, create=create)
