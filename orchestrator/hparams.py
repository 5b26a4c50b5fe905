"""Hyperparameters that follow scale (group `hparams/`): batch size, learning rate, warmup and AdamW beta2 per
trial from rules of its compute C, size N or tokens D, and the validity of the point a trial makes.

Scaling laws fitted on runs whose optimizer settings do not follow scale are biased: Porian et al. (2024,
"Resolving Discrepancies in Compute-Optimal Scaling of Language Models") trace most of the Kaplan/Chinchilla
disagreement to a warmup that was too long for small models, learning rate and batch size not tuned per scale,
and AdamW's beta2 = 0.95 at small batches. So each of these can be a rule:

- `ScaleRule`: value = coef * x^exponent (* y^exponent2), x and y the trial's C (its budget, else C_exact),
  N (N_total) or D (tokens), clipped to [min, max]; coef 0 leaves the trainer's value. The second factor
  carries the Step Law form lr* = k N^alpha D^beta (Li et al. 2025), which a pilot fits
  (orchestrator/pilot/, `hparams=pilot_<name>`). DeepSeek LLM (2024, sec. 3.1) fit
  B_opt = 0.292 C^0.3271 tokens and eta_opt = 0.3118 C^-0.125 at GPU scale (`conf/hparams/deepseek.yaml`); the
  CPU demo's rules were measured on the synthetic language (`conf/hparams/cpu.yaml`, `benchmarks/cpu_rules.py`).
- batch_tokens is rounded to whole sequences (so a rule of D gives every trial the same number of steps).
- beta2 by batch size: beta2 = beta2_ref^(B / batch_ref), which keeps the second-moment average's horizon fixed
  in tokens (an EMA of factor beta per step forgets 1/(1 - beta) steps, i.e. B / (1 - beta) tokens), so a batch
  16x smaller gets a beta2 whose memory spans 16x more steps (Porian et al. 2024, sec. 4: beta2 = 0.99-0.999 at
  small batch); clipped to [beta2_min, beta2_max].

A rule's value is written into the trial's resolved config, so it is part of the trial id and of its MLflow
params. Values that a sweep gives explicitly (the axes `sweep.lr`, `sweep.batch_tokens`, `sweep.warmup_tokens`,
or `sweep.lr_from`) win over rules.

Validity: a point is a valid scaling point only if its run had enough optimizer steps to be a trained model
(`min_steps`) and enough warmup steps for AdamW's second-moment estimate to settle (`min_warmup_steps`). The
planner marks trials that break them, `action=run` refuses them unless `hparams.allow_invalid=true`, and the fit
excludes such runs with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

VARIABLES = ("C", "N", "D")


@dataclass
class ScaleRule:
    """value = coef * x^exponent * y^exponent2 (x: `of`, y: `of2`, each one of C, N, D; of2 empty: no second
    factor), clipped to [min, max] (max 0: none); coef 0: off."""

    of: str = "C"
    coef: float = 0.0
    exponent: float = 0.0
    min: float = 0.0
    max: float = 0.0
    of2: str = ""
    exponent2: float = 0.0

    def check(self, key: str) -> None:
        if self.of not in VARIABLES:
            raise ValueError(f"{key}.of={self.of!r} is unknown: allowed are {', '.join(VARIABLES)}.")
        if self.of2 and (self.of2 not in VARIABLES or self.of2 == self.of):
            raise ValueError(f"{key}.of2={self.of2!r} is invalid: allowed are {', '.join(VARIABLES)} other than "
                             f"{key}.of, or empty for no second factor.")
        for name in ("coef", "exponent", "min", "max", "exponent2"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{key}.{name}={value} is invalid: it must be a finite number.")
        if self.coef < 0 or self.min < 0 or self.max < 0:
            raise ValueError(f"{key}: coef, min and max must be >= 0 (coef 0 turns the rule off).")
        if self.max and self.max < self.min:
            raise ValueError(f"{key}.max={self.max} is below {key}.min={self.min}.")

    @property
    def on(self) -> bool:
        return self.coef > 0

    def __call__(self, *, C: float, N: float, D: float) -> float:
        values = {"C": C, "N": N, "D": D}
        value = self.coef * values[self.of] ** self.exponent
        if self.of2:
            value *= values[self.of2] ** self.exponent2
        value = max(value, self.min)
        return min(value, self.max) if self.max else value

    def describe(self) -> str:
        if not self.on:
            return "the trainer's value"
        law = f"{self.coef:.4g} {self.of}^{self.exponent:.4g}" if self.exponent else f"{self.coef:.4g}"
        if self.of2 and self.exponent2:
            law += f" {self.of2}^{self.exponent2:.4g}"
        clip = [f">= {self.min:.4g}"] if self.min else []
        clip += [f"<= {self.max:.4g}"] if self.max else []
        return law + (f" ({', '.join(clip)})" if clip else "")


@dataclass
class HParamsConfig:
    """Rules that set each trial's optimizer hyperparameters from its scale, and what makes a valid point."""

    name: str = "constant"
    """Which rule set this is (the option of the hparams/ group)."""
    lr: ScaleRule = field(default_factory=ScaleRule)
    """Peak learning rate (trainer.lr)."""
    batch_tokens: ScaleRule = field(default_factory=ScaleRule)
    """Tokens per optimizer step (trainer.batch_tokens), rounded to whole sequences."""
    warmup_tokens: ScaleRule = field(default_factory=ScaleRule)
    """Linear warmup in tokens (trainer.warmup_tokens); e.g. of N with coef 1, exponent 1: N tokens (Porian et
    al. 2024)."""
    beta2_batch_ref: float = 0.0
    """beta2 = beta2_ref^(batch / beta2_batch_ref) (trainer.beta2): the same second-moment horizon in tokens at
    every batch size; 0: off (the trainer's beta2)."""
    beta2_ref: float = 0.95
    beta2_min: float = 0.9
    beta2_max: float = 0.999
    min_steps: int = 0
    """A trial with fewer optimizer steps is not a valid scaling point."""
    min_warmup_steps: int = 0
    """A trial whose warmup spans fewer optimizer steps is not a valid scaling point."""
    allow_invalid: bool = False
    """Run trials that break min_steps or min_warmup_steps anyway (they are still left out of the fit)."""
    centre_tokens_per_param: float = 0.0
    """The IsoFLOP design's centre (tokens per parameter) a pilot measured; it replaces
    sweep.centre_tokens_per_param in an isoflop sweep (0: the sweep's own)."""
    pilot: str = ""
    """Which values came from a pilot (action=pilot writes it), printed by the plan; empty: none."""

    def __post_init__(self) -> None:
        for key in ("lr", "batch_tokens", "warmup_tokens"):
            rule = getattr(self, key)
            if isinstance(rule, dict):
                rule = ScaleRule(**rule)
                setattr(self, key, rule)
            rule.check(f"hparams.{key}")
        if not (math.isfinite(self.beta2_batch_ref) and self.beta2_batch_ref >= 0):
            raise ValueError(f"hparams.beta2_batch_ref={self.beta2_batch_ref} is invalid: it must be >= 0.")
        for key in ("beta2_ref", "beta2_min", "beta2_max"):
            value = getattr(self, key)
            if not (math.isfinite(value) and 0 < value < 1):
                raise ValueError(f"hparams.{key}={value} is invalid: it must lie in (0, 1).")
        if self.beta2_min > self.beta2_max:
            raise ValueError(f"hparams.beta2_min={self.beta2_min} is above hparams.beta2_max={self.beta2_max}.")
        if not (math.isfinite(self.centre_tokens_per_param) and self.centre_tokens_per_param >= 0):
            raise ValueError(f"hparams.centre_tokens_per_param={self.centre_tokens_per_param} is invalid: it must "
                             f"be >= 0 (0: the sweep's own centre).")
        for key in ("min_steps", "min_warmup_steps"):
            if getattr(self, key) < 0:
                raise ValueError(f"hparams.{key}={getattr(self, key)} is invalid: it must be >= 0.")

    def batch(self, *, C: float, N: float, D: float, seq_len: int) -> int | None:
        """The rule's tokens per step in whole sequences (None: rule off). Not rounded further (to a power of
        two, say): the loss depends on the number of steps (measured: -1.8% for 2x the steps at ~500), and a
        rule that means "1024 steps" should give every trial about 1024 steps."""
        if not self.batch_tokens.on:
            return None
        return seq_len * max(round(self.batch_tokens(C=C, N=N, D=D) / seq_len), 1)

    def beta2(self, batch_tokens: int) -> float | None:
        """beta2 for this batch size (None: rule off)."""
        if not self.beta2_batch_ref:
            return None
        value = self.beta2_ref ** (batch_tokens / self.beta2_batch_ref)
        return float(min(max(value, self.beta2_min), self.beta2_max))


def steps(tokens: int, batch_tokens: int) -> int:
    """Optimizer steps of a trial of `tokens` at `batch_tokens` per step (the last step may be partial)."""
    return math.ceil(tokens / batch_tokens)


def warmup_steps(*, tokens: int, batch_tokens: int, warmup_tokens: int, default_fraction: float) -> float:
    """Optimizer steps spent warming up (warmup_tokens 0 means the trainer's default fraction of D)."""
    warmup = warmup_tokens or round(default_fraction * tokens)
    return min(warmup, tokens) / batch_tokens


def invalid_reason(*, n_steps: int, n_warmup_steps: float, rules: HParamsConfig) -> str | None:
    """Why a trial is not a valid scaling point, or None."""
    out = []
    if n_steps < rules.min_steps:
        out.append(f"{n_steps} optimizer steps < hparams.min_steps={rules.min_steps}")
    if n_warmup_steps < rules.min_warmup_steps:
        out.append(f"{n_warmup_steps:.3g} warmup steps < hparams.min_warmup_steps={rules.min_warmup_steps}")
    return "; ".join(out) or None
