"""Forecast each published run's final loss from its first 25%, 50%, 75% (Li et al. 2025's checkpoints).

Data: ../shared/reference/misfitting_li2025_scaling_results_all_ckpts.csv (hadasah/scaling_laws @ 1f3708c,
intermediate checkpoints of open_lm runs, 12M..2B parameters). Schedule, from the repository
(open_lm/constants/slurm_constants.py and open_lm/ds/scripts/train.sh): open_lm's `cosine_lr` over the
run's `total_steps`, a 50-step linear warmup, decaying to END_LR_RATIO = 0.1 of the peak: exactly our
trainers' `cosine` with min_lr_ratio 0.1 (orchestrator/forecast/table.py builds it from trainers/schedule.py).
A run is (model, total_steps, peak_lr, sweep, total_epochs): reruns in one sweep differ by their epochs.

Protocol: runs with at least 8 checkpoints and their final one. Each run is held out in turn: the shared
exponent, the scale prior and the noise come from the other runs (finished curves), the interval multiplier
from the other runs' own held-out forecasts; the run's own points up to the cutoff update the prior.
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
    frame = pd.read_csv(path)
    curves = []
    for key, rows in frame.groupby(RUN, sort=True):
        rows = rows.sort_values("current_steps").drop_duplicates("current_steps", keep="last")
        if len(rows) < min_points or rows.portion_steps_elapsed.max() < 1.0:
            continue
        total = int(key[1])
        lr = schedule_lr(total_steps=total, peak=float(key[2]), warmup_steps=WARMUP_STEPS, min_ratio=END_LR_RATIO)
        curves.append(law.Curve(steps=rows.current_steps.to_numpy(int), loss=rows.loss.to_numpy(float), lr=lr,
                                n_params=float(rows.N.iloc[0]), tokens=float(rows.D.max()),
                                name="/".join(str(k) for k in key)))
    return curves


def held_out(curves: list[law.Curve]) -> dict[float, list[tuple[float, float, bool]]]:
    """Per cutoff: (relative error, z, covered) of every run held out in turn."""
    alpha_all, table = law.fit_alpha(curves)
    thetas_by_alpha: dict[float, tuple[list[np.ndarray], float]] = {}

    def coefficients(alpha: float) -> tuple[list[np.ndarray], float]:
        if alpha not in thetas_by_alpha:
            thetas_by_alpha[alpha] = law._coefficients(curves, alpha)  # noqa: SLF001  (the benchmark reuses the fit's own step)
        return thetas_by_alpha[alpha]

    raw: dict[float, list[tuple[int, float, float]]] = {cut: [] for cut in law.CUTOFFS}  # (run, forecast, sd)
    for i, curve in enumerate(curves):
        alpha = float(law.ALPHA_GRID[int(np.argmin(table.sum(0) - table[i]))])
        thetas, _ = coefficients(alpha)
        others = [c for j, c in enumerate(curves) if j != i]
        sds = [np.sqrt(_sse(c, alpha) / (len(law.fit_points(c)[1]) - 3)) for c in others if len(law.fit_points(c)[1]) > 3]
        prior = law.build_prior(others, [t for j, t in enumerate(thetas) if j != i])
        sweep = law.SweepFit(alpha=alpha, sigma=float(np.median(sds)), prior=prior, scale=1.0, n_curves=len(others))
        for cut in law.CUTOFFS:
            part = curve.upto(cut)
            if len(part.steps) == 0:
                continue
            f = law.forecast(part, sweep)
            raw[cut].append((i, f.loss, f.sd))
    out: dict[float, list[tuple[float, float, bool]]] = {}
    for cut, rows in raw.items():
        z = {i: abs(curves[i].final_loss - m) / sd for i, m, sd in rows}
        results = []
        for i, m, sd in rows:
            others = [v for j, v in z.items() if j != i]  # the multiplier from the other runs only
            scale = max(float(np.quantile(others, 0.9)) / law.Z90, 1.0)
            truth = curves[i].final_loss
            results.append((abs(m - truth) / truth, z[i], abs(m - truth) <= law.Z90 * scale * sd))
        out[cut] = results
    return out


def _sse(curve: law.Curve, alpha: float) -> float:
    steps, loss = law.fit_points(curve)
    return law._lsq(law.design(curve, alpha=alpha, steps=steps), loss)[1]  # noqa: SLF001


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every fourth run only (seconds)")
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args(argv)
    if not args.csv.exists():
        print(f"--csv {args.csv} does not exist (the reference data lives in ../shared/reference/).", file=sys.stderr)
        return 2
    start = time.perf_counter()
    curves = load_curves(args.csv)
    if args.smoke:
        curves = curves[::4]
    results = held_out(curves)
    print(f"misfitting forecast benchmark: {len(curves)} runs held out one at a time "
          f"(Tissue et al. 2024 law, cosine warmup {WARMUP_STEPS} steps to {END_LR_RATIO} x peak)")
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
