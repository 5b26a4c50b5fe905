"""The hparams law of the Step Law runs (Li et al. 2025): lr*(N, D) and B*(D) fitted from a table of runs by the
same code a pilot uses (orchestrator/fitting/hparams_law.py), with bootstrap intervals, the published law beside
it, a leave-largest-size-out check and the law's prediction beyond the table.

Reads ../shared/reference/scalebench_lr_bsz_train.csv (2702 runs: lr, bsz in sequences, data_size tokens,
non_embedding_param_size, lm_loss over 41 cells of N 60M..1.07B and D 2e9..1e11). Prints:
  - the fitted exponents alpha, beta (lr* = k N^alpha D^beta) and gamma (B* = k_B D^gamma, B in sequences) with
    95% intervals, and the published ones (Li et al. 2025, eq. 4 and 5: eta* = 1.79 N^-0.713 D^0.307,
    B* = 0.58 D^0.571, their N non-embedding and B in tokens);
  - fitted without the largest size (1.07B), its predicted lr* and B* at that size's cells against those cells'
    own optima (the check a held-out set makes, on data we have);
  - the prediction at N = 2x and D = 2x the largest in the table, with its interval.

    python benchmarks/pilot_hparams_law.py [--csv PATH] [--resamples 1000] [--smoke]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestrator.fitting.hparams_law import cell_optima, fit_hparams_law

CSV = REPO.parent / "shared" / "reference" / "scalebench_lr_bsz_train.csv"
PUBLISHED = {"alpha": -0.713, "beta": 0.307, "gamma": 0.571}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", type=Path, default=CSV)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="100 resamples (seconds)")
    args = parser.parse_args()
    if not args.csv.is_file():
        print(f"no table at {args.csv}: give --csv PATH (the reference data lives in ../shared/reference/)")
        return 2
    resamples = 100 if args.smoke else args.resamples
    t = pd.read_csv(args.csv)
    N, D, lr, bsz, loss = (t[c].to_numpy(float) for c in ("non_embedding_param_size", "data_size", "lr", "bsz",
                                                            "lm_loss"))
    t0 = time.perf_counter()
    law, optima = fit_hparams_law(N, D, lr, bsz, loss, n_resamples=resamples, seed=0)
    seconds = time.perf_counter() - t0
    hows = pd.Series([c.how for c in optima]).value_counts().to_dict()
    print(f"{args.csv.name}: {len(t)} runs, {len(optima)} cells (optimum per cell: {hows}); fit + {resamples} "
          f"resamples ({law.resampling}) in {seconds:.1f} s")
    print(f"{'':8s} {'fitted':>8s} {'95% interval':>18s} {'published':>10s}")
    for name, value, ci in (("alpha", law.alpha, law.alpha_ci), ("beta", law.beta, law.beta_ci),
                            ("gamma", law.gamma, law.gamma_ci)):
        print(f"{name:8s} {value:8.3f} {ci.lo:8.3f} .. {ci.hi:6.3f} {PUBLISHED[name]:10.3f}")
    print(f"lr*(N, D) = {law.k_lr:.4g} N^{law.alpha:.3f} D^{law.beta:.3f}; B*(D) = {law.k_B:.4g} D^{law.gamma:.3f} "
          f"sequences; cells scatter {100 * law.lr_rmse:.0f}% (lr*) and {100 * law.batch_rmse:.0f}% (B*) about it")

    largest = N.max()
    keep = N < largest
    held, _ = fit_hparams_law(N[keep], D[keep], lr[keep], bsz[keep], loss[keep], n_resamples=0)
    print(f"fitted without N={largest:.3g}, predicting its cells:")
    for c in cell_optima(N[~keep], D[~keep], lr[~keep], bsz[~keep], loss[~keep]):
        p_lr, p_b = float(held.lr(N=c.N, D=c.D)), float(held.batch(D=c.D))
        print(f"  D={c.D:.3g}: lr* {c.lr_opt:.3g} predicted {p_lr:.3g} ({p_lr / c.lr_opt:.2f}x); "
              f"B* {c.batch_opt:.4g} predicted {p_b:.4g} ({p_b / c.batch_opt:.2f}x)")

    n_new, d_new = 2 * largest, 2 * D.max()
    pr = law.predict(N=n_new, D=d_new)
    print(f"prediction at N={n_new:.3g}, D={d_new:.3g} (beyond the table): lr* = {pr.lr:.3g} "
          f"(95% {pr.lr_ci.lo:.3g} .. {pr.lr_ci.hi:.3g}), B* = {pr.batch:.0f} sequences "
          f"(95% {pr.batch_ci.lo:.0f} .. {pr.batch_ci.hi:.0f})")
    published = 1.79 * n_new ** -0.713 * d_new ** 0.307
    inside = "inside" if pr.lr_ci.lo <= published <= pr.lr_ci.hi else "outside"
    print(f"  the published law there: lr* = {published:.3g} ({inside} our interval)")
    return 0 if all(math.isfinite(v) for v in (law.alpha, law.beta, law.gamma)) else 1


if __name__ == "__main__":
    sys.exit(main())
