"""Variable-projection cross-check: exact on noise-free data, close on noisy data, batched resamples agree."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.fitting.vpnls import bootstrap_vpnls, fit_vpnls, nnls3


def test_nnls3_matches_scipy_nnls():
    from scipy.optimize import nnls
    rng = np.random.default_rng(0)
    for _ in range(20):
        X = rng.normal(size=(30, 3))
        y = rng.normal(size=30)
        coef, rss = nnls3((X.T @ X)[None], (X.T @ y)[None], np.array([y @ y]))
        ref, rnorm = nnls(X, y)
        np.testing.assert_allclose(coef[0], ref, atol=1e-8)
        assert rss[0] == pytest.approx(rnorm ** 2, rel=1e-8, abs=1e-10)


def test_noise_free_runs_give_the_law(sim):
    law = sim.Law()
    df = sim.isoflop(law, noise=0.0)
    fit = fit_vpnls(df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy())
    assert (fit.alpha, fit.beta, fit.E) == pytest.approx((law.alpha, law.beta, law.E), rel=1e-5)
    assert fit.on_bound == () and fit.converged


def test_noisy_runs_recover_exponents(sim):
    law = sim.Law()
    df = sim.isoflop(law, noise=0.005, seed=3)
    fit = fit_vpnls(df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy())
    assert fit.alpha == pytest.approx(law.alpha, abs=0.02) and fit.beta == pytest.approx(law.beta, abs=0.02)
    assert fit.a == pytest.approx(law.a, abs=0.015)


def test_batched_resamples_match_one_by_one_fits(sim):
    df = sim.isoflop(noise=0.005, seed=4)
    N, D, L = df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy()
    full = fit_vpnls(N, D, L)
    W = np.random.default_rng(0).multinomial(len(N), np.full(len(N), 1 / len(N)), size=3).astype(float)
    rows = bootstrap_vpnls(N, D, L, weights=W, start=(full.alpha, full.beta))
    for r in range(3):
        one = fit_vpnls(N, D, L, weights=W[r])
        assert rows[r, 3] == pytest.approx(one.alpha, abs=1e-4) and rows[r, 4] == pytest.approx(one.beta, abs=1e-4)


def test_batched_resample_refits_match_independent_fits(sim):
    # The bootstrap refines every resample from the full-data optimum at once; each must land where a full
    # variable-projection fit of that resample lands.
    from orchestrator.fitting.bootstrap import resample_weights
    from orchestrator.fitting.vpnls import bootstrap_vpnls

    df = sim.isoflop(noise=0.01, seed=4)
    N, D, L = (df[c].to_numpy(float) for c in ("n_params", "tokens", "loss"))
    full = fit_vpnls(N, D, L)
    W = resample_weights(len(L), resamples=3, seed=2)
    rows = bootstrap_vpnls(N, D, L, weights=W, start=(full.alpha, full.beta))
    for r in range(3):
        idx = np.repeat(np.arange(len(L)), W[r].astype(int))
        alone = fit_vpnls(N[idx], D[idx], L[idx])
        assert rows[r, 3] == pytest.approx(alone.alpha, abs=1e-5) and rows[r, 4] == pytest.approx(alone.beta, abs=1e-5)
        assert rows[r, 0] == pytest.approx(alone.E, rel=1e-4)
