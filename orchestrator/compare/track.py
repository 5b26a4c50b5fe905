"""The comparison's side of the tracking store: read each stored sweep's runs, log the comparison as its own run.

Reading opens the store read-only (orchestrator/tracking.open_store with create=False: a fresh folder stays
empty). The comparison run lives in its own experiment (compare.name; experiment and run tagged kind=compare),
with one tag set per compared sweep naming its experiment and its newest invocation's parent run
(`compared.<i>.*`) and an MLflow note linking them; params are the compare options, metrics M(C) at the measured
budgets, artifacts every file the report wrote. Through orchestrator/tracking.py's Tracker (the one module that
imports mlflow).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from pathlib import Path

from orchestrator.compare.options import CompareConfig
from orchestrator.compare.sources import Source, unknown_sweep
from orchestrator.report.text import sci
from orchestrator.run_tags import RunKind
from orchestrator.runs import runs_table
from orchestrator.tracking import open_store, resolve_uri

KIND = RunKind.COMPARE
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/ ]")


def read_sweep(entry: str, *, key: str, uri: str | None, timeout_s: float) -> Source:
    """A stored sweep's runs table and links; UsageError (one sentence) when the store or the sweep is unknown."""
    tracker = open_store(uri, experiment=entry, timeout_s=timeout_s, create=False)
    resolved = resolve_uri(uri)
    if tracker is None:
        raise unknown_sweep(entry, key=key, uri=resolved, known=[])
    if tracker.experiment_id is None:
        known = tracker.experiment_names(exclude_kind=KIND)  # sweeps, not earlier comparisons
        raise unknown_sweep(entry, key=key, uri=resolved, known=known)
    return Source(key=key, entry=entry, name=entry, origin=f"sweep {entry} (MLflow experiment {tracker.experiment_id} "
                                                           f"in {resolved})",
                  table=runs_table(tracker), experiment_id=str(tracker.experiment_id),
                  parent_run_id=tracker.latest_sweep_run())


def log_comparison(*, uri: str | None, timeout_s: float, name: str, options: CompareConfig, sources: list[Source],
                   result: dict, files: list[Path], folder: Path) -> tuple[str, str]:
    """Log the comparison as a run of experiment `name`, with `files` (under `folder`) as artifacts under compare/;
    returns (experiment id, run id)."""
    tracker = open_store(uri, experiment=name, timeout_s=timeout_s, create=True)
    tags = {"kind": KIND, "compare.name": name, "baseline": sources[0].name,
            "variants": ",".join(s.name for s in sources[1:]), "git_commit": tracker.commit, "host": tracker.host}
    lines = [f"Comparison {name}: baseline {sources[0].name}, variants {', '.join(s.name for s in sources[1:])}.", ""]
    for i, s in enumerate(sources):
        tags.update({f"compared.{i}.name": s.name, f"compared.{i}.origin": s.origin[:4000]})
        if s.experiment_id is not None:
            tags[f"compared.{i}.experiment_id"] = s.experiment_id
            link = f"#/experiments/{s.experiment_id}"
            if s.parent_run_id is not None:
                tags[f"compared.{i}.parent_run_id"] = s.parent_run_id
                link += f"/runs/{s.parent_run_id}"
            lines.append(f"- {'baseline' if i == 0 else 'variant'} [{s.name}]({link})")
        else:
            lines.append(f"- {'baseline' if i == 0 else 'variant'} {s.name}: {s.origin}")
    tags["mlflow.note.content"] = "\n".join(lines)
    params = {f"compare.{k}": json.dumps(v) if isinstance(v, list) else str(v) for k, v in asdict(options).items()}
    params["compare.method_used"] = result["method"]
    metrics = {}
    for comparison in result["comparisons"]:
        variant = _UNSAFE.sub("_", comparison["variant"])
        for row in comparison["rows"]:
            if row["measured"] and row["M"] == row["M"] and abs(row["M"]) != float("inf"):
                metrics[f"M.{variant}.C_{sci(row['C'])}"] = row["M"]
    artifacts = [(path, (Path("compare") / path.parent.relative_to(folder)).as_posix()) for path in files]
    run_id = tracker.record_run(name=f"{name} {time.strftime('%Y-%m-%d %H:%M:%S')}", tags=tags, params=params,
                                metrics=metrics, artifacts=artifacts, experiment_tags={"kind": KIND})
    return str(tracker.experiment_id), run_id
