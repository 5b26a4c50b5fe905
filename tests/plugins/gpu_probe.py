"""A plug-in trainer that records where Ray ran it: its process id, the GPU ids it can see and the
GPU memory share it was given (for the runner's GPU placement test, with Ray's GPUs declared on a
CPU machine through RAY_OVERRIDE_RESOURCES). It computes nothing, so device="cuda" is harmless."""

from __future__ import annotations

import os
import time


def train(config, report, *, run_dir=None, device="cpu", threads=1):
    time.sleep(float(config["trainer"].get("options", {}).get("sleep_s", 0.5)))  # so that trials overlap
    report({"step": 1, "tokens": config["tokens"], "train_loss": 1.0})
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {"status": "finished", "final_train_loss": 1.0, "final_eval_loss": 1.0, "tokens": config["tokens"],
            "steps": 1, "device": device,
            "extra": {"pid": os.getpid(), "visible_gpus": len([v for v in visible.split(",") if v]),
                      "visible_gpu": int(visible) if visible.isdigit() else -1,
                      "gpu_memory_fraction": float(os.environ.get("ORCH_GPU_MEMORY_FRACTION", "1"))}}
