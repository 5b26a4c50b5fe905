"""A decoder-only Transformer language model (GPT-2 style, pre-norm), built from `ModelConfig`.

The layout follows nanoGPT's `model.py` (Karpathy): token (+ learned position) embedding, `n_layer`
pre-norm blocks of causal self-attention and a GELU MLP, a final LayerNorm and a linear head that is
tied to the token embedding or not. Rotary positions (Su et al. 2021, RoFormer, Eq. 34) add no
parameters. The parameters allocated here are exactly those `trainers.accounting.count_params`
counts; `tests/trainers/test_model.py` asserts it for many shapes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.config import ModelConfig

INIT_STD = 0.02
"""GPT-2 initialisation: N(0, 0.02) for every matrix and embedding (Radford et al. 2019)."""


class Rotary(nn.Module):
    """Rotary position embedding (RoFormer, Su et al. 2021): rotate pairs of q/k channels by
    position-dependent angles, so q.k depends on the relative position only. No parameters."""

    def __init__(self, head_size: int, seq_len: int, *, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)  # (hs/2,)
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (T, hs/2)
        # Buffers, not parameters: non-persistent so checkpoints and counts hold parameters only.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        t = x.size(-2)
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, nh, T, hs/2) each
        cos, sin = self.cos[:t], self.sin[:t]  # (T, hs/2)
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hs/2, 2)
        return out.flatten(-2).type_as(x)  # (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.rotary = Rotary(cfg.d_model // cfg.n_head, cfg.seq_len) if cfg.positions == "rotary" else None

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # (B, T, d) each
        q = q.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        # The fused kernel (flash / memory-efficient on CUDA, flash on CPU) skips masked blocks.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(b, t, d)  # (B, T, d)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))  # (B, T, d) -> (B, T, f) -> (B, T, d)


class Block(nn.Module):
    """Pre-norm residual block (GPT-2, Radford et al. 2019, Sec. 2.3)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The language model. `forward(idx, targets)` returns the mean next-token cross-entropy (nats)."""

    def __init__(self, cfg: ModelConfig, *, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model) if cfg.positions == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        if cfg.tied_embeddings:
            # Weight tying (Press & Wolf 2017): one V x d matrix serves both ends.
            self.lm_head.weight = self.wte.weight
        self.apply(self._init)
        # GPT-2 scales the residual projections by 1/sqrt(2 * n_layer) so the residual stream's
        # variance does not grow with depth (Radford et al. 2019, Sec. 2.3).
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)

    def n_params(self) -> int:
        """Distinct parameters (a tied matrix counts once), as `count_params(...).total`."""
        return sum(p.numel() for p in self.parameters())

    def logits(self, idx: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, V) next-token logits."""
        x = self.wte(idx)  # (B, T, d)
        if self.wpe is not None:
            x = x + self.wpe.weight[: idx.size(1)]  # (T, d) broadcast over B
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def forward(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of `targets` (B, T) given `idx` (B, T); a 0-dim tensor."""
        logits = self.logits(idx)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def token_losses(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Per-token cross-entropy (B, T), for evaluation and its standard error."""
        logits = self.logits(idx)  # (B, T, V)
        losses = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
        return losses.view_as(targets)

    def param_groups(self, *, weight_decay: float) -> list[dict]:
        """AdamW groups: decoupled weight decay on the matrices of linear layers only.

        Norm gains, biases and embeddings are not decayed (nanoGPT `configure_optimizers`; Loshchilov &
        Hutter 2019 for decoupled decay). A tied head is the token embedding, so it is not decayed; an
        untied head is a linear layer's matrix and is.
        """
        embeddings = {id(self.wte.weight)} | ({id(self.wpe.weight)} if self.wpe is not None else set())
        decay, no_decay = [], []
        for p in self.parameters():  # distinct tensors: a tied matrix appears once
            (decay if p.dim() == 2 and id(p) not in embeddings else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
