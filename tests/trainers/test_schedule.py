"""The learning-rate schedule: its cosine (or decay phase) ends exactly at the trial's D."""

from __future__ import annotations

import math

import pytest

from trainers.schedule import Schedule


def test_cosine_reaches_its_floor_exactly_at_d():
    s = Schedule.for_trial(peak=1.0, total_tokens=10_000, warmup_tokens=1_000, kind="cosine", min_ratio=0.1,
                           decay_fraction=0.2)
    assert s(1_000) == 1.0
    assert s(10_000) == pytest.approx(0.1, abs=1e-12)
    assert s(5_500) == pytest.approx(0.55)  # half-way through the cosine: the mid-point of peak and floor
    values = [s(t) for t in range(1_000, 10_001, 250)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # decays monotonically over the whole run


def test_warmup_is_linear_and_starts_above_zero():
    s = Schedule.for_trial(peak=2.0, total_tokens=1_000, warmup_tokens=100, kind="cosine", min_ratio=0.0,
                           decay_fraction=0.2)
    assert s(10) == pytest.approx(0.2) and s(50) == pytest.approx(1.0)


def test_default_warmup_is_two_percent_of_d():
    s = Schedule.for_trial(peak=1.0, total_tokens=50_000, warmup_tokens=0, kind="cosine", min_ratio=0.1,
                           decay_fraction=0.2)
    assert s.warmup_tokens == 1_000


def test_wsd_is_stable_then_decays_to_the_floor_at_d():
    s = Schedule.for_trial(peak=1.0, total_tokens=10_000, warmup_tokens=500, kind="wsd", min_ratio=0.0,
                           decay_fraction=0.2)
    assert s(500) == s(4_000) == s(8_000) == 1.0
    assert s(9_000) == pytest.approx(1 - math.sqrt(0.5))  # the 1-sqrt cooldown (Hägele et al. 2024)
    assert s(10_000) == 0.0


def test_unknown_schedule_is_a_value_error():
    with pytest.raises(ValueError, match="trainer.schedule"):
        Schedule(peak=1.0, total_tokens=10, warmup_tokens=0, kind="linear")
