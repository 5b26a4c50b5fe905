"""Adaptive IsoFLOP placement vs a fixed 8-size IsoFLOP grid, side by side, on the surrogate trainer
(whose N_opt per budget is known: the minimum over sizes of its noiseless law at exact D).

  fixed     sweep=isoflop_adaptive_tiny sweep.adaptive=false, 8 sizes per budget over a span of 16;
  adaptive  sweep=isoflop_adaptive_tiny: a first wave of 3 sizes (span 4), then sizes where they inform N_opt.
Prints the largest relative N_opt error over the budgets and the FLOPs of each. Target: adaptive at
least as accurate with <= 50% of the fixed grid's FLOPs.

    python benchmarks/adaptive_isoflop.py [--smoke]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.config import SweepConfig  # noqa: E402
from orchestrator.fitting.isoflop import fit_parabola  # noqa: E402
from orchestrator.planner import plan  # noqa: E402
from orchestrator.runs import runs_table  # noqa: E402
from orchestrator.tracking import open_store  # noqa: E402
from trainers.config import DataConfig, ModelConfig, TrainerConfig  # noqa: E402
from trainers.surrogate import SurrogateLaw  # noqa: E402


def cli(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def true_n_opt(budget: float) -> float:
    """Vertex through the noiseless law's 5 best of 80 planned shapes (the shapes the sweeps can run)."""
    sweep = SweepConfig(name="truth", kind="isoflop", budgets=[budget], sizes_per_budget=80, span=64.0,
                        min_tokens_per_param=0.0, budget_tolerance=0.05)
    trials = plan(sweep, model=ModelConfig(seq_len=64, aspect_ratio=16, head_dim=8),
                  trainer=TrainerConfig(batch_tokens=2048), datasets={"synthetic": DataConfig()})
    law = SurrogateLaw()
    x = np.log([t.cost.n_total for t in trials])
    y = np.array([law.loss(t.cost.n_total, t.tokens) for t in trials])
    near = np.argsort(y)[:5]
    (c0, c1, c2), _ = fit_parabola(x[near], y[near])
    return math.exp(-c1 / (2 * c2))


def finished(folder: Path, name: str):
    tracker = open_store(f"sqlite:///{folder / 'mlflow.db'}", experiment=name, timeout_s=10, create=False)
    runs = runs_table(tracker)
    return runs[runs["status"] == "finished"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one budget")
    args = parser.parse_args()
    budgets = [4e12] if args.smoke else [1e12, 4e12, 1.6e13]
    common = [f"sweep.budgets=[{','.join(f'{b:g}' for b in budgets)}]", "cluster.num_cpus=2"]
    truth = {b: true_n_opt(b) for b in budgets}

    fixed_dir = Path(tempfile.mkdtemp(prefix="iso-fixed-"))
    cli("sweep=isoflop_adaptive_tiny", "sweep.adaptive=false", "sweep.name=fixed8", "sweep.sizes_per_budget=8",
        "sweep.span=16", *common, cwd=fixed_dir)
    runs = finished(fixed_dir, "fixed8")
    fixed_err, fixed_flops = 0.0, float(runs["C_exact"].sum())
    for b in budgets:
        group = runs[np.isclose(runs["budget"], b)]
        (c0, c1, c2), _ = fit_parabola(np.log(group["N_total"].to_numpy(float)), group["final_eval_loss"].to_numpy(float))
        fixed_err = max(fixed_err, abs(math.exp(-c1 / (2 * c2)) / truth[b] - 1))

    adaptive_dir = Path(tempfile.mkdtemp(prefix="iso-adaptive-"))
    cli("sweep=isoflop_adaptive_tiny", *common, cwd=adaptive_dir)
    log = json.loads((adaptive_dir / "reports" / "isoflop_adaptive_tiny" / "adaptive_decisions.json").read_text())
    runs = finished(adaptive_dir, "isoflop_adaptive_tiny")
    adaptive_flops = float(runs["C_exact"].sum())
    adaptive_err = max(abs(e["N_opt"] / truth[e["budget"]] - 1) for e in log["N_opt"])

    print(f"\n{'method':28s} {'max |N_opt/true - 1|':>21s} {'runs':>5s} {'FLOPs':>10s}")
    print(f"{'fixed 8-size grid (span 16)':28s} {100 * fixed_err:20.1f}% {8 * len(budgets):5d} {fixed_flops:10.3g}")
    print(f"{'adaptive (3 + placed)':28s} {100 * adaptive_err:20.1f}% {len(runs):5d} {adaptive_flops:10.3g}")
    print(f"adaptive uses {100 * adaptive_flops / fixed_flops:.0f}% of the fixed grid's FLOPs")
    for entry in log["decisions"]:
        print(f"  C={entry['budget']:.3g} {entry['decision']}: {entry['reason']}")


if __name__ == "__main__":
    main()
