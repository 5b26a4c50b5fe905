"""Hyperparameters that follow scale: rule values, their place in trial identity, validity of a scaling point,
and a real GPT sweep whose every trial is a valid point (orchestrator/hparams.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import compose_config, to_typed
from orchestrator.sweep_plan import plan_trials
from orchestrator.hparams import HParamsConfig, ScaleRule

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def planned(*overrides: str):
    config = to_typed(compose_config(list(overrides)))
    return config, plan_trials(config, datasets={config.data.name: config.data})


def test_a_rule_is_a_clipped_power_law():
    rule = ScaleRule(of="C", coef=0.3118, exponent=-0.125)  # DeepSeek LLM (2024) eta_opt(C)
    assert rule(C=1e17, N=0, D=0) == pytest.approx(0.3118 * 1e17 ** -0.125)
    assert ScaleRule(of="N", coef=1.0, exponent=1.0, max=1e6)(C=0, N=5e6, D=0) == 1e6
    assert ScaleRule(of="D", coef=1.0, exponent=1.0, min=512)(C=0, N=0, D=10) == 512
    assert not ScaleRule().on
    # the Step Law form lr* = k N^alpha D^beta (Li et al. 2025) takes a second factor
    step = ScaleRule(of="N", coef=1.79, exponent=-0.713, of2="D", exponent2=0.307)
    assert step(C=0, N=1e9, D=1e11) == pytest.approx(1.79 * 1e9 ** -0.713 * 1e11 ** 0.307)
    assert step.describe() == "1.79 N^-0.713 D^0.307"


def test_batch_rounds_to_whole_sequences_and_beta2_follows_it():
    rules = HParamsConfig(batch_tokens=ScaleRule(of="D", coef=1 / 1024, exponent=1.0), beta2_batch_ref=524288,
                          beta2_max=0.9999)
    assert rules.batch(C=0, N=0, D=3_000_000, seq_len=128) == 128 * 23  # 2930 tokens -> 22.9 sequences -> 23
    assert rules.batch(C=0, N=0, D=1000, seq_len=128) == 128  # at least one sequence
    # The second-moment average spans the same tokens: a batch 128x smaller gets beta2 = 0.95^(1/128).
    assert rules.beta2(4096) == pytest.approx(0.95 ** (4096 / 524288))
    assert rules.beta2(2 ** 30) == rules.beta2_min


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": {"of": "X"}}, "hparams.lr.of='X' is unknown: allowed are C, N, D"),
    ({"batch_tokens": {"coef": -1.0}}, "hparams.batch_tokens: coef, min and max must be >= 0"),
    ({"beta2_ref": 1.0}, "hparams.beta2_ref=1.0 is invalid: it must lie in (0, 1)"),
    ({"min_steps": -1}, "hparams.min_steps=-1 is invalid"),
    ({"lr": {"of": "N", "of2": "N"}}, "hparams.lr.of2='N' is invalid"),
    ({"centre_tokens_per_param": -1.0}, "hparams.centre_tokens_per_param=-1.0 is invalid"),
])
def test_bad_rules_are_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HParamsConfig(**kwargs)


def test_cpu_rules_set_each_trial_and_its_identity():
    config, trials = planned("sweep=cpu_small")
    _, constant = planned("sweep=cpu_small", "hparams=constant")
    for t in trials:
        trainer, D = t.config["trainer"], t.tokens
        assert trainer["lr"] == pytest.approx(min(max(1e-5 * math.sqrt(D), 3e-3), 3e-2))
        assert 256 <= trainer["batch_tokens"] <= 8192 and trainer["batch_tokens"] % t.config["model"]["seq_len"] == 0
        assert trainer["warmup_tokens"] == round(0.05 * D)
        # About 1024 steps each (exactly, up to rounding, unless the batch is clipped): a valid point.
        assert 500 <= t.steps <= 2048 and t.invalid is None
        if 256 < trainer["batch_tokens"] < 8192:  # the batch is D / 1024 to the nearest whole sequence
            assert abs(trainer["batch_tokens"] - D / 1024) <= t.config["model"]["seq_len"] / 2
        assert t.record()["steps"] == t.steps and t.record()["warmup_steps"] == pytest.approx(t.warmup_steps)
    # The rule's values are part of the identity: the same design without rules is other trials.
    assert not {t.trial_id for t in trials} & {t.trial_id for t in constant}


def test_an_explicit_axis_wins_over_the_rule():
    _, trials = planned("sweep=cpu_small", "sweep.lr=[0.004]", "sweep.batch_tokens=[2048]")
    assert {t.config["trainer"]["lr"] for t in trials} == {0.004}
    assert {t.config["trainer"]["batch_tokens"] for t in trials} == {2048}
    assert all(t.config["trainer"]["warmup_tokens"] == round(0.05 * t.tokens) for t in trials)


def test_the_plan_marks_and_the_run_refuses_an_invalid_point(tmp_path):
    # A batch of 64 sequences whatever D leaves the small budgets' runs a few hundred steps.
    args = ("sweep=cpu_small", "hparams.batch_tokens.min=8192")
    plan = cli(*args, "action=plan", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "INVALID" in plan.stdout and "optimizer steps < hparams.min_steps=500" in plan.stdout
    run = cli(*args, cwd=tmp_path)
    assert run.returncode == 2
    assert "would not be valid scaling points" in run.stderr and "hparams.allow_invalid=true" in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == run.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_a_gpt_sweep_with_scale_rules_trains_only_valid_points(tmp_path):
    import mlflow

    proc = cli("sweep=cpu_small", "sweep.name=rules_gpt", "sweep.budgets=[3e10,6e10]", "sweep.sizes_per_budget=3",
               "adaptive.enabled=false", "sweep.centre_tokens_per_param=30", "trainer.eval_tokens=4096",
               "fit.bootstrap=0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rules_gpt")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'trial'")
    assert len(runs) >= 4 and all(r.data.tags["status"] == "finished" for r in runs)
    for run in runs:
        planned_steps, trained_steps = int(run.data.params["steps"]), int(run.data.metrics["steps"])
        assert planned_steps >= 500 and trained_steps == planned_steps
        D = int(run.data.params["tokens"])
        assert float(run.data.params["trainer.lr"]) == pytest.approx(min(max(1e-5 * math.sqrt(D), 3e-3), 3e-2))
