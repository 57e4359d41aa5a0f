"""Capped exponential backoff with full jitter, for every outbound client's reconnect loop.

Written once and shared (VideoDB collection sockets, ASAPP streams) so every client retries the
same way. The delay before retry *n* (counting from 0) is drawn uniformly from
``[0, min(maximum, initial * factor**n))``: "full jitter" in the terms of the AWS architecture
blog's *Exponential Backoff And Jitter*. Full jitter spreads the reconnects of many clients that
lost the same upstream at the same moment, so they do not hammer it in lock-step.

Usage::

    backoff = Backoff(initial=0.5, maximum=30.0)
    while running:
        try:
            await connect_and_serve()
            backoff.reset()           # a healthy session earns a fast next retry
        except OSError:
            await asyncio.sleep(backoff.next_delay())
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive retries: exponential growth, capped, with full jitter.

    :param initial: the cap of the first delay, in seconds (> 0).
    :param maximum: the cap no delay ever exceeds, in seconds (>= ``initial``).
    :param factor: growth of the cap per attempt (>= 1).
    :param rng: returns a float in ``[0, 1)``; injectable so tests are deterministic.
    """

    __slots__ = ("initial", "maximum", "factor", "_rng", "_attempt")

    def __init__(
        self,
        initial: float,
        maximum: float,
        factor: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0:
            raise ValueError("initial must be > 0")
        if maximum < initial:
            raise ValueError("maximum must be >= initial")
        if factor < 1:
            raise ValueError("factor must be >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._rng = rng
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last :meth:`reset`."""
        return self._attempt

    def cap(self) -> float:
        """The upper bound of the next delay (before jitter)."""
        # Compare exponents rather than computing factor**attempt, which overflows after ~1000 tries.
        cap = self.initial
        for _ in range(self._attempt):
            cap *= self.factor
            if cap >= self.maximum:
                return self.maximum
        return min(cap, self.maximum)

    def next_delay(self) -> float:
        """The delay to wait before the next retry, in seconds; advances the attempt count."""
        delay = self._rng() * self.cap()
        self._attempt += 1
        return delay

    def reset(self) -> None:
        """Start over from ``initial``: call after a connection proved healthy."""
        self._attempt = 0

    def __repr__(self) -> str:
        return f"Backoff(initial={self.initial}, maximum={self.maximum}, factor={self.factor}, attempt={self._attempt})"
