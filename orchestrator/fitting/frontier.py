"""Derived answers: compute-optimal N, D, tokens per parameter and loss at target budgets; method agreement;
leave-largest-budget-out validation.

Every method's fit exposes `frontier(C, compute=...) -> (N_opt, D_opt)` and `loss_at(C, compute=...)`, where
`compute` is the fit's one compute model (fitting/compute.py): each recommended (N_opt, D_opt) costs exactly C
under it. `ShapeOf`, when the caller knows the sweep's shape rule, names the shape to train for N_opt and the
tokens that make that shape cost C under exact accounting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd

from orchestrator.fitting.bootstrap import budget_key
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.isoflop import fit_profile
from orchestrator.fitting.result import MethodResult

# Agreement thresholds between approach 3 and its cross-check: relative for E, alpha, beta and N_opt,
# absolute for the allocation exponents a and b (their published bootstrap SE is ~0.02).
REL_TOL, EXP_TOL = 0.10, 0.03

ShapeOf = Callable[[float, float], dict]
"""shape_of(N_opt, C) -> {n_layer, d_model, n_head, N, D, C_exact, ...}: the shape rule's model for N_opt and
the tokens at which it costs C (exact accounting)."""


class Frontier(Protocol):
    def frontier(self, C: np.ndarray | float, *, compute: ComputeModel) -> tuple[np.ndarray, np.ndarray]: ...

    def loss_at(self, C: np.ndarray | float, *, compute: ComputeModel) -> np.ndarray: ...


def predictions(fit: Frontier, budgets: list[float], *, compute: ComputeModel,
                shape_of: ShapeOf | None = None) -> dict[str, dict]:
    """budget key -> {C, N_opt, D_opt, tokens_per_param, loss[, shape]} at each budget."""
    out = {}
    C = np.asarray(budgets, dtype=float)
    N, D = fit.frontier(C, compute=compute)
    L = fit.loss_at(C, compute=compute)
    for c, n, d, loss in zip(C, np.atleast_1d(N), np.atleast_1d(D), np.atleast_1d(L)):
        row = {"C": float(c), "N_opt": float(n), "D_opt": float(d), "tokens_per_param": float(d / n),
               "loss": float(loss)}
        if shape_of is not None and np.isfinite(n) and n > 0:
            row["shape"] = shape_of(float(n), float(c))
        out[budget_key(c)] = row
    return out


def compare_fits(reference: MethodResult, other: MethodResult) -> dict:
    """Where two methods' results disagree: per quantity both values and the difference.

    Flags a quantity when E, alpha, beta or N_opt differ by more than REL_TOL relative, or a, b by more than
    EXP_TOL absolute; `disagree` lists the flagged names (N_opt per budget as 'N_opt@<budget>').
    """
    rows, flagged = {}, []
    for q in ("E", "alpha", "beta", "a", "b"):
        x, y = reference.law(q), other.law(q)
        if x is not None and y is not None:
            diff = y - x
            rows[q] = {"reference": x, "other": y, "diff": diff, "rel_diff": diff / x if x else float("nan")}
            if (q in ("a", "b") and abs(diff) > EXP_TOL) or (q not in ("a", "b") and abs(diff) > REL_TOL * abs(x)):
                flagged.append(q)
    for c, pr in (reference.predictions or {}).items():
        po = (other.predictions or {}).get(c)
        if po:
            # A degenerate fit (an exponent at its bound) can put N_opt at 0: that is a disagreement.
            ratio = po["N_opt"] / pr["N_opt"] if pr["N_opt"] > 0 else float("inf")
            rows[f"N_opt@{c}"] = {"reference": pr["N_opt"], "other": po["N_opt"], "ratio": ratio}
            if not abs(ratio - 1) <= REL_TOL:
                flagged.append(f"N_opt@{c}")
    return {"quantities": rows, "disagree": flagged}


def observed_at_budget(runs: pd.DataFrame, *, budget: float, compute: ComputeModel, gamma: float = 0.0) -> dict:
    """What the runs at one budget show: N_opt, D_opt and the minimum loss from its (corrected) parabola's vertex
    when the vertex is bracketed (`bracketed` true), else the best run's N and loss (`bracketed` false: then the
    best run is an upper bound on the minimum, not the minimum, and must not be compared with a predicted L_opt)."""
    at = runs.loc[runs["budget"] == budget]
    best = at.loc[at["loss"].idxmin()]
    out = {"budget": float(budget), "n_runs": len(at), "best_loss": float(best["loss"]),
           "N_opt": float(best["N"]), "D_opt": float(best["D"]), "N_opt_source": "best run", "bracketed": False}
    try:
        prof = fit_profile(at["N"].to_numpy(float), at["D"].to_numpy(float), at["loss"].to_numpy(float),
                           budget=budget, compute=compute, gamma=gamma)
        if not prof.edge:
            out.update(N_opt=prof.N_opt, D_opt=prof.D_opt, best_loss=prof.L_opt, N_opt_source="parabola vertex",
                       bracketed=True, coef=list(prof.coef))
    except FitInputError:
        pass
    return out


def holdout_score(fit: object, *, observed: dict, held: pd.DataFrame, baseline_loss: float,
                  compute: ComputeModel) -> dict:
    """One refitted law against the held-out budget, like with like (Hoffmann et al. 2022 validate approach 3 by
    its predictions; Besiroglu et al. 2024 warn that a best sampled run is not a minimum):
    - bracketed minimum: the predicted L_opt against the fitted vertex's L_opt, and the predicted N_opt against
      the vertex's (`N_opt_ratio`, scored);
    - otherwise, a law that predicts any (N, D) (`fit.loss`) is scored run by run: each held-out run's loss
      against the law at that run's N and D (`loss_rel_error` is the root-mean-square relative error, signed by
      the mean error); a frontier-only law cannot be scored and is skipped.
    `baseline_rel_error` is the error of the "no improvement" predictor, which says the held-out budget's best
    loss is the best loss of the training budgets (`baseline_loss`): the improvement the extra compute bought, the
    signal a law must predict (scored on the best run, not run by run: an off-optimal run's loss lies far above
    any frontier, which would make "no improvement" look bad and any law look good)."""
    top = observed["budget"]
    n_pred, d_pred = (float(v) for v in fit.frontier(top, compute=compute))
    l_pred = float(fit.loss_at(top, compute=compute))
    row = {"status": "ok", "predicted_best_loss": l_pred, "predicted_N_opt": n_pred, "predicted_D_opt": d_pred,
           "N_opt_ratio": n_pred / observed["N_opt"], "D_opt_ratio": d_pred / observed["D_opt"]}
    if observed["bracketed"]:
        L = observed["best_loss"]
        row.update(kind="minimum", loss_error=l_pred - L, loss_rel_error=(l_pred - L) / L,
                   baseline_rel_error=abs(baseline_loss - L) / L, n_scored=1)
        c0, c1, c2 = observed["coef"]
        x = np.log(n_pred)  # the held-out profile's loss at the predicted allocation, against its minimum
        row["regret_rel"] = float((c0 + c1 * x + c2 * x * x) / L - 1)
        return row
    if not hasattr(fit, "loss"):
        return {"status": "skipped", "reason": "predicts only the frontier, and the held-out budget's minimum is not "
                                               "bracketed, so nothing like a minimum was observed to compare with"}
    obs = held["loss"].to_numpy(float)
    # A law form that reads more than N and D (unique tokens: fitting/forms.py) predicts from the runs themselves.
    predicted = fit.predict_runs(held) if hasattr(fit, "predict_runs") else fit.loss(held["N"].to_numpy(float),
                                                                                      held["D"].to_numpy(float))
    rel = np.asarray(predicted, float) / obs - 1
    rms = float(np.sqrt(np.mean(rel ** 2)))
    row.update(kind="runs", loss_error=float(np.mean(rel * obs)), loss_rel_error=float(np.copysign(rms, rel.mean())),
               baseline_rel_error=float(abs(baseline_loss / obs.min() - 1)), n_scored=len(obs))
    return row
