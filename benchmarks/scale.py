"""Scale: 10,000 surrogate trials planned, run on Ray, tracked in MLflow (SQLite) and read back into
pandas; prints the wall time of each stage. Floor: <= 10 minutes in all on this machine.

    python benchmarks/scale.py [--trials 10000] [--smoke]
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

from orchestrator.config import ClusterConfig, Config, ShapeSpec, SweepConfig, TrackingConfig  # noqa: E402
from orchestrator.planner import plan  # noqa: E402
from orchestrator.runner import run_sweep  # noqa: E402
from orchestrator.runs import runs_table  # noqa: E402
from orchestrator.tracking import open_store  # noqa: E402
from trainers.config import DataConfig, ModelConfig, TrainerConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--smoke", action="store_true", help="100 trials")
    args = parser.parse_args()
    n = 100 if args.smoke else args.trials
    side = math.isqrt(n)
    workdir = Path(tempfile.mkdtemp(prefix="scale-"))
    os.chdir(workdir)
    shapes = [ShapeSpec(n_layer=1 + i % 10, d_model=8 * (1 + i // 10), n_head=1 + i // 10) for i in range(side)]
    tokens = [2e6 * 1.03**i for i in range(math.ceil(n / side))]
    config = Config(
        action="run",
        sweep=SweepConfig(name="scale", kind="grid", shapes=shapes, tokens=tokens, seeds=[0]),
        model=ModelConfig(seq_len=64, aspect_ratio=16, head_dim=8), data=DataConfig(),
        trainer=TrainerConfig(target="trainers.surrogate:train", batch_tokens=2048,
                              surrogate={"noise": 0.01, "points": 3}),
        tracking=TrackingConfig(), cluster=ClusterConfig(cpus_per_trial=1),
    )
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
    table = runs_table(open_store(None, experiment="scale", timeout_s=10, create=False))
    t_read = time.perf_counter() - t0
    finished = int((table["status"] == "finished").sum())
    print(f"trials planned: {len(trials)} (unique) in {t_plan:.1f}s")
    print(f"run + track (Ray start included): {t_run:.1f}s, exit code {code}, "
          f"{t_run / max(len(trials), 1) * 1000:.1f} ms per trial")
    print(f"read back into pandas: {len(table)} rows ({finished} finished) in {t_read:.1f}s")
    print(f"total: {t_plan + t_run + t_read:.1f}s (floor: 600s); store: {workdir / 'mlflow.db'}")


if __name__ == "__main__":
    main()
