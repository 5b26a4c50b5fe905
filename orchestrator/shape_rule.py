"""A sweep's shape rule as the fitting stage sees it: the cost per token of the shapes it gives each size, and
the shape (and token count) to train for a recommended N at a budget C.

The fit's compute model smooths `samples` (fitting/compute.py); `shape_of` turns each recommended N_opt into a
shape the planner would train, with D in whole sequences so that its exact training FLOPs equal C (the same
solve as the planner's IsoFLOP trials, within one sequence).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trainers.accounting import count_params, train_flops_per_token
from orchestrator.planner import resolve_shape, shape_rule_samples
from trainers.config import ModelConfig


@dataclass(frozen=True)
class SweepShapeRule:
    """The shape rule of `model` (aspect_ratio, head_dim) at `vocab_size`; N counted by `n_convention`."""

    model: ModelConfig
    vocab_size: int
    n_convention: str = "total"

    @property
    def description(self) -> str:
        m = self.model
        depth = f"model.aspect_ratio={m.aspect_ratio}" if m.scale_depth else f"depth fixed at {m.n_layer}"
        return (f"the sweep's shape rule ({depth}, model.head_dim={m.head_dim}, "
                f"seq_len {m.seq_len}, vocab {self.vocab_size}, {'tied' if m.tied_embeddings else 'untied'} "
                f"embeddings, {m.positions} positions) with exact accounting, smoothed in log N")

    def samples(self, n_lo: float, n_hi: float) -> tuple[list[float], list[float]]:
        return shape_rule_samples(self.model, vocab_size=self.vocab_size, n_lo=n_lo, n_hi=n_hi,
                                  convention=self.n_convention, size_convention=self.n_convention)

    def shape_of(self, N: float, C: float) -> dict:
        shape = resolve_shape(N, model=self.model, vocab_size=self.vocab_size, convention=self.n_convention)
        params = count_params(shape, vocab_size=self.vocab_size)
        fpt = train_flops_per_token(shape, vocab_size=self.vocab_size)
        seq = shape.seq_len
        tokens = max(seq, round(C / fpt / seq) * seq)
        return {"n_layer": shape.n_layer, "d_model": shape.d_model, "n_head": shape.n_head,
                "N_total": params.total, "N_nonembed": params.nonembed, "D": tokens, "C_exact": float(fpt) * tokens,
                "cost_rel_error": float(fpt) * tokens / C - 1.0}


def for_sweep(model: ModelConfig, *, vocab_size: int, n_convention: str) -> SweepShapeRule:
    return SweepShapeRule(model=replace(model), vocab_size=vocab_size, n_convention=n_convention)
