"""A built-in synthetic language with a computable loss floor: a random sparse hidden Markov model.

Why an HMM: its exact next-token probabilities given any prefix come from the forward algorithm
(Rabiner 1989, Eq. 19-20), so the Bayes-optimal loss of a model that sees the same context as the
trained model is computable on exactly the held-out sequences the model is scored on. That number is
the irreducible loss E of every scaling fit on this language.

Structure (all drawn from `DataConfig.seed`; Zipf weights w_r ∝ r^-zipf_exponent). The hidden
state is a pair (topic, local state), n_topics x n_states in all:
- within a topic, each state moves to one of `trans_support` successor states of the same topic and
  emits one of `emit_support` tokens; successors are drawn by a Zipf popularity over the topic's
  states and tokens by a Zipf popularity over the vocabulary that is different for every topic;
  probabilities within a support are Zipf-distributed in draw order;
- with probability `topic_switch` per token the chain jumps to a fresh topic (Zipf over topics) and
  state (Zipf over the topic's states), so topics persist for ~1/topic_switch tokens.
Frequent topics, states and tokens are learnt first and the long Zipf tail later, which is what keeps
the loss falling smoothly with both model size and data (the "quanta" picture of Michaud et al. 2023,
The Quantization Model of Neural Scaling; Hutter 2021, Learning Curve Theory), while inferring the
topic and state from context is what a model with more capacity does better.

Sequences are independent, start from the chain's stationary distribution, and are sampled in
fixed-size chunks, each from its own seed (language seed, split, trial seed, chunk index), so any
range of sequences is generated on the fly, deterministically, without materialising the stream.
Train (per trial seed) and validation (per language) come from disjoint seed streams.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

from trainers.config import DataConfig

import numpy as np
import scipy.sparse

CHUNK_SEQS = 256
"""Sequences per generated chunk (the unit of deterministic on-the-fly sampling)."""
STRUCTURE_SPLIT, TRAIN_SPLIT, VAL_SPLIT = 0, 1, 2
"""Seed-stream keys: the language's structure, training chunks, validation chunks."""


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Normalised Zipf weights over ranks 1..n: w_r ∝ r^-exponent. Shape (n,)."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return w / w.sum()


@dataclass(frozen=True)
class LanguageSpec:
    """The parameters that define one language (hashable: the cache key of its floor)."""

    seed: int
    vocab_size: int
    n_states: int
    zipf_exponent: float
    emit_support: int
    trans_support: int
    n_topics: int = 1
    topic_switch: float = 0.0

    @classmethod
    def from_config(cls, cfg: DataConfig) -> LanguageSpec:
        return cls(seed=cfg.seed, vocab_size=cfg.vocab_size, n_states=cfg.n_states, zipf_exponent=cfg.zipf_exponent,
                   emit_support=cfg.emit_support, trans_support=cfg.trans_support, n_topics=cfg.n_topics,
                   topic_switch=cfg.topic_switch)


class HMMLanguage:
    """The sampled language: sparse tables for sampling, transition and emission matrices for scoring.

    State `c * n_states + q` is local state q of topic c. Each step stays in the topic and moves to one
    of q's `trans_support` successors with probability 1 - topic_switch, or with probability
    topic_switch jumps to a fresh (topic, state) drawn from `jump`. The transition matrix is therefore
    (1 - rho) * local + rho * 1 jump^T: sparse plus rank one, which the forward algorithm exploits.
    """

    def __init__(self, spec: LanguageSpec) -> None:
        self.spec = spec
        c, q, v, k, e = spec.n_topics, spec.n_states, spec.vocab_size, spec.trans_support, spec.emit_support
        s, z = c * q, spec.zipf_exponent
        self.n_states = s
        rng = np.random.default_rng([spec.seed, STRUCTURE_SPLIT])
        topic_pop = zipf_weights(c, z)  # (C,) topic c has rank c + 1
        succ, emit_tok, jump = [], [], []
        for topic in range(c):
            state_pop = zipf_weights(q, z)[rng.permutation(q)]  # (Q,) popularity of the topic's states
            token_pop = zipf_weights(v, z)[rng.permutation(v)]  # (V,) the topic's favourite tokens
            succ += [topic * q + rng.choice(q, size=k, replace=False, p=state_pop) for _ in range(q)]
            emit_tok += [rng.choice(v, size=e, replace=False, p=token_pop) for _ in range(q)]
            jump.append(topic_pop[topic] * state_pop)
        self.succ, self.emit_tok = np.stack(succ), np.stack(emit_tok)  # (S, k), (S, e)
        self.jump = np.concatenate(jump)  # (S,) where a topic switch lands
        self.switch = spec.topic_switch
        trans_p = np.broadcast_to(zipf_weights(k, z), (s, k))  # (S, k)
        emit_p = np.broadcast_to(zipf_weights(e, z), (s, e))  # (S, e)
        self.trans_cum, self.emit_cum = _cumulative(trans_p), _cumulative(emit_p)  # (S, k), (S, e)
        self.jump_cum = _cumulative(self.jump[None, :])[0]  # (S,)
        rows = np.repeat(np.arange(s), k)
        self.local = scipy.sparse.csr_matrix((trans_p.ravel(), (rows, self.succ.ravel())), shape=(s, s))
        emission = np.zeros((s, v))
        np.put_along_axis(emission, self.emit_tok, emit_p, axis=1)
        self.emission_t = np.ascontiguousarray(emission.T)  # (V, S): p(token | state), one row per token
        self.stationary = _stationary(self.step_belief, s)  # (S,)
        self.start_cum = _cumulative(self.stationary[None, :])[0]  # (S,)

    def step_belief(self, belief: np.ndarray) -> np.ndarray:
        """One transition of a (..., S) distribution: belief @ ((1 - rho) local + rho 1 jump^T)."""
        moved = np.asarray(belief @ self.local)  # (..., S); dense @ sparse
        return (1.0 - self.switch) * moved + self.switch * belief.sum(-1, keepdims=True) * self.jump

    def sample(self, n_seqs: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """`n_seqs` independent sequences of `length` tokens, each from the stationary distribution.

        Inverse-CDF sampling vectorised over sequences: one pass per position. Returns (n, L) int64.
        """
        u = rng.random((length, 3, n_seqs))  # (L, 3, n): emission, transition and switch uniforms
        state = np.searchsorted(self.start_cum, rng.random(n_seqs), side="right")  # (n,)
        jumps = np.searchsorted(self.jump_cum, u[:, 2], side="right")  # (L, n) landing states if switching
        switch = rng.random((length, n_seqs)) < self.switch  # (L, n)
        out = np.empty((n_seqs, length), dtype=np.int64)
        for t in range(length):
            j = (u[t, 0][:, None] >= self.emit_cum[state]).sum(1)  # (n,) index into the emission support
            out[:, t] = self.emit_tok[state, j]
            j = (u[t, 1][:, None] >= self.trans_cum[state]).sum(1)  # (n,) index into the successors
            state = np.where(switch[t], jumps[t], self.succ[state, j])
        return out

    def chunk(self, split: int, trial_seed: int, index: int, length: int) -> np.ndarray:
        """Chunk `index` of a split: (CHUNK_SEQS, length) int64, a pure function of its seed."""
        rng = np.random.default_rng([self.spec.seed, split, trial_seed, index])
        return self.sample(CHUNK_SEQS, length, rng)

    def sequences(self, split: int, trial_seed: int, start: int, count: int, length: int) -> np.ndarray:
        """Sequences [start, start + count) of a split's stream: (count, length) int64."""
        first, last = start // CHUNK_SEQS, (start + count - 1) // CHUNK_SEQS
        chunks = [self._cached_chunk(split, trial_seed, c, length) for c in range(first, last + 1)]
        block = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        offset = start - first * CHUNK_SEQS
        return block[offset : offset + count]

    @functools.lru_cache(maxsize=4)  # noqa: B019 (one Language per process, kept for its life)
    def _cached_chunk(self, split: int, trial_seed: int, index: int, length: int) -> np.ndarray:
        return self.chunk(split, trial_seed, index, length)

    def token_logprobs(self, seqs: np.ndarray) -> np.ndarray:
        """Exact log p(x_t | x_<t) for t >= 1 of each sequence, by the forward algorithm.

        Each sequence is scored from its own start with the stationary initial distribution, i.e. the
        same context a language model gets. `seqs` (n, L) -> (n, L - 1) log-probabilities.
        """
        n, length = seqs.shape
        belief = np.broadcast_to(self.stationary, (n, self.n_states))  # (n, S): p(s_t | x_<t)
        out = np.empty((n, length - 1))
        for t in range(length):
            joint = belief * self.emission_t[seqs[:, t]]  # (n, S): p(s_t, x_t | x_<t)
            p = joint.sum(1)  # (n,) p(x_t | x_<t)
            if t > 0:
                out[:, t - 1] = np.log(p)
            belief = self.step_belief(joint / p[:, None])  # (n, S): p(s_{t+1} | x_<=t)
        return out

    def unigram_entropy(self) -> float:
        """Entropy (nats) of the stationary token marginal: the loss of the best context-free model."""
        q = self.emission_t @ self.stationary  # (V,)
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())


def _cumulative(p: np.ndarray) -> np.ndarray:
    """Row-wise CDF with the last entry exactly 1, so a uniform in [0, 1) always lands inside."""
    cum = np.cumsum(p, axis=-1)
    cum[..., -1] = 1.0
    return cum


def _stationary(step: Callable[[np.ndarray], np.ndarray], size: int, *, iters: int = 100_000,
                tol: float = 1e-13) -> np.ndarray:
    """Stationary distribution of the chain `step` by power iteration on its lazy version (P + I) / 2,
    which has the same stationary distribution and is aperiodic, so the iteration converges."""
    pi = np.full(size, 1.0 / size)
    for _ in range(iters):
        nxt = 0.5 * (pi + step(pi))
        if np.abs(nxt - pi).sum() < tol:
            break
        pi = nxt
    return nxt / nxt.sum()


@functools.lru_cache(maxsize=8)
def language(spec: LanguageSpec) -> HMMLanguage:
    """The language of `spec`, built once per process."""
    return HMMLanguage(spec)


@functools.lru_cache(maxsize=32)
def val_token_logprobs(spec: LanguageSpec, *, seq_len: int, n_seqs: int) -> np.ndarray:
    """Exact log-probabilities of the targets of the first `n_seqs` validation sequences (n, seq_len)."""
    lang = language(spec)
    return lang.token_logprobs(lang.sequences(VAL_SPLIT, 0, 0, n_seqs, seq_len + 1))


def floor_on(spec: LanguageSpec, *, seq_len: int, n_seqs: int) -> tuple[float, float]:
    """Bayes loss (nats/token) on the first `n_seqs` validation sequences of context `seq_len`, and
    its standard error over sequences. No model with that context beats it in expectation."""
    nll = -val_token_logprobs(spec, seq_len=seq_len, n_seqs=n_seqs).mean(1)  # (n,) per-sequence loss
    se = float(nll.std(ddof=1) / math.sqrt(n_seqs)) if n_seqs > 1 else 0.0
    return float(nll.mean()), se


def entropy_floor(data: DataConfig, *, seq_len: int, eval_tokens: int = 65536) -> float:
    """The irreducible loss of the synthetic language `data` for models of context `seq_len`, on exactly
    the sequences the GPT trainer evaluates with `trainer.eval_tokens = eval_tokens`."""
    return floor_on(LanguageSpec.from_config(data), seq_len=seq_len, n_seqs=math.ceil(eval_tokens / seq_len))[0]
