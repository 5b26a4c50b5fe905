"""The tuned learning-rate law handed to other sweeps (sweep.lr_from): a power law of N, D or C."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.search.tuned import SizeBest, fit_lr_law


def _best(N: float, D: float, C: float, lr: float) -> SizeBest:
    return SizeBest(study=f"s/{N:g}", N_total=N, lr_opt=lr, lr_best_trial=lr, loss_best_trial=3.0, how="vertex",
                    n_finished=5, n_pruned=0, flops=0.0, tokens=D, compute=C)


def test_law_of_compute_recovers_a_planted_exponent_and_is_applied_by_compute():
    # DeepSeek LLM (2024): eta_opt = 0.3118 C^-0.125; points at 4 budgets, sizes and tokens varying with them.
    Cs = np.geomspace(1e17, 1e20, 4)
    best = [_best(N=1e7 * (C / 1e17) ** 0.5, D=C / (6e7 * (C / 1e17) ** 0.5), C=C, lr=0.3118 * C ** -0.125)
            for C in Cs]
    law = fit_lr_law(best, of="C")
    assert law.of == "C" and law.p == pytest.approx(-0.125) and law.k == pytest.approx(0.3118, rel=1e-6)
    assert law(N=1.0, D=1.0, C=1e21) == pytest.approx(0.3118 * 1e21 ** -0.125)
    assert law.p_lo <= -0.125 <= law.p_hi
    # The same points fitted against N give another exponent (N grows as C^0.5): the choice matters.
    assert fit_lr_law(best, of="N").p == pytest.approx(-0.25)


def test_one_point_is_a_constant_rate():
    law = fit_lr_law([_best(N=1e5, D=1e7, C=1e13, lr=3e-3)], of="D")
    assert law.p == 0.0 and law(N=7.0, D=8.0, C=9.0) == pytest.approx(3e-3) and math.isnan(law.p_lo)


def test_a_search_that_did_not_record_the_variable_says_so():
    with pytest.raises(ValueError, match="search.lr_law_of=C: the search's points do not record C"):
        fit_lr_law([_best(N=1e5, D=1e7, C=math.nan, lr=3e-3), _best(N=2e5, D=1e7, C=math.nan, lr=2e-3)], of="C")
