"""benchmarks/fit_speed.py --smoke runs to the end and prints both timings and the ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_fit_speed_smoke():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fit_speed.py"), "--smoke"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for label in ("scipy loop", "ours (4500)", "speed-up", "bootstrap"):
        assert label in proc.stdout
