"""Checkpoints within one trial: write atomically, find the latest, refuse one from another trial.

One file, `checkpoint.pt`, in the trial's private `run_dir`, replaced atomically (write to a temporary
name, then `os.replace`), so a crash while writing leaves the previous checkpoint intact. It holds
the model and optimizer states and the loop counters; the data position needs no state because the
training stream is a pure function of the sequence index (see `trainers/data.py`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FILENAME = "checkpoint.pt"


def save(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (tensors and plain data) as the trial's checkpoint; returns its path."""
    directory = Path(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILENAME
    tmp = directory / f".{FILENAME}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load(run_dir: str | os.PathLike | None, *, config: dict[str, Any]) -> dict[str, Any] | None:
    """The trial's checkpoint, or None when there is none. A checkpoint written for another config
    is a user error (two trials sharing one run_dir) and raises ValueError."""
    if run_dir is None:
        return None
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != config:
        raise ValueError(
            f"run_dir={run_dir} holds a checkpoint of a different trial config; give each trial its own run_dir."
        )
    return state
