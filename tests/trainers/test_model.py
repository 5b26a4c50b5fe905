"""The GPT module: exact parameter accounting, causality, and the decay / no-decay split."""

from __future__ import annotations

import itertools

import pytest
import torch

from trainers.accounting import count_params
from trainers.config import ModelConfig
from trainers.gpt import GPT


@pytest.mark.parametrize(
    "n_layer,d_model,n_head,mlp_ratio,seq_len,tied,positions,bias",
    [
        (shape + (tied, positions, bias))
        for shape, tied, positions, bias in itertools.product(
            [(1, 16, 1, 4, 8), (2, 64, 4, 4, 32), (3, 96, 3, 2, 17)],
            [True, False], ["learned", "rotary"], [False, True],
        )
    ],
)
def test_parameter_count_equals_accounting(n_layer, d_model, n_head, mlp_ratio, seq_len, tied, positions, bias):
    # The planner picks shapes by count_params; a mismatch would put every point at the wrong N.
    cfg = ModelConfig(n_layer=n_layer, d_model=d_model, n_head=n_head, mlp_ratio=mlp_ratio, seq_len=seq_len,
                      tied_embeddings=tied, positions=positions, bias=bias)
    for vocab in (256, 1000):
        model = GPT(cfg, vocab_size=vocab)
        assert sum(p.numel() for p in model.parameters()) == count_params(cfg, vocab_size=vocab).total


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_attention_is_causal(positions):
    # Changing a future token must not change any earlier logit.
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, d_model=32, n_head=2, seq_len=16, positions=positions), vocab_size=50).eval()
    idx = torch.randint(0, 50, (2, 16))
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 50
    with torch.no_grad():
        a, b = model.logits(idx), model.logits(changed)
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_rotary_positions_are_relative():
    # RoPE: q.k depends on the offset only, so rotating q at m and k at n equals rotating at m+s, n+s.
    from trainers.model import Rotary

    rope = Rotary(8, 32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    def at(x, pos):  # x rotated as if it stood at position `pos`
        padded = torch.zeros(1, 1, pos + 1, 8)
        padded[..., pos, :] = x
        return rope(padded)[..., pos, :]
    assert torch.allclose((at(q, 5) * at(k, 2)).sum(), (at(q, 20) * at(k, 17)).sum(), atol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_weight_decay_only_on_linear_matrices(tied):
    cfg = ModelConfig(n_layer=2, d_model=32, n_head=2, seq_len=8, tied_embeddings=tied, bias=True)
    model = GPT(cfg, vocab_size=40)
    decay, no_decay = model.param_groups(weight_decay=0.1)
    decayed = {id(p) for p in decay["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert all(name.endswith("weight") and "ln" not in name and "wte" not in name and "wpe" not in name
               for name in names)
    assert ("lm_head.weight" in names) == (not tied)  # a tied head is the embedding: not decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1
