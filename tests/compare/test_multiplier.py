"""M(C) when the exponents differ, crossings, the trend of M, verdicts and the words for extrapolation."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from orchestrator.compare.frontier import LossFrontier
from orchestrator.compare.multiplier import (AHEAD, BEHIND, UNCLEAR, crossings, multipliers, notes, outside, trend,
                                             verdict)
from orchestrator.fitting.compute import ComputeModel

SIX = ComputeModel.constant(6.0)
BASE = LossFrontier.surface(1.69, 406.4, 410.7, 0.34, 0.28, compute=SIX)
# A variant with a lower floor and a larger data term: behind at small budgets, ahead at large ones.
STEEPER = LossFrontier.surface(1.45, 406.4, 700.0, 0.34, 0.28, compute=SIX)


def true_crossing() -> float:
    return float(np.exp(brentq(lambda x: (STEEPER.loss(np.array([x])) - BASE.loss(np.array([x])))[0, 0], 30, 70)))


def test_when_the_exponents_differ_M_depends_on_C_and_is_never_a_ratio_of_coefficients():
    x = np.log(np.geomspace(1e17, 1e24, 15))
    M = np.exp(multipliers(BASE, STEEPER, x)["log_M"][0])
    # Each M(C) is the compute the baseline needs for the variant's loss: check it against a root of the loss.
    for xi, m in zip(x, M):
        target = STEEPER.loss(np.array([xi]))[0, 0]
        root = brentq(lambda z, target=target: BASE.loss(np.array([z]))[0, 0] - target, xi - 20, xi + 20)
        assert abs(np.log(m) - (root - xi)) < 1e-6
    assert M.max() / M.min() > 2  # not one number
    slope = trend(x, np.log(M)[None, :])
    assert slope[0] > 0.05  # the variant gains with scale


def test_the_curves_cross_where_the_losses_are_equal():
    x = np.linspace(np.log(1e16), np.log(1e24), 40)
    found = crossings(x, multipliers(BASE, STEEPER, x)["log_M"][0])
    assert len(found) == 1
    assert abs(np.log(found[0] / true_crossing())) < 0.05  # within 5% of the true budget (linear interpolation)


def test_verdict_reads_the_interval():
    assert verdict(1.1, 1.4) == AHEAD
    assert verdict(0.7, 0.95) == BEHIND
    assert verdict(0.9, 1.2) == UNCLEAR
    assert verdict(float("nan"), float("nan")) == UNCLEAR


def test_outside_measures_the_factor_beyond_the_swept_budgets():
    assert outside(5e18, (1e18, 1e19)) == 1.0
    assert outside(1e20, (1e18, 1e19)) == 10.0
    assert outside(1e17, (1e18, 1e19)) == 10.0
    assert outside(float("inf"), (1e18, 1e19)) == float("inf")


def test_notes_say_in_words_where_M_leaves_the_data():
    assert notes(C=5e18, M=1.2, variant_swept=(1e18, 1e19), base_swept=(1e18, 1e19), below_floor=False) == []
    far = notes(C=1e21, M=1.2, variant_swept=(1e18, 1e19), base_swept=(1e18, 1e19), below_floor=False)
    assert "variant's law is extrapolated (2.0 decades above" in far[0]
    assert "the baseline needs 1.2e21 FLOPs" in far[1]
    floor = notes(C=1e19, M=float("inf"), variant_swept=(1e18, 1e19), base_swept=(1e18, 1e19), below_floor=True)
    assert floor == ["the variant's loss here is below the baseline's fitted floor E: no baseline compute reaches it"]


def test_trend_is_the_least_squares_slope_per_row():
    x = np.log([1e18, 1e19, 1e20])
    rows = np.array([[0.0, 0.1 * np.log(10), 0.2 * np.log(10)], [0.2, 0.2, np.nan], [np.nan, np.nan, 0.3]])
    slope = trend(x, rows)
    np.testing.assert_allclose(slope[:2], [0.1, 0.0], atol=1e-12)
    assert np.isnan(slope[2])
