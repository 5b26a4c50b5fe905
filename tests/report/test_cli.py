"""The report through the real CLI: at the end of a real surrogate sweep, with action=report on that sweep
(files logged to its parent MLflow run), and for the published Epoch CSV of Chinchilla's runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
EPOCH = REPO.parent / "shared" / "reference" / "epoch_chinchilla_svg_extracted_data.csv"
REPORT_FILES = {"index.html", "report.md", "frontier.csv", "runs.csv", "fit.json", "frontier.png", "isoflop.png",
                "surface.png", "curves.png", "residuals.png", "holdout.png", "loss.png", "methods.png"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def test_a_sweep_run_ends_with_its_report(surrogate_sweep, html_tables):
    folder = surrogate_sweep.folder
    assert f"report: {Path('reports') / 'report_sweep' / 'index.html'}" in surrogate_sweep.proc.stdout
    assert REPORT_FILES <= {p.name for p in folder.iterdir()}
    tables = html_tables((folder / "index.html").read_text())
    # Default targets: the 4 swept budgets (1e10..3e11) and 1 and 2 decades beyond the largest (3e12, 3e13).
    assert [r[0] for r in tables["headline-table"][1:]] == ["1e10", "3e10", "1e11", "3e11", "3e12", "3e13"]
    # The 98.6k-parameter model at 3e11 is over oom_above_params=90000: a failure by kind, and excluded.
    failures = dict((r[0], int(r[1])) for r in tables["failures"][1:])
    assert failures["oom"] == 1
    runs = pd.read_csv(folder / "runs.csv")
    cost = dict(tables["cost-table"][1:])
    assert cost["trials"].startswith(f"{len(runs) + sum(failures.values())} (")
    assert any(r[1] == "status=oom" for r in tables["excluded-table"][1:])
    assert "1.69 nats/token" in (folder / "index.html").read_text()  # the surrogate's E is its entropy floor


def test_action_report_rewrites_and_logs_to_the_parent_run(surrogate_sweep):
    import mlflow

    index = surrogate_sweep.folder / "index.html"
    index.unlink()
    proc = cli("sweep=tiny", "trainer=surrogate", "sweep.name=report_sweep", "action=report", "fit.bootstrap=50",
               cwd=surrogate_sweep.cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert index.is_file() and "report:" in proc.stdout
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{surrogate_sweep.cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("report_sweep")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'sweep'")
    logged = {Path(a.path).name for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert REPORT_FILES <= logged


def test_epoch_csv_report(tmp_path, html_tables):
    if not EPOCH.is_file():
        pytest.skip(f"reference data not found: {EPOCH}")
    proc = cli("action=report", f"fit.runs_csv={EPOCH}", "fit.columns.n_params=Model Size",
               "fit.columns.flops=Training FLOP", "fit.drop_highest=5", "fit.bootstrap=50", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "reports" / "epoch_chinchilla_svg_extracted_data"
    assert REPORT_FILES <= {p.name for p in folder.iterdir()}
    assert len(pd.read_csv(folder / "runs.csv")) == 240
    page = (folder / "index.html").read_text()
    tables = html_tables(page)
    # 5 dropped from every fit (fit.drop_highest); the digitised runs between profiles only from IsoFLOP's.
    excluded = tables["excluded-table"][1:]
    assert sum(r[2] == "all" and r[1].startswith("fit.drop_highest=5") for r in excluded) == 5
    assert all(r[2] == "isoflop" for r in excluded if r[1] == "not on an IsoFLOP profile")
    # Chinchilla's budgets span 6e18..3e21: the 9 swept budgets are inside, the defaults stop 2 decades beyond.
    rows = [r[1] for r in tables["headline-table"][1:]]
    assert rows == ["in swept range"] * 9 + ["10x above", "2.0 decades above"]
    assert "no cost or failures recorded" in page
