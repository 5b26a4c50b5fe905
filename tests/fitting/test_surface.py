"""Approach 3: reproduce the Epoch refit of Chinchilla, recover a known law, report convergence and bounds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.surface import fit_surface, hoffmann_grid


@pytest.fixture(scope="module")
def epoch_fit(epoch_arrays):
    N, D, L = epoch_arrays
    return fit_surface(N, D, L, delta=1e-3)


def test_grid_is_hoffmann_app_d2():
    grid = hoffmann_grid()
    assert grid.shape == (4500, 5)
    assert sorted(set(grid[:, 3])) == [0.0, 0.5, 1.0, 1.5, 2.0] and sorted(set(grid[:, 2])) == [-1, -0.5, 0, 0.5, 1]
    assert sorted(set(grid[:, 0])) == [0, 5, 10, 15, 20, 25]


def test_reproduces_epoch_refit_of_chinchilla(epoch_fit):
    # Besiroglu et al. 2024 grid fit (SOURCES.md): alpha 0.3473, beta 0.3672, E 1.8172, a 0.514, objective 0.00101827.
    fit = epoch_fit
    assert fit.alpha == pytest.approx(0.3473, abs=0.002)
    assert fit.beta == pytest.approx(0.3672, abs=0.003)
    assert fit.E == pytest.approx(1.8172, abs=0.002)
    assert fit.a == pytest.approx(0.514, abs=0.003)
    assert fit.objective == pytest.approx(0.00101827, rel=1e-4)
    # A and B are weakly identified; still, the grid fit's 477.8 and 2143 are the same optimum.
    assert fit.A == pytest.approx(477.8, rel=0.02) and fit.B == pytest.approx(2143, rel=0.02)
    # About 17.9 tokens per parameter at C = 5.88e23 (6ND).
    N_opt, D_opt = fit.frontier(5.88e23, compute=ComputeModel.constant(6.0))
    assert D_opt / N_opt == pytest.approx(17.9, rel=0.03)


def test_epoch_fit_converged_inside_the_box(epoch_fit):
    assert epoch_fit.converged and epoch_fit.on_bound == ()
    assert epoch_fit.grad_norm < 1e-9 and epoch_fit.n_starts == 4500
    assert len(epoch_fit.basin_starts) == 7


def test_no_scipy_start_beats_the_batched_search(epoch_arrays, epoch_fit):
    # The batched search must find an optimum at least as good as scipy's L-BFGS-B (the plain per-start loop,
    # analytic gradient) from a random sample of the grid's starts.
    N, D, L = epoch_arrays
    lN, lD, y = np.log(N), np.log(D), np.log(L)

    def fg(p):
        a, b, e, alpha, beta = p
        with np.errstate(all="ignore"):
            t1, t2, t3 = np.exp(a - alpha * lN), np.exp(b - beta * lD), np.exp(e)
            s = t1 + t2 + t3
            r = np.log(s) - y
        hp = np.clip(r, -1e-3, 1e-3)
        g = np.array([hp @ (t1 / s), hp @ (t2 / s), hp @ (t3 / s), -(hp * t1 / s) @ lN, -(hp * t2 / s) @ lD])
        f = float(np.sum(hp * (r - 0.5 * hp)))
        return (f, g) if np.isfinite(f) and np.isfinite(g).all() else (np.inf, np.zeros(5))

    starts = hoffmann_grid()[np.random.default_rng(1).choice(4500, 12, replace=False)]
    best = min(minimize(fg, s, jac=True, method="L-BFGS-B").fun for s in starts)
    assert epoch_fit.objective <= best * (1 + 1e-9)


def test_recovers_a_known_law_from_noisy_isoflop_runs(sim):
    law = sim.Law()
    for seed in (0, 1):
        df = sim.isoflop(law, noise=0.005, seed=seed)
        fit = fit_surface(df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy())
        assert fit.alpha == pytest.approx(law.alpha, abs=0.02)
        assert fit.beta == pytest.approx(law.beta, abs=0.02)
        assert fit.a == pytest.approx(law.a, abs=0.015)
        assert fit.E == pytest.approx(law.E, abs=0.03)


def test_noise_free_runs_give_the_law_exactly(sim):
    law = sim.Law(E=2.1, A=900.0, B=1500.0, alpha=0.4, beta=0.3)
    df = sim.isoflop(law, noise=0.0, budgets=(1e18, 1e19, 1e20, 1e21))
    fit = fit_surface(df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy())
    assert (fit.alpha, fit.beta, fit.E) == pytest.approx((0.4, 0.3, 2.1), rel=1e-5)
    assert (fit.A, fit.B) == pytest.approx((900.0, 1500.0), rel=1e-3)


def test_optimum_on_a_bound_is_reported(sim):
    # No irreducible loss: E runs to its lower bound e^-10 and the fit says so.
    law = sim.Law(E=0.0, A=400.0, B=400.0, alpha=0.3, beta=0.3)
    df = sim.isoflop(law, noise=0.0, budgets=(1e18, 1e19, 1e20))
    fit = fit_surface(df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy())
    assert "e" in fit.on_bound and fit.E < 1e-3


def test_too_few_runs_say_how_many_are_needed():
    with pytest.raises(FitInputError, match="needs at least 6 runs"):
        fit_surface(np.array([1e8, 2e8, 3e8]), np.array([1e9, 2e9, 3e9]), np.array([3.0, 2.9, 2.8]))
