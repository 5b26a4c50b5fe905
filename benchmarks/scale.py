"""Scale: 10,000 surrogate trials planned, run on Ray, tracked in MLflow (SQLite) and read back into
pandas; prints the wall time of each stage and the driver's time per trial. Floors: <= 10 minutes in all on this
machine; <= 10 ms per trial for the driver's loop with batched writes (issue 21).

    python benchmarks/scale.py [--trials 10000] [--writes per-call|batched|both] [--smoke]

--writes picks how the driver writes trial runs (orchestrator/tracking.py, RUN_WRITES): `batched` (one SQLite
transaction a scheduling round), `per-call` (each write through MLflow's client at once, as before), or `both`, run
one after the other in this process, each in a store of its own, and printed side by side with their ratio.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator import tracking
from orchestrator.config import ClusterConfig, Config, ShapeSpec, SweepConfig, TrackingConfig
from orchestrator.planner import plan
from orchestrator.runner import run_sweep
from orchestrator.runs import runs_table
from orchestrator.tracking import open_store
from trainers.config import DataConfig, ModelConfig, TrainerConfig

MODES = ("per-call", "batched")


def sweep_config(n: int) -> Config:
    side = math.isqrt(n)
    shapes = [ShapeSpec(n_layer=1 + i % 10, d_model=8 * (1 + i // 10), n_head=1 + i // 10) for i in range(side)]
    tokens = [2e6 * 1.03**i for i in range(math.ceil(n / side))]
    return Config(
        action="run",
        sweep=SweepConfig(name="scale", kind="grid", shapes=shapes, tokens=tokens, seeds=[0]),
        model=ModelConfig(seq_len=64, aspect_ratio=16, head_dim=8), data=DataConfig(),
        trainer=TrainerConfig(target="trainers.surrogate:train", batch_tokens=2048,
                              surrogate={"noise": 0.01, "points": 3}),
        tracking=TrackingConfig(), cluster=ClusterConfig(cpus_per_trial=1),
    )


def measure(n: int, mode: str) -> dict[str, float]:
    """One sweep of `n` trials with `mode` writes, in a fresh folder (its own mlflow.db)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"scale-{mode}-"))
    os.chdir(workdir)
    tracking.RUN_WRITES = mode
    config = sweep_config(n)
    t0 = time.perf_counter()
    trials = plan(config.sweep, model=config.model, trainer=config.trainer, datasets={"synthetic": config.data})
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            code = run_sweep(config, trials=trials, display_live=False)
        finally:
            sys.stdout = stdout
    t_run = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = open_store(None, experiment="scale", timeout_s=10, create=False)
    table = runs_table(store)
    t_read = time.perf_counter() - t0
    # The loop alone (the parent run's wall_s: from the first submission to the last result, Ray's start not in it)
    loop = next(store._search("sweep", limit=1)).data.metrics["wall_s"]
    finished = int((table["status"] == "finished").sum())
    return {"trials": len(trials), "plan": t_plan, "run": t_run, "loop": loop, "read": t_read, "code": code,
            "rows": len(table), "finished": finished, "store": str(workdir / "mlflow.db")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--writes", choices=(*MODES, "both"), default="batched")
    parser.add_argument("--smoke", action="store_true", help="100 trials")
    args = parser.parse_args()
    n = 100 if args.smoke else args.trials
    results = {}
    for mode in MODES if args.writes == "both" else (args.writes,):
        r = results[mode] = measure(n, mode)
        per = 1000 / max(r["trials"], 1)
        print(f"[{mode} writes] trials planned: {r['trials']} (unique) in {r['plan']:.1f}s")
        print(f"[{mode} writes] run + track (Ray start included): {r['run']:.1f}s, exit code {r['code']}, "
              f"{r['run'] * per:.1f} ms per trial; the loop alone {r['loop']:.1f}s, {r['loop'] * per:.1f} ms per trial")
        print(f"[{mode} writes] read back into pandas: {r['rows']} rows ({r['finished']} finished) in {r['read']:.1f}s")
        print(f"[{mode} writes] total: {r['plan'] + r['run'] + r['read']:.1f}s (floor: 600s); store: {r['store']}",
              flush=True)
    if len(results) == 2:
        old, new = results["per-call"], results["batched"]
        print(f"batched / per-call: run + track {new['run'] / old['run']:.2f}x "
              f"({new['run'] * 1000 / new['trials']:.1f} vs {old['run'] * 1000 / old['trials']:.1f} ms per trial), "
              f"the loop alone {new['loop'] / old['loop']:.2f}x "
              f"({new['loop'] * 1000 / new['trials']:.1f} vs {old['loop'] * 1000 / old['trials']:.1f} ms per trial)")


if __name__ == "__main__":
    main()
