"""Speed of the approach-3 fit: a plain scipy loop over the 4500 Hoffmann starts vs orchestrator.fitting.

    python benchmarks/fit_speed.py            # full: 4500-start scipy loop (about a minute), ours, 1000-resample bootstrap
    python benchmarks/fit_speed.py --smoke    # seconds: 20 loop starts (time extrapolated), ours, 50 resamples

Data: the Epoch extraction of Chinchilla's runs (../shared/reference/, 5 highest losses dropped, n = 240);
when that file is absent, runs simulated from the Chinchilla law. The plain loop is what most analyses do:
scipy.optimize.minimize(L-BFGS-B) from each start with the analytic gradient of the summed log-space
Huber loss, keeping the best. Prints wall and CPU seconds, the ratio, and both optima.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Both contenders run with single-threaded BLAS: their matrix products are tiny, and on a shared 2-core
# machine OpenBLAS threads spin against each other (a 240-point L-BFGS-B run gets ~20x slower).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np
import pandas as pd
from scipy.optimize import minimize

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.fitting.bootstrap import resample_weights
from orchestrator.fitting.surface import fit_surface, fit_surface_resamples, hoffmann_grid

EPOCH = REPO.parent / "shared" / "reference" / "epoch_chinchilla_svg_extracted_data.csv"
DELTA = 1e-3


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    if EPOCH.is_file():
        df = pd.read_csv(EPOCH).sort_values("loss").iloc[:-5]
        N = df["Model Size"].to_numpy(float)
        return N, df["Training FLOP"].to_numpy(float) / (6 * N), df["loss"].to_numpy(float), "Epoch (n=240)"
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(5e7), np.log(1.6e10), 240))
    D = np.exp(rng.uniform(np.log(1e9), np.log(5e11), 240))
    L = (1.69 + 406.4 / N ** 0.34 + 410.7 / D ** 0.28) * np.exp(rng.normal(0, 0.01, 240))
    return N, D, L, "simulated Chinchilla law (n=240)"


def plain_loop(N: np.ndarray, D: np.ndarray, L: np.ndarray, starts: np.ndarray) -> tuple[float, np.ndarray]:
    """One scipy L-BFGS-B run per start (a, b, e, alpha, beta), analytic gradient; the best objective wins."""
    lN, lD, y = np.log(N), np.log(D), np.log(L)

    def fg(p: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, e, alpha, beta = p
        with np.errstate(all="ignore"):
            t1, t2, t3 = np.exp(a - alpha * lN), np.exp(b - beta * lD), np.exp(e)
            s = t1 + t2 + t3
            r = np.log(s) - y
            hp = np.clip(r, -DELTA, DELTA)
            f = float(np.sum(hp * (r - 0.5 * hp)))
            g = np.array([hp @ (t1 / s), hp @ (t2 / s), hp @ (t3 / s), -(hp * t1 / s) @ lN, -(hp * t2 / s) @ lD])
        return (f, g) if np.isfinite(f) and np.isfinite(g).all() else (np.inf, np.zeros(5))

    best_f, best_x = np.inf, None
    for p0 in starts:
        res = minimize(fg, p0, jac=True, method="L-BFGS-B")
        if res.fun < best_f:
            best_f, best_x = res.fun, res.x
    return best_f, best_x


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="finish in seconds (extrapolates the scipy loop)")
    parser.add_argument("--resamples", type=int, default=None)
    args = parser.parse_args()
    N, D, L, label = load()
    grid = hoffmann_grid()
    loop_starts = grid[np.linspace(0, len(grid) - 1, 20).astype(int)] if args.smoke else grid
    resamples = args.resamples or (50 if args.smoke else 1000)
    print(f"data: {label}; Huber delta {DELTA}, {len(grid)} starts")

    (loop_f, loop_x), loop_wall, loop_cpu = timed(lambda: plain_loop(N, D, L, loop_starts))
    scale = len(grid) / len(loop_starts)
    note = f" (extrapolated from {len(loop_starts)} starts)" if scale > 1 else ""
    print(f"scipy loop   : {loop_wall * scale:8.2f} s wall, {loop_cpu * scale:8.2f} s CPU{note}; "
          f"objective {loop_f:.10g}, alpha {loop_x[3]:.4f}, beta {loop_x[4]:.4f}")

    runs = [timed(lambda: fit_surface(N, D, L, delta=DELTA)) for _ in range(1 if args.smoke else 3)]
    fit, ours_wall, ours_cpu = min(runs, key=lambda t: t[1])
    print(f"ours (4500)  : {ours_wall:8.2f} s wall, {ours_cpu:8.2f} s CPU (best of {len(runs)}); "
          f"objective {fit.objective:.10g}, alpha {fit.alpha:.4f}, beta {fit.beta:.4f}, E {fit.E:.4f}, a {fit.a:.4f}")
    print(f"speed-up     : {loop_wall * scale / ours_wall:8.1f}x wall, {loop_cpu * scale / ours_cpu:.1f}x CPU")

    weights = resample_weights(len(L), resamples=resamples, seed=0)
    starts = np.vstack([fit.natural(), np.array(fit.basin_starts)])
    (params, _, converged), boot_wall, boot_cpu = timed(
        lambda: fit_surface_resamples(N, D, L, weights=weights, starts=starts, delta=DELTA))
    lo, hi = np.percentile(params[:, 3], [2.5, 97.5]), np.percentile(params[:, 4], [2.5, 97.5])
    print(f"bootstrap    : {boot_wall:8.2f} s wall, {boot_cpu:8.2f} s CPU for {resamples} resamples; "
          f"95% CI alpha [{lo[0]:.3f}, {lo[1]:.3f}], beta [{hi[0]:.3f}, {hi[1]:.3f}]")
    if not args.smoke:
        print(f"floors       : fit <= 3 s: {'ok' if ours_wall <= 3 else 'MISSED'}; "
              f"1000-resample bootstrap <= 30 s: {'ok' if boot_wall <= 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
