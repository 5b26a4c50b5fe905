"""The compare: node's own checks (one sentence naming the key) and its place in the composed root config."""

from __future__ import annotations

import pytest

from orchestrator.compare.options import CompareConfig


@pytest.mark.parametrize("kwargs, message", [
    ({"budgets": [1e20, -1.0]}, "compare.budgets must be positive FLOP counts"),
    ({"method": "envelope"}, "compare.method='envelope' is unknown: allowed are headline, parametric"),
    ({"bootstrap": -1}, "compare.bootstrap must be an integer >= 0"),
    ({"ci": 1.0}, "compare.ci must be a confidence level strictly between 0 and 1"),
    ({"seed": -2}, "compare.seed must be an integer >= 0"),
    ({"name": "../up"}, "compare.name='../up' is invalid"),
    ({"variants": ["a", ""]}, "compare.variants=['a', ''] contains an empty name"),
])
def test_bad_values_are_one_sentence_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        CompareConfig(**kwargs)


def test_budgets_are_sorted_and_deduplicated():
    assert CompareConfig(budgets=[1e21, 1e20, 1e21]).budgets == [1e20, 1e21]


def test_the_root_config_composes_a_comparison():
    from orchestrator.cli import compose_config, to_typed

    config = to_typed(compose_config(["action=compare", "compare.baseline=base", "compare.variants=[a,b.csv]",
                                      "compare.budgets=[1e21]", "compare.joint_E=true"]))
    assert config.action == "compare"
    assert config.compare.variants == ["a", "b.csv"] and config.compare.budgets == [1e21] and config.compare.joint_E
