"""Approach 2: parabola vertices recover a known N_opt; edge minima and too few budgets are reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.isoflop import fit_isoflop

SIX = ComputeModel.constant(6.0)


def _fit(df):
    return fit_isoflop(df["n_params"].to_numpy(), df["tokens"].to_numpy(), df["loss"].to_numpy(),
                       budget=df["budget"].to_numpy(), compute=SIX)


def test_parabola_recovers_known_n_opt_and_exponent(sim):
    law = sim.Law()
    fit = _fit(sim.isoflop(law, noise=0.0))
    for p in fit.profiles:
        # A parabola in ln N is a local approximation: within 5% on a centred grid spanning /8..x8.
        assert p.N_opt == pytest.approx(law.n_opt(p.budget), rel=0.05)
        assert not p.edge and not p.weak
    assert fit.a == pytest.approx(law.a, abs=0.005)
    assert fit.a + fit.b == pytest.approx(1.0, abs=0.01)
    assert fit.warnings == []


def test_noisy_profiles_still_recover_the_exponent(sim):
    law = sim.Law()
    fit = _fit(sim.isoflop(law, noise=0.005, seed=2))
    assert fit.a == pytest.approx(law.a, abs=0.03)


def test_off_centre_grid_warns_that_the_minimum_is_at_the_edge(sim):
    # Sizes from 0.8x to 5x N_opt: the minimum is inside, but only one sampled size lies below it.
    fit = _fit(sim.isoflop(noise=0.0, offset=2.0, span=2.5))
    assert all(p.edge for p in fit.profiles)
    assert any("edge of the sampled sizes" in w for w in fit.warnings)


def test_minimum_outside_the_sampled_sizes_is_not_used(sim):
    # Sizes from 2.4x to 15x N_opt: the vertex is an extrapolation; those profiles are skipped with a reason.
    df = pd.concat([sim.isoflop(noise=0.0, offset=6.0, span=2.5, budgets=(1e19,)),
                    sim.isoflop(noise=0.0, budgets=(1e18, 1e20))], ignore_index=True)
    fit = _fit(df)
    assert [p.budget for p in fit.profiles] == [1e18, 1e20]
    assert fit.skipped[0][0] == 1e19 and "outside the sampled sizes" in fit.skipped[0][1]
    assert any("budget 1e+19 skipped" in w for w in fit.warnings)


def test_flat_profile_warns_of_weak_curvature(sim):
    fit = _fit(sim.isoflop(noise=0.0, span=1.05))
    assert any("weak curvature" in w for w in fit.warnings)


def test_one_budget_is_too_few_and_says_how_many(sim):
    df = sim.isoflop(budgets=(1e19,), noise=0.0)
    with pytest.raises(FitInputError, match="need at least 2 budgets with a loss minimum, found 1"):
        _fit(df)


def test_budget_with_two_sizes_is_skipped_with_reason(sim):
    df = sim.isoflop(noise=0.0, budgets=(1e18, 1e19, 1e20))
    df = df.loc[(df["budget"] != 1e20) | (df.groupby("budget").cumcount() < 2)]
    fit = _fit(df)
    assert [b for b, _ in fit.skipped] == [1e20]
    assert "at least 3 runs of distinct size, has 2" in fit.skipped[0][1]


def test_epoch_isoflop_exponent_is_about_one_half(epoch_csv):
    from orchestrator.fitting.options import ColumnMap, FitConfig
    from orchestrator.fitting.table import read_runs_csv, tidy_runs
    options = FitConfig(columns=ColumnMap(n_params="Model Size", flops="Training FLOP"), drop_highest=5)
    runs = tidy_runs(read_runs_csv(epoch_csv, columns=options.columns), options=options).runs
    fit = fit_isoflop(runs["N"].to_numpy(), runs["D"].to_numpy(), runs["loss"].to_numpy(),
                      budget=runs["budget"].to_numpy(), compute=SIX)
    # Hoffmann et al. (2022) Table 2, approach 2: a = 0.49 (0.462, 0.534) on the same runs.
    assert len(fit.profiles) == 9 and 0.46 < fit.a < 0.54
    assert np.isfinite(fit.n_law.k)
