"""action=compare through the real CLI on CSVs of runs (no Ray): the numbers, every file, the MLflow run, escaping,
and every kind of bad input as one sentence with exit code 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def compared(sim, tmp_path_factory):
    """A planted pair of CSVs (the variant under a hostile file name) compared through the CLI."""
    cwd = tmp_path_factory.mktemp("compare_cli")
    sim.as_csv(sim.simulate(sim.law, seed=21), cwd / "base.csv")
    sim.as_csv(sim.simulate(sim.planted(sim.law), seed=22), cwd / f"{HOSTILE}.csv")
    proc = sim.run_cli("action=compare", "compare.baseline=base.csv", f"compare.variants=['{HOSTILE}.csv']",
                       "compare.bootstrap=200", "compare.name=planted", "fit.bootstrap=0", cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return cwd, proc


def test_the_planted_multiplier_comes_back_through_the_cli(sim, compared):
    cwd, proc = compared
    folder = cwd / "reports" / "planted"
    result = json.loads((folder / "compare.json").read_text())
    rows = [r for r in result["comparisons"][0]["rows"] if r["measured"]]
    assert len(rows) == len(sim.BUDGETS)
    assert all(abs(r["M"] / sim.K - 1) < 0.05 and r["M_ci"][0] < r["M"] < r["M_ci"][1] for r in rows)
    table = pd.read_csv(folder / "multiplier.csv")
    assert list(table.loc[table["measured"], "M"].round(6)) == [round(r["M"], 6) for r in rows]
    for name in ("index.html", "report.md", "loss.png", "multiplier.png", "fits/base/fit.json"):
        assert (folder / name).is_file(), name
    assert "M(C) = C_base(L_variant(C)) / C" in proc.stdout and "written: reports/planted/index.html" in proc.stdout


def test_the_comparison_is_an_mlflow_run_linking_the_sweeps(compared):
    cwd, proc = compared
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("planted")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'compare'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["baseline"] == "base" and run.data.tags["variants"] == HOSTILE
    assert run.data.tags["compared.1.origin"] == f"CSV of runs {HOSTILE}.csv"
    assert run.data.params["compare.baseline"] == "base.csv"
    assert any(k.startswith(f"M.{'_img src_x onerror_alert_1__'}.C_") for k in run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "compare")}
    assert {"compare/index.html", "compare/compare.json", "compare/report.md", "compare/fits"} <= artifacts
    assert run.info.status == "FINISHED" and run.info.run_id in proc.stdout


def test_user_strings_are_escaped_in_both_pages(compared):
    cwd, _ = compared
    folder = cwd / "reports" / "planted"
    html, md = (folder / "index.html").read_text(), (folder / "report.md").read_text()
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert HOSTILE not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert 'id="multiplier-table-0"' in html and 'src="http' not in html and "<script" not in html


def test_a_sweep_compared_with_itself_is_exactly_one(sim, compared):
    cwd, _ = compared
    proc = sim.run_cli("action=compare", "compare.baseline=base.csv", "compare.variants=[base.csv]",
                       "compare.bootstrap=100", "compare.name=self", "fit.bootstrap=0", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((cwd / "reports" / "self" / "compare.json").read_text())["comparisons"][0]["rows"]
    assert all(r["M"] == 1.0 and r["M_ci"][0] <= 1.0 <= r["M_ci"][1] for r in rows)


def _bad_cli(sim, cwd: Path, *args: str) -> str:
    """Through a real `python -m orchestrator` process: exit 2, one line on stderr, nothing written."""
    before = sorted(p.relative_to(cwd) for p in cwd.rglob("*"))
    proc = sim.run_cli("action=compare", *args, cwd=cwd)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(p.relative_to(cwd) for p in cwd.rglob("*")) == before  # nothing written
    return lines[0]


def _bad(cwd: Path, capsys, monkeypatch, *args: str) -> str:
    """The same entry point (orchestrator.cli.main: parse, compose, dispatch) in this process, which is faster."""
    from orchestrator.cli import main

    monkeypatch.chdir(cwd)
    before = sorted(p.relative_to(cwd) for p in cwd.rglob("*"))
    capsys.readouterr()
    assert main(["action=compare", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert sorted(p.relative_to(cwd) for p in cwd.rglob("*")) == before  # nothing written
    return err[0]


def test_one_sweep_only_is_one_sentence_and_exit_2(sim, compared):
    cwd, _ = compared
    msg = _bad_cli(sim, cwd, "compare.baseline=base.csv")
    assert "needs at least two sweeps but got one (compare.baseline=base.csv)" in msg


def test_bad_input_is_one_sentence_and_exit_2(sim, compared, capsys, monkeypatch):
    cwd, _ = compared
    msg = _bad(cwd, capsys, monkeypatch, "compare.variants=[base.csv]")
    assert "needs the baseline sweep: compare.baseline=SWEEP" in msg
    msg = _bad(cwd, capsys, monkeypatch, "compare.baseline=base.csv", "compare.variants=[no_such_sweep]")
    assert "compare.variants='no_such_sweep' names no sweep in the tracking store" in msg
    assert "it holds no sweeps yet" in msg  # only comparisons so far: they are not offered as sweeps
    msg = _bad(cwd, capsys, monkeypatch, "compare.baseline=base.csv", "compare.variants=[missing.csv]")
    assert "compare.variants='missing.csv' is not a readable CSV file" in msg
    msg = _bad(cwd, capsys, monkeypatch, "compare.baseline=base.csv", "compare.variants=[base.csv]",
               "compare.method=envelope")
    assert msg.startswith("error: compare.method='envelope' is unknown: allowed are headline, parametric")

    failed = sim.simulate(sim.law, seed=23)
    failed["status"] = "crashed"
    sim.as_csv(failed, cwd / "failed.csv")
    msg = _bad(cwd, capsys, monkeypatch, "compare.baseline=base.csv", "compare.variants=[failed.csv]")
    assert "compare.variants='failed.csv': CSV of runs failed.csv has no finished runs (35 crashed)" in msg


def test_a_variant_with_no_overlapping_budgets_is_one_sentence_and_exit_2(sim, compared):
    cwd, _ = compared
    sim.as_csv(sim.simulate(sim.law, budgets=(1e22, 3e22, 1e23), seed=24), cwd / "far.csv")
    msg = _bad_cli(sim, cwd, "compare.baseline=base.csv", "compare.variants=[far.csv]")
    assert "far swept budgets 1e+22 to 1e+23 FLOPs, which do not overlap the baseline base's 1e+18 to 1e+20" in msg


def test_an_unknown_sweep_in_a_folder_without_a_store(sim, tmp_path, capsys, monkeypatch):
    msg = _bad(tmp_path, capsys, monkeypatch, "compare.baseline=base", "compare.variants=[variant]")
    assert "compare.baseline='base' names no sweep in the tracking store" in msg and "holds no sweeps yet" in msg
