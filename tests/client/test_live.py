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


# --- gap filling from the log ----------------------------------------------------------------------


def log_publisher(url: str, metrics) -> EventPublisher:
    from relay.core.event_log import LogConfig

    return EventPublisher(url, metrics, PublisherConfig(timeout_s=2.0, log=LogConfig()), SCHEME)


async def kill_subscribers(redis: aioredis.Redis) -> int:
    return int(await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))


def assert_each_once_in_order(got: list[EventBase], sent: list[EventBase]) -> None:
    assert len({e.id for e in got}) == len(got), "an event came twice"
    for session in {e.session.id for e in sent}:
        assert [e.id for e in got if e.session.id == session] == [e.id for e in sent if e.session.id == session]


async def test_a_killed_subscription_is_filled_from_the_log_exactly_once(redis_url, redis_client, metrics) -> None:
    """CLIENT KILL TYPE pubsub three times while the relay's publisher keeps publishing in three
    meetings (and one more that starts during a gap): every event once, in order per meeting."""
    publisher = log_publisher(redis_url, metrics)
    publisher.start()
    sent: list[EventBase] = []
    sessions = ["m1", "m2", "m3"]

    async def emit(n: int) -> None:
        for _ in range(n):
            event = transcript(f"line {len(sent)}", session=sessions[len(sent) % len(sessions)])
            sent.append(event)
            await publisher.publish(event)

    try:
        async with RelayClient(redis_url, type="transcript.*") as client:
            got: list[EventBase] = []
            await emit(30)
            got += await take(client, 30)
            for round_ in range(3):
                # The client is not reading: the kill and what follows are a gap it must fill.
                assert await kill_subscribers(redis_client) >= 1
                if round_ == 1:  # a meeting that starts while the client is away (the index has it)
                    seconds, _ = await redis_client.time()
                    await redis_client.zadd("relay:sessions", {"m4": seconds * 1000})
                    sessions.append("m4")
                await emit(25)
                await publisher.wait_done(len(sent))
                background = asyncio.create_task(emit(40))  # and events keep coming live meanwhile
                got += await take(client, 65)
                await background
            await publisher.wait_done(len(sent))
            await emit(1)
            got += await take(client, len(sent) - len(got))
            assert client.reconnects == 3
            assert client.filled >= 75  # at least the events published while it was away
            assert client.unfilled == 0
    finally:
        await publisher.aclose(timeout=5)
    assert_each_once_in_order(got, sent)
    assert [e.id for e in got if e.session.id == "m4"]  # the meeting it never saw live before the gap


async def test_a_subscriber_cut_off_for_lagging_recovers_everything(redis_url, redis_client, metrics) -> None:
    """Redis closes a pub/sub client past its output-buffer limit; the client refills from the log."""
    publisher = log_publisher(redis_url, metrics)
    publisher.start()
    limit = await redis_client.config_get("client-output-buffer-limit")
    await redis_client.config_set("client-output-buffer-limit", "pubsub 32kb 0 0")
    # ~12 MB while the client does not read: more than the sockets' buffers hold, so Redis' own
    # output buffer for the client passes its limit and Redis cuts it off.
    sent = [transcript(f"line {n} " + "x" * 4000, session=f"m{n % 2}") for n in range(3000)]
    # The meetings are in the sessions index, as the relay's session tracker puts them: the client
    # may be cut off before it saw a single event of either.
    await redis_client.zadd("relay:sessions", {"m0": 1, "m1": 1})
    try:
        async with RelayClient(redis_url) as client:
            for event in sent:
                await publisher.publish(event)
            await publisher.wait_done(len(sent))
            got = await take(client, len(sent), timeout=20)
            assert client.reconnects >= 1 and client.filled > 0
    finally:
        await redis_client.config_set("client-output-buffer-limit", limit["client-output-buffer-limit"])
        await publisher.aclose(timeout=5)
    assert_each_once_in_order(got, sent)


async def test_gap_fill_applies_the_filters(redis_url, redis_client, metrics) -> None:
    publisher = log_publisher(redis_url, metrics)
    publisher.start()
    try:
        async with RelayClient(redis_url, session="m:1", type="transcript.final") as client:
            await publisher.publish(transcript("seen", session="m:1"))
            assert texts(await take(client, 1)) == ["seen"]
            await kill_subscribers(redis_client)
            for event in (chat("a chat", session="m:1"), transcript("a partial", session="m:1", final=False),
                          transcript("other meeting", session="m_1"), transcript("missed", session="m:1")):  # fmt: skip
                await publisher.publish(event)
            await publisher.wait_done(5)
            await publisher.publish(transcript("live", session="m:1"))
            assert texts(await take(client, 2)) == ["missed", "live"]
            assert client.filled >= 1  # "live" too, when it was published before the client was back
    finally:
        await publisher.aclose(timeout=5)


async def test_fill_gaps_off_loses_the_gap_as_pub_sub_does(redis_url, redis_client, metrics) -> None:
    publisher = log_publisher(redis_url, metrics)
    publisher.start()
    try:
        async with RelayClient(redis_url, fill_gaps=False) as client:
            await publisher.publish(chat("before"))
            assert texts(await take(client, 1)) == ["before"]
            await kill_subscribers(redis_client)
            await publisher.publish(chat("missed"))
            await publisher.wait_done(2)
            reader = asyncio.create_task(take(client, 1, timeout=30))
            async with asyncio.timeout(30):
                while not reader.done():
                    await publisher.publish(chat("after"))
                    await asyncio.wait({reader}, timeout=0.1)
            assert texts(reader.result()) == ["after"] and client.filled == 0
    finally:
        await publisher.aclose(timeout=5)


@pytest.mark.parametrize("strict", [False, True])
async def test_a_gap_the_log_cannot_fill_is_told(redis_url, redis_client, metrics, strict) -> None:
    """The log lost what the client missed (here: the key deleted, as a Redis restart without
    persistence would): counted and kept, or raised when strict."""
    from relay.channels import LogKeys
    from relay.errors import HistoryLost

    publisher = log_publisher(redis_url, metrics)
    publisher.start()
    try:
        async with RelayClient(redis_url, strict=strict) as client:
            await publisher.publish(chat("before"))
            assert texts(await take(client, 1)) == ["before"]
            await kill_subscribers(redis_client)
            await publisher.publish(chat("missed"))
            await publisher.wait_done(2)
            # Recreated, as after a restart, with ids later than the old ones (a test is quicker
            # than a restart: the same millisecond would give the old ids again).
            key = LogKeys().log("rec-1")
            last_ms = int((await redis_client.xrevrange(key, count=1))[0][0].split(b"-")[0])
            await redis_client.delete(key)
            await redis_client.xadd(key, {"e": chat("another meeting", session="elsewhere").to_json()}, id=f"{last_ms + 1000}-0")
            await publisher.publish(chat("after"))
            await publisher.wait_done(3)
            if strict:
                with pytest.raises(HistoryLost):
                    await take(client, 1)
            else:
                reader = asyncio.create_task(take(client, 1, timeout=30))
                async with asyncio.timeout(30):
                    while not reader.done():
                        await publisher.publish(chat("later"))
                        await asyncio.wait({reader}, timeout=0.1)
                assert texts(reader.result())[0] in ("after", "later")
                assert client.unfilled == 1 and isinstance(client.gap_errors[0], HistoryLost)
    finally:
        await publisher.aclose(timeout=5)
