"""The check 'methods agree' (fitting/checks.py) says which side is out of line: where the other estimators agree
with each other and the headline's a lies outside them, it is the headline's estimate that differs, and the
check does not ask for more sizes per budget (the design's other estimators already agree on its runs)."""

from __future__ import annotations

from orchestrator.fitting.checks import run_checks
from orchestrator.fitting.command_line import CommandLine
from orchestrator.fitting.result import CheckStatus, FitResult, LackOfFit, MethodResult, MethodStatus

COMMAND = CommandLine(args=("sweep=cpu_small", "hparams=pilot_demo"), settings={"sweep.sizes_per_budget": "5",
                                                                              "sweep.seeds": "[0]"})


def _result(a: dict[str, float], lack_of_fit: LackOfFit | None = None) -> FitResult:
    methods = {m: MethodResult(name=m, status=MethodStatus.OK, a=v, predictions={"1e+14": {}}) for m, v in a.items()}
    return FitResult(name="t", form="", n_runs=20, excluded=(), conventions={}, compute={},
                     budgets={"values": [3e10, 1e11, 3e11, 1e12]}, target_budgets=(), slope_budgets=(),
                     methods=methods, floor=None, noise={}, input_warnings=(), swept_range=(3e10, 1e12), checks=(),
                     trustworthy=False, headline_method=None, provenance={}, lack_of_fit=lack_of_fit)


def agree(result: FitResult):
    return next(c for c in run_checks(result, command=COMMAND) if c.name == "agree")


# The demo under the pilot's rules at 20 trials per cell (docs/own-project.md, 2026-12-04 evening).
DEMO = {"parametric": 0.345, "vpnls": 0.411, "isoflop": 0.406, "envelope": 0.390}


def test_a_headline_outside_three_estimators_that_agree_is_named_the_odd_one_out():
    check = agree(_result(DEMO))
    assert check.status is CheckStatus.FAIL
    assert "difference 0.061" in check.detail
    assert "vpnls, isoflop and envelope agree with each other (a = 0.390 to 0.411" in check.detail
    assert "parametric lies below them all" in check.detail
    assert "more sizes" not in check.fix and "compare law forms" in check.fix
    # One seed: the lack-of-fit test could not run, so the fix says how to let it.
    assert "'sweep.seeds=[0,1]'" in check.fix


def test_a_second_seed_already_run_is_not_suggested_again():
    fitted = LackOfFit(status=MethodStatus.OK, method="parametric", n_points=20, n_params=5, scatter=0.0094,
                       seed_sd=0.0072, F=4.13, df_lof=15, df_pe=20, p_value=0.0017, worst_budget=3e11,
                       worst_budget_offset=0.0081)
    check = agree(_result(DEMO, fitted))
    assert check.status is CheckStatus.FAIL and "odd" not in check.fix and "sweep.seeds" not in check.fix


def test_estimators_that_disagree_among_themselves_still_ask_for_a_better_design():
    # VPNLS 0.08 from IsoFLOP: no consensus to set the headline against, so the design is in question.
    check = agree(_result({**DEMO, "vpnls": 0.486}))
    assert check.status is CheckStatus.FAIL and "agree with each other" not in check.detail
    assert "sweep.sizes_per_budget=7" in check.fix
    # A headline inside the others' range is not an outlier either.
    inside = agree(_result({"parametric": 0.40, "vpnls": 0.36, "isoflop": 0.455, "envelope": 0.38}))
    assert inside.status is CheckStatus.FAIL and "agree with each other" not in inside.detail


def test_agreement_within_the_limit_passes_with_no_diagnosis():
    check = agree(_result({**DEMO, "parametric": 0.387}))
    assert check.status is CheckStatus.PASS and "agree with each other" not in check.detail
