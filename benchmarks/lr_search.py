"""Learning-rate search vs a 5-point grid per size, and pruning vs no pruning, on the surrogate trainer
whose best rate is known (lr_opt(N) = lr_c (N / 1e6)^-lr_exponent, trainers/surrogate.py).

Three runs of the real CLI side by side, each in its own scratch folder:
  grid      sweep=lr_search_tiny sweep.kind=grid with 5 log-spaced rates over the search range;
  search    sweep=lr_search_tiny (Optuna, search.trials_per_size=5, pruner as given);
  no-prune  the same search with search.pruner=none.
Prints, per method, the largest relative error of the best rate over the sizes, the trials per size,
and the training FLOPs (pruned trials count up to the step they were stopped at). Targets: the search
within 20% with <= 5 trials per size; pruning saves >= 40% of the search's FLOPs.

    python benchmarks/lr_search.py [--sampler tpe|gp] [--pruner median|successive_halving] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.fitting.isoflop import fit_parabola
from orchestrator.runs import runs_table
from orchestrator.tracking import open_store

LR_C, LR_EXPONENT, LR_MIN, LR_MAX = 3e-3, 0.3, 1e-4, 1e-1


def cli(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def true_lr(n: float) -> float:
    return LR_C * (n / 1e6) ** -LR_EXPONENT


def search(name: str, base: list[str], extra: list[str]) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"lr-{name}-"))
    cli("sweep=lr_search_tiny", *base, *extra, cwd=folder)
    data = json.loads((folder / "reports" / "lr_search_tiny" / "lr_search.json").read_text())
    sizes = data["sizes"]
    return {"name": name, "err": max(abs(s["lr_opt"] / true_lr(s["N_total"]) - 1) for s in sizes),
            "trials": max(s["n_finished"] + s["n_pruned"] for s in sizes), "flops": sum(s["flops"] for s in sizes),
            "law": data.get("law"), "per_size": [(s["N_total"], s["lr_opt"], true_lr(s["N_total"])) for s in sizes]}


def grid(base: list[str], points: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="lr-grid-"))
    rates = np.geomspace(LR_MIN, LR_MAX, points)
    cli("sweep=lr_search_tiny", "sweep.kind=grid", "sweep.name=lr_grid",
        f"sweep.lr=[{','.join(f'{r:.6g}' for r in rates)}]", *base, cwd=folder)
    tracker = open_store(f"sqlite:///{folder / 'mlflow.db'}", experiment="lr_grid", timeout_s=10, create=False)
    runs = runs_table(tracker)
    runs = runs[runs["status"] == "finished"]
    err_best = err_vertex = 0.0
    for n, group in runs.groupby("N_total"):
        x, y = np.log(group["lr"].to_numpy(float)), group["final_eval_loss"].to_numpy(float)
        best = float(np.exp(x[np.argmin(y)]))
        (c0, c1, c2), _ = fit_parabola(x, y)
        vertex = float(np.exp(-c1 / (2 * c2))) if c2 > 0 else best
        err_best = max(err_best, abs(best / true_lr(n) - 1))
        err_vertex = max(err_vertex, abs(vertex / true_lr(n) - 1))
    return {"name": f"grid {points} (vertex)", "err": err_vertex, "err_best": err_best, "trials": points,
            "flops": float(runs["C_exact"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sampler", default="tpe", choices=["tpe", "gp"])
    parser.add_argument("--pruner", default="median", choices=["median", "successive_halving"])
    parser.add_argument("--trials", type=int, default=5, help="trials per size (and grid points)")
    parser.add_argument("--smoke", action="store_true", help="2 sizes, 3 trials per size")
    args = parser.parse_args()
    trials = 3 if args.smoke else args.trials
    base = ["cluster.num_cpus=2", f"search.trials_per_size={trials}", f"search.sampler={args.sampler}",
            f"search.lr_min={LR_MIN}", f"search.lr_max={LR_MAX}", "search.startup_trials=2"]
    if args.smoke:
        base.append("sweep.sizes=[3.0e4,3.0e5]")
    rows = [grid(base, trials), search(f"search {args.sampler}+{args.pruner}", base, [f"search.pruner={args.pruner}"]),
            search(f"search {args.sampler}, no pruning", base, ["search.pruner=none"])]
    print(f"\n{'method':32s} {'max |lr/lr_true - 1|':>21s} {'trials/size':>11s} {'FLOPs':>10s}")
    for row in rows:
        print(f"{row['name']:32s} {100 * row['err']:20.1f}% {row['trials']:11d} {row['flops']:10.3g}")
    print(f"(grid best point instead of vertex: {100 * rows[0]['err_best']:.1f}%)")
    pruned, full = rows[1]["flops"], rows[2]["flops"]
    print(f"pruning saves {100 * (1 - pruned / full):.0f}% of the search's FLOPs ({pruned:.3g} vs {full:.3g})")
    for n, lr, true in rows[1]["per_size"]:
        print(f"  N={n:.4g}: lr_opt {lr:.4g} (true {true:.4g})")
    law = rows[1]["law"]
    if law:
        print(f"  fitted lr_opt(N) = {law['k']:.4g} N^{law['p']:.3f} (95% CI {law['p_lo']:.3f} .. {law['p_hi']:.3f}); "
              f"true exponent {-LR_EXPONENT}")


if __name__ == "__main__":
    main()
