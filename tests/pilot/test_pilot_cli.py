"""action=pilot through the real CLI: its bad input, the law of a table of runs, and a real pilot on Ray whose
rules the sweep then plans with (orchestrator/pilot/run.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import run_cli


def test_a_pilot_needs_a_config_folder_and_an_isoflop_sweep(tmp_path):
    out = run_cli("sweep=tiny", "action=pilot", cwd=tmp_path)
    assert out.returncode == 2 and "give --config-dir DIR" in out.stderr
    (tmp_path / "conf").mkdir()
    out = run_cli("--config-dir", "conf", "sweep=lr_search_tiny", "action=pilot", cwd=tmp_path)
    assert out.returncode == 2 and "kind=lr_search" in out.stderr
    out = run_cli("--config-dir", "conf", "sweep=tiny", "data.vocab_size=8192", "sweep.min_tokens_per_param=0",
                  "action=pilot", cwd=tmp_path)
    assert out.returncode == 2 and "refuses this design" in out.stderr and "8192-entry vocabulary" in out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "conf" / "hparams").exists()


def test_the_law_of_a_table_of_runs_is_printed_with_its_prediction(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for n in (1e8, 2e8, 4e8):
        for d in (2e9, 8e9, 3.2e10):
            lr_opt, b_opt = 3.0 * n ** -0.7 * d ** 0.3, 6e-4 * d ** 0.55
            for i in range(-3, 4):
                for j in range(-3, 4):
                    rows.append({"params": n, "tokens": d, "lr": lr_opt * 2.0 ** (i + 0.3), "bsz": b_opt * 2.0 ** (j - 0.2),
                                 "loss": 2.5 + 0.02 * ((i + 0.3) * math.log(2)) ** 2 + 0.01 * ((j - 0.2) * math.log(2)) ** 2
                                 + 0.001 * rng.standard_normal()})
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    out = run_cli("action=pilot", "pilot.runs_csv=runs.csv", "pilot.columns.N=params", "pilot.columns.D=tokens",
                  "pilot.columns.batch=bsz", "pilot.predict=[1.6e9,1e11]", "pilot.bootstrap=200", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "lr*(N, D) = " in out.stdout and "at N=1.6e+09, D=1e+11: lr* = " in out.stdout
    data = json.loads((tmp_path / "reports" / "pilot_runs" / "hparams_law.json").read_text())
    assert data["law"]["alpha"] == pytest.approx(-0.7, abs=0.02) and data["law"]["beta"] == pytest.approx(0.3, abs=0.02)
    assert data["law"]["gamma"] == pytest.approx(0.55, abs=0.02)
    assert data["law"]["alpha_ci"]["lo"] <= -0.7 <= data["law"]["alpha_ci"]["hi"]
    assert data["prediction"]["lr"] == pytest.approx(3.0 * 1.6e9 ** -0.7 * 1e11 ** 0.3, rel=0.1)
    assert (tmp_path / "reports" / "pilot_runs" / "hparams_law.png").stat().st_size > 10_000
    # fit.out_dir moves every stage's reports, the pilot's too (config.reports_dir)
    out = run_cli("action=pilot", "pilot.runs_csv=runs.csv", "pilot.columns.N=params", "pilot.columns.D=tokens",
                  "pilot.columns.batch=bsz", "pilot.bootstrap=20", "fit.out_dir=elsewhere", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "elsewhere" / "pilot_runs" / "hparams_law.json").is_file()
    out = run_cli("action=pilot", "pilot.runs_csv=runs.csv", cwd=tmp_path)
    assert out.returncode == 2 and "has no column N, D, batch" in out.stderr


@pytest.mark.slow
def test_a_pilot_on_the_surrogate_finds_its_planted_rate_law_and_the_sweep_uses_it(tmp_path):
    # The surrogate's best rate is lr_c (N / 1e6)^-0.3 at any D (trainers/surrogate.py): the pilot's law must find
    # alpha near -0.3 and beta near 0; the option it writes is marked * by --help and used by the plan.
    (tmp_path / "conf").mkdir()
    args = ["--config-dir", "conf", "sweep=tiny", "trainer=surrogate", "trainer.surrogate.lr_penalty=0.05",
            "trainer.surrogate.noise=0.001", "trainer.surrogate.points=4", "sweep.budgets=[1e10,3e10]"]
    out = run_cli(*args, "action=pilot", "pilot.batch_choices=1", "pilot.trials_per_cell=8", "pilot.bootstrap=200",
                  "pilot.lr_min=1e-4", "pilot.lr_max=0.1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    written = tmp_path / "conf" / "hparams" / "pilot_tiny.yaml"
    rules = yaml.safe_load(written.read_text())
    assert rules["lr"]["of"] == "N" and rules["lr"]["exponent"] == pytest.approx(-0.3, abs=0.1)
    assert abs(rules["lr"]["exponent2"]) < 0.1
    summary = json.loads((tmp_path / "reports" / "pilot_tiny" / "pilot.json").read_text())
    assert summary["profile"]["edge"] == "" and rules["centre_tokens_per_param"] > 0
    assert "pilot_tiny*" in run_cli("--config-dir", "conf", "--help", cwd=tmp_path).stdout
    plan = run_cli(*args, "hparams=pilot_tiny", "action=plan", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "from the pilot (hparams=pilot_tiny)" in plan.stdout and "measured by action=pilot" in plan.stdout
