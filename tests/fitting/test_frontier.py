"""Derived answers: predictions at budgets, agreement between methods, leave-largest-budget-out errors."""

from __future__ import annotations

import pytest

from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.frontier import compare_fits, predictions
from orchestrator.fitting.holdout import leave_largest_budget_out
from orchestrator.fitting.result import MethodResult, MethodStatus
from orchestrator.fitting.surface import fit_surface
from orchestrator.fitting.table import tidy_runs
from orchestrator.fitting.options import FitConfig

SIX = ComputeModel.constant(6.0)


def test_predictions_follow_the_closed_form_frontier(sim):
    law = sim.Law()
    df = sim.isoflop(law, noise=0.0, budgets=(1e18, 1e19, 1e20, 1e21))
    fit = fit_surface(df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy())
    pred = predictions(fit, [1e23], compute=SIX)["1e+23"]
    assert pred["N_opt"] == pytest.approx(law.n_opt(1e23), rel=1e-3)
    assert pred["D_opt"] * pred["N_opt"] * 6 == pytest.approx(1e23, rel=1e-9)
    assert pred["tokens_per_param"] == pytest.approx(pred["D_opt"] / pred["N_opt"])
    assert pred["loss"] == pytest.approx(float(law.loss(pred["N_opt"], pred["D_opt"])), rel=1e-6)


def test_compare_fits_flags_what_disagrees():
    ref = MethodResult(name="parametric", status=MethodStatus.OK, E=1.8, alpha=0.35, beta=0.37, a=0.51, b=0.49,
                       predictions={"1e+21": {"N_opt": 3e9}})
    other = MethodResult(name="vpnls", status=MethodStatus.OK, E=1.81, alpha=0.45, beta=0.37, a=0.45, b=0.55,
                         predictions={"1e+21": {"N_opt": 2e9}})
    out = compare_fits(ref, other)
    assert out["disagree"] == ["alpha", "a", "b", "N_opt@1e+21"]
    assert out["quantities"]["E"]["diff"] == pytest.approx(0.01)


def test_leave_largest_budget_out_reports_prediction_errors(sim):
    law = sim.Law()
    table = tidy_runs(sim.isoflop(law, noise=0.003, seed=6), options=FitConfig())
    out = leave_largest_budget_out(table.runs, methods=["parametric", "vpnls", "isoflop"],
                                   compute_for=lambda runs: SIX, delta=1e-3)
    assert out["budget"] == pytest.approx(1e21)
    assert out["observed"]["N_opt_source"] == "parabola vertex"
    assert out["observed"]["N_opt"] == pytest.approx(law.n_opt(1e21), rel=0.08)
    for method in ("parametric", "vpnls", "isoflop"):
        m = out["methods"][method]
        assert m["status"] == "ok"
        assert abs(m["loss_rel_error"]) < 0.01, method
        assert 0.75 < m["N_opt_ratio"] < 1.33, method


def test_leave_largest_budget_out_needs_two_budgets(sim):
    table = tidy_runs(sim.isoflop(budgets=(1e19,), noise=0.0), options=FitConfig())
    with pytest.raises(FitInputError, match="at least 2 budgets, found 1"):
        leave_largest_budget_out(table.runs, methods=["parametric"], compute_for=lambda runs: SIX, delta=1e-3)
