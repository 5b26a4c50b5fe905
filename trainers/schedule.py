"""The learning-rate schedule, in units of training tokens, whose length is the trial's budget D.

A cosine cycle must end exactly where the run ends: Hoffmann et al. 2022 (Chinchilla, Sec. 3 and
App. B, Fig. A1) show that a cosine longer than the run overestimates the loss at that token count,
which is why Kaplan et al.'s curves bent the wrong way. Each step's rate is evaluated at the tokens
consumed *after* the step, so the first step already has a non-zero rate and the last step (ending at
exactly D) uses the final rate `min_lr_ratio * lr`.

- `cosine`: linear warmup to the peak, then a half cosine to `min_lr_ratio * peak` at D.
- `wsd` (warmup-stable-decay; Hu et al. 2024, MiniCPM, Sec. 4): warmup, constant peak, then the last
  `decay_fraction` of D cools down to `min_ratio * peak` with the "1 - sqrt" shape that Hägele et al. 2024
  (Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations, Sec. 3) found to match cosine,
  or linearly (`cooldown_shape`). Up to the cooldown's start the rate does not depend on D, which is what
  lets one constant-rate trunk fork into cooldowns at several D (orchestrator/forks.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WARMUP_DEFAULT_FRACTION = 0.02
"""warmup_tokens = 0 means 2% of D."""


@dataclass(frozen=True)
class Schedule:
    """The learning rate as a function of tokens consumed, for one trial."""

    peak: float
    total_tokens: int
    warmup_tokens: int
    kind: str = "cosine"
    min_ratio: float = 0.1
    decay_fraction: float = 0.2
    cooldown_shape: str = "1-sqrt"

    def __post_init__(self) -> None:
        if self.total_tokens < 1:
            raise ValueError(f"tokens={self.total_tokens} is invalid: a trial needs at least one token.")
        if self.kind not in ("cosine", "wsd"):
            raise ValueError(f"trainer.schedule={self.kind!r} is unknown: allowed are cosine, wsd.")

    @classmethod
    def for_trial(cls, *, peak: float, total_tokens: int, warmup_tokens: int, kind: str, min_ratio: float,
                  decay_fraction: float, cooldown_shape: str = "1-sqrt") -> Schedule:
        """The schedule of one trial; a warmup of 0 means `WARMUP_DEFAULT_FRACTION` of D."""
        warmup = warmup_tokens or round(WARMUP_DEFAULT_FRACTION * total_tokens)
        # A warmup longer than the run would never reach the peak: cap it at D.
        return cls(peak=peak, total_tokens=total_tokens, warmup_tokens=min(warmup, total_tokens), kind=kind,
                   min_ratio=min_ratio, decay_fraction=decay_fraction, cooldown_shape=cooldown_shape)

    def __call__(self, tokens: int) -> float:
        """Learning rate for the step that ends after `tokens` training tokens."""
        d, w = self.total_tokens, self.warmup_tokens
        floor = self.min_ratio * self.peak
        if tokens < w:
            return self.peak * tokens / w
        if self.kind == "cosine":
            progress = min((tokens - w) / max(d - w, 1), 1.0)
            return floor + (self.peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        decay_start = self.decay_start
        if tokens <= decay_start:
            return self.peak
        progress = min((tokens - decay_start) / max(d - decay_start, 1), 1.0)
        shape = 1.0 - math.sqrt(progress) if self.cooldown_shape == "1-sqrt" else 1.0 - progress
        return floor + (self.peak - floor) * shape

    @property
    def decay_start(self) -> int:
        """wsd: the tokens after which the cooldown begins (the rate is the peak from warmup up to here)."""
        return max(self.total_tokens - round(self.decay_fraction * self.total_tokens), self.warmup_tokens)
