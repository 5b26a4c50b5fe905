"""Approach 1: only valid curve points are used, and the envelope recovers the frontier of a known law."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.envelope import envelope_points, fit_envelope, valid_curve_points
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.errors import FitInputError

SIX = ComputeModel.constant(6.0)


def _runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.rename(columns={"N_total": "N"})


def test_only_last_steps_are_valid_by_default(sim):
    runs, curves = sim.curves()
    pts = valid_curve_points(curves, runs=_runs(runs))
    assert len(pts) == len(runs)
    last = curves.loc[curves["step"] == 4]
    np.testing.assert_allclose(np.sort(pts["loss"]), np.sort(last["eval_loss"]))


def test_explicit_valid_column_adds_cooldown_checkpoints(sim):
    runs, curves = sim.curves()
    curves["valid"] = curves["step"] >= 3  # e.g. checkpoints taken after a cooldown
    assert len(valid_curve_points(curves, runs=_runs(runs))) == 2 * len(runs)


def test_constant_schedule_runs_contribute_no_points(sim):
    runs, curves = sim.curves()
    curves["schedule"] = np.where(curves["trial_id"].str.startswith("n0d"), "constant", "cosine")
    pts = valid_curve_points(curves, runs=_runs(runs))
    assert len(pts) == len(runs) - 10 and not pts["trial_id"].str.startswith("n0d").any()


def test_envelope_is_the_running_minimum():
    C = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    L = np.array([3.0, 3.2, 2.9, 2.95, 2.5])
    assert list(envelope_points(C, L)) == [0, 2, 4]


def test_envelope_recovers_known_frontier_and_ignores_invalid_points(sim):
    law = sim.Law()
    runs, curves = sim.curves(law)
    fit = fit_envelope(valid_curve_points(curves, runs=_runs(runs)), source="curves", compute=SIX)
    assert fit.a == pytest.approx(law.a, abs=0.03)
    C = 1e20
    assert float(fit.loss_at(C, compute=SIX)) == pytest.approx(float(law.loss(law.n_opt(C), C / (6 * law.n_opt(C)))), rel=0.01)
    # Using mid-run points (optimistic by 0.2 here) would bias the predicted loss badly.
    wrong = fit_envelope(valid_curve_points(curves.assign(valid=True), runs=_runs(runs)), source="all points",
                         compute=SIX)
    assert abs(float(wrong.loss_at(C, compute=SIX)) / float(fit.loss_at(C, compute=SIX)) - 1) > 0.03


def test_too_few_envelope_points_say_what_is_needed():
    pts = pd.DataFrame({"trial_id": ["a", "b"], "N": [1e8, 2e8], "D": [1e9, 1e9], "C": [6e17, 1.2e18],
                        "loss": [3.0, 2.9]})
    with pytest.raises(FitInputError, match="needs at least 3 points from at least 2 model sizes, found 2"):
        fit_envelope(pts, source="test", compute=SIX)


def test_curves_missing_a_column_name_it(sim):
    runs, curves = sim.curves()
    with pytest.raises(FitInputError, match="lacks column"):
        valid_curve_points(curves.drop(columns=["tokens"]), runs=_runs(runs))
