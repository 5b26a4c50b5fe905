"""Every benchmark's smoke mode runs and prints its figures (the full runs are `make bench`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("script, expected", [
    ("scheduling_overhead.py", "utilisation"),
    ("scale.py", "read back into pandas: 100 rows (100 finished)"),
    ("lr_search.py", "pruning saves"),
    ("adaptive_isoflop.py", "adaptive uses"),
    ("plan_scale.py", "rows not shown: showing the first 30 and last 30 of 20040 trials"),
    ("fit_memory.py", "floor: 1,000 runs in under 2 GB: ok"),
    ("forks.py", "match their independent runs within 1e-3 nats: ok"),
    ("cpu_rules.py", "cpu_rules: done"),
    ("eta.py", "2 workers / 1 ="),
    ("pilot_hparams_law.py", "beyond the table): lr* = "),
])
def test_benchmark_smoke_mode(tmp_path, script, expected):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert expected in out.stdout
