"""A Redis lease: at most one relay process holds a collection's socket at a time.

``SET key token NX PX ttl`` takes a free lease; the holder renews it with a compare-and-renew
script (only while the value is still its own token) every ``ttl/3``, and deletes it the same way
when it closes, so a standby takes over at its next poll. If the holder dies, the key expires after
``ttl`` and a standby takes over then.

Safety does not depend on Redis staying reachable: the holder counts the lease as its own only
until ``ttl`` (less a margin) has passed since its last *successful* renewal. Another process can
take the key only after it expired, which is at least ``ttl`` after that renewal, so the two never
both publish (barring clock drift between processes larger than the margin, or Redis losing the
key in a restart without persistence, which at worst overlaps one poll interval).
"""

from __future__ import annotations

import secrets
import time

from redis.asyncio import Redis

__all__ = ["Lease"]

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

#: Fraction of the ttl after the last renewal at which the holder stops trusting its lease.
SAFETY_FRACTION = 0.8


class Lease:
    """One lease key and this process' token for it. Redis errors propagate to the caller."""

    def __init__(self, redis: Redis, key: str, ttl_s: float, token: str | None = None) -> None:
        self._redis = redis
        self.key = key
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token = token or secrets.token_hex(16)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._valid_until = 0.0  # monotonic

    @property
    def held(self) -> bool:
        """True while the last successful acquire/renew is recent enough to trust (see module docstring)."""
        return time.monotonic() < self._valid_until

    @property
    def remaining_s(self) -> float:
        """Seconds this process may still count the lease as its own (0 when not held)."""
        return max(0.0, self._valid_until - time.monotonic())

    def _mark(self, start: float) -> None:
        # Measured from before the request: Redis set the expiry no earlier than that.
        self._valid_until = start + self.ttl_ms / 1000 * SAFETY_FRACTION

    async def acquire(self) -> bool:
        """Take the lease if free (or renew it if already ours); True if this process holds it now."""
        start = time.monotonic()
        if await self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            self._mark(start)
            return True
        return await self.renew()

    async def renew(self) -> bool:
        """Extend the lease if it is still ours; False (and not held) if it was lost."""
        start = time.monotonic()
        if await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            self._mark(start)
            return True
        self._valid_until = 0.0
        return False

    async def release(self) -> None:
        """Give the lease up now (only if still ours) so a standby takes over without waiting."""
        self._valid_until = 0.0
        await self._release(keys=[self.key], args=[self.token])
