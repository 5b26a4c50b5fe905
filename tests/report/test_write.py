"""write_report end to end on a simulated sweep: the files, the headline, frontier.csv, runs.csv, escaping of
hostile names, self-containedness, and figures the input cannot support."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from orchestrator.fitting.options import ColumnMap, FitConfig
from orchestrator.fitting.run import run_fit
from orchestrator.report import write_report
from orchestrator.report.text import sci

FIGURES = {"frontier", "loss", "methods", "isoflop", "surface", "curves", "residuals", "holdout"}
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_TRIAL = "<img src=x onerror=alert(2)>"


def test_writes_every_file_into_the_folder(sim_report):
    names = {p.name for p in sim_report.files}
    assert {"index.html", "report.md", "frontier.csv", "runs.csv", "fit.json"} <= names
    assert {f"{f}.png" for f in FIGURES} <= names
    for path in sim_report.files:
        assert path.parent == sim_report.folder and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_headline_table_gives_every_target_budget_with_intervals(sim_report, html_tables):
    result = sim_report.fit.result
    rows = html_tables(sim_report.html)["headline-table"]
    header, body = rows[0], rows[1:]
    assert header[:3] == ["C (FLOPs)", "vs swept budgets", "N_opt (parameters)"]
    assert [r[0] for r in body] == [sci(c) for c in sorted(result["target_budgets"])]
    # Every cell of N_opt, D_opt, tokens per parameter and loss carries its bootstrap interval.
    assert all("[" in cell for r in body for cell in r[2:])
    # The largest swept budget (1e21) is inside the sweep; the default targets stop two decades beyond it.
    where = dict((r[0], r[1]) for r in body)
    assert where["1e21"] == "in swept range" and where["1e23"] == "2.0 decades above" and "1e24" not in where
    exps = html_tables(sim_report.html)["exponents"]
    methods = {r[0]: r for r in exps[1:]}
    assert set(methods) == set(result["method_order"])
    a = result["parametric"]["a"]
    assert methods["parametric"][2].startswith(f"{a:.3g}") and "[" in methods["parametric"][2]


def test_headline_recovers_the_simulated_law(sim_report):
    # Chinchilla's law: a = beta / (alpha + beta) = 0.4516; the headline's interval must hold it.
    for text in (sim_report.html, sim_report.md):
        a, lo, hi = map(float, re.search(r"N_opt \u221d C\^([\d.]+) \[([\d.]+), ([\d.]+)\]", text).groups())
        assert lo <= 0.28 / (0.34 + 0.28) <= hi
        assert a == pytest.approx(sim_report.fit.result["parametric"]["a"], abs=1e-3)
    assert "2 of 6 target budgets lie beyond them, up to 2.0 decades" in sim_report.html


def test_hostile_names_are_escaped_everywhere(sim_report):
    page, md = sim_report.html, sim_report.md
    assert HOSTILE_NAME not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE_TRIAL not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<script" not in page.lower() and "onerror=" not in page.replace("onerror=alert(2)&gt;", "")
    assert HOSTILE_NAME not in md and HOSTILE_TRIAL not in md and "&lt;script&gt;" in md


def test_page_is_self_contained(sim_report):
    page = sim_report.html
    srcs = re.findall(r'\bsrc\s*=\s*"([^"]*)"', page)
    hrefs = re.findall(r'\bhref\s*=\s*"([^"]*)"', page)
    assert len(srcs) == len(FIGURES) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert hrefs and all(h.startswith("#") for h in hrefs)
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page, re.I)
    assert "@import" not in page and "url(" not in page


def test_frontier_csv_has_a_row_per_method_and_target_budget(sim_report):
    result = sim_report.fit.result
    frontier = pd.read_csv(sim_report.folder / "frontier.csv")
    with_predictions = [m for m in result["method_order"] if result[m]["status"] == "ok" and result[m]["predictions"]]
    # The runs record their data's entropy floor (1.69), so the 4-parameter fit with E fixed to it runs too.
    assert set(frontier["method"]) == set(with_predictions) == {"parametric", "parametric_floor", "vpnls", "isoflop",
                                                                "envelope"}
    assert len(frontier) == len(with_predictions) * len(result["target_budgets"])
    for q in ("N_opt", "D_opt", "tokens_per_param", "loss"):
        assert {q, f"{q}_lo", f"{q}_hi"} <= set(frontier.columns)
        ok = frontier[f"{q}_lo"].notna()
        assert ok.all()  # every method was bootstrapped
        assert (frontier.loc[ok, f"{q}_lo"] <= frontier.loc[ok, q] * (1 + 1e-9)).all()
        assert (frontier.loc[ok, q] <= frontier.loc[ok, f"{q}_hi"] * (1 + 1e-9)).all()
    row = frontier[(frontier["method"] == "parametric") & np.isclose(frontier["C"], 1e22)].iloc[0]
    assert row["N_opt"] == pytest.approx(result["parametric"]["predictions"]["1e+22"]["N_opt"], rel=1e-9)
    assert row["extrapolation"] == pytest.approx(10.0) and bool(row["primary"])


def test_runs_csv_is_the_table_that_was_fitted(sim_report):
    runs = pd.read_csv(sim_report.folder / "runs.csv")
    result = sim_report.fit.result
    assert len(runs) == result["n_runs"] == 36
    assert list(runs["trial_id"].astype(str)) == result["provenance"]["trial_ids"]
    assert {"N", "D", "C", "loss", "budget"} <= set(runs.columns)


def test_exclusions_cost_failures_and_floor_are_reported(sim_report, html_tables):
    tables = html_tables(sim_report.html)
    excluded = {r[0]: r[1] for r in tables["excluded-table"][1:]}
    assert excluded == {"diverged-run": "status=diverged", HOSTILE_TRIAL: "status=failed"}
    failures = {r[0]: r[1] for r in tables["failures"][1:]}
    assert failures == {"diverged": "1", "failed": "1"}
    cost = dict(tables["cost-table"][1:])
    assert cost["trials"] == "38 (36 finished, 1 retried)"
    assert cost["training FLOPs (finished runs)"] == sci(9 * (1e18 + 1e19 + 1e20 + 1e21))
    assert cost["wall time (sum over trials)"] == "6.1 min"  # 36 x 10 s + 4 s + 2 s
    assert "1.69 nats/token" in sim_report.html  # the synthetic data's entropy floor


def test_figures_the_input_cannot_support_say_why(sim_sweep, tmp_path):
    fit = run_fit(FitConfig(bootstrap=0, methods=["isoflop"], holdout=False), table=sim_sweep.runs, name="iso_only",
                  out_dir=str(tmp_path))
    files = write_report(fit, runs=sim_sweep.runs, out_dir=tmp_path)
    names = {p.name for p in files}
    assert "isoflop.png" in names and "frontier.png" in names
    assert "surface.png" not in names and "residuals.png" not in names and "holdout.png" not in names
    page = (tmp_path / "index.html").read_text()
    assert page.count("not drawn: neither parametric nor vpnls was fitted") == 2
    assert "not drawn: the hold-out check was not run (fit.holdout=false)" in page
    assert "no CI (fit.bootstrap=0)" in page
    frontier = pd.read_csv(tmp_path / "frontier.csv")
    assert set(frontier["method"]) == {"isoflop"} and frontier["N_opt_lo"].isna().all()


def test_csv_fit_is_reread_from_fit_runs_csv(sim_sweep, tmp_path):
    csv = tmp_path / "published.csv"
    finished = sim_sweep.runs[sim_sweep.runs["status"] == "finished"]
    pd.DataFrame({"params": finished["N_total"], "tokens": finished["D"], "loss": finished["final_eval_loss"],
                  "model": ["<b>m</b>"] * len(finished)}).to_csv(csv, index=False)
    options = FitConfig(runs_csv=str(csv), columns=ColumnMap(n_params="params"), c_convention="6nd", bootstrap=20,
                        methods=["parametric", "isoflop", "envelope"], out_dir=str(tmp_path / "reports"))
    fit = run_fit(options)
    files = write_report(fit)  # no runs, curves or config: everything comes from the fit
    folder = tmp_path / "reports" / "published"
    assert folder / "index.html" in files
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == fit.result["n_runs"] == len(finished)
    page = (folder / "index.html").read_text()
    assert "no cost or failures recorded" in page and "final losses of" not in page  # title is in the PNG
    assert json.loads((folder / "fit.json").read_text())["name"] == "published"
