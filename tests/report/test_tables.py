"""The report's numbers and words: cost and failures, warnings a sceptic needs, number formatting, escaping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.result import FitResult, MethodResult, MethodStatus
from orchestrator.report import derived, tables
from orchestrator.report.markdown import md
from orchestrator.report.text import count, extrapolation, hours, interval, sci


def test_cost_counts_finished_flops_wall_time_device_hours_and_failures():
    runs = pd.DataFrame({"status": ["finished", "finished", "oom", "diverged", "diverged", None],
                         "C_exact": [1e18, 2e18, 4e18, 8e18, 1e19, 1e19], "wall_s": [3600, 1800, 60, 60, 0, np.nan],
                         "device": ["cuda", "cuda", "cuda", "cpu", "cpu", None], "attempt": [1, 2, 1, 1, 1, 1],
                         "reason": [None, None, "CUDA out of memory", "loss is nan at step 40", None, None]})
    cost = tables.cost_summary(runs, cpus_per_trial=4, gpus_per_trial=2)
    assert cost["flops"] == pytest.approx(3e18)  # finished runs only
    assert cost["wall_s"] == pytest.approx(5520)
    # GPU runs hold 2 GPUs each, CPU runs 4 cores: (3600 + 1800 + 60) * 2 + 60 * 4 seconds.
    assert cost["gpu_hours"] == pytest.approx(10920 / 3600)
    assert cost["cpu_core_hours"] == pytest.approx(240 / 3600)
    assert cost["failures"] == {"diverged": 2, "oom": 1, "unknown": 1}
    assert cost["failure_reasons"] == {"oom": "CUDA out of memory", "diverged": "loss is nan at step 40"}
    assert cost["n_trials"] == 6 and cost["n_finished"] == 2 and cost["retried"] == 1
    assert tables.cost_summary(None) is None


def fit_result(methods: list[MethodResult], **kw) -> FitResult:
    """A FitResult with the given methods and nothing else fitted (the tables read only what they need)."""
    fields = dict(name="t", form="", n_runs=0, excluded=(), conventions={}, compute={}, budgets={"values": []},
                  target_budgets=(), slope_budgets=(), methods={m.name: m for m in methods}, floor=None, noise={},
                  input_warnings=(), swept_range=(1.0, 1.0), checks=(), trustworthy=False, headline_method=None,
                  provenance={})
    return FitResult(**(fields | kw))


def test_warnings_flag_extrapolation_an_impossible_floor_and_a_failed_holdout():
    parametric = MethodResult(name="parametric", status=MethodStatus.OK, E=1.2,
                              ci={"E": [1.0, 1.4], "n_valid": 100, "n_resamples": 100},
                              convergence={"converged": True, "on_bound": []})
    result = fit_result([parametric], target_budgets=(1e20, 1e24), holdout={
        "status": "ok", "methods": {"parametric": {"status": "ok", "loss_rel_error": 0.05, "N_opt_ratio": 2.5}}})
    text = " | ".join(tables.warnings(result, swept=(1e17, 1e19), floors={"synthetic": 1.69}))
    assert "5.0 decades beyond the largest swept budget" in text
    assert "below the entropy floor 1.69 of synthetic" in text
    assert "misses it (best loss off by +5.0%, N_opt ratio 2.50)" in text
    # A floor inside E's interval is no contradiction.
    assert "entropy floor" not in " ".join(tables.warnings(result, swept=(1e17, 1e24), floors={"s": 1.3}))


def test_exclusions_merge_methods_and_name_the_ones_affected():
    shared = [{"trial_id": "t1", "reason": "status=oom"}]
    result = fit_result([MethodResult(name="parametric", status=MethodStatus.OK, excluded=tuple(shared)),
                         MethodResult(name="isoflop", status=MethodStatus.OK, excluded=(
                             *shared, {"trial_id": "t9", "reason": "not on an IsoFLOP profile"}))],
                        excluded=tuple(shared))
    assert tables.exclusions(result) == [
        {"trial_id": "t1", "reason": "status=oom", "methods": "all"},
        {"trial_id": "t9", "reason": "not on an IsoFLOP profile", "methods": "isoflop"}]


def test_ci_band_interpolates_in_log_space_between_computed_budgets_only():
    entry = MethodResult(name="parametric", status=MethodStatus.OK,
                         predictions={"1e+20": {"C": 1e20}, "1e+22": {"C": 1e22}},
                         ci={"predictions": {"1e+20": {"N_opt": [1e9, 4e9]}, "1e+22": {"N_opt": [1e10, 4e11]}}})
    lo, hi = derived.ci_band(entry, "N_opt", np.array([1e19, 1e20, 1e21, 1e22, 1e23]))
    assert np.isnan(lo[0]) and np.isnan(hi[-1])
    assert lo[2] == pytest.approx(np.sqrt(1e9 * 1e10)) and hi[2] == pytest.approx(np.sqrt(4e9 * 4e11))
    assert derived.ci_band(MethodResult(name="parametric", status=MethodStatus.OK, predictions={}), "N_opt",
                           np.array([1e20])) is None


def test_frontier_line_matches_the_fit_predictions(sim_report):
    for method in ("parametric", "vpnls", "isoflop", "envelope"):
        entry = sim_report.fit.fit.methods[method]
        pred = entry.predictions["1e+23"]
        N, D, L = derived.frontier_line(entry, np.array([1e23]))
        assert (N[0], D[0], L[0]) == pytest.approx((pred["N_opt"], pred["D_opt"], pred["loss"]), rel=1e-9)


def test_number_formats_read_like_the_papers():
    assert count(1.68e9) == "1.68B" and count(3.75e12) == "3.75T" and count(84_600) == "84.6k"
    assert count(1.2e16) == "1.2e16" and count(None) == "\u2013"
    assert sci(2.96e21) == "2.96e21" and sci(1e10) == "1e10" and sci(float("nan")) == "\u2013"
    assert interval([1.0, 2.0]) == "[1, 2]" and interval([1.0, None]) == "" and interval(None) == ""
    assert hours(42) == "42 s" and hours(600) == "10 min" and hours(36000) == "10 h"
    assert extrapolation(1e21, swept=(1e18, 1e21)) == "in swept range"
    assert extrapolation(1e24, swept=(1e18, 1e21)) == "3.0 decades above"
    assert extrapolation(3e21, swept=(1e18, 1e21)) == "3x above"
    assert extrapolation(1e17, swept=(1e18, 1e21)) == "10x below"


def test_markdown_escaping_neutralises_html_and_table_syntax():
    assert md("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert md("a|b_c*d") == "a\\|b\\_c\\*d"
    assert md("[x](http://evil)") == "\\[x\\](http://evil)"
