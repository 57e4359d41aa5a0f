"""The durable log as the publisher writes it (relay/core/event_log.py), against a real redis-server."""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis

from relay.channels import LOG_FIELD, ChannelScheme, LogKeys
from relay.core.event_log import LOG_SCRIPT, LOG_SCRIPT_SHA, LogConfig, log_head, pack_log_tail
from relay.core.metrics import RelayMetrics
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.schema import parse_event
from tests.conftest import TcpProxy
from tests.core.test_publisher import audio, sample, transcript

KEYS = LogKeys()


def log_publisher(url: str, metrics: RelayMetrics, log: LogConfig | None = None, **config: float) -> EventPublisher:
    return EventPublisher(url, metrics, PublisherConfig(**{"timeout_s": 2.0, **config}, log=log or LogConfig()), ChannelScheme())  # type: ignore[arg-type]


async def logged_ids(redis: aioredis.Redis, key: str) -> list[tuple[str, str]]:
    """(entry id, event id) of every entry of a log."""
    return [(entry_id.decode(), orjson.loads(fields[LOG_FIELD.encode()])["id"]) for entry_id, fields in await redis.xrange(key)]


def test_the_sha_is_what_redis_computes(redis_url) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.script_load(LOG_SCRIPT.decode()).encode() == LOG_SCRIPT_SHA
    finally:
        client.close()


def test_a_packed_command_is_one_well_formed_evalsha() -> None:
    import hiredis

    command = log_head("relay:log:{s}", "relay:session:{s}", "relay:events:recall:s:t", 100, "ab12", True)
    command += b"".join(pack_log_tail(7, b'{"id":"x"}'))
    reader = hiredis.Reader()
    # A request in RESP is an array of bulk strings, which a reply reader parses the same way.
    reader.feed(command)
    assert reader.gets() == [b"EVALSHA", LOG_SCRIPT_SHA, b"2", b"relay:log:{s}", b"relay:session:{s}",
                             b"relay:events:recall:s:t", b"100", b"producer:ab12", b"1", b"7", b'{"id":"x"}']  # fmt: skip
    assert reader.gets() is False


async def test_text_events_are_logged_in_order_and_live_messages_say_where(redis_url, redis_client, collect, metrics) -> None:
    live = collect("relay:events:*")
    publisher = log_publisher(redis_url, metrics)
    publisher.start()
    sent = [transcript(n, session="rec-a" if n % 2 else "rec-b") for n in range(40)]
    for event in sent:
        publisher.accept(event)
    await live.wait_for(40)
    await publisher.aclose(timeout=5)
    for session in ("rec-a", "rec-b"):
        logged = await logged_ids(redis_client, KEYS.log(session))
        assert [event_id for _, event_id in logged] == [e.id for e in sent if e.session.id == session]
        # Each live message carries its entry id, and the logged body is the published one without it.
        by_id = {e.id: e for e in live.events}
        assert [by_id[event_id].log_id for _, event_id in logged] == [entry_id for entry_id, _ in logged]
    first_entry = (await redis_client.xrange(KEYS.log("rec-b"), count=1))[0][1][LOG_FIELD.encode()]
    assert b"log_id" not in first_entry and parse_event(first_entry) == sent[0]


async def test_media_is_not_logged_unless_asked_and_then_apart(redis_url, redis_client, collect, metrics) -> None:
    media = collect("relay:media:*")
    for log in (LogConfig(), LogConfig(media=True, media_max_entries=500)):
        publisher = log_publisher(redis_url, metrics, log)
        publisher.start()
        publisher.accept(audio(1))
        publisher.accept(transcript(2))
        await publisher.wait_done(2)
        await publisher.aclose(timeout=5)
    await media.wait_for(2)
    assert len(await logged_ids(redis_client, KEYS.media_log("rec-1"))) == 1  # the second publisher's only
    assert len(await logged_ids(redis_client, KEYS.log("rec-1"))) == 2
    assert media.events[0].log_id is None and media.events[1].log_id is not None


async def test_with_the_log_off_nothing_is_written_but_pub_sub(redis_url, redis_client, collect, metrics) -> None:
    live = collect("relay:events:*")
    publisher = EventPublisher(redis_url, metrics, PublisherConfig(timeout_s=2.0), ChannelScheme())
    publisher.start()
    publisher.accept(transcript(1))
    await live.wait_for(1)
    await publisher.aclose(timeout=5)
    assert await redis_client.keys("*") == []
    assert live.events[0].log_id is None


async def test_live_log_id_can_be_switched_off(redis_url, redis_client, collect, metrics) -> None:
    live = collect("relay:events:*")
    publisher = log_publisher(redis_url, metrics, LogConfig(live_log_id=False))
    publisher.start()
    publisher.accept(transcript(1))
    await live.wait_for(1)
    await publisher.aclose(timeout=5)
    assert live.events[0].log_id is None and len(await logged_ids(redis_client, KEYS.log("rec-1"))) == 1


async def test_a_key_of_another_type_costs_the_log_not_the_live_stream(redis_url, redis_client, collect, metrics) -> None:
    await redis_client.set(KEYS.log("rec-1"), "not a stream")
    live = collect("relay:events:*")
    publisher = log_publisher(redis_url, metrics)
    publisher.start()
    for n in range(3):
        publisher.accept(transcript(n))
    publisher.accept(transcript(9, session="rec-2"))
    await live.wait_for(4)
    await publisher.aclose(timeout=5)
    assert sample(metrics, "relay_redis_errors_total", operation="log_append") == 3
    assert sample(metrics, "relay_redis_errors_total", operation="publish") == 0  # the link never failed
    assert len(await logged_ids(redis_client, KEYS.log("rec-2"))) == 1


async def test_a_replayed_command_is_skipped_log_and_live(redis_url, redis_client, collect) -> None:
    """The re-send check on its own: the same producer's seq twice appends and publishes once."""
    live = collect("relay:events:*")
    body = transcript(1).to_json()
    args = [KEYS.log("rec-1"), KEYS.session("rec-1"), "relay:events:recall:rec-1:transcript.final", 1000, "producer:p1", "1"]
    assert await redis_client.evalsha(LOG_SCRIPT_SHA.decode(), 2, *args, 5, body) == 1
    assert await redis_client.evalsha(LOG_SCRIPT_SHA.decode(), 2, *args, 5, body) == 0
    assert await redis_client.evalsha(LOG_SCRIPT_SHA.decode(), 2, *args, 4, body) == 0  # older: also already there
    other = [*args[:4], "producer:p2", "1"]
    assert await redis_client.evalsha(LOG_SCRIPT_SHA.decode(), 2, *other, 5, body) == 1  # another process' own count
    await live.wait_for(2)
    assert len(await logged_ids(redis_client, KEYS.log("rec-1"))) == 2


async def test_a_batch_re_sent_after_a_failure_mid_batch_is_logged_and_published_once(
    redis_server, redis_url, redis_client, collect, metrics
) -> None:
    live = collect("relay:events:*")
    async with TcpProxy(redis_server.port) as proxy:
        publisher = log_publisher(f"redis://127.0.0.1:{proxy.port}/0", metrics, timeout_s=0.5, backoff_max_s=0.1)
        publisher.start()
        sent = [transcript(n) for n in range(101)]
        for event in sent[:50]:
            publisher.accept(event)
        await publisher.wait_done(50)
        proxy.eat_replies = True
        for event in sent[50:100]:
            publisher.accept(event)
        # Redis has run every command; the publisher heard nothing back for the last 50.
        async with asyncio.timeout(10):
            while await redis_client.xlen(KEYS.log("rec-1")) < 100:
                await asyncio.sleep(0.01)
        assert publisher.stats["published"] == 50
        proxy.cut()  # the link fails, reconnects and sends the 50 again
        await asyncio.wait_for(publisher.wait_done(100), 10)
        publisher.accept(sent[100])  # a marker: any duplicate would arrive before it
        await publisher.aclose(timeout=5)
    assert sample(metrics, "relay_redis_errors_total", operation="publish") >= 1  # it did re-send
    assert [event_id for _, event_id in await logged_ids(redis_client, KEYS.log("rec-1"))] == [e.id for e in sent]
    await live.wait_for(101)
    assert [e.id for e in live.events] == [e.id for e in sent]


async def test_partials_can_be_kept_out_of_the_log(redis_url, redis_client, collect, metrics) -> None:
    live = collect("relay:events:*")
    publisher = log_publisher(redis_url, metrics, LogConfig(partials=False))
    publisher.start()
    partial = transcript(1).model_copy(update={"type": "transcript.partial"})
    final = transcript(2)
    publisher.accept(partial)
    publisher.accept(final)
    await live.wait_for(2)
    await publisher.aclose(timeout=5)
    assert [event_id for _, event_id in await logged_ids(redis_client, KEYS.log("rec-1"))] == [final.id]
    assert [e.log_id is None for e in live.events] == [True, False]
