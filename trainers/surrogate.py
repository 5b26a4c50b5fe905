"""The surrogate trainer: losses from a known scaling law, in milliseconds, for testing the machinery.

    L(N, D) = E + A / N^alpha + B / D^beta            (Hoffmann et al. 2022, Chinchilla, Eq. 2)

with N the model's exact total parameter count (`trainers.accounting.count_params`) and D the
trial's tokens. The defaults are Chinchilla's fit (Approach 3: E=1.69, A=406.4, B=410.7, alpha=0.34,
beta=0.28). Scheduler, tracking, pruning and fitting are tested against this ground truth.

Its knobs are `trainer.surrogate.*`, typed and checked by `trainers.config.SurrogateConfig`: the law,
noise, cost, the number of reported points, injected crashes, divergences and out-of-memory results, and
an optional learning-rate term with a known optimum, for testing learning-rate search (off by default):

    L += lr_penalty * ln(lr / lr_opt(N))^2,   lr_opt(N) = lr_c * (N / 1e6)^(-lr_exponent)

added at every reported point, so intermediate eval losses already rank learning rates (what a pruner
needs). The defaults lr_c = 3e-3, lr_exponent = 0.3 put lr_opt ~ N^-0.3, a typical shrink of the best
rate with width (cf. muP, Yang et al. 2022; Porian et al. 2024).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainers.accounting import count_params, train_flops_per_token
from trainers.api import DIVERGED, FINISHED, OOM, Report, TrialResult
from trainers.config import DataConfig, ModelConfig, SurrogateConfig, TrainerConfig

CRASH_MARKER = "surrogate_crashed_once"


def law_loss(law: SurrogateConfig, n: float, d: float) -> float:
    """E + A / N^alpha + B / D^beta (Chinchilla Eq. 2)."""
    return law.E + law.A / n**law.alpha + law.B / d**law.beta


def lr_opt(law: SurrogateConfig, n: float) -> float:
    """The known best learning rate at N parameters: lr_c * (N / 1e6)^(-lr_exponent)."""
    return law.lr_c * (n / 1e6) ** (-law.lr_exponent)


def lr_term(law: SurrogateConfig, n: float, lr: float) -> float:
    """lr_penalty * ln(lr / lr_opt(N))^2 (0 when lr_penalty = 0)."""
    return law.lr_penalty * math.log(lr / lr_opt(law, n)) ** 2 if law.lr_penalty else 0.0


def _config_seed(config: dict[str, Any]) -> list[int]:
    """A generator seed from the whole trial config (so the noise is a function of the trial)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _law(config: dict[str, Any]) -> SurrogateConfig:
    """The trial's law and knobs from `trainer.surrogate`; ValueError (one sentence) for a bad knob."""
    return TrainerConfig(**config.get("trainer", {})).surrogate


def _tokens(config: dict[str, Any]) -> int:
    tokens = int(config["tokens"])
    if tokens < 1:
        raise ValueError(f"tokens={tokens} is invalid: a trial needs at least one token.")
    return tokens


def validate(config: dict[str, Any]) -> None:
    """The pre-flight hook of the trainer contract (trainers/api.py): the `trainer.surrogate` knobs and the
    token count, checked in the driver without training."""
    _law(config)
    _tokens(config)


def train(config: dict[str, Any], report: Report, *, run_dir: str | None = None,
          device: str = "cpu", threads: int = 1) -> dict[str, Any]:  # noqa: ARG001 (the trainer contract)
    """A trial of the surrogate (same contract as `trainers.gpt.train`); returns a TrialResult dict."""
    start = time.perf_counter()
    law = _law(config)
    model = ModelConfig(**config["model"])
    vocab = DataConfig(**config["data"]).vocab_size
    n = count_params(model, vocab_size=vocab).total
    tokens = _tokens(config)
    fpt = train_flops_per_token(model, vocab_size=vocab)
    rng = np.random.default_rng(_config_seed(config))
    fails, diverges = rng.random() < law.fail_prob, rng.random() < law.diverge_prob
    penalty = lr_term(law, n, float(config["trainer"]["lr"]))
    extra = {"n_params": n, "flops_per_token": fpt, "law_loss": law_loss(law, n, tokens) + penalty,
             "entropy_floor": law.E}
    if law.lr_penalty:
        extra["lr_opt"] = lr_opt(law, n)
    common = dict(device="cpu", dtype="fp32")

    if fails:
        raise RuntimeError("surrogate: injected permanent failure (trainer.surrogate.fail_prob)")
    if law.crash_once:
        if run_dir is None:
            raise ValueError("trainer.surrogate.crash_once needs a run_dir to remember the first crash in.")
        marker = Path(run_dir) / CRASH_MARKER
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            raise RuntimeError("surrogate: injected transient failure (trainer.surrogate.crash_once)")
    if n > law.oom_above_params:
        reason = f"surrogate: {n} parameters exceed trainer.surrogate.oom_above_params={law.oom_above_params:g}"
        return dataclasses.asdict(TrialResult(status=OOM, reason=reason, extra=extra, **common))

    sleep_s = law.sleep_per_pflop * fpt * tokens / 1e15
    train_loss = eval_loss = float("nan")
    points = int(law.points)
    for i in range(1, points + 1):
        done = max(tokens * i // points, 1)
        time.sleep(sleep_s / points)
        clean = law_loss(law, n, done) + penalty
        train_loss, eval_loss = clean + law.noise * rng.standard_normal(2)
        if diverges and i > points // 2:
            reason = f"surrogate: injected divergence at tokens {done} (trainer.surrogate.diverge_prob)"
            report({"step": i, "tokens": done, "flops": float(fpt) * done, "train_loss": float("nan")})
            return dataclasses.asdict(TrialResult(status=DIVERGED, reason=reason, tokens=done,
                                                  flops=float(fpt) * done, steps=i, extra=extra, **common))
        report({
            "step": i, "tokens": done, "flops": float(fpt) * done, "train_loss": float(train_loss),
            "eval_loss": float(eval_loss), "eval_loss_se": law.noise,
        })
    return dataclasses.asdict(TrialResult(
        status=FINISHED, final_train_loss=float(train_loss), final_eval_loss=float(eval_loss),
        eval_loss_se=law.noise, tokens=tokens, flops=float(fpt) * tokens, steps=points,
        wall_s=time.perf_counter() - start, extra=extra, **common,
    ))
