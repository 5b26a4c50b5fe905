"""Plug-in trainers with scripted behaviour, to exercise the runner's failure policies for real.

`train` follows the trainers/api.py contract; the trial's seed picks the behaviour:
  0 finished   1 crashes on its first attempt only   2 diverged   3 oom   4 always crashes
  5+ finished after sleeping `trainer.options.sleep_s` seconds (for kill tests)
Its one option, `trainer.options.sleep_s`, is checked by its validate hook, as a user's plug-in would.
"""

from __future__ import annotations

import math
import time
from pathlib import Path


def _loss(config: dict) -> float:
    return 2.0 + 100.0 / config["model"]["d_model"] + 300.0 / math.sqrt(config["tokens"])


OPTIONS = ("sleep_s",)


def validate(config):
    """The contract's pre-flight hook (trainers/api.py): this trainer's options, in one sentence each."""
    options = config["trainer"].get("options", {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"trainer.options has unknown keys {unknown}: behaviours:train takes {', '.join(OPTIONS)}.")
    sleep_s = options.get("sleep_s", 0.0)
    if not (isinstance(sleep_s, (int, float)) and 0 <= sleep_s < math.inf):
        raise ValueError(f"trainer.options.sleep_s={sleep_s} is invalid: it must be a finite number of seconds >= 0.")


def train(config, report, *, run_dir=None, device="cpu", threads=1):
    seed = config["seed"]
    report({"step": 0, "tokens": 0, "train_loss": 5.0})
    if seed == 1:
        marker = Path(run_dir) / "crashed_once"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            raise RuntimeError("scripted crash on the first attempt")
    if seed == 2:
        return {"status": "diverged", "reason": "loss is nan at step 3", "steps": 3}
    if seed == 3:
        return {"status": "oom", "reason": "CUDA out of memory (scripted)", "steps": 0}
    if seed == 4:
        raise ValueError("scripted crash on every attempt")
    time.sleep(float(config["trainer"].get("options", {}).get("sleep_s", 0.0)))
    loss = _loss(config)
    report({"step": 10, "tokens": config["tokens"], "train_loss": loss, "eval_loss": loss, "eval_loss_se": 0.001})
    return {"status": "finished", "final_train_loss": loss, "final_eval_loss": loss, "eval_loss_se": 0.001,
            "tokens": config["tokens"], "steps": 10, "device": device, "dtype": "fp32"}
