"""Shared generators for the fitting tests: runs simulated from a known law, and the published reference data.

Reference files live in ../shared/reference/ next to the repository (never copied into it); tests that read
them skip when that folder is absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


@dataclass(frozen=True)
class Law:
    """L(N, D) = E + A / N^alpha + B / D^beta; defaults are Hoffmann et al. (2022)'s fitted values."""

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    def loss(self, N, D):
        return self.E + self.A / np.power(N, self.alpha) + self.B / np.power(D, self.beta)

    def n_opt(self, C: float) -> float:
        """Exact N_opt at C = 6 N D (numerical minimum along the IsoFLOP line)."""
        res = minimize_scalar(lambda x: self.loss(np.exp(x), C / (6 * np.exp(x))), bounds=(5, 40), method="bounded",
                              options={"xatol": 1e-10})
        return float(np.exp(res.x))


def simulate_isoflop(law: Law = Law(), *, budgets=(1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21), sizes: int = 9,
                     span: float = 8.0, offset: float = 1.0, noise: float = 0.005, seed: int = 0) -> pd.DataFrame:
    """An IsoFLOP sweep in the CSV schema (n_params, tokens, flops, loss, budget): per budget, `sizes` models
    log-spaced over [N_opt / span, N_opt * span] * offset, D = C / (6 N), loss with log-normal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        centre = law.n_opt(C) * offset
        for N in np.exp(np.linspace(np.log(centre / span), np.log(centre * span), sizes)):
            D = C / (6 * N)
            rows.append({"n_params": N, "tokens": D, "flops": C, "budget": C,
                         "loss": law.loss(N, D) * np.exp(rng.normal(0.0, noise))})
    df = pd.DataFrame(rows)
    df["trial_id"] = [f"t{i}" for i in range(len(df))]
    return df


def simulate_curves(law: Law = Law(), *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and per-step curves for approach 1: 14 sizes x 10 token budgets, cosine runs.

    Only each run's last step is a valid point; earlier steps are given an *optimistic* loss (law - 0.2) so
    a fit that wrongly used them would be visibly off.
    """
    rng = np.random.default_rng(seed)
    runs, curves = [], []
    for i, N in enumerate(np.geomspace(2e7, 2e10, 14)):
        for j, ratio in enumerate(np.geomspace(2, 200, 10)):
            tid = f"n{i}d{j}"
            D_end = ratio * N
            runs.append({"trial_id": tid, "sweep": "sim", "status": "finished", "seed": 0, "budget": np.nan,
                         "N_total": N, "N_nonembed": 0.9 * N, "D": D_end, "C_exact": 6 * N * D_end,
                         "C_6ND": 6 * N * D_end, "final_eval_loss": law.loss(N, D_end), "final_train_loss": np.nan})
            for step, frac in enumerate((0.25, 0.5, 0.75, 1.0), start=1):
                D = frac * D_end
                loss = law.loss(N, D) * np.exp(rng.normal(0, 0.002)) - (0.0 if frac == 1.0 else 0.2)
                curves.append({"trial_id": tid, "step": step, "tokens": D, "flops": 6 * N * D, "eval_loss": loss,
                               "train_loss": loss, "lr": 1e-3 * (1 - frac)})
    return pd.DataFrame(runs), pd.DataFrame(curves)


def reference_file(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference data {name} not found in {REFERENCE}")
    return path


@pytest.fixture(scope="session")
def epoch_csv() -> Path:
    return reference_file("epoch_chinchilla_svg_extracted_data.csv")


@pytest.fixture(scope="session")
def epoch_arrays(epoch_csv) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, L) of the Epoch data with the 5 highest losses dropped (n = 240), D = C / (6 N)."""
    df = pd.read_csv(epoch_csv).sort_values("loss").iloc[:-5]
    N = df["Model Size"].to_numpy(float)
    return N, df["Training FLOP"].to_numpy(float) / (6 * N), df["loss"].to_numpy(float)


@pytest.fixture
def sim() -> SimpleNamespace:
    """The generators above, for tests (conftest modules are not importable under --import-mode=importlib)."""
    return SimpleNamespace(Law=Law, isoflop=simulate_isoflop, curves=simulate_curves)


@pytest.fixture
def reference():
    """reference(name) -> Path of a file in ../shared/reference/, skipping the test when it is absent."""
    return reference_file
