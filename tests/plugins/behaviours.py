"""Plug-in trainers with scripted behaviour, to exercise the runner's failure policies for real.

`train` follows the trainers/api.py contract; the trial's seed picks the behaviour:
  0 finished   1 crashes on its first attempt only   2 diverged   3 oom   4 always crashes
  5+ finished after sleeping `trainer.surrogate.sleep_s` seconds (for kill tests)
"""

from __future__ import annotations

import math
import time
from pathlib import Path


def _loss(config: dict) -> float:
    return 2.0 + 100.0 / config["model"]["d_model"] + 300.0 / math.sqrt(config["tokens"])


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
    time.sleep(float(config["trainer"]["surrogate"].get("sleep_s", 0.0)))
    loss = _loss(config)
    report({"step": 10, "tokens": config["tokens"], "train_loss": loss, "eval_loss": loss, "eval_loss_se": 0.001})
    return {"status": "finished", "final_train_loss": loss, "final_eval_loss": loss, "eval_loss_se": 0.001,
            "tokens": config["tokens"], "steps": 10, "device": device, "dtype": "fp32"}
