"""Shared test helpers: run the real CLI as a user would (a subprocess in a scratch folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m orchestrator ARGS` in `cwd`; returns the finished process (text output)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture
def cli(tmp_path):
    """Run the CLI in an empty scratch folder."""
    return lambda *args, **kw: run_cli(*args, cwd=tmp_path, **kw)
