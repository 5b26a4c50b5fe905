"""Measured time against the plan's estimate, and 2 workers against 1, in one run on this machine.

    python benchmarks/eta.py [--sweep cpu_small] [--smoke]

1. `action=plan cluster.throughput=probe` (orchestrator/throughput.py: timed steps per shape, as many shapes at once
   as the sweep runs trials, cached under a private XDG_CACHE_HOME so that the probe runs now) gives the estimated
   wall time; the sweep then runs through the CLI and its trial time (the progress line's elapsed time) is
   compared: estimated / actual. The machine's 1-minute load average, sampled every 2 s, is printed for the probe
   and for the sweep: other jobs on a shared machine move both.
2. One GPT trial (sweep=tiny, one size) on 1 worker of 1 thread and on 2 workers of 1 thread each (Ray Train, DDP over gloo): wall ratio 2 workers / 1 worker, and the final losses.
--smoke runs sweep=tiny.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli(cwd: Path, *args: str, env: dict[str, str]) -> tuple[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if out.returncode not in (0,):
        sys.exit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout, wall


@contextmanager
def load_average(samples: list[float]):
    """Sample the 1-minute load average every 2 s while the block runs."""
    done = threading.Event()

    def sample() -> None:
        while not done.wait(2.0):
            samples.append(os.getloadavg()[0])

    thread = threading.Thread(target=sample, daemon=True)
    samples.append(os.getloadavg()[0])
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        samples.append(os.getloadavg()[0])


def span(samples: list[float]) -> str:
    return f"{min(samples):.1f} to {max(samples):.1f} (mean {sum(samples) / len(samples):.1f})"


def seconds(text: str) -> float:
    value, unit = float(text[:-1]), text[-1]
    return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default="cpu_small")
    parser.add_argument("--smoke", action="store_true", help="sweep=tiny")
    args = parser.parse_args()
    sweep = "tiny" if args.smoke else args.sweep
    work = Path(tempfile.mkdtemp(prefix="eta-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(work / "cache")}
    (work / "sweep").mkdir()
    probe_load, sweep_load = [], []
    with load_average(probe_load):
        plan, probe_s = cli(work / "sweep", f"sweep={sweep}", "action=plan", "cluster.throughput=probe", env=env)
    concurrency = re.search(r"(\d+) at once", plan).group(1)
    estimated = seconds(re.search(r"about (\S+) wall", plan).group(1))
    planned = int(re.search(r"sweep \S+: (\d+) trials", plan).group(1))
    with load_average(sweep_load):
        out, actual = cli(work / "sweep", f"sweep={sweep}", "action=run", env=env)
    ran = len(re.findall(r"^(?:finished|crashed|oom|diverged|pruned) ", out, flags=re.M))
    trials_s = seconds(re.findall(r"elapsed (\S+) eta", out)[-1])  # the progress line: trials only
    print(f"eta: sweep={sweep}: plan (probe {probe_s:.0f} s, each shape in {concurrency} processes at once, load "
          f"average {span(probe_load)}) estimated {estimated:.0f} s wall for {planned} planned trials; the sweep (load "
          f"average {span(sweep_load)}) ran {ran} trials, {trials_s:.0f} s of trials ({actual:.0f} s with Ray's start "
          f"and the report): estimated / actual trial time = {estimated / trials_s:.2f}, per trial run "
          f"{estimated / planned / (trials_s / ran):.2f} (goal 0.75 to 1.25)")
    walls, losses = {}, {}
    for workers in (1, 2):
        folder = work / f"w{workers}"
        folder.mkdir()
        budget = "1e10" if args.smoke else "1e11"
        out, walls[workers] = cli(folder, "sweep=tiny", f"sweep.budgets=[{budget}]", "sweep.sizes_per_budget=1",
                                  "cluster.num_cpus=2", f"cluster.workers_per_trial={workers}", "action=run", env=env)
        losses[workers] = float(re.search(r"eval_loss=([0-9.]+)", out).group(1))
    print(f"workers: one trial (sweep=tiny, C={budget}) on 2 workers of 1 thread took {walls[2]:.1f} s, on 1 worker "
          f"{walls[1]:.1f} s: 2 workers / 1 = {walls[2] / walls[1]:.2f} of the wall time (driver and Ray start "
          f"included); final eval loss {losses[2]:.6f} vs {losses[1]:.6f}")


if __name__ == "__main__":
    main()
