"""Transcript segments already published, so a segment that arrives twice is published once. Pure.

After a reconnect the client fetches back over REST what the socket missed
(``GET /rtstream/{id}/transcription?since=...``); the fetch and the new socket can overlap, and
VideoDB's ``since`` may include the last segment seen. A segment is identified by (rtstream,
start, end, text), times rounded to the millisecond: the socket sends epoch milliseconds and the
REST API epoch seconds. Per rtstream the last ``per_stream`` keys are remembered.

Across replicas (a segment can also come as a transcript callback, to any replica) the same key
is claimed in Redis (:class:`~relay.providers.videodb.store.SegmentMarks`) under
:func:`segment_digest`; this in-memory check comes first and saves the round trip for repeats.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from datetime import datetime

__all__ = ["SegmentDedupe", "segment_digest", "segment_key"]

SegmentKey = tuple[str, int | None, int | None, str]


def _ms(value: datetime | None) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


def segment_key(rtstream_id: str, start: datetime | None, end: datetime | None, text: str) -> SegmentKey:
    return (rtstream_id, _ms(start), _ms(end), text.strip())


def segment_digest(key: SegmentKey) -> str:
    """A stable hex SHA-256 of ``key`` (for a Redis key name): the same on every replica."""
    rts, start, end, text = key
    raw = "\x1f".join((rts, "" if start is None else str(start), "" if end is None else str(end), text))
    return hashlib.sha256(raw.encode()).hexdigest()


class SegmentDedupe:
    """``first(key)`` is True the first time a key is seen (and remembers it), False after."""

    def __init__(self, per_stream: int = 2000) -> None:
        self._per_stream = per_stream
        self._seen: dict[str, set[SegmentKey]] = {}
        self._order: dict[str, deque[SegmentKey]] = {}

    def first(self, key: SegmentKey) -> bool:
        rts = key[0]
        seen = self._seen.setdefault(rts, set())
        if key in seen:
            return False
        order = self._order.setdefault(rts, deque())
        seen.add(key)
        order.append(key)
        if len(order) > self._per_stream:
            seen.discard(order.popleft())
        return True

    def retain(self, rtstreams: Iterable[str]) -> None:
        """Forget rtstreams not in ``rtstreams`` (their sessions ended)."""
        keep = set(rtstreams)
        for rts in [r for r in self._seen if r not in keep]:
            del self._seen[rts]
            del self._order[rts]
