"""benchmarks/forecast_demo.py --smoke: a real tiny sweep, then its logged forecasts scored against its final losses."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_forecast_demo_smoke_scores_the_sweeps_own_forecasts(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "forecast_demo.py"), "--smoke"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()[:3] in ("25%", "50%", "75%")]
    assert rows, out.stdout
    for row in rows:
        assert int(row[1]) >= 1 and 0 <= float(row[-1].rstrip("%")) <= 100
