"""The hparams law's report section and the untuned cells a frontier report names (orchestrator/report/hparams_law.py)."""

from __future__ import annotations

import pandas as pd

from orchestrator.hparams import HParamsConfig, ScaleRule
from orchestrator.report.hparams_law import insert_untuned, untuned_lines

RULES = HParamsConfig(name="pilot_x", pilot="from a pilot",
                      lr=ScaleRule(of="N", coef=1.0, exponent=-0.5, of2="D", exponent2=0.25),
                      batch_tokens=ScaleRule(of="D", coef=1e-3, exponent=1.0))


def runs(lrs, batches):
    n, d = 1e4, 1e6  # lr* = 1e-2 * 31.6 = 0.316, B* = 1000
    return pd.DataFrame({"status": "finished", "N_total": n, "D": d, "lr": lrs, "batch_tokens": batches})


def test_runs_off_the_fitted_optimum_are_named_with_their_factor():
    lines = untuned_lines(runs([0.316, 0.316 * 3, 0.316], [1000, 1000, 300]), rules=RULES)
    assert lines[0].startswith("### Untuned cells (rate or batch more than 2x")
    named = [line for line in lines if line.startswith("- N=")]
    assert len(named) == 2 and "lr 3x above lr*" in named[0] and "batch 3.3x below B*" in named[1]


def test_no_fitted_option_no_section_and_tuned_runs_say_none():
    assert untuned_lines(runs([0.01], [1000]), rules=HParamsConfig()) == []  # hparams=constant: no law
    lines = untuned_lines(runs([0.3, 0.5], [900, 1500]), rules=RULES)
    assert any(line.startswith("None of the 2 finished runs") for line in lines)


def test_the_section_goes_before_the_frontier_in_both_pages(tmp_path):
    md, html = tmp_path / "report.md", tmp_path / "index.html"
    md.write_text("# sweep\n\nheadline\n\n## Frontier\n")
    html.write_text("<html><body><p>headline</p><h2>Frontier</h2></body></html>")
    insert_untuned(md, html, untuned_lines(runs([3.0], [1000]), rules=RULES))
    assert md.read_text().index("Untuned cells") < md.read_text().index("## Frontier")
    assert html.read_text().index('id="untuned"') < html.read_text().index("<h2>Frontier")
