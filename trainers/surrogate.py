"""The surrogate trainer: losses from a known scaling law, in milliseconds, for testing the machinery.

    L(N, D) = E + A / N^alpha + B / D^beta            (Hoffmann et al. 2022, Chinchilla, Eq. 2)

with N the model's exact total parameter count (`orchestrator.accounting.count_params`) and D the
trial's tokens. The defaults are Chinchilla's fit (Approach 3: E=1.69, A=406.4, B=410.7, alpha=0.34,
beta=0.28). Scheduler, tracking, pruning and fitting are tested against this ground truth.

`trainer.surrogate` keys (all optional):
- E, A, B, alpha, beta: the law.
- noise: standard deviation (nats) of Gaussian noise added to each reported loss; drawn from a
  generator seeded by the hash of the whole trial config, so a trial is reproducible and distinct
  trials get independent noise.
- sleep_per_pflop: seconds slept per 1e15 training FLOPs (exact accounting), to mimic cost.
- points: how many reports along the run (default 5); at tokens t the loss follows the law with D
  replaced by t, a stand-in for a training curve (good enough for pruning and envelope tests).
- fail_prob: probability (fixed per trial config) that the trial raises every time it runs: a
  permanent crash.
- crash_once: when 1, the first run of a trial raises after writing a marker in `run_dir`; a retry
  with the same run_dir succeeds: a transient crash, for testing retries.
- diverge_prob: probability (fixed per trial config) that the trial returns status diverged.
- oom_above_params: trials with more parameters than this return status oom.
- lr_penalty, lr_c, lr_exponent: an optional learning-rate term with a known optimum, for testing
  learning-rate search (default off, lr_penalty = 0):

      L += lr_penalty * ln(lr / lr_opt(N))^2,   lr_opt(N) = lr_c * (N / 1e6)^(-lr_exponent)

  added at every reported point, so intermediate eval losses already rank learning rates (what a
  pruner needs). The defaults lr_c = 3e-3, lr_exponent = 0.3 put lr_opt ~ N^-0.3, a typical shrink of
  the best rate with width (cf. muP, Yang et al. 2022; Porian et al. 2024).
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

from orchestrator.accounting import count_params, train_flops_per_token
from trainers.api import DIVERGED, FINISHED, OOM, Report, TrialResult
from trainers.config import DataConfig, ModelConfig, TrainerConfig

CRASH_MARKER = "surrogate_crashed_once"


@dataclasses.dataclass(frozen=True)
class SurrogateLaw:
    """The law and the test knobs (see the module docstring)."""

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28
    noise: float = 0.0
    sleep_per_pflop: float = 0.0
    points: int = 5
    fail_prob: float = 0.0
    crash_once: float = 0.0
    diverge_prob: float = 0.0
    oom_above_params: float = math.inf
    lr_penalty: float = 0.0
    lr_c: float = 3e-3
    lr_exponent: float = 0.3

    def __post_init__(self) -> None:
        for key in ("E", "A", "B", "alpha", "beta", "noise", "sleep_per_pflop", "lr_penalty", "lr_c"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise ValueError(f"trainer.surrogate.{key}={getattr(self, key)} is invalid: it must be >= 0.")
        if self.points < 1 or not float(self.points).is_integer():
            raise ValueError(f"trainer.surrogate.points={self.points} is invalid: it must be a positive integer.")
        for key in ("fail_prob", "diverge_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"trainer.surrogate.{key}={getattr(self, key)} is invalid: it must lie in [0, 1].")

    def loss(self, n: float, d: float) -> float:
        """E + A / N^alpha + B / D^beta."""
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def lr_opt(self, n: float) -> float:
        """The known best learning rate at N parameters: lr_c * (N / 1e6)^(-lr_exponent)."""
        return self.lr_c * (n / 1e6) ** (-self.lr_exponent)

    def lr_term(self, n: float, lr: float) -> float:
        """lr_penalty * ln(lr / lr_opt(N))^2 (0 when lr_penalty = 0)."""
        return self.lr_penalty * math.log(lr / self.lr_opt(n)) ** 2 if self.lr_penalty else 0.0


def _config_seed(config: dict[str, Any]) -> list[int]:
    """A generator seed from the whole trial config (so the noise is a function of the trial)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _law(config: dict[str, Any]) -> SurrogateLaw:
    """The trial's law and knobs from `trainer.surrogate`; ValueError (one sentence) for a bad knob."""
    known = {f.name for f in dataclasses.fields(SurrogateLaw)}
    knobs = dict(TrainerConfig(**config.get("trainer", {})).surrogate)
    unknown = sorted(set(knobs) - known)
    if unknown:
        raise ValueError(f"trainer.surrogate has unknown keys {unknown}: allowed are {sorted(known)}.")
    return SurrogateLaw(**knobs)


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


def train(config: dict[str, Any], report: Report, *, run_dir: str | None = None, device: str = "cpu",
          threads: int = 1) -> dict[str, Any]:
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
    lr_term = law.lr_term(n, float(config["trainer"]["lr"]))
    extra = {"n_params": n, "flops_per_token": fpt, "law_loss": law.loss(n, tokens) + lr_term, "entropy_floor": law.E}
    if law.lr_penalty:
        extra["lr_opt"] = law.lr_opt(n)
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
        clean = law.loss(n, done) + lr_term
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
