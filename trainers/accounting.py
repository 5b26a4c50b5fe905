"""Exact parameter and FLOP accounting for the GPT shape in `trainers/gpt.py`.

Parameters are counted tensor by tensor exactly as the torch module allocates them (the trainer's
test asserts equality with `sum(p.numel() for p in model.parameters())`):

    token embedding         V * d
    position embedding      T * d                      (learned positions; rotary has none)
    per block (n_layer):    LN1 d (+d bias)  QKV 3d*d (+3d)  attn out d*d (+d)
                            LN2 d (+d bias)  MLP in d*f (+f)  MLP out f*d (+d)
    final LayerNorm         d (+d bias)
    output head             V * d                      (untied only; tied shares the token embedding)

`n_embed` is the token and position embeddings plus an untied output head; `n_nonembed` is
everything else (blocks and the final norm), the convention of Kaplan et al. 2020 (Sec. 2.1), who
exclude embedding matrices from N.

Training FLOPs follow Hoffmann et al. 2022 (Chinchilla), App. F, Table 4: every matrix multiply
counts 2 FLOPs per multiply-add; the backward pass costs twice the forward (Kaplan et al. 2020,
Sec. 2.1), so a training token costs 3x its forward FLOPs. Per token, the forward matmuls are

    per block:  QKV 2*3*d*d  +  scores QK^T 2*T*d  +  attention-weighted values 2*T*d
                +  attn out 2*d*d  +  MLP 2*2*d*f
    output head 2*d*V

with T the full context length (as in Chinchilla and PaLM's MFU formula: the causal mask is not
discounted). The embedding lookup, softmax, norms and element-wise ops are not matmuls and are not
counted. `C_6ND = 6 * N_total * D` is the usual approximation reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainers.config import ModelConfig


@dataclass(frozen=True)
class ParamCount:
    """Exact parameter counts of one model shape."""

    total: int
    embed: int
    """Token + position embeddings + an untied output head."""
    nonembed: int
    """total - embed: the Transformer blocks and the final LayerNorm."""


def count_params(model: ModelConfig, *, vocab_size: int) -> ParamCount:
    """Exact parameter counts of `trainers.gpt.GPT(model, vocab_size)` (see module docstring)."""
    d, f, t, v = model.d_model, model.d_ff, model.seq_len, vocab_size
    b = 1 if model.bias else 0
    norm = d + b * d
    block = (
        norm  # ln_1
        + 3 * d * d + b * 3 * d  # qkv
        + d * d + b * d  # attention output projection
        + norm  # ln_2
        + d * f + b * f  # mlp in
        + f * d + b * d  # mlp out
    )
    token_embed = v * d
    position_embed = t * d if model.positions == "learned" else 0
    head = 0 if model.tied_embeddings else v * d
    nonembed = model.n_layer * block + norm
    embed = token_embed + position_embed + head
    return ParamCount(total=embed + nonembed, embed=embed, nonembed=nonembed)


def forward_flops_per_token(model: ModelConfig, *, vocab_size: int) -> int:
    """Forward matmul FLOPs per token (Chinchilla App. F convention; see module docstring)."""
    d, f, t, v = model.d_model, model.d_ff, model.seq_len, vocab_size
    block = 2 * 3 * d * d + 2 * t * d + 2 * t * d + 2 * d * d + 2 * 2 * d * f
    return model.n_layer * block + 2 * d * v


def train_flops_per_token(model: ModelConfig, *, vocab_size: int) -> int:
    """Training FLOPs per token: forward + backward = 3 x forward."""
    return 3 * forward_flops_per_token(model, vocab_size=vocab_size)


@dataclass(frozen=True)
class Cost:
    """What training a shape on D tokens costs."""

    n_total: int
    n_nonembed: int
    n_embed: int
    tokens: int
    flops_per_token: int
    c_exact: float
    c_6nd: float

    @property
    def c_ratio(self) -> float:
        """C_exact / C_6ND: how far the 6ND approximation is from the exact count."""
        return self.c_exact / self.c_6nd

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.n_total


def training_cost(model: ModelConfig, *, vocab_size: int, tokens: int) -> Cost:
    """Exact and 6ND training compute of `model` on `tokens` tokens."""
    params = count_params(model, vocab_size=vocab_size)
    fpt = train_flops_per_token(model, vocab_size=vocab_size)
    return Cost(
        n_total=params.total,
        n_nonembed=params.nonembed,
        n_embed=params.embed,
        tokens=tokens,
        flops_per_token=fpt,
        c_exact=float(fpt) * tokens,
        c_6nd=6.0 * params.total * tokens,
    )
