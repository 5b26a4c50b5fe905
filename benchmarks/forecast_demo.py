"""The live forecasts a sweep logged, against the final losses its trials then reached (after the sweep).

For each finished trial of an experiment in an MLflow store: the forecast_final_loss (and its 90% bounds)
the driver logged last at or before 25%, 50%, 75% of the trial's steps, against its final eval_loss.
Prints the median absolute relative error and the coverage at each cutoff.

    .venv/bin/python benchmarks/forecast_demo.py --db PATH/mlflow.db --experiment NAME
    .venv/bin/python benchmarks/forecast_demo.py --smoke     # runs sweep=tiny first, in a scratch folder
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

CUTOFFS = (0.25, 0.5, 0.75)


def evaluate(db: Path, experiment: str) -> dict[float, list[tuple[float, bool]]]:
    client = MlflowClient(f"sqlite:///{db.resolve()}")
    exp = client.get_experiment_by_name(experiment)
    out: dict[float, list[tuple[float, bool]]] = {c: [] for c in CUTOFFS}
    for run in client.search_runs([exp.experiment_id], max_results=5000):
        if run.data.tags.get("kind") != "trial" or run.data.tags.get("status") != "finished":
            continue
        truth, steps = run.data.metrics.get("final_eval_loss"), run.data.metrics.get("steps")
        hist = {k: {m.step: m.value for m in client.get_metric_history(run.info.run_id, k)}
                for k in ("forecast_final_loss", "forecast_final_loss_lo", "forecast_final_loss_hi")}
        if truth is None or not steps or not hist["forecast_final_loss"]:
            continue
        for cut in CUTOFFS:
            seen = [s for s in hist["forecast_final_loss"] if s <= cut * steps]
            if not seen:
                continue
            s = max(seen)
            f, lo, hi = (hist[k][s] for k in ("forecast_final_loss", "forecast_final_loss_lo", "forecast_final_loss_hi"))
            out[cut].append((abs(f - truth) / truth, lo <= truth <= hi))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path)
    parser.add_argument("--experiment", default="tiny")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        scratch = Path(tempfile.mkdtemp())
        subprocess.run([sys.executable, "-m", "orchestrator", "sweep=tiny", "trainer.evals_per_run=20"], cwd=scratch,
                       check=True, capture_output=True)
        args.db, args.experiment = scratch / "mlflow.db", "tiny"
    if args.db is None or not args.db.exists():
        print(f"--db {args.db} does not exist: give the sweep's mlflow.db.", file=sys.stderr)
        return 2
    results = evaluate(args.db, args.experiment)
    print(f"demo forecasts ({args.experiment}): the live forecast logged at each cutoff against the final eval_loss")
    print(f"{'cutoff':>7} {'trials':>7} {'median |err|':>13} {'90% coverage':>13}")
    for cut, rows in results.items():
        if rows:
            print(f"{cut:>7.0%} {len(rows):>7} {100 * np.median([r[0] for r in rows]):>12.2f}% "
                  f"{100 * np.mean([r[1] for r in rows]):>12.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
