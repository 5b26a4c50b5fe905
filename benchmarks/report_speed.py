"""Speed of the frontier report on a large sweep: 1,000 runs with training curves, fitted, then reported.

    python benchmarks/report_speed.py            # 1,000 runs (10 budgets x 100 sizes), 10-point curves
    python benchmarks/report_speed.py --smoke    # seconds: 60 runs (4 budgets x 15 sizes), 50 resamples

Data: a surrogate-like sweep in the MLflow runs-table schema, generated in memory from the Chinchilla law
L = 1.69 + 406.4 / N^0.34 + 410.7 / D^0.28 (Hoffmann et al. 2022) with 0.5% log-normal noise; each budget's
sizes are log-spaced over a factor 16 around its N_opt, D = C / (6 N); 2% of runs diverged or ran out of
memory (so the report has failures to list); each run logs 10 curve points with D replaced by the tokens
seen so far. The report's floor is 30 s (the fit's own speed is benchmarks/fit_speed.py's business, but its
time is printed too).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Single-threaded BLAS, as in fit_speed.py: tiny matrix products on a shared 2-core machine.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.fitting.options import FitConfig
from orchestrator.fitting.run import run_fit

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
FLOOR_S = 30.0


def law(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    return E + A / N ** ALPHA + B / D ** BETA


def sweep(*, budgets: int, sizes: int, points: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A runs table (sweep schema) and per-step curves, as orchestrator.runs would read them from MLflow."""
    rng = np.random.default_rng(seed)
    G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    rows, curves = [], []
    for C in np.geomspace(1e18, 3e21, budgets):
        centre = G * (C / 6) ** (BETA / (ALPHA + BETA))
        for j, N in enumerate(np.geomspace(centre / 4, centre * 4, sizes)):
            D = C / (6 * N)
            tid = f"b{C:.2g}-n{j}"
            status = rng.choice(["finished", "diverged", "oom"], p=[0.98, 0.01, 0.01])
            loss = law(N, D) * np.exp(rng.normal(0, 0.005)) if status == "finished" else np.nan
            rows.append({"trial_id": tid, "sweep": "bench", "status": status, "seed": 0, "budget": C,
                         "dataset": "synthetic", "N_total": N, "N_nonembed": 0.9 * N, "D": D, "C_exact": C,
                         "C_6ND": 6 * N * D, "final_eval_loss": loss, "final_train_loss": loss,
                         "eval_loss_se": 0.005, "wall_s": C / 1e17, "entropy_floor": E, "lr": 3e-3,
                         "schedule": "cosine", "run_id": tid, "attempt": 1, "device": "cuda"})
            if status != "finished":
                continue
            for step, t in enumerate(np.linspace(D / points, D, points), start=1):
                curve = law(N, t) * np.exp(rng.normal(0, 0.003))
                curves.append({"trial_id": tid, "step": step, "tokens": t, "flops": 6 * N * t,
                               "train_loss": curve, "eval_loss": curve, "lr": 3e-3})
    return pd.DataFrame(rows), pd.DataFrame(curves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="finish in seconds (60 runs, 50 resamples)")
    parser.add_argument("--bootstrap", type=int, default=None, help="resamples (default 1000; smoke 50)")
    parser.add_argument("--out", default=None, help="report folder (default: a temporary folder)")
    args = parser.parse_args()
    budgets, sizes, points = (4, 15, 5) if args.smoke else (10, 100, 10)
    resamples = args.bootstrap if args.bootstrap is not None else (50 if args.smoke else 1000)
    runs, curves = sweep(budgets=budgets, sizes=sizes, points=points)
    print(f"data: {len(runs)} runs ({(runs['status'] == 'finished').sum()} finished), {len(curves)} curve points; "
          f"{resamples} bootstrap resamples")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        t0 = time.perf_counter()
        fit = run_fit(FitConfig(bootstrap=resamples), table=runs, curves=curves, name="bench", out_dir=str(out))
        t1 = time.perf_counter()
        from orchestrator.report import write_report

        files = write_report(fit, runs=runs, curves=curves, out_dir=out)
        t2 = time.perf_counter()
        size = sum(f.stat().st_size for f in files)
        print(f"fit          : {t1 - t0:8.2f} s")
        print(f"report       : {t2 - t1:8.2f} s ({len(files)} files, {size / 1e6:.1f} MB, index.html "
              f"{(out / 'index.html').stat().st_size / 1e6:.1f} MB)")
        print(f"total        : {t2 - t0:8.2f} s")
        verdict = "ok" if t2 - t1 <= FLOOR_S else "MISSED"
        print(f"floor        : report <= {FLOOR_S:.0f} s for {len(runs)} runs: {verdict}"
              + (" (smoke: not the 1,000-run benchmark)" if args.smoke else ""))


if __name__ == "__main__":
    main()
