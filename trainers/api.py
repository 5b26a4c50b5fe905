"""The trainer contract: what every trainer (built-in or a user's plug-in) takes and returns.

A trainer is a plain function

    def train(config: dict, report: Callable[[dict], None], *, run_dir: str | None = None,
              device: str = "cpu", threads: int = 1) -> dict

- `config` is the trial's resolved config as plain JSON-able data, exactly what the planner hashed:
  `{"model": {...}, "data": {...}, "trainer": {...}, "tokens": D, "seed": s}` (the sections use the
  field names of `trainers/config.py`; a plug-in may ignore what it does not need). A plug-in's own
  knobs arrive in `config["trainer"]["options"]` when given (`+trainer.options.<knob>=value`: free-form,
  part of the trial's identity, absent when empty), checked by nothing but the plug-in's `validate`.
- `report(metrics)` is called with one dict per logged step: at least `step`, `tokens`, `flops`,
  `train_loss`; evaluation steps add `eval_loss` and `eval_loss_se`; see `trainers/gpt.py`.
  The trainer never imports MLflow or Ray: the runner decides where reports go.
- `run_dir`, when given, is a directory private to this trial for checkpoints; a trainer that finds a
  checkpoint there resumes from it.
- A trial that spans workers (`cluster.workers_per_trial`) calls the trainer once per worker, with the same
  arguments and torch.distributed initialised (Ray Train); `SCALING_PARALLEL` in the environment says how the
  user wants the model shared, ddp or fsdp (trainers/parallel.py). Rank 0's reports and result are the trial's.
- The return value is a `TrialResult` as a dict (`dataclasses.asdict`). A run that stops for a reason
  that is a *result* (divergence, out of memory) returns with that status; anything else raises, and
  the runner records the trial as crashed with its traceback. A return value that breaks this contract
  (None, not a dict, an unknown status, a non-numeric number field) is recorded as crashed with the
  reason `check_result` gives, and not retried: it would break the same way again. So is a call of
  `report` with something other than a dict of numbers (`check_metrics`): `report` raises `ContractError`
  and the trial is recorded as crashed with that reason, even when the trainer catches the error. A
  returned `finished` whose final loss is NaN or infinite is recorded as `diverged` (`nonfinite_loss`).

Optional: the trainer's module may define

    def validate(config: dict) -> None

which raises `ValueError` with one sentence when a trial config cannot be trained (an unknown option, a
value out of range). The pre-flight (orchestrator/preflight.py) calls it in the driver on every planned
trial before anything is written or started, so a deterministic mistake is exit 2, not a trial that
crashes and is retried. It must be cheap and touch nothing (see `trainers/surrogate.py`, and
`tests/plugins/behaviours.py` for a hook that checks a plug-in's `trainer.options`).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from numbers import Real
from typing import Any


class Status(StrEnum):
    """Where a trial stands: the one status vocabulary of trainers, runner, tracking store, fit and report.

    A StrEnum, so a member equals its string (`Status.FINISHED == "finished"`) in MLflow tags, pandas
    columns and JSON. A trainer returns one of `TRAINER_RESULTS`; the runner adds the rest.
    """

    FINISHED = "finished"
    """The trainer ran to its token count and reported a final loss: a point the fit may use."""
    DIVERGED = "diverged"
    """The trainer stopped because the loss blew up (NaN, inf or a spike): a result, not retried by default."""
    OOM = "oom"
    """The trainer ran out of device memory: a result of the shape on this device, not retried by default."""
    PRUNED = "pruned"
    """A search (Optuna) stopped the trial early as unpromising: a result, never fitted."""
    CRASHED = "crashed"
    """The trainer raised, or returned something that breaks the contract (the reason says which)."""
    LOST = "lost"
    """The worker or node running the trial went away (Ray reported it dead): retried on the next run."""
    TIMED_OUT = "timed_out"
    """The trial ran past its wall-clock limit (cluster.trial_timeout_s) and was stopped: not retried in the
    same invocation (a hung trainer would hang again), rerun by the next one."""
    KILLED = "killed"
    """The driver stopped (Ctrl-C, kill) while the trial ran, or a later driver found it orphaned."""
    RUNNING = "running"
    """In flight: an MLflow run that has not ended."""
    PENDING = "pending"
    """Planned, with no run in the store yet."""

    @property
    def is_result(self) -> bool:
        """A trial that reached a result (finished, diverged, oom, pruned) is not rerun by resumption."""
        return self in RESULTS

    @property
    def mlflow(self) -> str:
        """The MLflow run status it ends with: FINISHED, FAILED or KILLED (RUNNING while in flight)."""
        return {Status.FINISHED: "FINISHED", Status.PRUNED: "FINISHED", Status.KILLED: "KILLED",
                Status.RUNNING: "RUNNING", Status.PENDING: "SCHEDULED"}.get(self, "FAILED")


TRAINER_RESULTS = (Status.FINISHED, Status.DIVERGED, Status.OOM)
"""What a trainer may return."""
RESULTS = (*TRAINER_RESULTS, Status.PRUNED)
"""Statuses that are outcomes of the trial itself: resumption skips them (failures are retried)."""
FINISHED, DIVERGED, OOM = TRAINER_RESULTS

Report = Callable[[dict[str, Any]], None]
TrainFn = Callable[..., dict[str, Any]]


@dataclass
class TrialResult:
    """What a trainer returns (as a dict)."""

    status: str
    """A `Status` in TRAINER_RESULTS: finished, diverged or oom."""
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
    except Exception as err:
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
    if status not in TRAINER_RESULTS:
        return f"it returned status {status!r}: allowed are {', '.join(TRAINER_RESULTS)}"
    for key in NUMBER_FIELDS:
        value = result.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"its {key} is {value!r}, not a number"
    if not isinstance(result.get("extra") or {}, dict):
        return f"its extra is a {type(result['extra']).__name__}, not a dict"
    if result.get("reason") is not None and not isinstance(result["reason"], str):
        return f"its reason is a {type(result['reason']).__name__}, not a string"
    return None


class ContractError(TypeError):
    """A trainer called `report` with something the contract does not allow (raised inside the trainer)."""


def check_metrics(metrics: Any) -> str | None:
    """Why one `report(metrics)` call breaks the contract, or None when it keeps it: a dict of string keys
    whose values are numbers (int or float, NaN and inf allowed: a diverging loss is a number) or None,
    with an integer `step` when given."""
    if not isinstance(metrics, dict):
        return f"report() got {type(metrics).__name__ if metrics is not None else 'None'}, not a dict of metrics"
    for key, value in metrics.items():
        if not isinstance(key, str):
            return f"report() got the metric name {key!r}, not a string"
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, Real):
            shown = repr(value) if len(repr(value)) <= 40 else f"a {type(value).__name__}"
            return f"report() got {key}={shown}, not a number"
    step = metrics.get("step")
    if step is not None and (not math.isfinite(step) or step != int(step)):
        return f"report() got step={step!r}, not a whole number"
    return None


def nonfinite_loss(result: dict[str, Any]) -> str | None:
    """For a result that says `finished`: the final loss that is NaN or infinite (so it diverged), else None."""
    for key in ("final_eval_loss", "final_train_loss"):
        value = result.get(key)
        if value is not None and not math.isfinite(value):
            return f"the trainer returned finished with {key}={value}: recorded as diverged"
    return None
