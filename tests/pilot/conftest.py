"""Shared test data of the pilot tests."""

from __future__ import annotations

import math

import numpy as np
import pytest


@pytest.fixture
def planted_cells() -> tuple[np.ndarray, ...]:
    """(N, D, lr, batch, loss) of 4 cells whose planted optimum is lr* = 0.5 N^-0.5 D^0.2 and B* = 0.5 D^0.6
    tokens: a quadratic bowl in (ln lr, ln B) with a little noise (seeded)."""
    rng = np.random.default_rng(0)
    rows = []
    for n, d in ((1e4, 2e5), (1e4, 8e5), (3e4, 2e5), (3e4, 8e5)):
        for lr in np.geomspace(1e-3, 1e-1, 4):
            for b in (256, 512, 1024, 2048):
                x, y = math.log(lr / (0.5 * n ** -0.5 * d ** 0.2)), math.log(b / (0.5 * d ** 0.6))
                rows.append((n, d, lr, b, 3 + 0.02 * x * x + 0.01 * y * y + 0.001 * rng.standard_normal()))
    return tuple(map(np.array, zip(*rows)))
