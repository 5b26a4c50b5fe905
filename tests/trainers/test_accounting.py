"""Exact parameter and FLOP accounting against counts done by hand."""

import pytest

from trainers.accounting import count_params, forward_flops_per_token, train_flops_per_token, training_cost
from trainers.config import ModelConfig

# n_layer=1, d=4, 1 head, d_ff=16, T=8, V=10. By hand:
#   token embedding 10*4=40, positions 8*4=32
#   block: ln1 4 + qkv 3*4*4=48 + out 4*4=16 + ln2 4 + mlp in 4*16=64 + mlp out 16*4=64 = 200
#   final ln 4  ->  non-embedding 204
TINY = dict(n_layer=1, d_model=4, n_head=1, mlp_ratio=4, seq_len=8)


def test_tied_learned_counts_by_hand():
    p = count_params(ModelConfig(**TINY, tied_embeddings=True, positions="learned"), vocab_size=10)
    assert (p.total, p.embed, p.nonembed) == (276, 72, 204)


def test_untied_head_counts_as_embedding():
    p = count_params(ModelConfig(**TINY, tied_embeddings=False), vocab_size=10)
    assert (p.total, p.embed, p.nonembed) == (316, 112, 204)


def test_rotary_has_no_position_parameters():
    p = count_params(ModelConfig(**TINY, positions="rotary"), vocab_size=10)
    assert (p.total, p.embed) == (244, 40)


def test_biases_add_one_per_output_feature():
    # norms 4+4 each (x3), qkv +12, out +4, mlp in +16, mlp out +4 -> block 244, final norm 8
    p = count_params(ModelConfig(**TINY, bias=True), vocab_size=10)
    assert p.nonembed == 244 + 8


def test_flops_per_token_by_hand():
    # block: qkv 2*3*16=96, scores 2*T*d=64, values 64, out 2*16=32, mlp 2*2*4*16=256 -> 512
    # head 2*4*10=80 -> forward 592, training 3x = 1776
    m = ModelConfig(**TINY)
    assert forward_flops_per_token(m, vocab_size=10) == 592
    assert train_flops_per_token(m, vocab_size=10) == 1776


def test_six_nd_is_close_for_wide_models_and_far_for_small_ones():
    # For wide models the matmul FLOPs approach 6N per token; attention and the head add the rest.
    wide = training_cost(ModelConfig(n_layer=24, d_model=2048, n_head=16, seq_len=2048), vocab_size=50304, tokens=10**9)
    assert wide.c_exact == pytest.approx(wide.c_6nd, rel=0.25)
    small = training_cost(ModelConfig(n_layer=2, d_model=64, n_head=4, seq_len=512), vocab_size=256, tokens=10**6)
    assert small.c_ratio > 1.5  # attention over a long context dominates a tiny model
    assert small.c_exact == small.flops_per_token * 10**6
