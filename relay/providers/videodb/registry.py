"""Which rtstreams of a collection are live, shared by every relay replica through Redis.

The ``capture_session.active`` webhook may reach any replica, but only the replica holding the
collection's socket lease can bind jobs to its socket. So the webhook's rtstreams are written here
(a Redis hash per collection, ``<prefix>:videodb:<collection>:rtstreams``, field = rtstream id,
value = JSON ``{capture_session_id, name, media_types}``) and the lease holder reads it: to bind
new rtstreams, to re-bind all of them after a reconnect, and to key socket events by capture session.
A stopped, exported or failed session's rtstreams are removed.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from relay.providers.videodb.parse import RtStreamInfo

__all__ = ["RtStreamRegistry"]

#: A session whose ``stopped`` webhook was lost must not be re-bound forever.
REGISTRY_TTL_S = 7 * 24 * 3600


class RtStreamRegistry:
    """The live rtstreams of one collection, in Redis (see the module docstring)."""

    def __init__(self, redis: Redis, key_prefix: str, collection: str) -> None:
        self._redis = redis
        self.key = f"{key_prefix}:videodb:{collection}:rtstreams"

    async def add(self, streams: Iterable[RtStreamInfo]) -> None:
        mapping: dict[FieldT, EncodableT] = {
            s.rtstream_id: orjson.dumps(
                {"capture_session_id": s.capture_session_id, "name": s.name, "media_types": list(s.media_types)}
            )
            for s in streams
        }
        if mapping:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.key, mapping=mapping)
                pipe.expire(self.key, REGISTRY_TTL_S)
                await pipe.execute()

    async def remove_session(self, capture_session_id: str) -> int:
        """Forget every rtstream of a capture session; returns how many were removed."""
        gone = [rts for rts, info in (await self.all()).items() if info.capture_session_id == capture_session_id]
        if gone:
            await self._redis.hdel(self.key, *gone)
        return len(gone)

    async def all(self) -> dict[str, RtStreamInfo]:
        out = {}
        for field, value in (await self._redis.hgetall(self.key)).items():
            try:
                data = orjson.loads(value)
                rtstream_id = field.decode() if isinstance(field, bytes) else field
                out[rtstream_id] = RtStreamInfo(
                    rtstream_id=rtstream_id,
                    name=data.get("name"),
                    media_types=tuple(data.get("media_types", ())),
                    capture_session_id=data["capture_session_id"],
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue  # written by a different version: skip rather than stop binding the rest
        return out
