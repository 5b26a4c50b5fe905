"""The synthetic language: exact scoring, deterministic sampling, disjoint splits, and a real floor."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from trainers import synthetic
from trainers.config import DataConfig
from trainers.synthetic import CHUNK_SEQS, TRAIN_SPLIT, VAL_SPLIT, LanguageSpec, language

SMALL = LanguageSpec(seed=7, vocab_size=5, n_states=3, zipf_exponent=1.1, emit_support=3, trans_support=2,
                     n_topics=2, topic_switch=0.1)


def _dense_transition(lang: synthetic.HMMLanguage) -> np.ndarray:
    return (1 - lang.switch) * lang.local.toarray() + lang.switch * lang.jump[None, :]


def test_forward_algorithm_matches_brute_force_over_state_paths():
    # The floor is only as right as the scorer: check it against summing over every hidden path.
    lang = language(SMALL)
    trans, emit = _dense_transition(lang), lang.emission_t.T  # (S, S), (S, V)
    rng = np.random.default_rng(0)
    seqs = lang.sample(4, 4, rng)  # (4, 4)
    s = lang.n_states

    def prob(prefix):  # p(x_0..x_t) by enumerating all state paths
        total = 0.0
        for path in itertools.product(range(s), repeat=len(prefix)):
            p = lang.stationary[path[0]] * emit[path[0], prefix[0]]
            for a, b, x in zip(path, path[1:], prefix[1:]):
                p *= trans[a, b] * emit[b, x]
            total += p
        return total

    expected = np.array([[math.log(prob(seq[: t + 1]) / prob(seq[:t])) for t in range(1, 4)] for seq in seqs])
    assert np.allclose(lang.token_logprobs(seqs), expected, atol=1e-10)


def test_start_distribution_is_stationary():
    lang = language(SMALL)
    assert np.allclose(lang.stationary @ _dense_transition(lang), lang.stationary, atol=1e-10)


def test_samples_follow_the_model():
    # Token frequencies of a large sample match the exact stationary marginal.
    lang = language(SMALL)
    seqs = lang.sample(20_000, 8, np.random.default_rng(1))
    freq = np.bincount(seqs.ravel(), minlength=5) / seqs.size
    assert np.allclose(freq, lang.emission_t @ lang.stationary, atol=0.01)


def test_sequences_are_a_pure_function_of_their_index():
    # Resuming and prefetching rely on it: any slice of the stream equals the same slice of a longer read.
    lang = language(LanguageSpec.from_config(DataConfig()))
    whole = lang.sequences(TRAIN_SPLIT, 3, 0, CHUNK_SEQS + 40, 17)
    middle = lang.sequences(TRAIN_SPLIT, 3, CHUNK_SEQS - 5, 30, 17)  # spans two chunks
    assert np.array_equal(middle, whole[CHUNK_SEQS - 5 : CHUNK_SEQS + 25])
    synthetic.HMMLanguage._cached_chunk.cache_clear()
    assert np.array_equal(lang.sequences(TRAIN_SPLIT, 3, 0, 10, 17), whole[:10])
    assert not np.array_equal(lang.sequences(TRAIN_SPLIT, 4, 0, 10, 17), whole[:10])  # trial seed matters


def test_validation_stream_differs_from_every_trial_seed_stream():
    lang = language(LanguageSpec.from_config(DataConfig()))
    val = {tuple(row) for row in lang.sequences(VAL_SPLIT, 0, 0, 256, 33)}
    for seed in (0, 1, 2):
        train = {tuple(row) for row in lang.sequences(TRAIN_SPLIT, seed, 0, 256, 33)}
        assert not val & train


def test_default_language_floor_lies_well_below_unigram_entropy():
    # The learnable gap a sweep can show: unigram entropy 4.83 nats, floor ~2.97 at seq_len 128.
    data = DataConfig()
    floor = synthetic.entropy_floor(data, seq_len=64, eval_tokens=8192)
    unigram = language(LanguageSpec.from_config(data)).unigram_entropy()
    assert 2.5 < floor < unigram - 1.5
    assert unigram == pytest.approx(4.832, abs=1e-3)


def test_floor_is_cached_per_language_and_context():
    spec = LanguageSpec.from_config(DataConfig())
    synthetic.floor_on(spec, seq_len=32, n_seqs=64)
    hits = synthetic.val_token_logprobs.cache_info().hits
    synthetic.floor_on(spec, seq_len=32, n_seqs=64)
    assert synthetic.val_token_logprobs.cache_info().hits == hits + 1


@pytest.mark.parametrize(
    "override,key",
    [({"trans_support": 100}, "data.trans_support"), ({"emit_support": 300}, "data.emit_support"),
     ({"n_topics": 4, "topic_switch": 0.0}, "data.topic_switch"), ({"zipf_exponent": -1.0}, "data.zipf_exponent")],
)
def test_invalid_language_is_a_value_error_naming_the_key(override, key):
    with pytest.raises(ValueError, match=key):
        DataConfig(**override)
