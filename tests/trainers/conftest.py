"""Shared helpers: tiny trial configs that train in a second on a CPU."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

TINY = {
    "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32},
    "data": {},
    "trainer": {"lr": 1e-2, "batch_tokens": 512, "eval_tokens": 1024},
    "tokens": 512 * 8,
    "seed": 0,
}


def make_tiny_config(**sections: Any) -> dict[str, Any]:
    """TINY with `model=`, `data=`, `trainer=` dicts merged in and `tokens=`, `seed=` replaced."""
    config = copy.deepcopy(TINY)
    for key, value in sections.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


class Recorder:
    """A report callback that keeps every metrics dict."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.reports.append(dict(metrics))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def tiny_config() -> Callable[..., dict[str, Any]]:
    """The factory `make_tiny_config` (a fixture: tests run in importlib mode and cannot import conftest)."""
    return make_tiny_config


@pytest.fixture
def new_recorder() -> Callable[[], Recorder]:
    return Recorder
