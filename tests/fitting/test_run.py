"""run_fit end to end: fit.json keys and strict JSON, the printed table, sweep input, bad input and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.errors import FitInputError
from orchestrator.fitting.options import ColumnMap, FitConfig
from orchestrator.fitting.run import format_summary, run_fit


def _strict_json(path: Path) -> dict:
    def no_nan(token):
        raise ValueError(f"non-JSON constant {token}")
    return json.loads(path.read_text(), parse_constant=no_nan)


def test_csv_with_canonical_columns_needs_no_mapping(sim, tmp_path):
    path = tmp_path / "sim_runs.csv"
    sim.isoflop(noise=0.005, seed=0).drop(columns=["budget", "trial_id"]).to_csv(path, index=False)
    report = run_fit(FitConfig(runs_csv=str(path), bootstrap=40, out_dir=str(tmp_path / "reports")))
    assert report.json_path == tmp_path / "reports" / "sim_runs" / "fit.json"
    data = _strict_json(report.json_path)
    for method in ("parametric", "vpnls", "isoflop"):
        entry = data[method]
        assert entry["status"] == "ok"
        for key in ("a", "b", "ci", "predictions", "excluded", "convergence"):
            assert key in entry, (method, key)
        # Default targets: the swept budgets and one and two decades beyond the largest, no further.
        assert set(entry["predictions"]) == {"1e+18", "3e+18", "1e+19", "3e+19", "1e+20", "3e+20", "1e+21", "1e+22",
                                             "1e+23"}
        assert len(entry["ci"]["a"]) == 2 and entry["ci"]["level"] == 0.95
        assert entry["ci"]["predictions"]["1e+22"]["N_opt"][0] < entry["predictions"]["1e+22"]["N_opt"]
    for method in ("parametric", "vpnls"):
        assert all(k in data[method] for k in ("E", "A", "B", "alpha", "beta"))
        assert all(len(data[method]["ci"][k]) == 2 for k in ("E", "alpha", "beta", "a", "b"))
    assert data["parametric"]["convergence"]["converged"] is True
    assert data["budgets"]["grouping"] == "exact" and len(data["budgets"]["values"]) == 7
    assert data["holdout"]["status"] == "ok" and "parametric" in data["holdout"]["methods"]
    prov = data["provenance"]
    assert len(prov["sha256"]) == 64 and prov["options"]["huber_delta"] == 1e-3 and prov["seed"] == 0
    assert prov["conventions"]["n_convention"] == "total" and "code" in prov
    text = format_summary(report)
    assert "parametric" in text and "isoflop" in text and "leave-largest-budget-out" in text
    assert str(report.json_path) in text


def test_epoch_end_to_end_records_exclusions_and_reproduces(epoch_csv, tmp_path):
    options = FitConfig(runs_csv=str(epoch_csv), columns=ColumnMap(n_params="Model Size", flops="Training FLOP"),
                        drop_highest=5, bootstrap=0, methods=["parametric", "isoflop"], holdout=False)
    run_fit(options, out_dir=str(tmp_path))
    data = _strict_json(tmp_path / "fit.json")
    assert data["n_runs"] == 240 and len(data["excluded"]) == 5
    assert data["parametric"]["alpha"] == pytest.approx(0.3473, abs=0.002)
    assert data["parametric"]["objective"] == pytest.approx(0.00101827, rel=1e-4)
    assert len(data["isoflop"]["profiles"]) == 9
    assert data["parametric"]["excluded"][0]["reason"].startswith("fit.drop_highest=5")
    # The largest swept budget (about 3e21) is added to the target budgets.
    assert any(2.5e21 < c < 3.5e21 for c in data["target_budgets"])


def test_sweep_table_with_curves_fits_the_envelope(sim, tmp_path):
    runs, curves = sim.curves()
    options = FitConfig(bootstrap=30, methods=["parametric", "envelope", "powerlaw"], holdout=False)
    report = run_fit(options, table=runs, curves=curves, out_dir=str(tmp_path))
    assert report.name == "sim"
    data = _strict_json(report.json_path)
    assert data["envelope"]["status"] == "ok" and data["envelope"]["source"] == "valid points of training curves"
    assert data["envelope"]["a"] == pytest.approx(sim.Law().a, abs=0.03)
    assert data["powerlaw"]["status"] == "ok" and len(data["powerlaw"]["ci"]["alpha"]) == 2
    assert data["provenance"]["trial_ids"][:2] == ["n0d0", "n0d1"]


def test_too_few_budgets_skips_isoflop_but_reports_the_rest(sim, tmp_path):
    df = sim.isoflop(budgets=(1e19,), sizes=12, noise=0.002)
    report = run_fit(FitConfig(bootstrap=0), table=df, out_dir=str(tmp_path))
    data = _strict_json(report.json_path)
    assert data["isoflop"]["status"] == "skipped"
    assert "at least 2 budgets" in data["isoflop"]["reason"] and "found 1" in data["isoflop"]["reason"]
    assert data["parametric"]["status"] == "ok"
    # A method that cannot be fitted is reported, not an error: the fit itself succeeded.
    assert "isoflop" in format_summary(report) and "skipped" in format_summary(report)


def test_no_input_and_missing_file_are_clear(tmp_path):
    with pytest.raises(FitInputError, match="fit.runs_csv=PATH"):
        run_fit(FitConfig(), out_dir=str(tmp_path))
    with pytest.raises(FitInputError, match="is not a readable file"):
        run_fit(FitConfig(runs_csv=str(tmp_path / "nope.csv")), out_dir=str(tmp_path))
    assert not (tmp_path / "fit.json").exists()


def test_all_runs_excluded_raises_before_writing(sim, tmp_path):
    df = sim.isoflop(noise=0.0).assign(status="failed")
    with pytest.raises(FitInputError, match="all 63 runs were excluded"):
        run_fit(FitConfig(), table=df, out_dir=str(tmp_path))
    assert not (tmp_path / "fit.json").exists()


def test_known_floor_adds_the_four_parameter_fit_and_checks_e_both_ways(sim, tmp_path):
    law = sim.Law()
    df = sim.isoflop(law, noise=0.003, seed=3)
    right = run_fit(FitConfig(bootstrap=200, floor=law.E), table=df, out_dir=str(tmp_path / "right")).result
    assert right["method_order"][:2] == ["parametric", "parametric_floor"]
    fixed = right["parametric_floor"]
    assert fixed["status"] == "ok" and fixed["E"] == law.E and fixed["fixed_E"] == law.E
    assert fixed["a"] == pytest.approx(law.a, abs=0.01) and "E" not in fixed["ci"]
    assert right["floor_check"]["verdict"] == "consistent"
    # A floor the data contradict: the free fit's E interval lies below it, and the summary says so.
    wrong = run_fit(FitConfig(bootstrap=200, floor=2.5), table=df, out_dir=str(tmp_path / "wrong"))
    assert wrong.result["floor_check"]["verdict"] == "below"
    assert "known floor 2.5: fitted E" in format_summary(wrong) and "is below" in format_summary(wrong)


def test_seed_scatter_is_reported_beside_the_eval_error(sim, tmp_path):
    law = sim.Law()
    base = sim.isoflop(law, noise=0.0, budgets=(1e18, 1e19, 1e20))
    rng = np.random.default_rng(0)
    seeds = pd.concat([base.assign(seed=s, trial_id=base["trial_id"] + f"s{s}",
                                   loss=base["loss"] + rng.normal(0, 0.01, len(base)), eval_loss_se=0.002)
                       for s in range(3)], ignore_index=True)
    result = run_fit(FitConfig(bootstrap=50), table=seeds, out_dir=str(tmp_path)).result
    noise = result["noise"]
    assert noise["points_with_seeds"] == len(base)
    assert noise["seed_sd"] == pytest.approx(0.01, rel=0.25) and noise["eval_loss_se_median"] == 0.002
    assert "design points within 3 strata" in result["parametric"]["ci"]["scheme"]
