"""Power laws in log-log space and approach 5 (Kaplan-style single-variable laws)."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.powerlaw import fit_power_law, fit_single_variable, power_law_batch


def test_power_law_recovers_exponent_and_batch_agrees():
    x = np.geomspace(1e18, 1e22, 7)
    y = 0.3 * x ** 0.49
    law = fit_power_law(x, y)
    assert law.p == pytest.approx(0.49) and law.k == pytest.approx(0.3) and law.r2 == pytest.approx(1.0)
    X = np.vstack([x, x])
    Y = np.vstack([y, np.where(np.arange(7) < 3, y, np.nan)])
    logk, p = power_law_batch(X, Y)
    np.testing.assert_allclose(p, [0.49, 0.49]) and np.testing.assert_allclose(np.exp(logk), [0.3, 0.3])


def test_single_variable_laws_recover_separable_exponents():
    # L = 5 N^-0.07 D^-0.05 is exactly a power law in N at any fixed D (and in D at any fixed N).
    N, D = np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6))
    N, D = N.ravel(), D.ravel()
    fit = fit_single_variable(N, D, 5 * N ** -0.07 * D ** -0.05)
    assert fit.at_D == pytest.approx(1e12) and fit.at_N == pytest.approx(1e10)
    assert (fit.alpha, fit.beta) == pytest.approx((0.07, 0.05))
    assert fit.a == pytest.approx(0.05 / 0.12) and fit.loss_vs_N.n == 6


def test_single_variable_needs_three_sizes_at_one_d():
    N = np.array([1e8, 2e8, 4e8])
    D = np.array([1e9, 3e9, 9e9])
    with pytest.raises(FitInputError, match="needs 3 runs of distinct size"):
        fit_single_variable(N, D, np.array([3.0, 2.9, 2.8]))


def test_saturating_law_recovers_floor_and_exponent_and_batch_agrees():
    from orchestrator.fitting.powerlaw import fit_saturating, saturating_batch
    C = np.geomspace(1e18, 1e22, 9)
    L = 1.7 + 5.0 * (C / 1e20) ** -0.15
    law = fit_saturating(C, L)
    assert (law.E, law.p) == pytest.approx((1.7, -0.15), rel=1e-4)
    assert float(law(1e24)) == pytest.approx(1.7 + 5.0 * 1e4 ** -0.15, rel=1e-5)
    E, k, p = saturating_batch(C[None], L[None], x_ref=law.x_ref)
    assert p[0] == pytest.approx(-0.15, abs=0.01) and E[0] == pytest.approx(1.7, abs=0.1)
