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
  the runner records the trial as crashed with its traceback. A return value that breaks this contract
  (None, not a dict, an unknown status, a non-numeric number field) is recorded as crashed with the
  reason `check_result` gives, and not retried: it would break the same way again.

Optional: the trainer's module may define

    def validate(config: dict) -> None

which raises `ValueError` with one sentence when a trial config cannot be trained (an unknown option, a
value out of range). The pre-flight (orchestrator/preflight.py) calls it in the driver on every planned
trial before anything is written or started, so a deterministic mistake is exit 2, not a trial that
crashes and is retried. It must be cheap and touch nothing (see `trainers/surrogate.py`).
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


RESULT_STATUSES = (FINISHED, DIVERGED, OOM)
NUMBER_FIELDS = ("final_train_loss", "final_eval_loss", "eval_loss_se", "tokens", "flops", "steps", "epochs", "wall_s")


class TrainerError(ValueError):
    """`trainer.target` cannot be resolved to a training function (one sentence)."""


def _split(target: str) -> tuple[str, str]:
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise TrainerError(f"trainer.target={target!r} is invalid: write it as module:function.")
    return module_name, attr


def _import(target: str, module_name: str):
    try:
        return importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001  (the user's module failed to import, however it failed)
        first = (str(err).strip().splitlines() or [""])[0]
        raise TrainerError(f"trainer.target={target!r} cannot be imported: {type(err).__name__}: {first}.") from err


def load_trainer(target: str) -> TrainFn:
    """Resolve `module:function` (or `module.function`) to the training function."""
    module_name, attr = _split(target)
    fn = getattr(_import(target, module_name), attr, None)
    if not callable(fn):
        raise TrainerError(f"trainer.target={target!r}: {module_name} has no function {attr!r}.")
    return fn


def load_validator(target: str) -> Callable[[dict[str, Any]], None] | None:
    """The optional `validate(config)` of the trainer's module (see the module docstring), or None."""
    module_name, _ = _split(target)
    validate = getattr(_import(target, module_name), "validate", None)
    return validate if callable(validate) else None


def check_result(result: Any) -> str | None:
    """Why a trainer's return value breaks the contract, or None when it keeps it."""
    if not isinstance(result, dict):
        return f"it returned {type(result).__name__ if result is not None else 'None'}, not a TrialResult dict"
    status = result.get("status")
    if status not in RESULT_STATUSES:
        return f"it returned status {status!r}: allowed are {', '.join(RESULT_STATUSES)}"
    for key in NUMBER_FIELDS:
        value = result.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"its {key} is {value!r}, not a number"
    if not isinstance(result.get("extra") or {}, dict):
        return f"its extra is a {type(result['extra']).__name__}, not a dict"
    if result.get("reason") is not None and not isinstance(result["reason"], str):
        return f"its reason is a {type(result['reason']).__name__}, not a string"
    return None
