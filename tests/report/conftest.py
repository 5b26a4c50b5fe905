"""Shared inputs for the report tests: a small sweep-schema table in memory (with hostile strings and
failures), its fitted report, a real surrogate sweep run through the CLI, and an HTML table reader.

Fixtures only: conftest modules are not importable under --import-mode=importlib.
"""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference"
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_TRIAL = "<img src=x onerror=alert(2)>"
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def simulate(*, budgets=(1e18, 1e19, 1e20, 1e21), sizes: int = 9, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs (sweep schema, as orchestrator.runs reads them) and 6-point curves from the Chinchilla law with
    0.5% noise; one run diverged and one with a hostile trial id crashed."""
    rng = np.random.default_rng(seed)
    G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    rows, curves = [], []
    for C in budgets:
        centre = G * (C / 6) ** (BETA / (ALPHA + BETA))
        for j, N in enumerate(np.geomspace(centre / 6, centre * 6, sizes)):
            D = C / (6 * N)
            loss = (E + A / N ** ALPHA + B / D ** BETA) * np.exp(rng.normal(0, 0.005))
            tid = f"c{C:.0e}-n{j}"
            rows.append({"trial_id": tid, "sweep": HOSTILE_NAME, "status": "finished", "seed": 0, "budget": C,
                         "dataset": "synthetic", "N_total": N, "N_nonembed": 0.9 * N, "D": D, "C_exact": C,
                         "C_6ND": 6 * N * D, "final_eval_loss": loss, "final_train_loss": loss, "eval_loss_se": 0.005,
                         "wall_s": 10.0, "entropy_floor": E, "lr": 3e-3, "schedule": "cosine", "run_id": tid,
                         "attempt": 1, "device": "cpu"})
            for step, t in enumerate(np.linspace(D / 6, D, 6), start=1):
                value = E + A / N ** ALPHA + B / t ** BETA
                curves.append({"trial_id": tid, "step": step, "tokens": t, "flops": 6 * N * t, "train_loss": value,
                               "eval_loss": value, "lr": 3e-3})
    runs = pd.DataFrame(rows)
    failed = [{**rows[0], "trial_id": "diverged-run", "status": "diverged", "final_eval_loss": np.nan, "wall_s": 4.0},
              {**rows[1], "trial_id": HOSTILE_TRIAL, "status": "failed", "final_eval_loss": np.nan, "wall_s": 2.0,
               "attempt": 3}]
    return pd.concat([runs, pd.DataFrame(failed)], ignore_index=True), pd.DataFrame(curves)


@pytest.fixture(scope="session")
def sim_sweep() -> SimpleNamespace:
    runs, curves = simulate()
    return SimpleNamespace(runs=runs, curves=curves, simulate=simulate)


@pytest.fixture(scope="session")
def sim_report(sim_sweep, tmp_path_factory) -> SimpleNamespace:
    """The report of the simulated sweep, fitted under the hostile sweep name (30 resamples)."""
    from orchestrator.fitting.options import FitConfig
    from orchestrator.fitting.run import run_fit
    from orchestrator.report import write_report

    folder = tmp_path_factory.mktemp("sim_report")
    fit = run_fit(FitConfig(bootstrap=30), table=sim_sweep.runs, curves=sim_sweep.curves, name=HOSTILE_NAME,
                  out_dir=str(folder))
    files = write_report(fit, runs=sim_sweep.runs, curves=sim_sweep.curves, out_dir=folder)
    return SimpleNamespace(fit=fit, files=files, folder=folder, html=(folder / "index.html").read_text(),
                           md=(folder / "report.md").read_text())


@pytest.fixture(scope="session")
def surrogate_sweep(tmp_path_factory) -> SimpleNamespace:
    """A real small sweep through the CLI: surrogate trainer, 4 budgets x 7 sizes, one model over the
    surrogate's memory limit (status oom) and injected divergences; the run writes its report at the end."""
    cwd = tmp_path_factory.mktemp("surrogate_sweep")
    proc = run_cli("sweep=tiny", "trainer=surrogate", "sweep.name=report_sweep", "sweep.budgets=[1e10,3e10,1e11,3e11]",
                   "sweep.sizes_per_budget=7", "trainer.surrogate.diverge_prob=0.15",
                   "trainer.surrogate.oom_above_params=90000", "fit.bootstrap=100", cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return SimpleNamespace(cwd=cwd, proc=proc, folder=cwd / "reports" / "report_sweep")


class _Tables(HTMLParser):
    """Collects the text of every cell of every table with an id: {id: [[cell, ...], ...]} (header row first)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._current: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._current = attrs.get("id")
            if self._current:
                self.tables[self._current] = []
        elif tag == "tr" and self._current:
            self.tables[self._current].append([])
        elif tag in ("td", "th") and self._current:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._current and self._cell is not None:
            self.tables[self._current][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._current = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data + " ")


@pytest.fixture(scope="session")
def html_tables():
    """html text -> {table id: rows of cell texts}."""
    def parse(text: str) -> dict[str, list[list[str]]]:
        parser = _Tables()
        parser.feed(text)
        return parser.tables
    return parse
