"""The job retry policy on its own: pure, with the clock and the random source passed in."""

from __future__ import annotations

import pytest

from relay.providers.videodb.retry import JobRetryPolicy

KEY = ("rts-1", "audio_index")


def test_delays_double_per_failure_within_equal_jitter_up_to_the_cap() -> None:
    low = JobRetryPolicy(1.0, 8.0, report_after=99, rand=lambda: 0.0)
    high = JobRetryPolicy(1.0, 8.0, report_after=99, rand=lambda: 1.0)
    assert [low.failed(KEY, 0).delay for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.failed(KEY, 0).delay for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_not_due_until_the_delay_passed_and_keys_are_independent() -> None:
    policy = JobRetryPolicy(1.0, 8.0, report_after=99, rand=lambda: 1.0)
    assert policy.due(KEY, 0)
    policy.failed(KEY, now=100.0)
    assert not policy.due(KEY, 100.5) and policy.due(KEY, 101.0)
    assert policy.due(("rts-1", "transcript"), 100.5)  # another job of the same rtstream
    assert policy.due(("rts-2", "audio_index"), 100.5)  # the same job of another rtstream
    policy.succeeded(KEY)
    assert policy.due(KEY, 100.0) and policy.failures(KEY) == 0


def test_reported_exactly_once_when_failures_reach_the_threshold() -> None:
    policy = JobRetryPolicy(1.0, 8.0, report_after=3)
    reports = [policy.failed(KEY, 0).report for _ in range(6)]
    assert reports == [False, False, True, False, False, False]
    policy.succeeded(KEY)  # a success starts over: a later run of failures is reported again
    assert [policy.failed(KEY, 0).report for _ in range(3)] == [False, False, True]


def test_state_stays_bounded_to_live_keys() -> None:
    policy = JobRetryPolicy(1.0, 8.0, report_after=3, rand=lambda: 1.0)
    for n in range(100):
        policy.failed((f"rts-{n}", "transcript"), 0)
    policy.retain([("rts-7", "transcript")])
    assert policy.failures(("rts-7", "transcript")) == 1 and policy.failures(("rts-8", "transcript")) == 0
    assert len(policy._states) == 1


@pytest.mark.parametrize("args", [(0.0, 1.0, 1), (2.0, 1.0, 1), (1.0, 2.0, 0)])
def test_invalid_settings_are_refused(args) -> None:
    with pytest.raises(ValueError):
        JobRetryPolicy(*args)
