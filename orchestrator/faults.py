"""Trainer faults as results: what the runner needs to turn a misbehaving trainer into a recorded trial.

Nothing here imports Ray: the worker side (`DeathWitness`, `thin_reports`) runs inside the Ray task, the
driver side (`death_reason`, `trial_time_limit`) in the driver's loop (orchestrator/runner/__init__.py).

- A process death. Ray reports a trainer that calls `os._exit` or dies of a signal as a crashed worker, with
  no exit code or signal (ray 2.60: "The worker died unexpectedly"), the same error it gives for a worker
  whose node went away. The worker leaves a witness file beside the trial's checkpoints before it dies:
  `os._exit(n)` is wrapped for the duration of the trial to write the code first, and Python's `faulthandler`
  writes the fatal signal (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL) and where it struck. The driver reads it
  back to name the death in words and retries such a deterministic death at most once.
- A noisy trainer. The worker forwards at most `MAX_REPORTS_PER_S` reports per second and trial to the
  driver: beyond that, routine reports (those with the keys most reports have) are decimated evenly, while
  every evaluation, every other kind of report (a fork point) and the last report are kept.
- A hung trainer. `trial_time_limit` is the wall-clock limit after which the driver stops a trial.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_REPORTS_PER_S = 100
"""Reports per second and trial forwarded to the driver (gpt.py's default logging is far below it)."""
TIMEOUT_FACTOR = 10.0
"""A trial's default limit: this many times its FLOPs at the throughput, plus TIMEOUT_FLOOR_S."""
TIMEOUT_FLOOR_S = 600.0
"""Seconds every default limit allows beyond the estimate (imports, data loading, evaluation, a loaded node)."""
FATAL_SIGNALS = {"Segmentation fault": "SIGSEGV (segmentation fault)",
                 "Floating-point exception": "SIGFPE (floating-point exception)",
                 "Aborted": "SIGABRT (abort)", "Bus error": "SIGBUS (bus error)",
                 "Illegal instruction": "SIGILL (illegal instruction)"}
"""faulthandler's words for each fatal signal -> the signal's name in the reason."""


def witness_path(run_dir: str | None, attempt: int) -> Path | None:
    """Where the worker of `attempt` leaves its last words (beside the trial's checkpoints)."""
    return Path(run_dir) / f".death-{attempt}.txt" if run_dir else None


@contextlib.contextmanager
def death_witness(run_dir: str | None, attempt: int) -> Iterator[None]:
    """For the duration of a trial: a fatal signal or `os._exit(n)` leaves a note at witness_path()."""
    path = witness_path(run_dir, attempt)
    if path is None:
        yield
        return
    fresh = [p for p in (path.parent, *path.parent.parents) if not p.exists()]  # removed again if left empty
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        note = open(path, "w")  # noqa: SIM115  (faulthandler writes to its file descriptor at the fatal signal)
    except OSError:  # no writable checkpoint folder: the death is then reported without its cause
        yield
        return
    real_exit, was_enabled = os._exit, faulthandler.is_enabled()

    def exit_with_note(code: int) -> None:
        with contextlib.suppress(Exception):
            note.write(f"exit code {code}\n")
            note.flush()
        real_exit(code)

    os._exit = exit_with_note
    faulthandler.enable(file=note, all_threads=False)
    try:
        yield
    finally:
        os._exit = real_exit
        faulthandler.disable()
        if was_enabled:  # Ray's workers enable it on stderr: give it back
            faulthandler.enable(file=sys.stderr, all_threads=False)
        note.close()
        path.unlink(missing_ok=True)
        for folder in fresh:
            try:
                folder.rmdir()
            except OSError:  # the trainer put something there (a checkpoint): it stays
                break


def death_reason(run_dir: str | None, attempt: int) -> str | None:
    """The witness note of an attempt whose worker died, in words (None: it left none)."""
    path = witness_path(run_dir, attempt)
    try:
        text = path.read_text(errors="replace") if path is not None else ""
        if path is not None:
            path.unlink()
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    if lines[0].startswith("exit code "):
        code = lines[0].removeprefix("exit code ")
        return f"the trainer's process exited with code {code} (os._exit) in the middle of the trial"
    if lines[0].startswith("Fatal Python error: "):
        words = lines[0].removeprefix("Fatal Python error: ")
        name = FATAL_SIGNALS.get(words, words)
        where = next((line for line in lines if line.startswith("File ")), None)
        return f"the trainer's process was killed by signal {name}" + (f", at {where}" if where else "")
    return None


def thin_reports(reports: list[dict[str, Any]], *, limit: int) -> list[dict[str, Any]]:
    """At most `limit` routine reports (plus every evaluation, every other kind of report, and the last).

    Routine reports are those with the most common set of keys and no `eval_loss`; they are kept evenly
    spaced. Order is preserved.
    """
    if len(reports) <= limit:
        return reports
    shapes = Counter(frozenset(r) for r in reports)
    routine_keys = shapes.most_common(1)[0][0]
    routine = [i for i, r in enumerate(reports) if frozenset(r) == routine_keys and "eval_loss" not in r]
    if len(routine) <= limit:
        return reports
    stride = len(routine) / max(limit, 1)
    keep_routine = {routine[min(int(k * stride), len(routine) - 1)] for k in range(max(limit, 1))}
    dropped = set(routine) - keep_routine
    dropped.discard(len(reports) - 1)
    return [r for i, r in enumerate(reports) if i not in dropped]


def trial_time_limit(flops: float, *, configured: float | None, rate: float) -> float | None:
    """A trial's wall-clock limit in seconds (None: no limit).

    `configured` is cluster.trial_timeout_s: a number of seconds, 0 for no limit, or None for the default
    TIMEOUT_FACTOR x the trial's FLOPs at `rate` FLOP/s (the slowest throughput measured this invocation, else
    cluster.assumed_flops_per_s) + TIMEOUT_FLOOR_S.
    """
    if configured is not None:
        return float(configured) if configured > 0 else None
    if not (rate > 0 and math.isfinite(flops)):
        return None
    return TIMEOUT_FACTOR * max(flops, 0.0) / rate + TIMEOUT_FLOOR_S
