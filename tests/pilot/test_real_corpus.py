"""A real corpus nobody here wrote, end to end on the CPU: the installed Python standard library's docstrings and
comments -> action=prepare -> action=pilot -> the IsoFLOP sweep with the pilot's rules -> the report
(benchmarks/pilot_corpus.py, through the real CLI, Ray and MLflow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_stdlib_docs_chain_ends_with_bracketed_minima_and_a_plain_headline(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pilot_corpus.py"), "--out", str(out),
                           "--mb", "6", "--vocab", "512", "--budgets", "1e10,3e10,1e11"],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rules = (out / "conf" / "hparams" / "pilot_stdlib.yaml").read_text()
    assert "measured by action=pilot" in rules
    fit = json.loads((out / "reports" / "stdlib" / "fit.json").read_text())
    bracketed = [p for p in fit["isoflop"]["profiles"] if not p["edge"]]
    assert len(bracketed) >= 3
    report = (out / "reports" / "stdlib" / "report.md").read_text()
    # the headline states the answer only when every check passed, and otherwise says which failed
    assert ("not yet trustworthy" in report) != bool(fit["trustworthy"])
