"""FitConfig: defaults a user relies on, and one clear sentence naming the dotted key for each bad value."""

from __future__ import annotations

import pytest

from orchestrator.fitting.options import METHODS, ColumnMap, FitConfig


def test_defaults_match_the_issue():
    cfg = FitConfig()
    assert cfg.huber_delta == 1e-3 and cfg.bootstrap == 1000 and cfg.ci == 0.95
    assert cfg.target_budgets == [] and cfg.c_convention == "exact" and cfg.floor is None  # [] = automatic
    assert cfg.methods == list(METHODS)
    # A CSV with columns n_params, tokens, flops, loss needs no mapping.
    assert (cfg.columns.n_params, cfg.columns.tokens, cfg.columns.flops, cfg.columns.loss) == (
        "n_params", "tokens", "flops", "loss")


def test_columns_accept_a_plain_mapping():
    cfg = FitConfig(columns={"n_params": "Model Size", "flops": "Training FLOP"})
    assert isinstance(cfg.columns, ColumnMap) and cfg.columns.n_params == "Model Size"


@pytest.mark.parametrize("kwargs, key", [
    ({"huber_delta": 0.0}, "fit.huber_delta"),
    ({"n_convention": "embedding"}, "fit.n_convention"),
    ({"c_convention": "approx"}, "fit.c_convention"),
    ({"drop_highest": -1}, "fit.drop_highest"),
    ({"loss_ceiling": -2.0}, "fit.loss_ceiling"),
    ({"bootstrap": -5}, "fit.bootstrap"),
    ({"ci": 1.5}, "fit.ci"),
    ({"target_budgets": [1e20, -1.0]}, "fit.target_budgets"),
    ({"methods": ["parametric", "chinchilla4"]}, "fit.methods"),
    ({"budget_tol_dex": 2.0}, "fit.budget_tol_dex"),
])
def test_bad_values_name_the_dotted_key(kwargs, key):
    with pytest.raises(ValueError) as err:
        FitConfig(**kwargs)
    assert key in str(err.value)
    assert str(err.value).count(".") >= 1 and "\n" not in str(err.value)


def test_bad_column_name_is_rejected():
    with pytest.raises(ValueError, match="fit.columns.loss"):
        ColumnMap(loss="  ")
