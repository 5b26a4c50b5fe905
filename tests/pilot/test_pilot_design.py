"""The pure part of a pilot (orchestrator/pilot/design.py) and its hparams option as the CLI composes it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.cli import compose_config, to_typed
from orchestrator.conf_dirs import ConfigDirs
from orchestrator.fitting.hparams_law import fit_pooled_law
from orchestrator.hparams import HParamsConfig
from orchestrator.pilot import design
from orchestrator.pilot.options import PilotConfig
from orchestrator.pilot.run import check_vocabulary
from orchestrator.sweep_plan import plan_trials


def test_every_batch_choice_leaves_a_valid_point():
    for tokens in (40_000, 252_416, 840_064, 3_000_000):
        choices = design.batch_choices(tokens, seq_len=64, min_steps=500, n=3)
        assert all(c % 64 == 0 and math.ceil(tokens / c) >= 500 for c in choices if c > 64)
        assert len(choices) >= 2 or tokens < 64 * 500 * 2


def test_the_profile_minimum_and_the_centre_that_puts_it_mid_design():
    N = np.geomspace(2e3, 3.2e4, 5)
    budget = 3e10
    D = budget / (8.0 * N)  # a cost of 8 FLOPs per parameter and token
    true_n = 7e3
    loss = 3.2 + 0.05 * np.log(N / true_n) ** 2
    m = design.profile_minimum(N, D, loss, budget=budget)
    assert m.edge == "" and m.N_opt == pytest.approx(true_n, rel=1e-6)
    assert m.tokens_per_param == pytest.approx(budget / (8.0 * true_n ** 2), rel=1e-6)
    assert math.sqrt(budget / (6 * m.centre)) == pytest.approx(true_n)  # the planner's N_c lands on N_opt
    edge = design.profile_minimum(N, D, 3.2 + 0.05 * np.log(N / 1e3) ** 2, budget=budget)
    assert edge.edge == "small"
    assert design.extension_sizes(N, edge="small") == pytest.approx([1e3, 5e2])


def test_a_vocabulary_that_crowds_out_the_model_is_refused_with_the_numbers():
    ok = to_typed(compose_config(["sweep=tiny", "data.vocab_size=64"]))
    crowded = to_typed(compose_config(["sweep=tiny", "data.vocab_size=8192", "sweep.min_tokens_per_param=0"]))
    fine = check_vocabulary(plan_trials(ok, datasets={"synthetic": ok.data}), vocab_size=64, sizes_per_budget=3)
    with pytest.warns(UserWarning, match="duplicate"):  # 3 sizes per budget resolve to 1 or 2 shapes
        crowded_trials = plan_trials(crowded, datasets={"synthetic": crowded.data})
    bad = check_vocabulary(crowded_trials, vocab_size=8192, sizes_per_budget=3)
    assert fine.verdict != "refuse"
    assert bad.verdict == "refuse" and max(bad.embed_share) > 0.9 and min(bad.shapes) < 3
    assert "8192-entry vocabulary" in bad.sentence() and "shapes for 3 sizes" in bad.sentence()


def test_the_written_option_composes_and_says_it_came_from_a_pilot(tmp_path, planted_cells):
    N, D, lr, b, loss = planted_cells
    law, optima = fit_pooled_law(N, D, lr, b, loss, n_resamples=50)
    assert law.alpha == pytest.approx(-0.5, abs=0.05) and law.gamma == pytest.approx(0.6, abs=0.05)
    rules = design.pilot_rules(law, optima, base=HParamsConfig(min_steps=500, min_warmup_steps=20), centre=80.0,
                               name="pilot_mine", lr_range=(1e-3, 1e-1), seq_len=64, note="from a test pilot",
                               most_steps=2000)
    (tmp_path / "hparams").mkdir()
    (tmp_path / "hparams" / "pilot_mine.yaml").write_text(design.rules_yaml(rules, comments=["a test"]))
    dirs = ConfigDirs.of([tmp_path])
    config = to_typed(compose_config(["sweep=tiny", "hparams=pilot_mine"], dirs))
    assert config.hparams.pilot == "from a test pilot" and config.hparams.centre_tokens_per_param == 80.0
    assert config.hparams.lr.of2 == "D" and config.hparams.lr.exponent == pytest.approx(law.alpha, abs=1e-5)
    trials = plan_trials(config, datasets={"synthetic": config.data})
    n_c = math.sqrt(1e10 / (6 * 80.0))  # the pilot's centre, not the sweep's 20
    sizes = sorted(t.target_size for t in trials if t.budget == 1e10)
    assert sizes[1] == pytest.approx(n_c)
    t = trials[0]
    assert t.config["trainer"]["lr"] == pytest.approx(float(np.clip(law.lr(N=t.cost.n_total, D=t.tokens), 1e-3, 0.1)))


def test_the_budgets_a_corpus_holds_are_the_largest_whose_design_fits_its_tokens():
    candidates = [1e9, 3e9, 1e10, 3e10, 1e11, 3e11]
    largest = [math.nan, 0.3e6, 0.5e6, 0.9e6, 1.65e6, 3.2e6]  # NaN: the design could not be planned there
    assert design.corpus_budgets(candidates, largest_tokens=largest, train_tokens=1.77e6, epochs=1) == [1e10, 3e10, 1e11]
    assert design.corpus_budgets(candidates, largest_tokens=largest, train_tokens=1.77e6, epochs=2) == [3e10, 1e11, 3e11]
    assert design.corpus_budgets(candidates, largest_tokens=largest, train_tokens=0.4e6, epochs=1) == []


def test_the_search_sits_at_three_budgets_of_a_long_sweep_and_two_of_a_short_one():
    assert PilotConfig().search_budgets([1e12, 3e10, 3e11, 1e11]) == [3e10, 1e11, 3e11]  # never the largest
    assert PilotConfig().search_budgets([1e10, 3e10, 1e11]) == [1e10, 3e10]
    assert PilotConfig().search_budgets([1e10, 3e10]) == [1e10, 3e10]
    assert PilotConfig(budgets=1).search_budgets([3e10, 1e10, 1e11]) == [1e10]
    with pytest.raises(ValueError, match="pilot.budgets=-1 is invalid"):
        PilotConfig(budgets=-1)
