"""The comparison on sweeps simulated from the surrogate's law and noise model, with a planted multiplier.

Runs tables are drawn directly from the law (no Ray, no store) so that many replications are affordable; the
same path through the CLI and real sweeps is tested in test_cli.py and test_e2e.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.compare.analysis import Options, analyse
from orchestrator.compare.multiplier import AHEAD, UNCLEAR
from orchestrator.fitting.errors import FitInputError
from trainers.config import SurrogateConfig


def measured(comparison: dict) -> list[dict]:
    return [r for r in comparison["rows"] if r["measured"]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_planted_multiplier_is_recovered_within_5_percent_at_every_swept_budget(sim, seed):
    base = sim.fitted("base", sim.simulate(sim.law, seed=10 * seed))
    variant = sim.fitted("variant", sim.simulate(sim.planted(sim.law), seed=10 * seed + 1))
    out = analyse(base, [variant], options=Options(resamples=200, level=0.9, seed=seed))
    rows = measured(out["comparisons"][0])
    assert [r["C"] for r in rows] == list(sim.BUDGETS)
    for r in rows:
        assert abs(r["M"] / sim.K - 1) < 0.05, r
        assert r["verdict"] == AHEAD
        assert r["M_N"] >= r["M"] * (1 - 1e-6) and r["M_D"] >= r["M"] * (1 - 1e-6)
    # A constant multiplier: M stays within 5% per decade, so no "depends on C" warning.
    assert not any(w.startswith("M depends on the budget") for w in out["comparisons"][0]["warnings"])


def test_a_sweep_compared_with_itself_is_exactly_one_with_an_interval_containing_one(sim):
    fit = sim.fitted("base", sim.simulate(sim.law, seed=4))
    out = analyse(fit, [fit], options=Options(resamples=200, level=0.9, joint_E=True))
    for comparisons in (out["comparisons"], out["joint"]["comparisons"]):
        for r in comparisons[0]["rows"]:
            assert r["M"] == 1.0
            assert r["M_ci"][0] <= 1.0 <= r["M_ci"][1]
            assert r["verdict"] == UNCLEAR
    warnings = out["comparisons"][0]["warnings"]
    assert any("not significant" in w for w in warnings)


def test_curves_that_cross_are_warned_about(sim):
    # The variant has a lower floor and a larger data term: behind at small budgets, ahead at large ones.
    variant_law = SurrogateConfig(E=1.5, B=520.0, noise=0.005)
    base = sim.fitted("base", sim.simulate(sim.law, seed=5))
    variant = sim.fitted("variant", sim.simulate(variant_law, seed=6))
    out = analyse(base, [variant], options=Options(resamples=100, level=0.9))
    c = out["comparisons"][0]
    Ms = [r["M"] for r in c["rows"]]
    assert min(Ms) < 1 < max(Ms)
    assert len(c["crossings"]) == 1 and c["crossings"][0]["measured"]
    assert any(w.startswith("the curves cross at C = ") and "beyond" not in w for w in c["warnings"])
    assert any(w.startswith("M depends on the budget") for w in c["warnings"])
    assert c["trend"]["ci"][0] > 0  # the variant's gain grows with C, significantly


def test_a_variant_with_no_overlapping_budgets_is_one_sentence(sim):
    base = sim.fitted("base", sim.simulate(sim.law, seed=7))
    far = sim.fitted("far", sim.simulate(sim.law, budgets=(1e22, 3e22, 1e23), seed=8))
    with pytest.raises(FitInputError, match=r"^compare.variants: far swept budgets 1e\+22 to 1e\+23 FLOPs, which do "
                                            r"not overlap the baseline base's 1e\+18 to 1e\+20"):
        analyse(base, [far], options=Options(resamples=0))


def test_the_joint_fit_shares_E_and_keeps_the_planted_multiplier(sim):
    base = sim.fitted("base", sim.simulate(sim.law, seed=11))
    variant = sim.fitted("variant", sim.simulate(sim.planted(sim.law), seed=12))
    out = analyse(base, [variant], options=Options(resamples=100, joint_E=True))
    joint = out["joint"]
    assert abs(joint["E"] / sim.law.E - 1) < 0.03 and joint["converged"]
    assert joint["laws"]["base"]["E"] == joint["laws"]["variant"]["E"] == joint["E"]
    for r in measured(joint["comparisons"][0]):
        assert abs(r["M"] / sim.K - 1) < 0.05 and r["M_ci"][0] <= sim.K <= r["M_ci"][1]
    # One E extrapolates with less freedom: the interval two decades out is no wider than the separate fits'.
    top_sep, top_joint = out["comparisons"][0]["rows"][-1]["M_ci"], joint["comparisons"][0]["rows"][-1]["M_ci"]
    assert top_joint[1] / top_joint[0] <= top_sep[1] / top_sep[0]


def test_isoflop_loss_laws_can_be_compared(sim):
    base = sim.fitted("base", sim.simulate(sim.law, seed=13), method="isoflop")
    variant = sim.fitted("variant", sim.simulate(sim.planted(sim.law), seed=14), method="isoflop")
    out = analyse(base, [variant], options=Options(resamples=100))
    rows = measured(out["comparisons"][0])
    assert all(abs(r["M"] / sim.K - 1) < 0.1 for r in rows)
    assert "M_N" not in rows[0]  # matched N and D need a surface L(N, D)


@pytest.mark.slow
def test_the_90_percent_interval_covers_the_planted_multiplier_in_40_to_50_of_50_replications(sim):
    # Realistic noise: 0.01 nats per run (about 0.4% of these losses, the scale of seed-to-seed noise in small LMs),
    # 5 budgets x 7 sizes per sweep, 200 resamples per sweep; each replication draws new runs for both sweeps.
    noisy = SurrogateConfig(noise=0.01)
    covered = np.zeros(len(sim.BUDGETS), int)
    errors = []
    for rep in range(50):
        base = sim.fitted("base", sim.simulate(noisy, seed=1000 + 2 * rep))
        variant = sim.fitted("variant", sim.simulate(sim.planted(noisy), seed=1001 + 2 * rep))
        rows = measured(analyse(base, [variant], options=Options(resamples=200, level=0.9, seed=rep,
                                                                 targets=(1e21,)))["comparisons"][0])
        covered += [r["M_ci"][0] <= sim.K <= r["M_ci"][1] for r in rows]
        errors.append([r["M"] / sim.K - 1 for r in rows])
    errors = np.abs(np.array(errors))
    print(f"\ncoverage of k = {sim.K} by the 90% interval, out of 50, at C = {list(sim.BUDGETS)}: {covered.tolist()}; "
          f"|M / k - 1|: median {np.median(errors):.4f}, 90th percentile {np.percentile(errors, 90):.4f}, "
          f"max {errors.max():.4f}")
    assert np.all((40 <= covered) & (covered <= 50)), covered
