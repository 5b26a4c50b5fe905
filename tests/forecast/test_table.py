"""Forecasts from a CSV of checkpoints, and the misfitting benchmark's smoke mode on the published curves."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchestrator.forecast import law
from orchestrator.forecast.table import TableError, forecast_table, schedule_lr
from trainers.schedule import Schedule

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def test_table_rates_are_the_trainers_schedule():
    lr = schedule_lr(total_steps=500, peak=2e-3, warmup_steps=10, kind="wsd", cooldown_shape="linear")
    sched = Schedule.for_trial(peak=2e-3, total_tokens=500, warmup_tokens=10, kind="wsd", min_ratio=0.1,
                               decay_fraction=0.2, cooldown_shape="linear")
    assert lr[0] == sched(1) and lr[-1] == sched(500) == pytest.approx(2e-4)


def _rows(run: str, total: int, peak: float, n: float, upto: float, rng) -> list[dict]:
    lr = schedule_lr(total_steps=total, peak=peak)
    s1, s2 = law.areas(lr)
    truth = 2.0 + 30 / n ** 0.3 + 1.5 * s1 ** -0.45 - 0.4 * s2
    steps = np.arange(total // 20, int(upto * total) + 1, total // 20)
    return [dict(run=run, step=int(s), loss=float(truth[s - 1] + rng.normal(0, 0.002)), total_steps=total,
                 peak_lr=peak, n_params=n, tokens=total * 1e3) for s in steps]


def test_forecast_table_forecasts_unfinished_runs_and_checks_finished_ones(tmp_path):
    rng = np.random.default_rng(0)
    rows = [r for i, (t, n) in enumerate([(400, 1e6), (800, 4e6), (1600, 1.6e7), (800, 1e6), (1600, 4e6), (400, 1.6e7)])
            for r in _rows(f"done{i}", t, 1e-3, n, 1.0, rng)]
    rows += _rows("running", 1000, 1e-3, 4e6, 0.5, rng)
    path = tmp_path / "ckpts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out = {f.run: f for f in forecast_table(path)}
    assert set(out) == {f"done{i}" for i in range(6)} | {"running"}
    assert out["running"].measured is None
    for name in (f"done{i}" for i in range(6)):
        f = out[name]
        assert abs(f.forecast.loss - f.measured) / f.measured < 0.01


def test_a_table_without_a_loss_column_is_one_sentence(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"run": ["a"], "step": [1], "total_steps": [10], "peak_lr": [1e-3]}).to_csv(path, index=False)
    with pytest.raises(TableError, match="lacks column.*loss"):
        forecast_table(path)


@pytest.mark.skipif(not (REFERENCE / "misfitting_li2025_scaling_results_all_ckpts.csv").exists(),
                    reason="../shared/reference/ is absent")
def test_misfitting_benchmark_smoke():
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(repo / "benchmarks" / "forecast_misfitting.py"), "--smoke", "--csv",
                          str(REFERENCE / "misfitting_li2025_scaling_results_all_ckpts.csv")],
                         cwd=repo, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("50%"))
    median, coverage = float(line.split()[2].rstrip("%")), float(line.split()[-1].rstrip("%"))
    assert 0 < median < 5 and 50 <= coverage <= 100  # a real forecast of each run, not a constant


def test_action_forecast_prints_one_line_per_run_and_writes_nothing(cli, tmp_path):
    rng = np.random.default_rng(4)
    rows = [r for i, (t, n) in enumerate([(400, 1e6), (800, 4e6), (1600, 1.6e7), (800, 1e6), (1600, 4e6), (400, 1.6e7)])
            for r in _rows(f"done{i}", t, 1e-3, n, 1.0, rng)]
    rows += _rows("running", 1000, 1e-3, 4e6, 0.5, rng)
    table = tmp_path.parent / f"{tmp_path.name}_ckpts.csv"  # outside the CLI's scratch folder, which must stay empty
    pd.DataFrame(rows).to_csv(table, index=False)
    result = cli("action=forecast", f"forecast.table={table}")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == {f"done{i}" for i in range(6)} | {"running"}
    running = lines["running"].split()
    assert running[1] == "500"  # the last step it has seen
    forecast, lo, hi = float(running[3]), float(running[4].strip("[,")), float(running[5].strip("]"))
    lr = schedule_lr(total_steps=1000, peak=1e-3)
    s1, s2 = law.areas(lr)
    truth = 2.0 + 30 / 4e6 ** 0.3 + 1.5 * s1[-1] ** -0.45 - 0.4 * s2[-1]
    assert lo < forecast < hi and abs(forecast - truth) / truth < 0.01
    assert "finished at" in lines["done0"] and "finished at" not in lines["running"]
    assert list(tmp_path.iterdir()) == []  # printed, nothing written


@pytest.mark.parametrize("args, says", [
    (["action=forecast"], "forecast.table is required"),
    (["action=forecast", "forecast.table=/nonexistent/ckpts.csv"], "forecast.table=/nonexistent/ckpts.csv does not exist"),
])
def test_action_forecast_without_a_table_is_one_sentence_and_exit_2(cli, tmp_path, args, says):
    result = cli(*args)
    assert result.returncode == 2
    assert says in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_action_forecast_names_the_missing_columns(cli, tmp_path):
    table = tmp_path.parent / f"{tmp_path.name}_bad.csv"
    pd.DataFrame({"run": ["a"], "step": [1], "loss": [3.0]}).to_csv(table, index=False)
    result = cli("action=forecast", f"forecast.table={table}")
    assert result.returncode == 2
    assert "lacks column(s) total_steps, peak_lr" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0  # one sentence
