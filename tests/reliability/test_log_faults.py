"""The durable log under Redis faults: unreachable for 10 s mid-meeting, killed and restarted.

The relay holds what it accepted while Redis is away and appends it, in order, once Redis is back;
re-sent batches are skipped by the log script (relay/core/event_log.py), so each meeting's log is
whole, in order and without duplicates. Restarted with AOF (fsync always), Redis keeps every
acknowledged entry.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import redis.asyncio as aioredis

from relay.channels import LOG_FIELD, ChannelScheme, LogKeys
from relay.core.event_log import LogConfig
from relay.core.metrics import RelayMetrics
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.dev import recall_frames as frames
from relay.dev.local_redis import RedisServerProcess
from tests.conftest import TcpProxy
from tests.core.test_publisher import transcript

KEYS = LogKeys()


async def logged(redis: aioredis.Redis, session: str) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(fields[LOG_FIELD.encode()]) for _, fields in await redis.xrange(KEYS.log(session))]


def numbers(events: list[dict]) -> list[int]:  # type: ignore[type-arg]
    """The utterance numbers of the logged transcripts, in log order."""
    return [int(e["payload"]["text"].split()[1]) for e in events if e["type"] == "transcript.final"]


async def test_redis_unreachable_for_10_s_mid_meeting_leaves_the_log_whole_and_in_order(
    redis_server, redis_client, start_relay, recall_bot, figures
) -> None:
    async with TcpProxy(redis_server.port) as proxy:
        relay = await start_relay(redis={"url": proxy.url, "start_local": False})
        bot = await recall_bot(relay.recall_url())
        alice = frames.participant(100, "Alice")
        await bot.join(alice)
        sent = 0

        async def stream(seconds: float) -> None:
            nonlocal sent
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                await bot.transcript(alice, f"utterance {sent}")
                sent += 1
                await asyncio.sleep(0.005)  # ~200 transcripts a second: a busy meeting, not a flood

        await stream(1.0)
        proxy.block()
        blocked_at = sent
        await stream(10.0)  # the relay buffers what the bot sends meanwhile
        proxy.unblock()
        await stream(1.0)
        session = bot.identity.recording_id
        async with asyncio.timeout(30):
            while len(numbers(await logged(redis_client, session))) < sent:
                await asyncio.sleep(0.05)
        events = await logged(redis_client, session)
    figures.record("transcripts sent", sent)
    figures.record("sent while Redis was unreachable", sent - blocked_at)
    assert numbers(events) == list(range(sent))  # whole, in order, once
    assert len({e["id"] for e in events}) == len(events)


async def test_redis_killed_and_restarted_with_aof_keeps_every_acknowledged_entry(metrics: RelayMetrics) -> None:
    with RedisServerProcess(appendonly=True) as server:
        publisher = EventPublisher(server.url, metrics, PublisherConfig(timeout_s=1.0, backoff_max_s=0.1, log=LogConfig()), ChannelScheme())
        publisher.start()
        redis = aioredis.Redis.from_url(server.url)
        try:
            sent = [transcript(n) for n in range(400)]
            for event in sent[:200]:
                publisher.accept(event)
            await publisher.wait_done(200)
            server.stop()  # SIGKILL: no clean shutdown
            for event in sent[200:300]:
                publisher.accept(event)  # held while Redis is down
            server.start()
            for event in sent[300:]:
                publisher.accept(event)
            await asyncio.wait_for(publisher.wait_done(400), 20)
            events = await logged(redis, "rec-1")
        finally:
            await publisher.aclose(timeout=5)
            await redis.aclose()
    assert [e["id"] for e in events] == [e.id for e in sent]


async def test_redis_restarted_without_persistence_tells_consumers_the_history_is_gone(start_relay, recall_bot) -> None:
    from relay.client import RelayLog
    from relay.errors import HistoryLost

    with RedisServerProcess() as server:  # persists nothing
        relay = await start_relay(redis={"url": server.url, "start_local": False})
        bot = await recall_bot(relay.recall_url())
        alice = frames.participant(100, "Alice")
        session = bot.identity.recording_id
        redis = aioredis.Redis.from_url(server.url)
        try:
            for n in range(20):
                await bot.transcript(alice, f"utterance {n}")
            async with asyncio.timeout(10):
                while len(numbers(await logged(redis, session))) < 20:
                    await asyncio.sleep(0.02)
            async with RelayLog(redis=redis) as log:
                saved = [event.log_id async for event in log.replay(session)][-1]
            server.stop()
            server.start()  # empty
            await redis.aclose()
            redis = aioredis.Redis.from_url(server.url)
            for n in range(20, 40):
                await bot.transcript(alice, f"utterance {n}")
            # The relay notices the loss on its sessions tick (a new Redis run id) and marks it in
            # the log: a session.started whose reason is log_lost (relay/core/sessions.py).
            async with asyncio.timeout(20):
                while not any(e["type"] == "session.started" and e["payload"]["reason"] == "log_lost"
                              for e in await logged(redis, session)):  # fmt: skip
                    await asyncio.sleep(0.05)
            async with RelayLog(redis=redis) as log:
                # From where it stood, and from the start: never a silently partial meeting.
                for start in (saved, None):
                    with pytest.raises(HistoryLost):
                        async for _ in log.replay(session, from_=start):
                            pass
        finally:
            await redis.aclose()
