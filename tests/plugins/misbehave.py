"""A plug-in trainer that misbehaves the ways a user's trainer might, to exercise the runner's fault handling
(orchestrator/faults.py) for real; the trial's seed picks the way:
  0 finished                                  1 report() with a non-numeric metric (a string)
  2 os._exit(3) in the middle of the trial     3 a segmentation fault (reads address 0)
  4 hangs (sleeps for an hour)                5 noisy: 20,000 reports as fast as it can, one evaluation, finished
  6 returns finished with a NaN loss          7 catches report()'s ContractError and returns finished anyway
  8 kills itself with SIGKILL (a death that leaves no word, like the kernel's out-of-memory killer)
Each reports one step first, so the runner has opened the trial's run before it misbehaves.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

NOISY_REPORTS = 20_000


def _finished(config, loss=3.0):
    return {"status": "finished", "final_train_loss": loss, "final_eval_loss": loss, "tokens": config["tokens"],
            "steps": 10}


def train(config, report, *, run_dir=None, device="cpu", threads=1):
    report({"step": 0, "tokens": 0, "train_loss": 5.0})
    seed = config["seed"]
    if seed == 1:
        report({"step": 1, "tokens": 10, "train_loss": "low"})
    elif seed == 2:
        os._exit(3)
    elif seed == 3:
        ctypes.string_at(0)
    elif seed == 4:
        time.sleep(3600)
    elif seed == 5:
        for step in range(1, NOISY_REPORTS + 1):
            report({"step": step, "tokens": step * 10, "train_loss": 4.0 - step / NOISY_REPORTS})
            if step == NOISY_REPORTS // 2:
                report({"step": step, "tokens": step * 10, "train_loss": 3.5, "eval_loss": 3.5})
        report({"step": NOISY_REPORTS, "tokens": config["tokens"], "train_loss": 3.0, "eval_loss": 3.0})
    elif seed == 6:
        return _finished(config, loss=float("nan"))
    elif seed == 8:
        os.kill(os.getpid(), signal.SIGKILL)
    elif seed == 7:
        with contextlib.suppress(TypeError):
            report({"step": 1, "tokens": 10, "train_loss": [3.0]})
    return _finished(config)
