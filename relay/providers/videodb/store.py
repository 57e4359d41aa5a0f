"""The VideoDB job ids the relay created, in Redis, shared by every replica.

VideoDB makes a **new** scene index (and alert) on every create call, and each runs, and bills,
until stopped; nothing moves a running index to a new socket. So whichever replica holds a
collection's socket must know what was started before it, to stop it before starting the
successor (``docs/protocols/videodb.md``, section 4, "Index lifetime"):

* ``<prefix>:videodb:<collection>:jobs:<rtstream_id>``: a hash, field = job (``transcript``,
  ``audio_index``, ``visual_index``, ``alert:<label>``), value = VideoDB's id (the connection id
  for the transcript);
* ``<prefix>:videodb:<collection>:events``: a hash, alert label -> VideoDB event id (created once);
* ``<prefix>:videodb:<collection>:transcript_since``: a hash, rtstream id -> start (epoch
  milliseconds) of the last final transcript segment published, written when it advances, so a
  replica that takes the collection over fetches back the gap of the failover
  (:class:`TranscriptCursor`).

These expire after a week without writes, like the rtstream registry. And

* ``<prefix>:videodb:<collection>:segment:<sha256>``: a final transcript segment published
  (``SET NX PX`` a few seconds, made ``EX segment_dedupe_ttl_s`` once published), claimed by whichever of the socket, the backfill and a
  transcript callback (on any replica) gets it first (:class:`SegmentMarks`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.core.metrics import RelayMetrics
from relay.providers.videodb.dedupe import SegmentKey, segment_digest

from relay.providers.videodb.registry import REGISTRY_TTL_S

__all__ = ["JobStore", "SegmentMarks", "TranscriptCursor"]

log = logging.getLogger("relay.videodb.store")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class JobStore:
    """Job and event ids of one collection (see the module docstring). Redis errors propagate."""

    def __init__(self, redis: Redis, key_prefix: str, collection: str) -> None:
        self._redis = redis
        self._base = f"{key_prefix}:videodb:{collection}"
        self.events_key = f"{self._base}:events"

    def key(self, rtstream_id: str) -> str:
        return f"{self._base}:jobs:{rtstream_id}"

    async def get(self, rtstream_id: str) -> dict[str, str]:
        raw = await self._redis.hgetall(self.key(rtstream_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def set(self, rtstream_id: str, job: str, value: str, *, drop: tuple[str, ...] = ()) -> None:
        """Record ``job``'s id (and forget the fields in ``drop``, e.g. the old index's alerts)."""
        key = self.key(rtstream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            if drop:
                pipe.hdel(key, *drop)
            pipe.hset(key, job, value)
            pipe.expire(key, REGISTRY_TTL_S)
            await pipe.execute()

    async def event_id(self, label: str) -> str | None:
        value = await self._redis.hget(self.events_key, label)
        return None if value is None else _text(value)

    async def set_event_id(self, label: str, event_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.events_key, label, event_id)
            pipe.expire(self.events_key, REGISTRY_TTL_S)
            await pipe.execute()

    async def forget_event(self, label: str) -> None:
        await self._redis.hdel(self.events_key, label)


class TranscriptCursor:
    """Per rtstream, the start of the last final transcript segment published (see the module
    docstring). Redis errors propagate."""

    def __init__(self, redis: Redis, key_prefix: str, collection: str) -> None:
        self._redis = redis
        self.key = f"{key_prefix}:videodb:{collection}:transcript_since"

    async def get(self, rtstream_id: str) -> datetime | None:
        value = await self._redis.hget(self.key, rtstream_id)
        if value is None:
            return None
        try:
            return datetime.fromtimestamp(int(_text(value)) / 1000, timezone.utc)
        except (ValueError, OverflowError, OSError):
            return None

    async def set(self, rtstream_id: str, start: datetime) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key, rtstream_id, str(round(start.timestamp() * 1000)))
            pipe.expire(self.key, REGISTRY_TTL_S)
            await pipe.execute()


class SegmentMarks:
    """Final transcript segments published, across replicas (see the module docstring).

    A claim is made in two steps, so that a process that dies between queuing a segment and
    publishing it does not leave the segment claimed for ever (and so skipped by the replica that
    fetches the gap back): :meth:`first` claims it for ``pending_s`` only, and :meth:`confirm`,
    called once the segment is on Redis, makes the mark last ``ttl_s``. ``pending_s`` is shorter
    than the lease's TTL, so by the time a replica takes a dead holder's collection over and
    fetches the gap back, the holder's unconfirmed claims have expired.

    Neither raises for Redis: if Redis cannot answer (within ``timeout_s``) the segment counts as
    new (published at least once: a duplicate beats a loss), the failure is counted as
    ``relay_redis_errors_total{operation="videodb_segment_dedupe"}`` and logged once per outage.
    """

    def __init__(self, redis: Redis, key_prefix: str, collection: str, ttl_s: int, metrics: RelayMetrics,
                 timeout_s: float, pending_s: float = 5.0) -> None:  # fmt: skip
        self._redis = redis
        self._base = f"{key_prefix}:videodb:{collection}:segment"
        self._ttl_s = ttl_s
        self._pending_ms = max(1, round(pending_s * 1000))
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._failing = False

    def key(self, segment: SegmentKey) -> str:
        return f"{self._base}:{segment_digest(segment)}"

    async def first(self, segment: SegmentKey) -> bool:
        """True if no replica published or is publishing ``segment`` (and claims it for
        ``pending_s``), False if one did."""
        try:
            async with asyncio.timeout(self._timeout_s):
                claimed = await self._redis.set(self.key(segment), b"1", nx=True, px=self._pending_ms)
        except (RedisError, TimeoutError):
            self._failed()
            return True
        self._failing = False
        return bool(claimed)

    async def confirm(self, segment: SegmentKey) -> None:
        """``segment`` is on Redis: its mark now lasts ``ttl_s``."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.set(self.key(segment), b"1", ex=self._ttl_s)
        except (RedisError, TimeoutError):
            self._failed()  # the pending claim expires: at worst the segment is published twice
        else:
            self._failing = False

    def _failed(self) -> None:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None
        self._metrics.redis_errors.labels("videodb_segment_dedupe").inc()
        if not self._failing:
            log.warning("videodb: cannot deduplicate transcript segments across replicas (Redis); "
                        "publishing them anyway (duplicates possible)")  # fmt: skip
        self._failing = True
