"""Transcript segment deduplication on its own (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

from relay.providers.videodb.dedupe import SegmentDedupe, segment_digest, segment_key
from relay.providers.videodb.parse import epoch_to_datetime


def at(value: float) -> datetime | None:
    return epoch_to_datetime(value)


def test_the_socket_in_ms_and_rest_in_seconds_are_the_same_segment() -> None:
    dedupe = SegmentDedupe()
    socket = segment_key("rts-1", at(1768910400120), at(1768910401480), "we ship on Friday")
    rest = segment_key("rts-1", at(1768910400.12), at(1768910401.48), "we ship on Friday ")
    assert dedupe.first(socket)
    assert not dedupe.first(rest)


def test_any_difference_is_another_segment() -> None:
    dedupe = SegmentDedupe()
    base = ("rts-1", at(1768910400120), at(1768910401480), "we ship")
    assert dedupe.first(segment_key(*base))
    assert dedupe.first(segment_key("rts-2", *base[1:]))
    assert dedupe.first(segment_key("rts-1", at(1768910400121), base[2], "we ship"))
    assert dedupe.first(segment_key("rts-1", base[1], base[2], "we shipped"))
    assert dedupe.first(segment_key("rts-1", None, None, "we ship"))
    assert not dedupe.first(segment_key("rts-1", None, None, "we ship"))


def test_memory_is_bounded_per_rtstream_and_ended_rtstreams_are_forgotten() -> None:
    dedupe = SegmentDedupe(per_stream=3)
    t = datetime(2026, 1, 20, tzinfo=timezone.utc)
    keys = [segment_key("rts-1", t, t, f"s{n}") for n in range(4)]
    assert all(dedupe.first(k) for k in keys)
    assert dedupe.first(keys[0])  # the oldest fell out
    assert not dedupe.first(keys[3])
    other = segment_key("rts-2", t, t, "x")
    assert dedupe.first(other)
    dedupe.retain(["rts-1"])
    assert dedupe.first(other) and not dedupe.first(keys[3])


def test_the_digest_is_the_same_for_the_same_segment_in_ms_and_seconds() -> None:
    socket = segment_key("rts-1", at(1768910400120), at(1768910401480), "we ship on Friday")
    rest = segment_key("rts-1", at(1768910400.12), at(1768910401.48), " we ship on Friday")
    assert segment_digest(socket) == segment_digest(rest)
    assert len(segment_digest(socket)) == 64
    assert segment_digest(socket) != segment_digest(segment_key("rts-1", at(1768910400.12), at(1768910401.48), "we ship"))
    assert segment_digest(socket) != segment_digest(segment_key("rts-2", at(1768910400.12), at(1768910401.48), "we ship on Friday"))
    assert segment_digest(segment_key("rts-1", None, None, "x")) != segment_digest(segment_key("rts-1", at(0), None, "x"))
