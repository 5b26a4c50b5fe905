"""L_opt(C) elementwise and its inverse, against the fitting stage's own frontier and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.compare.frontier import LossFrontier
from orchestrator.compare.multiplier import multipliers
from orchestrator.fitting.compute import ComputeModel, frontier_of_surface

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
SIZES = np.geomspace(1e5, 1e12, 80)
# A jagged cost per token like a real shape rule's (fitting/compute.py): the frontier is no longer a power law.
SMOOTH = ComputeModel.smooth(SIZES, 6.5 + 0.9 * np.sin(2 * np.log(SIZES)), convention="exact", source="test")
COMPUTE = {"6ND": ComputeModel.constant(6.0), "jagged k(N)": SMOOTH}
X = np.log(np.geomspace(1e17, 1e23, 7))


@pytest.mark.parametrize("compute", COMPUTE.values(), ids=COMPUTE.keys())
def test_loss_is_the_fitting_stages_compute_optimal_loss(compute):
    # Each budget evaluated on its own row (the B C^-beta identity) must give the fitting stage's L_opt(C).
    f = LossFrontier.surface(E, A, B, ALPHA, BETA, compute=compute)
    N, D = frontier_of_surface(E, A, B, ALPHA, BETA, np.exp(X), compute=compute)
    expected = E + A / N[0] ** ALPHA + B / D[0] ** BETA
    np.testing.assert_allclose(f.loss(X)[0], expected, rtol=1e-10)
    L, Nopt, Dopt = f.allocation(X)
    np.testing.assert_allclose(Nopt[0], N[0], rtol=1e-9)
    np.testing.assert_allclose(compute.k(Nopt[0]) * Nopt[0] * Dopt[0], np.exp(X), rtol=1e-9)  # D_opt costs C


@pytest.mark.parametrize("compute", COMPUTE.values(), ids=COMPUTE.keys())
def test_a_planted_multiplier_is_recovered_exactly_from_the_true_laws(compute):
    # B -> B k^-beta is the law with compute scaled by k: M(C) = k at every budget, under any compute model.
    k = 1.25
    base = LossFrontier.surface(E, A, B, ALPHA, BETA, compute=compute)
    variant = LossFrontier.surface(E, A, B * k ** -BETA, ALPHA, BETA, compute=compute)
    np.testing.assert_allclose(variant.loss(X), base.loss(X + np.log(k)), rtol=1e-10)
    out = multipliers(base, variant, X)
    np.testing.assert_allclose(np.exp(out["log_M"]), k, rtol=1e-8)
    # The compute-optimal path is the cheapest way to a loss: fixing N or D can only cost more.
    assert np.all(out["log_M_N"] >= out["log_M"] - 1e-9) and np.all(out["log_M_D"] >= out["log_M"] - 1e-9)


@pytest.mark.parametrize("compute", COMPUTE.values(), ids=COMPUTE.keys())
def test_a_law_compared_with_itself_is_exactly_one(compute):
    f = LossFrontier.surface(E, A, B, ALPHA, BETA, compute=compute)
    M = np.exp(multipliers(f, f, X)["log_M"])
    assert np.all(M == 1.0)


def test_inverse_matches_brute_force_when_the_laws_differ_in_exponent():
    base = LossFrontier.surface(E, A, B, ALPHA, BETA, compute=SMOOTH)
    variant = LossFrontier.surface(1.6, 300.0, 900.0, 0.3, 0.33, compute=SMOOTH)
    target = variant.loss(X)
    got = base.log_compute_for(target, start=X)
    grid = np.linspace(X.min() - 8, X.max() + 8, 20001)
    curve = base.loss(grid)[0]  # falls monotonically with C
    brute = np.interp(-target[0], -curve, grid)
    np.testing.assert_allclose(got[0], brute, atol=2e-3)
    np.testing.assert_allclose(base.loss(got)[0], target[0], rtol=1e-9)


def test_a_loss_at_or_below_the_floor_needs_unbounded_compute():
    base = LossFrontier.surface(E, A, B, ALPHA, BETA, compute=SMOOTH)
    x = np.log([1e18, 1e18, 1e18])
    got = base.log_compute_for(np.array([[E - 0.01, E, np.nan]]), start=x)
    assert np.isinf(got[0, 0]) and np.isinf(got[0, 1]) and np.isnan(got[0, 2])


def test_a_loss_law_inverts_in_closed_form():
    # IsoFLOP's minima law L_opt = E + k (C / C_ref)^p: C(L) = C_ref ((L - E) / k)^(1 / p).
    f = LossFrontier.loss_law(1.8, 1.2, -0.15, x_ref=1e19, compute=SMOOTH)
    L = np.array([[3.0, 2.4, 2.0]])
    got = f.log_compute_for(L, start=np.log([1e19, 1e19, 1e19]))
    np.testing.assert_allclose(np.exp(got[0]), 1e19 * ((L[0] - 1.8) / 1.2) ** (1 / -0.15), rtol=1e-9)


def test_resampled_rows_are_solved_each_with_its_own_parameters():
    rows = LossFrontier.surface([1.6, 1.7, 1.8], [400.0, 500.0, 350.0], [410.0, 380.0, 450.0], [0.33, 0.34, 0.36],
                                [0.28, 0.27, 0.3], compute=SMOOTH)
    x = np.log([1e18, 1e20])
    each = np.vstack([rows.take(np.array([i])).loss(x) for i in range(3)])
    np.testing.assert_array_equal(rows.loss(x), each)
