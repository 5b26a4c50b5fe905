"""Each sweep refitted on its resamples by the point fit's own estimator, and the percentile intervals of M."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.compare.bootstrap import LOG_CAP, frontier_resamples, percentile_interval, resampler_for


def test_percentile_interval_keeps_unreachable_resamples_at_the_top():
    rng = np.random.default_rng(0)
    logs = np.log(1.25) + 0.02 * rng.standard_normal((1000, 2))
    logs[:80, 1] = np.inf  # 8% of resamples: no baseline compute reaches the variant's loss
    logs[80:90, 1] = np.nan  # and 1% could not be solved: left out
    logs[:30, 0] = np.inf  # 3%: inside the top 5%, so the upper bound stays finite
    lo, hi = percentile_interval(logs, np.ones(1000, bool), level=0.9)
    assert 1.19 < lo[0] < 1.22 and 1.28 < hi[0] < 1.33 and np.isfinite(hi[0])
    assert np.isinf(hi[1]) and 1.19 < lo[1] < 1.22  # more than 5% unbounded: so is the interval's upper end
    lo, hi = percentile_interval(logs[:, :1], np.zeros(1000, bool), level=0.9)
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    assert LOG_CAP > 100


@pytest.mark.parametrize("method", ["parametric", "vpnls", "isoflop"])
def test_every_method_is_refitted_on_every_resample(sim, method):
    fit = sim.fitted("base", sim.simulate(sim.law, seed=1), method=method)
    frontier, valid = frontier_resamples(fit, resampler=resampler_for(fit, resamples=200, seed=0))
    assert frontier.R == 200 and valid.mean() > 0.9
    x = np.log(np.array(sim.BUDGETS))
    point = fit.frontier.loss(x)[0]
    spread = frontier.loss(x)[valid]
    # The resamples scatter around the point fit: its loss at every budget lies inside their 5-95% range.
    lo, hi = np.percentile(spread, [5, 95], axis=0)
    assert np.all((lo <= point) & (point <= hi))


def test_sweeps_are_resampled_independently(sim):
    # Sweep i is resampled with seed + i: the same sweep as baseline and variant gets different resamples.
    fit = sim.fitted("base", sim.simulate(sim.law, seed=1))
    a = resampler_for(fit, resamples=50, seed=0).weights()
    b = resampler_for(fit, resamples=50, seed=1).weights()
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert np.all(a.sum(axis=1) == len(fit.runs))  # stratified within budgets: every resample keeps the design size
