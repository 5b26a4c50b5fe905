"""Leave-largest-budget-out: each method refitted without the largest budget's runs, scored on that budget.

Hoffmann et al. (2022) validate approach 3 by its predictions; this is the same test one budget ahead, for every
method that can refit (fitting/methods.py: each record's `refit`), scored like with like by
fitting/frontier.holdout_score against the "no improvement" predictor.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from orchestrator.fitting import methods as registry
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.frontier import holdout_score, observed_at_budget
from orchestrator.fitting.methods import HeldOut


def leave_largest_budget_out(runs: pd.DataFrame, *, methods: list[str],
                             compute_for: Callable[[pd.DataFrame], ComputeModel],
                             delta: float, points: pd.DataFrame | None = None, gamma: float = 0.0,
                             fixed_E: float | None = None, extra: dict[str, Callable] | None = None) -> dict:
    """Refit each method without the largest budget's runs and score its prediction of that budget
    (`holdout_score`: like with like, against the "no improvement" baseline).

    The compute model is rebuilt from the remaining runs (`compute_for`: a CSV's smooth k(N) must not see the
    held-out runs; a sweep's shape rule does not depend on them). The observed minimum is the held-out
    profile's parabola vertex when it is bracketed (its runs moved onto the compute model with the full fit's
    dL/dlnD `gamma`). `extra`: more fitters, name -> f(N, D, L, rest) (the law forms of fitting/forms.py).
    """
    budgets = np.unique(runs["budget"].dropna())
    if len(budgets) < 2:
        raise FitInputError(f"leave-largest-budget-out needs at least 2 budgets, found {len(budgets)}.")
    top = float(budgets.max())
    rest = runs.loc[runs["budget"] != top]
    held_runs = runs.loc[runs["budget"] == top]
    compute = compute_for(rest)
    observed = observed_at_budget(runs, budget=top, compute=compute, gamma=gamma)
    baseline_loss = float(rest["loss"].min())
    N, D, L = (rest[c].to_numpy(float) for c in ("N", "D", "loss"))
    out: dict = {"budget": top, "observed": observed, "baseline_loss": baseline_loss, "methods": {}}
    held = HeldOut(N=N, D=D, L=L, rest=rest, compute=compute, delta=delta, fixed_E=fixed_E, points=points,
                   held_ids=frozenset(held_runs["trial_id"].astype(str)))
    refits = {name: registry.get(name).refit for name in methods}
    fitters = {name: (lambda refit=refit: refit(held)) for name, refit in refits.items() if refit is not None}
    for name, fitter in (extra or {}).items():
        fitters[name] = lambda fitter=fitter: fitter(N, D, L, rest)
    for name in [*methods, *(extra or {})]:
        if name not in fitters:
            continue
        try:
            fit = fitters[name]()
        except FitInputError as err:
            out["methods"][name] = {"status": "skipped", "reason": str(err)}
            continue
        if fit is None:  # the method cannot refit here (no known floor, no training curves)
            continue
        out["methods"][name] = holdout_score(fit, observed=observed, held=held_runs, baseline_loss=baseline_loss,
                                             compute=compute)
    return out
