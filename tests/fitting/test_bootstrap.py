"""Bootstrap: the published Epoch intervals, warm starts equal to full-grid fits, the point fit's rules applied
to every resample, stratified and clustered resampling, coverage of a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.bootstrap import (Resampler, bootstrap_isoflop, bootstrap_parametric, resample_weights)
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.isoflop import fit_isoflop
from orchestrator.fitting.surface import fit_surface, fit_surface_resamples

SIX = ComputeModel.constant(6.0)


@pytest.fixture(scope="module")
def epoch(epoch_arrays):
    N, D, L = epoch_arrays
    return N, D, L, fit_surface(N, D, L)


def test_epoch_bootstrap_widths_match_the_published_intervals(epoch):
    # Besiroglu et al. 2024 (4000 plain resamples): alpha (0.317, 0.373), beta (0.331, 0.415). 1000 resamples
    # estimate a 95% percentile width to a few per cent, well inside the 25% allowed.
    N, D, L, fit = epoch
    runs = pd.DataFrame({"N": N, "D": D, "loss": L})
    ci = bootstrap_parametric(runs, fit, resampler=Resampler.plain(len(L), resamples=1000, seed=0), budgets=[1e21],
                              slope_budgets=np.geomspace(6e18, 3e21, 9), compute=SIX, level=0.95)
    for q, (lo, hi) in {"alpha": (0.317, 0.373), "beta": (0.331, 0.415)}.items():
        width = ci.bounds[q][1] - ci.bounds[q][0]
        assert width == pytest.approx(hi - lo, rel=0.25), q
        assert ci.bounds[q][0] < getattr(fit, q) < ci.bounds[q][1]
    # Every resample is counted; those whose optimiser did not converge are dropped, not kept.
    assert ci.n_resamples == 1000 and ci.n_valid == ci.n_converged >= 950
    lo, hi = ci.predictions["1e+21"]["N_opt"]
    assert lo < fit.frontier(1e21, compute=SIX)[0] < hi
    # Under a constant k the frontier's slope is the law's a = beta / (alpha + beta), resample by resample.
    assert ci.bounds["a"] == pytest.approx(ci.bounds["a_law"], abs=1e-6)


def test_warm_started_resamples_reach_the_full_grid_optimum(epoch):
    # The resamples start from the full-data optimum + 7 basin grid starts, not all 4500: check two of them
    # against a full-grid fit of the same resample.
    N, D, L, fit = epoch
    W = resample_weights(len(L), resamples=2, seed=7)
    starts = np.vstack([fit.natural(), np.array(fit.basin_starts)])
    params, objective, converged = fit_surface_resamples(N, D, L, weights=W, starts=starts)
    assert converged.all()
    for r in range(2):
        idx = np.repeat(np.arange(len(L)), W[r].astype(int))
        full = fit_surface(N[idx], D[idx], L[idx])
        assert objective[r] == pytest.approx(full.objective, rel=1e-9)
        assert params[r, 3] == pytest.approx(full.alpha, abs=1e-6) and params[r, 4] == pytest.approx(full.beta, abs=1e-6)


def test_resamples_stay_within_budgets_and_keep_seeds_together():
    # 3 budgets of 4 points; every point has 2 seeds (2 rows sharing a point id).
    budget = np.repeat([1e18, 1e19, 1e20], 8)
    point = np.repeat(np.arange(12), 2)
    sampler = Resampler(strata=budget, units=point, resamples=200, seed=3)
    W = sampler.weights()
    assert W.shape == (200, 24)
    for b in (1e18, 1e19, 1e20):
        # Each budget keeps its own number of runs in every resample (nothing borrowed from another budget).
        assert np.all(W[:, budget == b].sum(axis=1) == 8)
    # The two seeds of a point always come together, with the same multiplicity.
    np.testing.assert_array_equal(W[:, 0::2], W[:, 1::2])
    # Seeded and independent of how many resamples are drawn at once.
    np.testing.assert_array_equal(Resampler(strata=budget, units=point, resamples=200, seed=3).weights(), W)


def test_forks_of_one_wsd_trunk_are_drawn_together():
    # 3 trunks (sizes), each forked at 4 token counts that lie on 4 different budgets, plus 2 runs of no trunk.
    runs = pd.DataFrame({"budget": np.concatenate([np.tile([1e15, 2e15, 4e15, 8e15], 3), [1e15, 2e15]]),
                         "point": np.arange(14),
                         "trunk": [f"trunk-{i}" for i in range(3) for _ in range(4)] + [None, None]})
    sampler = Resampler.of_runs(runs, resamples=300, seed=1)
    W = sampler.weights()
    for i in range(3):  # a trunk's forks share their weights up to the fork point: one unit, one multiplicity
        block = W[:, 4 * i: 4 * i + 4]
        assert np.all(block == block[:, :1])
    assert abs(W.sum(axis=1).mean() - 14) < 1  # 5 units drawn whole: 14 runs on average, not in every resample
    assert np.all(W.sum(axis=1) % 1 == 0) and W[:, 12:].sum(axis=1).max() <= 5
    assert sampler.trunks == 3 and "forks of each of 3 WSD trunks together" in sampler.scheme
    assert len({tuple(row) for row in W[:, ::4]}) > 50  # and the trunks are really resampled


def test_isoflop_resamples_apply_the_vertex_rule(sim):
    # Sizes from 1.3x to 8x N_opt at one budget: the point fit skips it (vertex outside the sizes) and so must
    # every resample; the other budgets are centred.
    law = sim.Law()
    df = pd.concat([sim.isoflop(law, noise=0.0, budgets=(1e18, 1e20)),
                    sim.isoflop(law, noise=0.0, budgets=(1e19,), offset=3.3, span=2.5)], ignore_index=True)
    runs = pd.DataFrame({"N": df["n_params"], "D": df["tokens"], "loss": df["loss"], "budget": df["budget"],
                         "point": np.arange(len(df))})
    fit = fit_isoflop(runs["N"], runs["D"], runs["loss"], budget=runs["budget"], compute=SIX)
    assert [p.budget for p in fit.profiles] == [1e18, 1e20]
    ci = bootstrap_isoflop(runs, fit, resampler=Resampler.of_runs(runs, resamples=200, seed=0), budgets=[1e21],
                           compute=SIX, level=0.95)
    assert ci.n_valid == 200
    lo, hi = ci.bounds["a"]
    assert lo <= law.a <= hi and hi - lo < 0.02


def test_intervals_cover_the_true_law(sim):
    law = sim.Law()
    df = sim.isoflop(law, noise=0.005, seed=5)
    N, D, L = df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy()
    fit = fit_surface(N, D, L)
    runs = pd.DataFrame({"N": N, "D": D, "loss": L, "budget": df["budget"].to_numpy(), "point": np.arange(len(df))})
    sampler = Resampler.of_runs(runs, resamples=300, seed=1)
    ci = bootstrap_parametric(runs, fit, resampler=sampler, budgets=[1e22], slope_budgets=np.geomspace(1e18, 1e21, 9),
                              compute=SIX, level=0.95)
    for q in ("alpha", "beta", "a"):
        lo, hi = ci.bounds[q]
        assert lo < getattr(law, q) < hi, q
    iso = fit_isoflop(N, D, L, budget=runs["budget"].to_numpy(), compute=SIX)
    ci_iso = bootstrap_isoflop(runs, iso, resampler=sampler, budgets=[1e22], compute=SIX, level=0.95)
    lo, hi = ci_iso.bounds["a"]
    assert lo < law.a < hi and hi - lo < 0.1


def test_resampling_is_seeded():
    np.testing.assert_array_equal(resample_weights(10, resamples=5, seed=3), resample_weights(10, resamples=5, seed=3))
    assert resample_weights(10, resamples=5, seed=3).sum(axis=1).tolist() == [10] * 5
