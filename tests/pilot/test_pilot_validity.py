"""A pilot's written rules never give the sweep a trial it refuses: the batch and warmup it writes are held inside
hparams.min_steps and hparams.min_warmup_steps at every size adaptive placement can reach (design.bound_rules)."""

from __future__ import annotations

import math
from dataclasses import replace


from orchestrator.cli import compose_config, to_typed
from orchestrator.conf_dirs import ConfigDirs
from orchestrator.fitting.hparams_law import fit_pooled_law
from orchestrator.pilot import design
from orchestrator.pilot.run import bounded
from orchestrator.planner import PlanError
from orchestrator.search.adaptive import AdaptiveIsoFLOP
from orchestrator.sweep_plan import plan_trials
from trainers.api import Status


def _adaptive_reach(config, datasets, *, larger: bool) -> list:
    """Every trial adaptive placement runs when each budget's lowest loss stays at one edge (search/adaptive.py),
    placed the way run_adaptive places them."""
    def plan_point(profile, target):
        one = replace(config, sweep=replace(config.sweep, sizes=[target], budgets=[profile.budget], datasets=[]))
        (trial,) = plan_trials(one, datasets={profile.key[1]: datasets[profile.key[1]]})
        if trial.invalid is not None:
            raise PlanError(f"it would not be a valid scaling point ({trial.invalid})")
        return trial

    source = AdaptiveIsoFLOP(config, first_wave=plan_trials(config, datasets=datasets), plan_point=plan_point,
                             previous={})
    seen = []
    while not source.done():
        batch = source.next_trials(100)
        assert batch or source.done()
        for t in batch:
            seen.append(t)
            source.on_result(t, Status.FINISHED, {"final_eval_loss": 3.0 - (1 if larger else -1) * 0.1 *
                                                  math.log(t.cost.n_total)})
    return seen, source.decisions


def test_a_pilot_written_option_never_yields_a_refused_trial(tmp_path, planted_cells):
    config = to_typed(compose_config(["sweep=cpu_small", "hparams=constant"]))  # min_steps 500, min_warmup_steps 20
    datasets = {"synthetic": config.data}
    # At cpu_small's budgets the planted B* = 0.5 D^0.6 gives the smallest D ~330 steps (under min_steps=500) and
    # the largest ~900 (18 warmup steps at the trainer's 2%).
    law, optima = fit_pooled_law(*planted_cells, n_resamples=20)
    raw = design.pilot_rules(law, optima, base=config.hparams, centre=100.0, name="pilot_mine", lr_range=(1e-3, 0.1),
                             seq_len=64, note="", most_steps=2000)
    refused = [t for t in plan_trials(replace(config, hparams=raw), datasets=datasets) if t.invalid]
    assert refused, "the planted law must break the limits, or this test shows nothing"
    assert any("warmup steps" in t.invalid for t in refused) and any("optimizer steps" in t.invalid for t in refused)

    held = bounded(config, raw, datasets=datasets, extra=config.adaptive.max_sizes - config.sweep.sizes_per_budget)
    assert held.invalid == 0 and len(held.notes) == 2
    assert "batch_tokens lowered" in held.notes[0] and "min_steps=500" in held.notes[0]
    assert "warmup_tokens" in held.notes[1] and "min_warmup_steps=20" in held.notes[1]
    rules = replace(held.rules, pilot="; ".join(held.notes))
    assert rules.warmup_tokens.coef <= design.WARMUP_MAX_FRACTION

    (tmp_path / "hparams").mkdir()
    (tmp_path / "hparams" / "pilot_mine.yaml").write_text(design.rules_yaml(rules, comments=["a test"]))
    written = to_typed(compose_config(["sweep=cpu_small", "hparams=pilot_mine"], ConfigDirs.of([tmp_path])))
    assert written.hparams.pilot.startswith("batch_tokens lowered")
    first_wave = plan_trials(written, datasets=datasets)
    assert all(t.invalid is None for t in first_wave), [t.invalid for t in first_wave if t.invalid]
    for larger in (True, False):  # the minimum never bracketed: adaptive extends each budget to adaptive.max_sizes
        seen, decisions = _adaptive_reach(written, datasets, larger=larger)
        assert len(seen) > len(first_wave)
        assert not [d["reason"] for d in decisions if "valid scaling point" in d["reason"]]
