"""The durable log as the publisher writes it (relay/core/event_log.py), against a real redis-server."""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis

from relay.channels import LOG_FIELD, ChannelScheme, LogKeys
from relay.core.event_log import LOG_SCRIPT, LOG_SCRIPT_SHA, LogConfig, group_head, group_prefix, pack_entry
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


def test_a_packed_group_is_one_well_formed_evalsha() -> None:
    import hiredis

    head = group_head("relay:log:{s}", "relay:session:{s}", 100, "producer:ab12", True)
    channel = b"$23\r\nrelay:events:recall:s:t\r\n"
    command = b"".join([group_prefix(2), head, *pack_entry(channel, 7, b'{"id":"x"}'), *pack_entry(channel, 0, b"{}")])
    reader = hiredis.Reader()
    # A request in RESP is an array of bulk strings, which a reply reader parses the same way.
    reader.feed(command)
    assert reader.gets() == [b"EVALSHA", LOG_SCRIPT_SHA, b"2", b"relay:log:{s}", b"relay:session:{s}", b"100",
                             b"producer:ab12", b"1", b"relay:events:recall:s:t", b"7", b'{"id":"x"}',
                             b"relay:events:recall:s:t", b"0", b"{}"]  # fmt: skip
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


async def test_a_replayed_group_is_skipped_log_and_live(redis_url, redis_client, collect) -> None:
    """The re-send check on its own: the same producer's seqs again append and publish nothing."""
    live = collect("relay:events:*")
    channel = "relay:events:recall:rec-1:transcript.final"
    bodies = [transcript(n).to_json() for n in range(3)]

    async def run(field: str, *seqs: int) -> object:
        args = [a for seq, body in zip(seqs, bodies) for a in (channel, seq, body)]
        return await redis_client.evalsha(LOG_SCRIPT_SHA.decode(), 2, KEYS.log("rec-1"), KEYS.session("rec-1"),
                                          1000, field, "1", *args)  # fmt: skip

    assert await run("producer:p1", 4, 5) == 1
    assert await run("producer:p1", 4, 5, 6) == 1  # a re-sent batch that got further: only 6 is new
    assert await run("producer:p2", 5) == 1  # another process' own count
    await live.wait_for(4)
    assert len(await logged_ids(redis_client, KEYS.log("rec-1"))) == 4
    assert [e.id for e in live.events] == [transcript_id(bodies[0]), transcript_id(bodies[1]), transcript_id(bodies[2]),
                                           transcript_id(bodies[0])]  # fmt: skip


def transcript_id(body: bytes) -> str:
    return str(orjson.loads(body)["id"])


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


async def test_text_and_media_of_one_session_in_one_batch_are_both_logged(redis_url, redis_client, metrics) -> None:
    """Their groups keep separate re-send counts: a text group must not make the media one look sent."""
    publisher = log_publisher(redis_url, metrics, LogConfig(media=True))
    publisher.start()
    sent = [transcript(1), audio(2), transcript(3), audio(4)]
    for event in sent:
        publisher.accept(event)
    await publisher.wait_done(4)
    await publisher.aclose(timeout=5)
    assert [i for _, i in await logged_ids(redis_client, KEYS.log("rec-1"))] == [sent[0].id, sent[2].id]
    assert [i for _, i in await logged_ids(redis_client, KEYS.media_log("rec-1"))] == [sent[1].id, sent[3].id]


async def test_without_live_log_ids_events_are_plain_xadd_and_publish_in_order(redis_url, redis_client, collect, metrics) -> None:
    live = collect("relay:events:*")
    publisher = log_publisher(redis_url, metrics, LogConfig(live_log_id=False, partials=False))
    publisher.start()
    sent = [transcript(n, session=f"rec-{n % 2}") for n in range(20)]
    sent.insert(5, transcript(99).model_copy(update={"type": "transcript.partial", "session": sent[0].session}))
    for event in sent:
        publisher.accept(event)
    await live.wait_for(len(sent))
    await publisher.aclose(timeout=5)
    assert [e.id for e in live.events] == [e.id for e in sent]  # one command stream: the order as accepted
    assert all(e.log_id is None for e in live.events)
    for session in ("rec-0", "rec-1"):
        expected = [e.id for e in sent if e.session.id == session and e.type == "transcript.final"]
        assert [i for _, i in await logged_ids(redis_client, KEYS.log(session))] == expected
    assert await redis_client.exists(KEYS.session("rec-0")) == 0  # no script, no re-send counters


async def test_a_big_batch_of_one_session_is_split_into_calls_and_keeps_its_order(redis_url, redis_client, collect, metrics) -> None:
    """A call's messages reach each subscriber at once: past 16 KiB of bodies a group is split."""
    live = collect("relay:events:*")
    publisher = log_publisher(redis_url, metrics)
    sent = [transcript(n).model_copy(update={"payload": transcript(n).payload.model_copy(update={"text": f"{n} " + "x" * 20_000})})
            for n in range(30)]  # fmt: skip
    for event in sent:  # accepted before the link is up: one batch of 30, about 600 KB
        publisher.accept(event)
    publisher.start()
    await live.wait_for(30)
    await publisher.aclose(timeout=5)
    assert [i for _, i in await logged_ids(redis_client, KEYS.log("rec-1"))] == [e.id for e in sent]
    assert [e.id for e in live.events] == [e.id for e in sent]
