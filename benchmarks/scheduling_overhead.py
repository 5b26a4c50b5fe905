"""Scheduling overhead: N trials each busy B seconds on S CPU slots, through our runner (with real
MLflow tracking) and, side by side in the same run, through Ray Tune's `Tuner` with its defaults.

utilisation = sum of trial busy time / (slots x wall time), Ray start excluded. Floor: >= 90% (ours).

    python benchmarks/scheduling_overhead.py [--trials 40] [--busy 0.5] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])

import ray

from busy import busy
from orchestrator.config import ClusterConfig, Config, SweepConfig
from orchestrator.planner import plan
from orchestrator.progress import Display, SweepProgress
from orchestrator.runner import TrialLoop, connect_ray
from orchestrator.tracking import open_store
from trainers.config import DataConfig, ModelConfig, TrainerConfig


def ours(n: int, busy_s: float, slots: int, workdir: Path) -> float:
    """Wall time of our runner for n busy trials (Ray already started)."""
    trials_spec = [{"n_layer": 1, "d_model": 16, "n_head": 1, "tokens": 16384, "seed": i} for i in range(n)]
    config = Config(action="run", sweep=SweepConfig(name="sched", kind="list", trials=trials_spec),
                    model=ModelConfig(seq_len=64), data=DataConfig(),
                    trainer=TrainerConfig(target="busy:train", batch_tokens=1024, options={"busy_s": busy_s}),
                    cluster=ClusterConfig(cpus_per_trial=1, num_cpus=slots))
    trials = plan(config.sweep, model=config.model, trainer=config.trainer, datasets={"synthetic": config.data})
    os.chdir(workdir)
    tracker = open_store(None, experiment="sched", timeout_s=10, create=True)
    parent = tracker.start_parent(sweep="sched", config={"sweep": {"name": "sched"}}, n_trials=n)
    display = Display(SweepProgress(sweep="sched", total=n, planned_flops=1.0), live=False)
    loop = TrialLoop(config, tracker=tracker, parent=parent, display=display)
    # Ray start excluded: every slot's worker process is started and has imported the trainer.
    ray.get([loop.task.remote({"trainer": {"options": {"busy_s": 0.2}}, "tokens": 1}, key=("warm", i),
                              target="busy:train", queue=loop.queue, run_dir=None, threads=1, device="cpu")
             for i in range(slots)])
    loop.queue.get_nowait_batch(loop.queue.size())
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            loop.run(trials)
        finally:
            sys.stdout = stdout
    return time.perf_counter() - start


def tune_defaults(n: int, busy_s: float) -> float:
    """Wall time of the same trials through Ray Tune's Tuner with its defaults (Ray already started)."""
    from ray import tune

    def trainable(config):  # noqa: ARG001 (Ray Tune passes the config)
        busy(busy_s)
        return {"loss": 1.0}

    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                       param_space={"seed": tune.grid_search(list(range(n)))},
                       run_config=tune.RunConfig(storage_path=str(Path(tempfile.mkdtemp()) / "tune"), verbose=0))
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--busy", type=float, default=0.5)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="8 trials of 0.1 s, ours only")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.busy = 8, 0.1
    workdir = Path(tempfile.mkdtemp(prefix="sched-"))
    t0 = time.perf_counter()
    connect_ray(Config(cluster=ClusterConfig(num_cpus=args.slots)))
    print(f"ray start: {time.perf_counter() - t0:.1f}s (excluded)")
    ideal = args.trials * args.busy
    wall = ours(args.trials, args.busy, args.slots, workdir)
    print(f"ours (runner + MLflow sqlite): {args.trials} trials x {args.busy}s on {args.slots} slots: "
          f"wall {wall:.2f}s, utilisation {ideal / (args.slots * wall):.1%}")
    if not args.smoke:
        tune_wall = tune_defaults(args.trials, args.busy)
        tune_use = ideal / (args.slots * tune_wall)
        print(f"ray tune Tuner (defaults):     wall {tune_wall:.2f}s, utilisation {tune_use:.1%}")
        print(f"ratio: ours is {tune_wall / wall:.2f}x faster than Tune with defaults")
    ray.shutdown()


if __name__ == "__main__":
    main()
