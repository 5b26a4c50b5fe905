"""Where a compared sweep's runs come from: a sweep in the tracking store, or a CSV of runs.

Every way a name can fail is one sentence naming the key (compare.baseline or compare.variants), what was
wrong and what is allowed, raised before anything is written: an unknown sweep (with the sweeps the store
holds), a store that does not exist, a missing or unreadable CSV, a sweep with no finished runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from orchestrator.errors import UsageError
from orchestrator.fitting.options import ColumnMap
from orchestrator.fitting.table import file_sha256, read_runs_csv

FINISHED = "finished"
MAX_LISTED = 20


@dataclass(frozen=True)
class Source:
    """One compared sweep's runs (sweep schema, fitting/table.py) and where they came from. `experiment_id` and
    `parent_run_id` (its newest invocation) link a stored sweep from the comparison's MLflow run."""

    key: str
    entry: str
    name: str
    origin: str
    table: pd.DataFrame
    experiment_id: str | None = None
    parent_run_id: str | None = None
    sha256: str | None = None


def is_csv(entry: str) -> bool:
    return entry.lower().endswith(".csv")


def from_csv(entry: str, *, key: str, columns: ColumnMap) -> Source:
    """The runs of a CSV file (the `fit.columns` mapping); UsageError when it is unreadable or has none finished."""
    path = Path(entry)
    if not path.is_file():
        raise UsageError(f"{key}={entry!r} is not a readable CSV file (a name ending in .csv is read as a CSV of runs; "
                         "give a sweep's name to compare a stored sweep).")
    try:
        table = read_runs_csv(path, columns=columns)
    except UsageError as err:
        raise UsageError(f"{key}={entry!r}: {err}") from None
    source = Source(key=key, entry=entry, name=path.stem or "runs", origin=f"CSV of runs {entry}", table=table,
                    sha256=file_sha256(path))
    require_finished(source)
    return source


def require_finished(source: Source) -> None:
    """A sweep with no finished run has nothing to compare: one sentence with its runs' statuses."""
    table = source.table
    status = (table["status"].fillna("unknown").astype(str).str.lower() if "status" in table.columns
              else pd.Series([FINISHED] * len(table)))
    if (status == FINISHED).any():
        return
    counts = ", ".join(f"{n} {s}" for s, n in status.value_counts().items()) or "no runs at all"
    raise UsageError(f"{source.key}={source.entry!r}: {source.origin} has no finished runs ({counts}); compare sweeps "
                     "whose trials have finished.")


def unknown_sweep(entry: str, *, key: str, uri: str, known: list[str]) -> UsageError:
    """The sentence for a name that is neither a stored sweep nor a CSV path."""
    listed = ", ".join(sorted(known)[:MAX_LISTED]) + (" ..." if len(known) > MAX_LISTED else "")
    return UsageError(f"{key}={entry!r} names no sweep in the tracking store {uri}: "
                      + (f"its sweeps are {listed}" if known else "it holds no sweeps yet")
                      + " (or give a CSV of runs, a path ending in .csv).")
