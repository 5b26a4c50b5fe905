"""Forecast each published run's final loss from its first 25%, 50%, 75% (Li et al. 2025's checkpoints).

Data: ../shared/reference/misfitting_li2025_scaling_results_all_ckpts.csv (hadasah/scaling_laws @ 1f3708c,
intermediate checkpoints of open_lm runs, 12M..2B parameters). Schedule, from the repository
(open_lm/constants/slurm_constants.py and open_lm/ds/scripts/train.sh): open_lm's `cosine_lr` over the
run's `total_steps`, a 50-step linear warmup, decaying to END_LR_RATIO = 0.1 of the peak: exactly our
trainers' `cosine` with min_lr_ratio 0.1 (orchestrator/forecast/table.py builds it from trainers/schedule.py).
A run is (model, total_steps, peak_lr, sweep, total_epochs), the fields of the repository's run directory
that parse_results.py wrote (open_lm/misfitting/scripts/parse_results.py; its `id` column is not in the CSV).
Checked: no kept key holds two curves (each has unique steps, one final checkpoint, one checkpoint spacing:
128 steps, or 256/512 for the 300M..1B runs); the 7 keys with repeated steps have 1..3 points and are skipped.
The forecast error is the law's exponent, not the grouping: each run's best alpha rises with its peak rate
(orchestrator/forecast/law.py's docstring), which the sweep's alpha prior now carries.

Protocol: runs with at least 8 checkpoints and their final one. Each run is held out in turn: the alpha
prior, the (L0, A, C) priors and the noise come from the other runs (finished curves, law.held_out_forecasts),
the interval multiplier from the other runs' own held-out forecasts; the run's own points up to the cutoff
update the priors. The forecast is then recalibrated (law.Recalibration) on the other runs' held-out forecasts
only, as a live sweep's finished curves recalibrate a running trial; `--law-only` prints the law's own
forecasts (the figures before recalibration) from the same held-out fits.
Prints, per cutoff, the median absolute relative error of the final loss and the 90% intervals' coverage.

    .venv/bin/python benchmarks/forecast_misfitting.py [--smoke] [--csv PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.forecast import law
from orchestrator.forecast.table import schedule_lr

CSV = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "misfitting_li2025_scaling_results_all_ckpts.csv"
RUN = ["model", "total_steps", "peak_lr", "sweep", "total_epochs"]
WARMUP_STEPS = 50
END_LR_RATIO = 0.1


def load_curves(path: Path, *, min_points: int = 8) -> list[law.Curve]:
    """One curve per run key with `min_points` checkpoints and its final one; a key whose steps repeat holds
    several runs that the table cannot tell apart, and is skipped."""
    frame = pd.read_csv(path)
    curves = []
    for key, rows in frame.groupby(RUN, sort=True):
        rows = rows.sort_values("current_steps")
        if rows.current_steps.duplicated().any():
            continue
        if len(rows) < min_points or rows.portion_steps_elapsed.max() < 1.0:
            continue
        total = int(key[1])
        lr = schedule_lr(total_steps=total, peak=float(key[2]), warmup_steps=WARMUP_STEPS, min_ratio=END_LR_RATIO)
        curves.append(law.Curve(steps=rows.current_steps.to_numpy(int), loss=rows.loss.to_numpy(float), lr=lr,
                                n_params=float(rows.N.iloc[0]), tokens=float(rows.D.max()),
                                name="/".join(str(k) for k in key)))
    return curves


def held_out(curves: list[law.Curve], *, recalibrate: bool = True) -> dict[float, list[tuple[float, float, bool]]]:
    """Per cutoff: (relative error, z, covered) of every run held out in turn (law.held_out_forecasts: the
    priors from the other runs), recalibrated from the other runs' held-out forecasts (law.Recalibration;
    `recalibrate=False`: the law's own forecast), the interval multiplier from the other runs' own held-out
    forecasts, recalibrated the same way."""
    rows = law.held_out_forecasts(curves, law.curve_fits(curves))
    recal = {i: law.build_recalibration(curves, [r for r in rows if r[0] != i]) if recalibrate else None
             for i in range(len(curves))}
    out: dict[float, list[tuple[float, float, bool]]] = {}
    for cut in law.CUTOFFS:
        here = {i: f if recal[i] is None else recal[i].apply(f, curves[i].upto(cut)) for i, c, f in rows if c == cut}
        z = {i: abs(curves[i].final_loss - f.loss) / f.sd for i, f in here.items()}
        results = []
        for i, f in here.items():
            others = [v for j, v in z.items() if j != i]  # the multiplier from the other runs only
            scale = max(float(np.quantile(others, 0.9)) / law.Z90, 1.0)
            truth = curves[i].final_loss
            results.append((abs(f.loss - truth) / truth, z[i], abs(f.loss - truth) <= law.Z90 * scale * f.sd))
        out[cut] = results
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every fourth run only (seconds)")
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument("--law-only", action="store_true", help="the law's forecasts, not recalibrated (before)")
    args = parser.parse_args(argv)
    if not args.csv.exists():
        print(f"--csv {args.csv} does not exist (the reference data lives in ../shared/reference/).", file=sys.stderr)
        return 2
    start = time.perf_counter()
    curves = load_curves(args.csv)
    if args.smoke:
        curves = curves[::4]
    results = held_out(curves, recalibrate=not args.law_only)
    print(f"misfitting forecast benchmark: {len(curves)} runs held out one at a time "
          f"(Tissue et al. 2024 law, alpha prior from scale; "
          f"{'not recalibrated' if args.law_only else 'recalibrated on the other runs held out'}; "
          f"cosine warmup {WARMUP_STEPS} steps to {END_LR_RATIO} x peak)")
    print(f"{'cutoff':>7} {'runs':>5} {'median |err|':>13} {'p90 |err|':>10} {'90% coverage':>13}")
    for cut, rows in results.items():
        err = np.array([r[0] for r in rows])
        cov = np.mean([r[2] for r in rows])
        print(f"{cut:>7.0%} {len(rows):>5} {100 * np.median(err):>12.2f}% {100 * np.quantile(err, 0.9):>9.2f}% "
              f"{100 * cov:>12.0f}%")
    print(f"({time.perf_counter() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
