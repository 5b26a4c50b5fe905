"""benchmarks/report_speed.py --smoke fits and reports a small simulated sweep and prints the timings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_report_speed_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "report_speed.py"), "--smoke", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for label in ("fit          :", "report       :", "total        :", "floor        :"):
        assert label in proc.stdout
    assert re.search(r"data: 60 runs", proc.stdout)
    assert (tmp_path / "index.html").is_file() and (tmp_path / "frontier.csv").is_file()
