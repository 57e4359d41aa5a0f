"""RelayClient against the real Redis fixture: filters, media, dedupe, bad messages, reconnects.

Each test publishes what should be filtered out *before* a matching sentinel on the same
connection; Redis delivers one connection's publishes in order, so once the sentinel arrives,
anything wrongly let through would already have arrived too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from relay.client import RelayClient, subscription_patterns
from relay.channels import ChannelScheme
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.schema import (
    AudioChunk,
    AudioChunkEvent,
    ChatMessage,
    ChatMessageEvent,
    EventBase,
    EventTime,
    GenericEvent,
    SessionRef,
    Transcript,
    TranscriptEvent,
    utc_now,
)

SCHEME = ChannelScheme()


def transcript(text: str, *, source: str = "recall", session: str = "rec-1", final: bool = True) -> TranscriptEvent:
    return TranscriptEvent(
        source=source,
        type="transcript.final" if final else "transcript.partial",
        session=SessionRef(id=session),
        time=EventTime(received=utc_now()),
        payload=Transcript(text=text, is_final=final),
    )


def chat(text: str, session: str = "rec-1") -> ChatMessageEvent:
    return ChatMessageEvent(
        source="recall", session=SessionRef(id=session), time=EventTime(received=utc_now()), payload=ChatMessage(text=text)
    )


def audio(session: str = "rec-1") -> AudioChunkEvent:
    return AudioChunkEvent(
        source="recall",
        session=SessionRef(id=session),
        time=EventTime(received=utc_now()),
        payload=AudioChunk(mix="mixed", audio="AAAA", bytes=3, duration_ms=0.1),
    )


async def publish(redis: aioredis.Redis, *events: EventBase) -> None:
    for event in events:
        await redis.publish(SCHEME.channel(event), event.model_dump_json())


async def take(client: RelayClient, n: int, timeout: float = 10.0) -> list[EventBase]:
    out: list[EventBase] = []
    async with asyncio.timeout(timeout):
        async for event in client:
            out.append(event)
            if len(out) == n:
                break
    return out


def texts(events: list[EventBase]) -> list[str]:
    return [getattr(e.payload, "text", e.type) for e in events]


def test_patterns_come_from_the_channel_scheme() -> None:
    assert subscription_patterns(SCHEME) == ["relay:events:*:*:*"]
    assert subscription_patterns(SCHEME, media=True) == ["relay:events:*:*:*", "relay:media:*:*:*"]
    assert subscription_patterns(SCHEME, source="asapp", session="a:b", type="transcript.*") == [
        "relay:events:asapp:a_b:transcript.*"
    ]
    # an exact media type selects the media channels, text types the text ones, whatever `media` says
    assert subscription_patterns(SCHEME, type="video.frame") == ["relay:media:*:*:video.frame"]
    assert subscription_patterns(SCHEME, type="chat.message", media=True) == ["relay:events:*:*:chat.message"]
    assert RelayClient(prefix="acme", source="recall").patterns == ["acme:events:recall:*:*"]
    with pytest.raises(ValueError):
        RelayClient(source="zoom")


async def test_yields_typed_events_matching_source_and_type(redis_url: str, redis_client: aioredis.Redis) -> None:
    async with RelayClient(redis_url, source="recall", type="transcript.*") as client:
        await publish(
            redis_client,
            transcript("from videodb", source="videodb"),
            chat("a chat line"),
            audio(),
            transcript("partial one", final=False),
            transcript("final one"),
        )
        events = await take(client, 2)
    assert texts(events) == ["partial one", "final one"]
    assert all(isinstance(e, TranscriptEvent) for e in events)
    assert events[1].payload.is_final and events[1].source == "recall"


async def test_session_filter_is_exact_although_channels_sanitize_ids(redis_url: str, redis_client: aioredis.Redis) -> None:
    async with RelayClient(redis_url, session="meeting:7") as client:
        assert client.patterns == ["relay:events:*:meeting_7:*"]
        await publish(redis_client, chat("other meeting", session="meeting_7"), chat("ours", session="meeting:7"))
        events = await take(client, 1)
    assert texts(events) == ["ours"]
    assert events[0].session.id == "meeting:7"


async def test_media_is_left_out_unless_asked_for(redis_url: str, redis_client: aioredis.Redis) -> None:
    async with RelayClient(redis_url) as text_only, RelayClient(redis_url, media=True) as everything:
        await publish(redis_client, audio(), chat("after the audio"))
        assert texts(await take(text_only, 1)) == ["after the audio"]
        got = await take(everything, 2)
    assert isinstance(got[0], AudioChunkEvent) and texts(got[1:]) == ["after the audio"]


async def test_drops_repeated_ids_within_the_lru_bound(redis_url: str, redis_client: aioredis.Redis) -> None:
    a, b, c = transcript("a"), transcript("b"), transcript("c")
    async with RelayClient(redis_url, dedupe=2) as small, RelayClient(redis_url, dedupe=0) as keep_all:
        # a, b, a (a repeat: dropped, and now the most recent), c (evicts b), b (forgotten: passes again)
        await publish(redis_client, a, b, a, c, b, transcript("end"))
        assert texts(await take(small, 5)) == ["a", "b", "c", "b", "end"]
        assert small.duplicates == 1
        assert texts(await take(keep_all, 6)) == ["a", "b", "a", "c", "b", "end"]
        assert keep_all.duplicates == 0


async def test_skips_and_counts_messages_that_are_not_events(redis_url: str, redis_client: aioredis.Redis) -> None:
    async with RelayClient(redis_url) as client:
        await redis_client.publish("relay:events:recall:rec-1:chat.message", b"not json")
        await redis_client.publish("relay:events:recall:rec-1:chat.message", b'{"schema_version": 1, "type": "chat.message"}')
        await publish(redis_client, chat("valid"))
        events = await take(client, 1)
    assert texts(events) == ["valid"]
    assert client.invalid == 2


async def test_unknown_types_arrive_as_generic_events(redis_url: str, redis_client: aioredis.Redis) -> None:
    body: dict[str, Any] = {
        "source": "videodb", "type": "meeting.summary", "session": {"id": "cap-1"},
        "time": {"received": "2026-11-25T20:00:00Z"}, "payload": {"provider_type": "summary", "data": {"k": 1}},
    }  # fmt: skip
    async with RelayClient(redis_url, source="videodb") as client:
        await redis_client.publish("relay:events:videodb:cap-1:meeting.summary", GenericEvent(**body).model_dump_json())
        (event,) = await take(client, 1)
    assert isinstance(event, GenericEvent) and event.payload.data == {"k": 1}


async def test_receives_what_the_relay_publisher_publishes(redis_url: str, metrics) -> None:
    publisher = EventPublisher(redis_url, metrics, PublisherConfig(), SCHEME)
    publisher.start()
    try:
        async with RelayClient(redis_url, type="transcript.final") as client:
            for i in range(20):
                await publisher.publish(transcript(f"line {i}"))
                await publisher.publish(chat(f"chat {i}"))
            events = await take(client, 20)
    finally:
        await publisher.aclose(timeout=5)
    assert texts(events) == [f"line {i}" for i in range(20)]


async def test_resubscribes_after_redis_restarts(redis_server, redis_url: str) -> None:
    async with RelayClient(redis_url) as client:
        reader = asyncio.create_task(take(client, 1, timeout=30))
        redis_server.stop()
        redis_server.start()
        publisher = aioredis.Redis.from_url(redis_url)
        try:
            # Pub/sub keeps nothing for a subscriber that is away: publish until the resubscribed
            # client hears one (each attempt is a distinct event, so dedupe does not hide it).
            async with asyncio.timeout(30):
                while not reader.done():
                    await publish(publisher, chat("after the restart"))
                    await asyncio.wait({reader}, timeout=0.1)
        finally:
            await publisher.aclose()
        events = reader.result()
    assert texts(events) == ["after the restart"]
