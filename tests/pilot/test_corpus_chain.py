"""The chain prepare -> pilot -> IsoFLOP sweep -> report on a real corpus nobody here wrote: the installed Python
standard library's docstrings and comments, built offline by benchmarks/pilot_corpus.py (a few minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_stdlib_chain_brackets_three_budgets_and_its_headline_says_whether_to_trust_it(tmp_path):
    run = tmp_path / "run"
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pilot_corpus.py"), "--out", str(run)],
                         capture_output=True, text=True, timeout=1200, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    # The pilot's rules give the sweep no trial it refuses (the sweep would have stopped before any trial ran).
    assert "0 not valid points" in out.stdout, out.stdout[-4000:]
    fit = json.loads((run / "reports" / "stdlib" / "fit.json").read_text())
    bracketed = [p for p in fit["isoflop"]["profiles"] if not p["edge"]]
    assert len(bracketed) >= 3, fit["isoflop"]["profiles"]
    # The terminal headline: a verdict first, then the allocation; when not trustworthy, each failed check by name
    # with its fix (as many as fit in the headline).
    stdout = (run / "sweep.log").read_text().split("\n--- stderr ---\n")[0]
    headline = [line for line in stdout.split("\nruns: ", 1)[1].splitlines()[1:] if line.strip()]
    failed = [c["title"] for c in fit["checks"] if c["status"] == "fail"]
    if fit["trustworthy"]:
        assert not failed and "passes all" in headline[0]
    else:
        assert failed and f"NOT YET TRUSTWORTHY: {len(failed)} of {len(fit['checks'])} checks failed" in headline[0]
        named = [line for line in headline if line.startswith("  FAIL ")]
        assert named and all("fix:" in line for line in named)
        assert all(any(title in line for line in named) for title in failed[:len(named)])
