"""The surrogate trainer: the known law through the same contract, with deterministic noise and
injectable failures for testing the runner."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from trainers.accounting import count_params
from trainers.api import DIVERGED, FINISHED, OOM, load_trainer
from trainers.config import ModelConfig, SurrogateConfig
from trainers.surrogate import law_loss, lr_opt, train, validate


def _config(tiny_config, *, trainer_lr: float = 1e-2, **surrogate):
    return tiny_config(trainer={"target": "trainers.surrogate:train", "lr": trainer_lr, "surrogate": surrogate},
                       tokens=10**9)


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


def test_default_law_is_chinchillas_fit(tiny_config):
    # Hoffmann et al. 2022, approach 3: E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28. Chinchilla itself
    # (70e9 parameters, 1.4e12 tokens) sits at 1.69 + 0.0835 + 0.1632 = 1.9366 nats under it.
    assert law_loss(SurrogateConfig(), 70e9, 1.4e12) == pytest.approx(1.9366, abs=1e-4)
    # A trial with no knobs given trains on that law: its noiseless loss is the formula at its exact N and D.
    config = tiny_config(trainer={"target": "trainers.surrogate:train"}, tokens=10**9)
    result = train(config, lambda m: None)
    n = count_params(ModelConfig(**config["model"]), vocab_size=256).total
    assert result["final_eval_loss"] == pytest.approx(1.69 + 406.4 / n**0.34 + 410.7 / 1e9**0.28)
    assert result["extra"]["entropy_floor"] == 1.69 and result["eval_loss_se"] == 0.0


def test_noise_has_the_requested_standard_deviation_and_no_bias(tiny_config):
    # 400 trials (seeds) at noise 0.05: the residuals from the law have mean 0 (within 4 standard errors,
    # 0.01) and standard deviation 0.05 (within 15%: the sample sd's own error is ~3.5% here).
    residuals = []
    for seed in range(400):
        result = train({**_config(tiny_config, noise=0.05), "seed": seed}, lambda m: None)
        residuals.append(result["final_eval_loss"] - result["extra"]["law_loss"])
        assert result["eval_loss_se"] == 0.05
    residuals = np.array(residuals)
    assert abs(residuals.mean()) < 4 * 0.05 / math.sqrt(len(residuals))
    assert residuals.std(ddof=1) == pytest.approx(0.05, rel=0.15)


def test_lr_term_has_its_minimum_at_the_known_rate(tiny_config):
    # L += lr_penalty ln(lr / lr_opt(N))^2: the best of a grid of rates is the one nearest lr_opt(N).
    law = SurrogateConfig(lr_penalty=0.05)
    n = count_params(ModelConfig(**tiny_config()["model"]), vocab_size=256).total
    assert lr_opt(law, 1e6) == pytest.approx(3e-3) and lr_opt(law, n) == pytest.approx(3e-3 * (n / 1e6) ** -0.3)
    rates = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
    losses = [train(_config(tiny_config, lr_penalty=0.05, trainer_lr=lr), lambda m: None)["final_eval_loss"]
              for lr in rates]
    best = rates[int(np.argmin(losses))]
    assert best == min(rates, key=lambda lr: abs(math.log(lr / lr_opt(law, n))))
    at_opt = train(_config(tiny_config, lr_penalty=0.05, trainer_lr=lr_opt(law, n)), lambda m: None)
    assert at_opt["final_eval_loss"] == pytest.approx(law_loss(law, n, 1e9))  # no penalty at the optimum
    assert at_opt["final_eval_loss"] < min(losses)


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


@pytest.mark.parametrize("knobs, sentence", [
    ({"alpha": -0.3}, "trainer.surrogate.alpha=-0.3 is invalid: it must be >= 0."),
    ({"noise": math.nan}, "trainer.surrogate.noise=nan is invalid: it must be >= 0."),
    ({"A": math.inf}, "trainer.surrogate.A=inf is invalid: it must be >= 0."),
    ({"points": 0}, "trainer.surrogate.points=0 is invalid: it must be a positive integer."),
    ({"points": 2.5}, "trainer.surrogate.points=2.5 is invalid: it must be a positive integer."),
    ({"diverge_prob": 1.5}, "trainer.surrogate.diverge_prob=1.5 is invalid: it must lie in [0, 1]."),
    ({"fail_prob": -0.1}, "trainer.surrogate.fail_prob=-0.1 is invalid: it must lie in [0, 1]."),
    ({"oom_above_params": 0}, "trainer.surrogate.oom_above_params=0 is invalid: it must be > 0"),
    ({"lr_exponent": math.nan}, "trainer.surrogate.lr_exponent=nan is invalid: it must be finite."),
    ({"gamma": 1.0}, "trainer.surrogate has unknown keys ['gamma']: allowed are ['A', 'B', 'E', 'alpha', 'beta', "),
])
def test_a_bad_knob_is_one_sentence_from_the_hook_and_the_trial(tiny_config, knobs, sentence):
    # The same sentence whether the pre-flight hook (validate) or a trial (train) meets it: one check, in
    # SurrogateConfig. The CLI's composition raises it too (tests/test_preflight.py).
    config = _config(tiny_config, **knobs)
    for call in (lambda: validate(config), lambda: train(config, lambda m: None)):
        with pytest.raises(ValueError, match="^" + re.escape(sentence)):
            call()


def test_a_thousand_trials_take_well_under_a_second_each(tiny_config):
    import time

    start = time.perf_counter()
    for seed in range(200):
        train({**_config(tiny_config, noise=0.01), "seed": seed}, lambda m: None)
    assert (time.perf_counter() - start) / 200 < 0.01
