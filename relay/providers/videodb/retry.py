"""When to try a failed VideoDB job start again: per rtstream and job, pure (no I/O, no clock).

A job start that fails (a 5xx, a timeout, a ``success: false`` answer) is tried again after a
delay that doubles with each failure in a row, from ``initial_s`` up to ``max_s``, with "equal
jitter" (uniform in ``[cap/2, cap]``: never near zero, so a failing job is never hammered, and
replicas do not retry in lockstep). After ``report_after`` failures in a row the failure is
reported once (the caller logs an error, counts it and publishes a ``stream.error`` event); the
job keeps being tried at the capped delay, and a success clears its state.

The caller passes the time in (``time.monotonic()``) and, for tests, the random source.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

__all__ = ["Failure", "JobRetryPolicy"]


@dataclass(slots=True)
class _State:
    failures: int = 0
    next_at: float = 0.0
    reported: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    """What one more failure means: wait ``delay`` seconds; ``report`` is True exactly once, when
    ``failures`` reaches the threshold."""

    failures: int
    delay: float
    report: bool


class JobRetryPolicy:
    """Backoff state of every (rtstream, job) key (see the module docstring)."""

    def __init__(self, initial_s: float, max_s: float, report_after: int, rand: Callable[[], float] = random.random) -> None:
        if initial_s <= 0 or max_s < initial_s or report_after < 1:
            raise ValueError("need 0 < initial_s <= max_s and report_after >= 1")
        self._initial = initial_s
        self._max = max_s
        self._report_after = report_after
        self._rand = rand
        self._states: dict[Hashable, _State] = {}

    def due(self, key: Hashable, now: float) -> bool:
        """True if ``key`` has no failure pending or its delay has passed."""
        state = self._states.get(key)
        return state is None or now >= state.next_at

    def failures(self, key: Hashable) -> int:
        state = self._states.get(key)
        return 0 if state is None else state.failures

    def failed(self, key: Hashable, now: float) -> Failure:
        state = self._states.setdefault(key, _State())
        state.failures += 1
        cap = min(self._max, self._initial * 2 ** min(state.failures - 1, 62))
        delay = cap / 2 + self._rand() * cap / 2
        state.next_at = now + delay
        report = state.failures >= self._report_after and not state.reported
        state.reported = state.reported or report
        return Failure(failures=state.failures, delay=delay, report=report)

    def succeeded(self, key: Hashable) -> None:
        self._states.pop(key, None)

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not in ``keys`` (rtstreams that ended), so the state stays bounded."""
        keep = set(keys)
        for key in [k for k in self._states if k not in keep]:
            del self._states[key]
