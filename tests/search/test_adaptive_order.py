"""Adaptive placement starts its budgets in cluster.order (issue 25): budget (the default) smallest first, as the
plain runner does; plan keeps the plan's order."""

from __future__ import annotations

import pytest

from orchestrator.cli import compose_config, data_axis, to_typed
from orchestrator.search.adaptive import AdaptiveIsoFLOP
from orchestrator.sweep_plan import plan_trials


def first_budgets(*overrides: str) -> list[float]:
    args = ["sweep=tiny", "trainer=surrogate", "adaptive.enabled=true", "sweep.budgets=[3e10,1e10,2e10]", *overrides]
    config = to_typed(compose_config(args))
    trials = plan_trials(config, datasets=data_axis(config, args))
    source = AdaptiveIsoFLOP(config, first_wave=trials, plan_point=lambda trial, n: trial, previous={})
    return [t.budget for t in source.next_trials(len(trials))]


@pytest.mark.parametrize(("order", "expected"), [("budget", [1e10, 2e10, 3e10]), ("plan", [3e10, 1e10, 2e10])])
def test_budgets_start_in_cluster_order(order, expected):
    started = first_budgets(f"cluster.order={order}")
    assert list(dict.fromkeys(started)) == expected  # each budget's first wave, budgets in that order
    assert len(started) == 3 * len(expected)
