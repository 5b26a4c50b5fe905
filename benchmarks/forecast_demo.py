"""The live forecasts a sweep logged, against the final losses its trials then reached (after the sweep).

1. Logged: for each finished trial of an experiment in an MLflow store, the forecast_final_loss (and its 90%
   bounds) the driver logged last at or before 25%, 50%, 75% of the trial's steps, against its final eval_loss.
   A trial the driver had no calibrated forecast for (before 3 curves had finished: forecast/live.py MIN_CURVES)
   counts nowhere; what the driver logged depends on which trials finished first.
2. Held out: the sweep's own finished curves (eval_loss per step, each trial's schedule rebuilt from its
   trial_config.json), each held out in turn, forecast from its first 25/50/75% with priors, noise and interval
   multiplier from the others (law.held_out_forecasts, the protocol of forecast_misfitting.py): the law on this
   sweep's curves, independent of the order trials ran in.
Prints the median absolute relative error and the coverage at each cutoff.

    .venv/bin/python benchmarks/forecast_demo.py --db PATH/mlflow.db --experiment NAME
    .venv/bin/python benchmarks/forecast_demo.py --smoke     # runs sweep=tiny first, in a scratch folder
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from orchestrator.forecast import law
from orchestrator.forecast.live import trial_schedule

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


def sweep_curves(db: Path, experiment: str) -> list[law.Curve]:
    """Each finished trial's eval_loss curve with its full planned rate schedule."""
    client = MlflowClient(f"sqlite:///{db.resolve()}")
    exp = client.get_experiment_by_name(experiment)
    curves = []
    for run in client.search_runs([exp.experiment_id], max_results=5000):
        if run.data.tags.get("kind") != "trial" or run.data.tags.get("status") != "finished":
            continue
        config = json.loads(Path(client.download_artifacts(run.info.run_id, "trial_config.json")).read_text())
        found = trial_schedule(config)
        points = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval_loss"))
        if found is None or not points:
            continue
        steps = np.array([p[0] for p in points], int)
        keep = (steps >= 1) & (steps <= len(found[0]))
        curves.append(law.Curve(steps=steps[keep], loss=np.array([p[1] for p in points])[keep], lr=found[0],
                                n_params=float(run.data.params["N_total"]), tokens=float(run.data.params["D"]),
                                name=run.info.run_name))
    return curves


def held_out(curves: list[law.Curve]) -> dict[float, list[tuple[float, bool]]]:
    """Each curve held out in turn: its final loss forecast from its first 25/50/75% (scale calibrated on the
    others' own held-out forecasts, as the driver's sweep fit does)."""
    usable = [c for c in curves if len(law.fit_points(c)[1]) >= 3]
    out: dict[float, list[tuple[float, bool]]] = {c: [] for c in CUTOFFS}
    if len(usable) < 4:
        return out
    fits = law.curve_fits(usable)
    for i, curve in enumerate(usable):
        others = [j for j in range(len(usable)) if j != i]
        sweep = law.sweep_from_fits([usable[j] for j in others], fits.take(others))
        for cut in CUTOFFS:
            part = curve.upto(cut)
            if len(part.steps) == 0 or part.final_loss is not None:
                continue
            try:
                f = law.forecast(part, sweep)
            except law.ForecastError:
                continue
            out[cut].append((abs(f.loss - curve.final_loss) / curve.final_loss, f.covers(curve.final_loss)))
    return out


def table(title: str, results: dict[float, list[tuple[float, bool]]]) -> None:
    print(title)
    print(f"{'cutoff':>7} {'trials':>7} {'median |err|':>13} {'90% coverage':>13}")
    for cut, rows in results.items():
        if rows:
            print(f"{cut:>7.0%} {len(rows):>7} {100 * np.median([r[0] for r in rows]):>12.2f}% "
                  f"{100 * np.mean([r[1] for r in rows]):>12.0f}%")


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
    table(f"demo forecasts ({args.experiment}): the live forecast logged at each cutoff against the final eval_loss",
          evaluate(args.db, args.experiment))
    curves = sweep_curves(args.db, args.experiment)
    table(f"the law on the sweep's {len(curves)} finished curves, each held out in turn (forecast from its first "
          f"25/50/75%)", held_out(curves))
    return 0


if __name__ == "__main__":
    sys.exit(main())
