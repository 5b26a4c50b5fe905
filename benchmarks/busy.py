"""A plug-in trainer that keeps one CPU busy for `trainer.options.busy_s` seconds (benchmarks only)."""

import time


def busy(seconds: float) -> float:
    start = time.perf_counter()
    x = 0
    while time.perf_counter() - start < seconds:
        x += 1
    return time.perf_counter() - start


def train(config, report, *, run_dir=None, device="cpu", threads=1):  # noqa: ARG001 (the trainer contract)
    spent = busy(float(config["trainer"].get("options", {}).get("busy_s", 0.5)))
    report({"step": 1, "tokens": config["tokens"], "train_loss": 1.0})
    return {"status": "finished", "final_train_loss": 1.0, "final_eval_loss": 1.0, "tokens": config["tokens"],
            "steps": 1, "wall_s": spent}
