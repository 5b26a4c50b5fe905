"""The fitting stage on published scaling-law data: law forms by held-out error, and what the checks say.

    python benchmarks/published_laws.py            # every dataset, bootstrap 200 on Llama 3
    python benchmarks/published_laws.py --smoke    # seconds: Gadre and Llama 3 only, no bootstrap

Reads ../shared/reference/ (SOURCES.md); datasets whose file is absent are skipped with a line saying so.
Prints, per dataset, what its paper found beside what we find:
- Gadre et al. 2024 (RedPajama, C4 eval): the one-exponent "over-trained" form fitted on their 5-run fit set
  (11M..411M at 20 tokens per parameter, 11M at 320) predicting the 6.9B run (theirs: 0.73% error);
- Muennighoff et al. 2023: their eq. 5 fit by their procedure (base law fixed at their C4 law, R*_D and R*_N by
  L-BFGS from their grid) beside the published R*_D = 15.387 and R*_N = 5.309, the lowest minimum of the same
  objective from a wide grid of starts, the registry's form (base from the single-epoch runs), every form's
  held-out error;
- Farseer (Li et al. 2025) and the Epoch refit of Chinchilla: every form's held-out error, the winner;
- Llama 3 (Meta 2024, Fig. 2 digitised): the checks' verdicts, the N_opt of each estimator at the 3.8e25 FLOPs
  flagship budget (Meta: 402B parameters).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.forms import (DATA_CONSTRAINED, MUENNIGHOFF_C4_BASE, OVERTRAINED, FormData,
                                        compare_forms, fit_data_constrained, fit_form)
from orchestrator.fitting.options import ColumnMap, FitConfig
from orchestrator.fitting.run import run_fit
from orchestrator.fitting.table import tidy_runs

REFERENCE = REPO.parent / "shared" / "reference"
SIX = ComputeModel.constant(6.0)


def present(name: str) -> Path | None:
    path = REFERENCE / name
    if not path.is_file():
        print(f"{name}: not found in {REFERENCE}, skipped")
        return None
    return path


def gadre() -> None:
    path = present("gadre2024_mlfoundations_scaling_losses_flat.csv")
    if path is None:
        return
    g = pd.read_csv(path)
    rpj = g[(g["dataset"] == "rpj") & (g["val_set"] == "c4_val")]
    M = rpj["tokens"] / rpj["params"]
    fit_set = rpj[((rpj["params"] < 5e8) & np.isclose(M, 20, rtol=0.02))
                  | ((rpj["params"] < 2e7) & np.isclose(M, 320, rtol=0.02))]
    fit = fit_form(OVERTRAINED, FormData.of(fit_set["params"], fit_set["tokens"]), fit_set["loss"].to_numpy(float))
    print(f"Gadre et al. 2024, RedPajama -> C4 eval: over-trained form on {len(fit_set)} runs: "
          + ", ".join(f"{k} {v:.4g}" for k, v in fit.values.items()))
    for _, run in rpj[rpj["params"] > 1e9].sort_values(["params", "tokens"]).iterrows():
        pred = float(fit.loss(run["params"], run["tokens"]))
        print(f"  N {run['params']:.3g}, D {run['tokens']:.3g} (M = {run['tokens'] / run['params']:.0f}): predicted "
              f"{pred:.4f}, observed {run['loss']:.4f}, error {pred / run['loss'] - 1:+.2%}"
              + ("  (Gadre et al.: 0.73%)" if run["params"] > 5e9 else ""))


def muennighoff() -> None:
    path = present("scalebench_data_constrained_train.csv")
    if path is None:
        return
    d = pd.read_csv(path)
    x, L = FormData.of(d["params"], d["tokens"], d["unique_tokens"]), d["loss"].to_numpy(float)
    pub = {"R_D_star": 15.387, "R_N_star": 5.309}  # Muennighoff et al. 2023, on their 182 runs
    paper = fit_data_constrained(x, L, base=MUENNIGHOFF_C4_BASE)
    print(f"Muennighoff et al. 2023, eq. 5 by their procedure on {len(d)} runs (base: {MUENNIGHOFF_C4_BASE.source}; "
          "R*_D, R*_N by L-BFGS from their 3 x 3 grid):")
    print("  " + ", ".join(f"{k} {paper.values[k]:.4g} (published {v}, ratio {paper.values[k] / v:.3f})"
                           for k, v in pub.items()) + f"; objective {paper.objective:.8f}")
    theta = np.array([paper.theta])
    theta[0, 5:] = np.log(list(pub.values()))
    r = DATA_CONSTRAINED.log_loss(theta, x)[0] - np.log(L)
    at_pub = float(np.where(np.abs(r) <= 1e-3, 0.5 * r * r, 1e-3 * (np.abs(r) - 5e-4)).sum())
    print(f"  objective at the published values {at_pub:.8f} ({at_pub / paper.objective - 1:+.3%})")
    wide = np.array([(a, b) for a in np.geomspace(1, 1000, 10) for b in np.geomspace(0.3, 100, 8)])
    low = fit_data_constrained(x, L, base=MUENNIGHOFF_C4_BASE, starts=wide)
    print(f"  lowest minimum from {len(wide)} starts (R*_D 1..1000, R*_N 0.3..100): "
          f"R*_D {low.values['R_D_star']:.4g}, R*_N {low.values['R_N_star']:.4g}, objective {low.objective:.8f} ({low.objective / paper.objective - 1:+.3%})")
    own = fit_form(DATA_CONSTRAINED, x, L)
    print(f"  the registry's form ({own.note}): R*_D {own.values['R_D_star']:.4g}, R*_N {own.values['R_N_star']:.4g}, "
          f"alpha {own.values['alpha']:.3f}, beta {own.values['beta']:.3f}, objective {own.objective:.8f}"
          + (f"; on a bound: {', '.join(own.on_bound)}" if own.on_bound else ""))


def forms_on(name: str, file: str, columns: dict, extra: str = "") -> None:
    path = present(file)
    if path is None:
        return
    runs = tidy_runs(pd.read_csv(path), options=FitConfig(c_convention="6nd", columns=columns)).runs
    out = compare_forms(runs, compute_for=lambda r: SIX)
    print(f"{name} ({len(runs)} runs): held out {out['held_out']}; predicting no improvement "
          f"{out['baseline_rel_error']:.2%}")
    for form, e in out["forms"].items():
        h = e.get("holdout", {})
        if "rel_error" in h:
            print(f"  {form:<17} RMS error {h['rel_error']:.2%}" + ("  <- best" if form == out["winner"] else ""))
        else:
            print(f"  {form:<17} {e.get('reason') or h.get('reason')}")
    if "runner_up" in out:
        print(f"  winner {out['winner']}: {out['margin']:.3g}x less held-out error than {out['runner_up']}")
    if extra == "muennighoff" and out["forms"]["data_constrained"]["status"] == "ok":
        p = out["forms"]["data_constrained"]["params"]
        print(f"  data-constrained (all runs): R*_D {p['R_D_star']:.4g}, R*_N {p['R_N_star']:.4g}")


def llama(bootstrap: int) -> None:
    path = present("llama3_isoflops_points_extracted.csv")
    if path is None:
        return
    columns = ColumnMap(n_params=None, tokens="training_tokens", flops="compute_budget", budget="compute_budget",
                        loss="validation_loss")
    with tempfile.TemporaryDirectory() as tmp:
        report = run_fit(FitConfig(runs_csv=str(path), columns=columns, c_convention="6nd", bootstrap=bootstrap,
                                   target_budgets=[3.8e25], forms=[]), out_dir=tmp)
    r = report.result
    print("Llama 3 IsoFLOPs: N_opt at 3.8e25 FLOPs (Meta: 4.02e11): "
          + ", ".join(f"{m} {r[m]['predictions']['3.8e+25']['N_opt']:.3g}" for m in ("parametric", "vpnls", "isoflop")
                      if r.get(m, {}).get("status") == "ok"))
    for c in r["checks"]:
        print(f"  [{c['status']}] {c['name']}: {c['detail'][:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="Gadre and Llama 3 only, no bootstrap")
    args = parser.parse_args()
    gadre()
    llama(0 if args.smoke else 200)
    if args.smoke:
        return
    muennighoff()
    forms_on("Muennighoff et al. 2023", "scalebench_data_constrained_train.csv",
             {"n_params": "params", "tokens": "tokens", "flops": None}, extra="muennighoff")
    forms_on("Farseer (Li et al. 2025)", "scalebench_farseer_train.csv", {"n_params": "N", "tokens": "D", "flops": None})
    forms_on("Epoch refit of Chinchilla", "epoch_chinchilla_svg_extracted_data.csv",
             {"n_params": "Model Size", "tokens": None, "flops": "Training FLOP"})


if __name__ == "__main__":
    main()
