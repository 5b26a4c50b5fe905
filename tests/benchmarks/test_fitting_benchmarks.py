"""benchmarks/fit_speed.py --smoke runs to the end and prints both timings and the ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference"


def test_fit_speed_smoke():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fit_speed.py"), "--smoke"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for label in ("scipy loop", "ours (4500)", "speed-up", "bootstrap"):
        assert label in proc.stdout


@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no published data at {REFERENCE}")
def test_published_laws_smoke():
    # benchmarks/published_laws.py --smoke: Gadre's 6.9B prediction and the Llama 3 checks, from ../shared/reference/
    # (each dataset skipped with a line when absent).
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "published_laws.py"), "--smoke"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "Gadre et al. 2024" in proc.stdout and "Llama 3" in proc.stdout
