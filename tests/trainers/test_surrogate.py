"""The surrogate trainer: the known law through the same contract, with deterministic noise and
injectable failures for testing the runner."""

from __future__ import annotations

import pytest

from orchestrator.accounting import count_params
from trainers.api import DIVERGED, FINISHED, OOM, load_trainer
from trainers.config import ModelConfig
from trainers.surrogate import SurrogateLaw, train


def _config(tiny_config, **surrogate):
    return tiny_config(trainer={"target": "trainers.surrogate:train", "surrogate": surrogate}, tokens=10**9)


def test_noiseless_surrogate_returns_the_law_at_n_and_d(tiny_config, recorder):
    config = _config(tiny_config, E=1.0, A=100.0, B=200.0, alpha=0.3, beta=0.25)
    result = load_trainer(config["trainer"]["target"])(config, recorder)
    n = count_params(ModelConfig(**config["model"]), vocab_size=256).total
    assert result["status"] == FINISHED and result["extra"]["n_params"] == n
    assert result["final_eval_loss"] == pytest.approx(1.0 + 100.0 / n**0.3 + 200.0 / 1e9**0.25)
    # Intermediate points follow the law with D replaced by the tokens so far: a falling curve.
    assert [r["tokens"] for r in recorder.reports] == [2 * 10**8, 4 * 10**8, 6 * 10**8, 8 * 10**8, 10**9]
    losses = [r["eval_loss"] for r in recorder.reports]
    assert losses == sorted(losses, reverse=True)


def test_chinchilla_defaults():
    law = SurrogateLaw()
    assert (law.E, law.A, law.B, law.alpha, law.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)


def test_noise_is_reproducible_per_trial_and_independent_across_trials(tiny_config):
    a = train(_config(tiny_config, noise=0.05), lambda m: None)
    b = train(_config(tiny_config, noise=0.05), lambda m: None)
    c = train({**_config(tiny_config, noise=0.05), "seed": 1}, lambda m: None)
    assert a["final_eval_loss"] == b["final_eval_loss"] != c["final_eval_loss"]
    assert abs(a["final_eval_loss"] - a["extra"]["law_loss"]) < 0.05 * 5


def test_sleep_is_proportional_to_flops(tiny_config):
    result = train(_config(tiny_config, sleep_per_pflop=0.5, points=2), lambda m: None)
    expected = 0.5 * result["flops"] / 1e15
    assert expected == pytest.approx(result["wall_s"], abs=0.05 + 0.2 * expected)


def test_crash_once_fails_the_first_attempt_only(tiny_config, tmp_path):
    config = _config(tiny_config, crash_once=1)
    with pytest.raises(RuntimeError, match="transient"):
        train(config, lambda m: None, run_dir=str(tmp_path))
    assert train(config, lambda m: None, run_dir=str(tmp_path))["status"] == FINISHED


def test_injected_permanent_failure_divergence_and_oom(tiny_config):
    with pytest.raises(RuntimeError, match="permanent"):
        train(_config(tiny_config, fail_prob=1.0), lambda m: None)
    diverged = train(_config(tiny_config, diverge_prob=1.0), lambda m: None)
    assert diverged["status"] == DIVERGED and "diverge_prob" in diverged["reason"]
    oom = train(_config(tiny_config, oom_above_params=1000), lambda m: None)
    assert oom["status"] == OOM and "oom_above_params" in oom["reason"]


def test_unknown_or_invalid_knob_is_a_value_error(tiny_config):
    with pytest.raises(ValueError, match="unknown keys"):
        train(_config(tiny_config, gamma=1.0), lambda m: None)
    with pytest.raises(ValueError, match="trainer.surrogate.points"):
        train(_config(tiny_config, points=0), lambda m: None)


def test_a_thousand_trials_take_well_under_a_second_each(tiny_config):
    import time

    start = time.perf_counter()
    for seed in range(200):
        train({**_config(tiny_config, noise=0.01), "seed": seed}, lambda m: None)
    assert (time.perf_counter() - start) / 200 < 0.01
