"""Backoff: growth, cap, jitter bounds, reset, argument checks."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.backoff import Backoff


def test_caps_grow_exponentially_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, rng=lambda: 0.999999)
    delays = [backoff.next_delay() for _ in range(7)]
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert delays == pytest.approx([c * 0.999999 for c in caps])
    assert backoff.attempt == 7


def test_full_jitter_can_be_zero_and_stays_below_the_cap() -> None:
    assert Backoff(1.0, 10.0, rng=lambda: 0.0).next_delay() == 0.0
    rng = random.Random(7)
    backoff = Backoff(0.1, 2.0, rng=rng.random)
    for _ in range(200):
        cap = backoff.cap()
        assert 0.0 <= backoff.next_delay() < cap <= 2.0


def test_reset_starts_over() -> None:
    backoff = Backoff(1.0, 60.0, factor=3.0, rng=lambda: 0.5)
    for _ in range(5):
        backoff.next_delay()
    assert backoff.cap() == 60.0
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() == 0.5


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(0.01, 30.0, factor=10.0, rng=lambda: 0.5)
    for _ in range(5000):
        assert backoff.next_delay() <= 30.0


@pytest.mark.parametrize(
    "kwargs", [dict(initial=0, maximum=1), dict(initial=2, maximum=1), dict(initial=1, maximum=2, factor=0.5)]
)
def test_rejects_bad_arguments(kwargs) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


@given(
    initial=st.floats(0.001, 10),
    extra=st.floats(0, 100),
    factor=st.floats(1, 10),
    attempts=st.integers(0, 50),
    u=st.floats(0, 1, exclude_max=True),
)
def test_delay_is_always_within_zero_and_maximum(initial, extra, factor, attempts, u) -> None:
    backoff = Backoff(initial, initial + extra, factor=factor, rng=lambda: u)
    for _ in range(attempts):
        backoff.next_delay()
    assert 0.0 <= backoff.next_delay() <= initial + extra
