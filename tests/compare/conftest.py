"""Shared inputs for the comparison tests: runs tables simulated from the surrogate trainer's law and noise model,
and those tables fitted the way action=compare fits them.

Fixtures only: conftest modules are not importable under --import-mode=importlib.

A planted multiplier k is a variant whose law is the baseline's with compute scaled by k: B -> B k^-beta, since
then L_var(N, D) = L_base(N, k D) and min over N of L_var(N, C / (k(N) N)) = L_opt,base(k C) under any compute
model, so the true M(C) is exactly k at every budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from orchestrator.compare.fits import fit_sweep
from orchestrator.fitting.compute import ComputeModel
from orchestrator.fitting.options import FitConfig
from orchestrator.fitting.table import tidy_runs
from trainers.config import SurrogateConfig
from trainers.surrogate import law_loss

REPO = Path(__file__).resolve().parents[2]
K = 1.25
BUDGETS = (1e18, 3e18, 1e19, 3e19, 1e20)
SIX = ComputeModel.constant(6.0)


def planted(law: SurrogateConfig, k: float = K) -> SurrogateConfig:
    """The law with compute scaled by k (module docstring)."""
    return replace(law, B=law.B * k ** -law.beta)


def simulate(law: SurrogateConfig, *, budgets=BUDGETS, sizes: int = 7, span: float = 8.0, seed: int = 0,
             name: str = "sim", noise: float | None = None) -> pd.DataFrame:
    """An IsoFLOP sweep in the sweep schema: per budget, `sizes` models log-spaced over a factor `span` around the
    law's N_opt (C = 6 N D), each loss the surrogate's law plus its noise model (Gaussian, sd trainer.surrogate.noise
    nats) from a seeded generator."""
    rng = np.random.default_rng(seed)
    sd = law.noise if noise is None else noise
    a = law.beta / (law.alpha + law.beta)
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    rows = []
    for C in budgets:
        centre = G * (C / 6) ** a
        for N in np.geomspace(centre / np.sqrt(span), centre * np.sqrt(span), sizes):
            D = C / (6 * N)
            rows.append({"trial_id": f"{name}-{len(rows)}", "sweep": name, "status": "finished", "seed": seed,
                         "budget": C, "N_total": N, "D": D, "C_exact": 6 * N * D,
                         "final_eval_loss": law_loss(law, N, D) + sd * rng.standard_normal()})
    return pd.DataFrame(rows)


def fitted(name: str, table: pd.DataFrame, *, method: str = "parametric", compute: ComputeModel = SIX):
    """The table fitted as action=compare fits a sweep: the fitting stage's tidy table, then `method`."""
    runs = tidy_runs(table, options=FitConfig()).runs
    return fit_sweep(name, runs, method=method, compute=compute)


def as_csv(table: pd.DataFrame, path: Path) -> Path:
    """The table as a CSV of runs (the fitting stage's default column names)."""
    table.rename(columns={"N_total": "n_params", "D": "tokens", "C_exact": "flops", "final_eval_loss": "loss"})[
        ["trial_id", "status", "budget", "n_params", "tokens", "flops", "loss"]].to_csv(path, index=False)
    return path


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="session")
def sim() -> SimpleNamespace:
    return SimpleNamespace(K=K, BUDGETS=BUDGETS, SIX=SIX, law=SurrogateConfig(noise=0.005), planted=planted,
                           simulate=simulate, fitted=fitted, as_csv=as_csv, run_cli=run_cli)
