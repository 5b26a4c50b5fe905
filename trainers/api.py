"""The trainer contract: what every trainer (built-in or a user's plug-in) takes and returns.

A trainer is a plain function

    def train(config: dict, report: Callable[[dict], None], *, run_dir: str | None = None,
              device: str = "cpu", threads: int = 1) -> dict

- `config` is the trial's resolved config as plain JSON-able data, exactly what the planner hashed:
  `{"model": {...}, "data": {...}, "trainer": {...}, "tokens": D, "seed": s}` (the sections use the
  field names of `trainers/config.py`; a plug-in may ignore what it does not need).
- `report(metrics)` is called with one dict per logged step: at least `step`, `tokens`, `flops`,
  `train_loss`; evaluation steps add `eval_loss` and `eval_loss_se`; see `trainers/gpt.py`.
  The trainer never imports MLflow or Ray: the runner decides where reports go.
- `run_dir`, when given, is a directory private to this trial for checkpoints; a trainer that finds a
  checkpoint there resumes from it.
- The return value is a `TrialResult` as a dict (`dataclasses.asdict`). A run that stops for a reason
  that is a *result* (divergence, out of memory) returns with that status; anything else raises, and
  the runner records the trial as crashed with its traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FINISHED = "finished"
DIVERGED = "diverged"
OOM = "oom"

Report = Callable[[dict[str, Any]], None]
TrainFn = Callable[..., dict[str, Any]]


@dataclass
class TrialResult:
    """What a trainer returns (as a dict)."""

    status: str
    """finished, diverged or oom."""
    final_train_loss: float | None = None
    final_eval_loss: float | None = None
    eval_loss_se: float | None = None
    """Standard error of final_eval_loss (over evaluation tokens)."""
    tokens: int = 0
    """Training tokens actually consumed."""
    flops: float = 0.0
    """Training FLOPs actually spent (exact accounting)."""
    steps: int = 0
    reason: str | None = None
    """Why the trial stopped early (diverged / oom)."""
    device: str = "cpu"
    dtype: str = "fp32"
    epochs: float = 0.0
    """Passes over the training corpus (> 1 only when data.allow_repeat is set)."""
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    """Trainer-specific final numbers (e.g. the dataset's entropy floor)."""


def load_trainer(target: str) -> TrainFn:
    """Resolve `module:function` (or `module.function`) to the training function."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"trainer.target={target!r} is invalid: write it as module:function.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"trainer.target={target!r} cannot be imported: {err}.") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"trainer.target={target!r}: {module_name} has no function {attr!r}.")
    return fn
