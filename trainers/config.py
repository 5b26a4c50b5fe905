"""Typed configuration of what a trial trains: the model shape, the data and the optimiser.

These dataclasses are the schema of the Hydra groups `model/`, `data/` and `trainer/`. They import
neither hydra nor omegaconf: the CLI composes the YAML, converts it once into these types, and
everything below (planner, trainers, tracking) works with plain dataclasses or the plain dict a trial
carries (`dataclasses.asdict`; the trainer section by `trainer_section`). Field docs are the user-facing
documentation of every key.

Each trainer owns its knobs: the GPT trainer reads the fields of `TrainerConfig`, the surrogate its typed
`SurrogateConfig` (`trainer.surrogate.*`), and a plug-in trainer the free-form `trainer.options.*`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

POSITION_KINDS = ("learned", "rotary")
DATASETS = ("synthetic", "bytes", "tokens")
SCHEDULES = ("cosine", "wsd")
COOLDOWN_SHAPES = ("1-sqrt", "linear")
TOKEN_DTYPES = ("uint16", "uint32")


@dataclass
class ModelConfig:
    """A GPT-style decoder shape (group `model/`).

    Either give the shape (`n_layer`, `d_model`, `n_head`) directly, or let a sweep resolve target
    parameter counts to shapes with the shape rule (`aspect_ratio`, `head_dim`); the sweep overrides
    `n_layer`/`d_model`/`n_head` per trial.
    """

    n_layer: int = 2
    """Number of Transformer blocks."""
    d_model: int = 64
    """Residual stream width."""
    n_head: int = 2
    """Attention heads; must divide d_model."""
    mlp_ratio: int = 4
    """MLP hidden width d_ff = mlp_ratio * d_model."""
    seq_len: int = 128
    """Context length in tokens (training sequences are this long)."""
    tied_embeddings: bool = True
    """Share the token embedding with the output head."""
    positions: str = "learned"
    """Position encoding: learned (a seq_len x d_model table) or rotary (no parameters)."""
    bias: bool = False
    """Biases in linear layers and LayerNorms."""
    aspect_ratio: int = 16
    """Shape rule: d_model / n_layer when a sweep resolves a target parameter count to a shape."""
    scale_depth: bool = True
    """Shape rule: false keeps n_layer and n_head as given and scales only the width, in steps of head_dim (a
    one-depth family: at tiny scale, models one layer deeper or shallower at the same size differ in loss by
    more than the noise)."""
    head_dim: int = 32
    """Shape rule: width of one attention head; d_model is rounded to a multiple of it."""

    def __post_init__(self) -> None:
        for key in ("n_layer", "d_model", "n_head", "mlp_ratio", "seq_len", "aspect_ratio", "head_dim"):
            value = getattr(self, key)
            if value < 1:
                raise ValueError(f"model.{key}={value} is invalid: it must be a positive integer.")
        if not self.scale_depth and self.head_dim % self.n_head:
            raise ValueError(
                f"model.head_dim={self.head_dim} is not divisible by model.n_head={self.n_head}: with "
                f"model.scale_depth=false every width (a multiple of head_dim) must split into n_head heads.")
        if self.d_model % self.n_head:
            raise ValueError(
                f"model.d_model={self.d_model} is not divisible by model.n_head={self.n_head}: "
                f"choose n_head among the divisors of d_model."
            )
        if self.positions not in POSITION_KINDS:
            raise ValueError(f"model.positions={self.positions!r} is unknown: allowed are {', '.join(POSITION_KINDS)}.")
        if self.positions == "rotary" and (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"model.positions=rotary needs an even head size, but d_model/n_head = "
                f"{self.d_model}/{self.n_head} is odd."
            )

    @property
    def d_ff(self) -> int:
        return self.mlp_ratio * self.d_model


@dataclass
class DataConfig:
    """Where training tokens come from (group `data/`). Nothing is ever downloaded.

    - `synthetic`: a built-in random language (a topic-structured hidden Markov model, see
      `trainers/synthetic.py`) sampled from `seed`, whose Bayes-optimal loss on the evaluation
      sequences is computed exactly, so every sweep on it knows its irreducible loss. The defaults
      (16 topics x 64 states, 8 tokens per state, 4 successors, Zipf 1.1, vocab 256) give a unigram
      entropy of 4.83 nats and a floor of 2.97 nats at seq_len 128, with CPU-scale models (10k..1M
      parameters, 1M..50M tokens) in between.
    - `bytes`: byte-level text (vocab 256) from the file or folder at `path`.
    - `tokens`: a pre-tokenised nanoGPT-layout folder (`train.bin`, `val.bin`, memmaps of `dtype`).
    """

    name: str = "synthetic"
    """Dataset kind: synthetic, bytes or tokens."""
    vocab_size: int = 256
    """Vocabulary size (bytes: must be 256; tokens: stated by the user; synthetic: its alphabet)."""
    path: str | None = None
    """File or folder for bytes/tokens data."""
    dtype: str = "uint16"
    """Element type of token .bin files: uint16 or uint32."""
    val_fraction: float = 0.05
    """Bytes data: fraction of the corpus held out for evaluation (a contiguous tail, never trained on)."""
    allow_repeat: bool = False
    """Allow more than one epoch when the corpus is smaller than a trial's tokens D (epochs are recorded)."""
    seed: int = 1234
    """Synthetic language: seed of the language itself (not of the trial)."""
    n_states: int = 64
    """Synthetic language: hidden states per topic (the HMM has n_topics x n_states states)."""
    zipf_exponent: float = 1.1
    """Synthetic language: Zipf exponent of every popularity (topics, states, tokens) and support."""
    emit_support: int = 8
    """Synthetic language: number of tokens each hidden state can emit."""
    trans_support: int = 4
    """Synthetic language: number of successor states each hidden state can move to."""
    n_topics: int = 16
    """Synthetic language: topics, each with its own states, transitions and favourite tokens."""
    topic_switch: float = 0.02
    """Synthetic language: probability per token of jumping to a fresh (Zipf-drawn) topic."""

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"data.name={self.name!r} is unknown: allowed are {', '.join(DATASETS)}.")
        if self.vocab_size < 2:
            raise ValueError(f"data.vocab_size={self.vocab_size} is invalid: it must be at least 2.")
        if self.name == "bytes" and self.vocab_size != 256:
            raise ValueError(f"data.vocab_size={self.vocab_size} is invalid for data.name=bytes: it must be 256.")
        if self.name in ("bytes", "tokens") and not self.path:
            raise ValueError(f"data.path is required for data.name={self.name}: give a file or folder.")
        if self.dtype not in TOKEN_DTYPES:
            raise ValueError(f"data.dtype={self.dtype!r} is unknown: allowed are {', '.join(TOKEN_DTYPES)}.")
        for key in ("n_states", "n_topics"):
            if getattr(self, key) < 1:
                raise ValueError(f"data.{key}={getattr(self, key)} is invalid: it must be a positive integer.")
        if not 1 <= self.trans_support <= self.n_states:
            raise ValueError(
                f"data.trans_support={self.trans_support} is invalid: "
                f"it must lie in [1, data.n_states={self.n_states}]."
            )
        if not 1 <= self.emit_support <= self.vocab_size:
            raise ValueError(
                f"data.emit_support={self.emit_support} is invalid: "
                f"it must lie in [1, data.vocab_size={self.vocab_size}]."
            )
        if not (math.isfinite(self.zipf_exponent) and self.zipf_exponent >= 0):
            raise ValueError(f"data.zipf_exponent={self.zipf_exponent} is invalid: it must be >= 0.")
        if not 0.0 <= self.topic_switch <= 1.0 or (self.n_topics > 1 and self.topic_switch == 0.0):
            raise ValueError(
                f"data.topic_switch={self.topic_switch} is invalid: it must lie in [0, 1], and be > 0 when "
                f"data.n_topics > 1 (otherwise a sequence could never leave its first topic)."
            )
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"data.val_fraction={self.val_fraction} is invalid: it must lie in (0, 0.5).")


@dataclass
class SurrogateConfig:
    """The surrogate trainer's law and test knobs (`trainer.surrogate.*`, trainers/surrogate.py).

        L(N, D) = E + A / N^alpha + B / D^beta  [+ lr_penalty ln(lr / lr_opt(N))^2]

    The defaults are Chinchilla's fit (Hoffmann et al. 2022, Approach 3). Every check of a knob is here: the
    CLI runs it when the config is composed, the surrogate's validate hook on every planned trial.
    """

    E: float = 1.69
    """Irreducible loss (nats): the law's entropy floor."""
    A: float = 406.4
    """Coefficient of the parameter term A / N^alpha."""
    B: float = 410.7
    """Coefficient of the data term B / D^beta."""
    alpha: float = 0.34
    """Exponent of the parameter term (N is the exact total parameter count)."""
    beta: float = 0.28
    """Exponent of the data term (D is the trial's tokens, or the tokens so far at a reported point)."""
    noise: float = 0.0
    """Standard deviation (nats) of Gaussian noise on each reported loss, from a generator seeded by the hash of the
    whole trial config: a trial is reproducible and distinct trials get independent noise."""
    sleep_per_pflop: float = 0.0
    """Seconds slept per 1e15 training FLOPs (exact accounting), to mimic a trial's cost."""
    points: int = 5
    """Reports along the run; at tokens t the loss follows the law with D replaced by t (a stand-in curve)."""
    fail_prob: float = 0.0
    """Probability, fixed per trial config, that the trial raises every time it runs (a permanent crash)."""
    crash_once: bool = False
    """The first run of a trial raises after leaving a marker in its run_dir; a retry succeeds (a transient crash)."""
    diverge_prob: float = 0.0
    """Probability, fixed per trial config, that the trial returns status diverged halfway."""
    oom_above_params: float = math.inf
    """Trials with more parameters than this return status oom (inf: none)."""
    lr_penalty: float = 0.0
    """Weight of the learning-rate term (0: off), for testing learning-rate search."""
    lr_c: float = 3e-3
    """The best learning rate at N = 1e6: lr_opt(N) = lr_c (N / 1e6)^-lr_exponent."""
    lr_exponent: float = 0.3
    """How fast the best rate shrinks with N (cf. muP, Yang et al. 2022; Porian et al. 2024)."""

    def __post_init__(self) -> None:
        for key in ("E", "A", "B", "alpha", "beta", "noise", "sleep_per_pflop", "lr_penalty", "lr_c"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"trainer.surrogate.{key}={value} is invalid: it must be >= 0.")
        if isinstance(self.points, bool) or not float(self.points).is_integer() or self.points < 1:
            raise ValueError(f"trainer.surrogate.points={self.points} is invalid: it must be a positive integer.")
        for key in ("fail_prob", "diverge_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"trainer.surrogate.{key}={getattr(self, key)} is invalid: it must lie in [0, 1].")
        if not self.oom_above_params > 0:  # NaN fails too
            raise ValueError(f"trainer.surrogate.oom_above_params={self.oom_above_params} is invalid: it must be > 0 "
                             f"(inf: no trial is out of memory).")
        if not math.isfinite(self.lr_exponent):
            raise ValueError(f"trainer.surrogate.lr_exponent={self.lr_exponent} is invalid: it must be finite.")

    @classmethod
    def from_knobs(cls, knobs: dict[str, Any]) -> SurrogateConfig:
        """From a mapping of knobs (a trial's section); an unknown knob is one sentence naming the allowed ones."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(knobs) - set(known))
        if unknown:
            raise ValueError(f"trainer.surrogate has unknown keys {unknown}: allowed are {sorted(known)}.")
        return cls(**knobs)


@dataclass
class TrainerConfig:
    """How a trial is trained and evaluated (group `trainer/`).

    `target` names the training function (`module:function` or `module.function`); plug-in trainers
    share the contract in `trainers/api.py`.
    """

    target: str = "trainers.gpt:train"
    """The training function: the built-in GPT trainer, the surrogate, or a user's own."""
    lr: float = 3e-3
    """Peak learning rate (AdamW)."""
    batch_tokens: int = 4096
    """Tokens per optimizer step (sequences x seq_len); gradient accumulation when it does not fit."""
    micro_batch_tokens: int = 0
    """Tokens per forward pass; 0 means the whole batch in one pass."""
    warmup_tokens: int = 0
    """Linear warmup length in tokens; 0 means 2% of the trial's D."""
    schedule: str = "cosine"
    """cosine (decays to min_lr_ratio at exactly D tokens) or wsd (warmup-stable-decay)."""
    decay_fraction: float = 0.2
    """wsd: the final fraction of D spent cooling down (Hägele et al. 2024 use about 20%)."""
    cooldown_shape: str = "1-sqrt"
    """wsd: the cooldown's shape, 1-sqrt (Hägele et al. 2024, Sec. 3: matches cosine) or linear."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak."""
    weight_decay: float = 0.1
    """Decoupled weight decay on matrices (not on norms, biases or embeddings)."""
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables."""
    eval_interval_tokens: int = 0
    """Evaluate every this many training tokens; 0 means `evals_per_run` evaluations per run."""
    evals_per_run: int = 10
    """With eval_interval_tokens = 0: evaluations per run, evenly spaced, the last at D (only the last is a
    valid point of a decayed run; the others draw its curve)."""
    eval_tokens: int = 65536
    """Held-out tokens per evaluation."""
    spike_factor: float = 4.0
    """Stop as diverged when the train loss exceeds this factor times its running minimum."""
    checkpoint_interval_tokens: int = 0
    """Checkpoint every this many tokens when the trial has a checkpoint directory; 0 disables."""
    dtype: str = "auto"
    """auto (fp32 on CPU, bf16 autocast on CUDA), fp32 or bf16."""
    compile: bool = False
    """torch.compile the model (CUDA)."""
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    """The surrogate trainer's law and test knobs (trainers/surrogate.py); other trainers ignore them. A trial's
    section carries them as a mapping of the knobs that differ from the defaults (`trainer_section`)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Knobs of a plug-in trainer (`+trainer.options.<knob>=value`), passed through unvalidated except by the
    trainer's own validate hook (trainers/api.py); part of the trial's identity."""

    def __post_init__(self) -> None:
        if isinstance(self.surrogate, dict):  # a trial's section (trainer_section) carries the knobs as a mapping
            self.surrogate = SurrogateConfig.from_knobs(self.surrogate)
        for key in ("lr", "batch_tokens", "eval_tokens", "spike_factor", "beta1", "beta2"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"trainer.{key}={value} is invalid: it must be a positive finite number.")
        if self.evals_per_run < 1:
            raise ValueError(f"trainer.evals_per_run={self.evals_per_run} is invalid: "
                             "it must be >= 1 (the last is at D).")
        for key in ("micro_batch_tokens", "warmup_tokens", "eval_interval_tokens", "checkpoint_interval_tokens"):
            if getattr(self, key) < 0:
                raise ValueError(f"trainer.{key}={getattr(self, key)} is invalid: it must be >= 0.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"trainer.schedule={self.schedule!r} is unknown: allowed are {', '.join(SCHEDULES)}.")
        if self.cooldown_shape not in COOLDOWN_SHAPES:
            raise ValueError(f"trainer.cooldown_shape={self.cooldown_shape!r} is unknown: allowed are "
                             f"{', '.join(COOLDOWN_SHAPES)}.")
        if self.dtype not in ("auto", "fp32", "bf16"):
            raise ValueError(f"trainer.dtype={self.dtype!r} is unknown: allowed are auto, fp32, bf16.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"trainer.min_lr_ratio={self.min_lr_ratio} is invalid: it must lie in [0, 1].")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"trainer.decay_fraction={self.decay_fraction} is invalid: it must lie in (0, 1].")


ADDED_AT_DEFAULT = {"cooldown_shape": "1-sqrt"}
"""Trainer fields added after trial ids were in use, left out of a trial's section at their default (the
trainer's own default is the same), so that the trials planned before they existed keep their ids."""


def trainer_section(trainer: TrainerConfig) -> dict[str, Any]:
    """The trainer section a trial carries, hashes and logs: every field of `trainer` as plain data, except that
    `surrogate` lists only the knobs that differ from SurrogateConfig's defaults, `options` is left out when
    empty and so are the ADDED_AT_DEFAULT fields at their default. A section so names what the trainer was given
    (a GPT trial carries `surrogate: {}` and no `options`, so a new surrogate knob or default changes no GPT
    trial's id), and `TrainerConfig(**section)` rebuilds `trainer`."""
    section = asdict(trainer)
    defaults = asdict(SurrogateConfig())
    section["surrogate"] = {k: v for k, v in section["surrogate"].items() if v != defaults[k]}
    if not section["options"]:
        del section["options"]
    for key, default in ADDED_AT_DEFAULT.items():  # fields added later: absent at their default, so old ids hold
        if section[key] == default:
            del section[key]
    return section
