"""Where Optuna studies live: a journal file next to the MLflow DB by default, or an RDB URL.

The journal (`optuna.storages.JournalStorage` over `JournalFileBackend`) is an append-only log that
survives a killed driver, so an interrupted search resumes from the same file; study names derive from
the sweep and the point, so the rerun finds them.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend

from orchestrator.search.options import SearchConfig
from orchestrator.tracking import resolve_uri, sqlite_path

JOURNAL = "optuna.journal"


def journal_path(tracking_uri: str | None) -> Path:
    """<folder of the MLflow SQLite DB>/optuna.journal; the working folder for a tracking server."""
    db = sqlite_path(resolve_uri(tracking_uri))
    return (db.parent if db is not None else Path.cwd()) / JOURNAL


def storage_label(search: SearchConfig, *, tracking_uri: str | None) -> str:
    return search.storage or str(journal_path(tracking_uri))


def open_storage(search: SearchConfig, *, tracking_uri: str | None,
                 create: bool = True) -> optuna.storages.BaseStorage | None:
    """The search's storage; None when create=False and the default journal does not exist yet."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the runner prints one line per trial already
    if search.storage:
        return optuna.storages.RDBStorage(search.storage)
    path = journal_path(tracking_uri)
    if not create and not path.exists():
        return None
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def study_name(sweep: str, label: str) -> str:
    """`<sweep>/<point>`, e.g. `lr_search_tiny/N=1.2e+05 D=1e+06`: the same name on every rerun."""
    return f"{sweep}/{label}"
