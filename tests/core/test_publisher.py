"""EventPublisher against a real redis-server: ordering, batching, outages, shedding, shutdown."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from relay.core.metrics import RelayMetrics
from relay.channels import ChannelScheme
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.schema import (
    AudioChunk,
    AudioChunkEvent,
    EventTime,
    SessionRef,
    Transcript,
    TranscriptEvent,
    utc_now,
)


def transcript(n: int, session: str = "rec-1") -> TranscriptEvent:
    return TranscriptEvent(
        source="recall",
        type="transcript.final",
        session=SessionRef(id=session),
        time=EventTime(received=utc_now()),
        payload=Transcript(text=f"utterance {n}", is_final=True),
    )


def audio(n: int, session: str = "rec-1") -> AudioChunkEvent:
    return AudioChunkEvent(
        source="recall",
        session=SessionRef(id=session),
        time=EventTime(received=utc_now()),
        payload=AudioChunk(mix="mixed", audio="AAAA" * 256, bytes=768, duration_ms=24),
    )


def sample(metrics: RelayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def make_publisher(url: str, metrics: RelayMetrics, **config: int | float) -> EventPublisher:
    return EventPublisher(url, metrics, PublisherConfig(**{"timeout_s": 2.0, **config}), ChannelScheme())


def test_channel_scheme_names_text_and_media_apart() -> None:
    scheme = ChannelScheme()
    assert scheme.channel(transcript(1)) == "relay:events:recall:rec-1:transcript.final"
    assert scheme.channel(audio(1)) == "relay:media:recall:rec-1:audio.chunk"
    assert scheme.channel(transcript(1, session="a:b*c?[d] e")) == "relay:events:recall:a_b_c__d__e:transcript.final"
    assert scheme.pattern(source="recall", type="transcript.*") == "relay:events:recall:*:transcript.*"
    assert scheme.pattern(media=True) == "relay:media:*:*:*"


async def test_publishes_in_order_on_text_and_media_channels(redis_url, collect, metrics) -> None:
    text = collect("relay:events:*")
    media = collect("relay:media:*")
    publisher = make_publisher(redis_url, metrics)
    publisher.start()
    sent = []
    for n in range(300):
        event = audio(n) if n % 3 == 0 else transcript(n)
        sent.append(event)
        await publisher.publish(event)
    await text.wait_for(200)
    await media.wait_for(100)
    assert [e.id for e in text.events] == [e.id for e in sent if not e.is_media]
    assert [e.id for e in media.events] == [e.id for e in sent if e.is_media]
    assert sample(metrics, "relay_events_published_total", source="recall", type="transcript.final") == 200
    assert sample(metrics, "relay_events_published_total", source="recall", type="audio.chunk") == 100
    await publisher.aclose(timeout=5)


async def test_a_long_loop_iteration_sends_as_it_goes(redis_url, collect, metrics) -> None:
    """Events accepted in one loop iteration leave every ``early_flush_events``, not at its end."""
    text = collect("relay:events:*")
    publisher = make_publisher(redis_url, metrics, early_flush_events=50, batches_in_flight=8)
    publisher.start()
    await publisher.publish(transcript(0))
    await text.wait_for(1)  # the link is up
    for n in range(1, 201):  # one iteration: nothing here yields to the loop
        assert publisher.accept(transcript(n))
    await text.wait_for(201)
    assert sample(metrics, "relay_publish_batch_size_count") == 5  # 1, then 4 x 50
    assert sample(metrics, "relay_publish_batch_size_bucket", le="50.0") == 5
    await publisher.aclose(timeout=5)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    """Poll a cheap in-process condition; used only where no event exists to wait on."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_redis_outage_loses_nothing_and_keeps_order(redis_server, redis_url, collect, metrics) -> None:
    publisher = make_publisher(redis_url, metrics, backoff_max_s=0.2)
    publisher.start()
    before = collect("relay:events:*")
    for n in range(50):
        await publisher.publish(transcript(n))
    await before.wait_for(50)

    redis_server.stop()
    during = [transcript(n) for n in range(50, 150)]
    for event in during:
        await publisher.publish(event)  # never blocks: the outage buffer takes them
    await wait_until(lambda: not publisher.redis_ok)
    assert sample(metrics, "relay_redis_up") == 0
    assert sample(metrics, "relay_outage_buffer_events") == 100

    redis_server.start()
    after = collect("relay:events:*")  # subscribed before the publisher can reconnect
    await after.wait_for(100)
    assert [e.id for e in after.events] == [e.id for e in during]
    await wait_until(lambda: publisher.stats["pending"] == 0)  # the subscriber can be first to know
    assert publisher.stats == {"accepted": 150, "published": 150, "dropped": 0, "pending": 0}
    assert sample(metrics, "relay_redis_up") == 1
    await publisher.aclose(timeout=5)


async def test_full_outage_buffer_sheds_media_before_text(redis_server, redis_url, collect, metrics) -> None:
    text_size = len(transcript(0).model_dump_json())
    publisher = make_publisher(redis_url, metrics, outage_buffer_bytes=40 * text_size, backoff_max_s=0.2)
    publisher.start()
    redis_server.stop()
    await publisher.publish(transcript(0))
    await wait_until(lambda: not publisher.redis_ok)
    for n in range(1, 20):
        await publisher.publish(audio(n))  # ~3 text events' worth each
        await publisher.publish(transcript(n))
    await wait_until(lambda: publisher.stats["pending"] < 39)

    redis_server.start()
    after = collect("relay:*")
    await wait_until(lambda: publisher.stats["pending"] == 0)
    await after.wait_for(publisher.stats["published"])
    texts = [e for e in after.events if e.type == "transcript.final"]
    assert len(texts) == 20, "text survives while media can be shed"
    dropped_media = sample(metrics, "relay_events_dropped_total", source="recall", reason="outage_buffer_full_media")
    assert dropped_media > 0
    assert sample(metrics, "relay_events_dropped_total", source="recall", reason="outage_buffer_full_text") == 0
    assert publisher.stats["dropped"] == dropped_media
    assert publisher.stats["published"] + publisher.stats["dropped"] == 39
    await publisher.aclose(timeout=5)


async def test_full_queue_applies_backpressure(redis_server, redis_url, metrics) -> None:
    client = aioredis.Redis.from_url(redis_url)
    publisher = make_publisher(redis_url, metrics, queue_max_events=5, batch_max_events=1, batches_in_flight=1)
    await client.execute_command("CLIENT", "PAUSE", "2000", "WRITE")  # Redis slow, not down
    publisher.start()
    for n in range(6):
        await publisher.publish(transcript(n))  # one in flight, five queued
    blocked = asyncio.create_task(publisher.publish(transcript(6)))
    for _ in range(20):  # give it every chance to (wrongly) complete
        await asyncio.sleep(0)
    assert not blocked.done(), "a full queue must make producers wait"
    await client.execute_command("CLIENT", "UNPAUSE")
    await asyncio.wait_for(blocked, 5)
    await publisher.aclose(timeout=5)
    assert publisher.stats["published"] == 7
    await client.aclose()


async def test_close_flushes_then_counts_what_is_left(redis_server, redis_url, metrics) -> None:
    publisher = make_publisher(redis_url, metrics, backoff_max_s=0.1)
    publisher.start()
    redis_server.stop()
    for n in range(10):
        await publisher.publish(transcript(n))
    await publisher.aclose(timeout=0.3)
    assert publisher.stats["dropped"] == 10
    assert sample(metrics, "relay_events_dropped_total", source="recall", reason="shutdown") == 10
