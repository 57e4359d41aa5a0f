"""Meeting lifecycle: the pure policy on its own, then trackers (one per "relay process") on a real Redis.

Each tracker test builds what a relay process has: its own publisher (writing the log) and its own
tracker, against the suite's redis-server, with a grace of a fraction of a second; tests wait for
what Redis holds with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from relay.channels import LOG_FIELD, ChannelScheme, LogKeys
from relay.core.event_log import LogConfig
from relay.core.metrics import RelayMetrics
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.core.sessions import (
    ClaimOutcome, EndOutcome, LifecycleConfig, LifecyclePolicy, RefreshOutcome, SessionTracker, lifecycle_event,
)  # fmt: skip
from relay.schema import SessionRef, Source

GRACE = 0.4
KEYS = LogKeys()


def ref(sid: str = "rec-1") -> SessionRef:
    return SessionRef(id=sid, bot_id="bot-1", endpoint_id="re-1", metadata={"team": "sales"})


# --- the pure policy ----------------------------------------------------------------------------

CONFIG = LifecycleConfig(end_grace_s=120.0, refresh_s=10.0, tick_s=1.0)


def claimed_policy(now: float = 0.0) -> LifecyclePolicy:
    policy = LifecyclePolicy(CONFIG)
    assert policy.opened(ref(), Source.RECALL, now)
    policy.claim_done("rec-1", ClaimOutcome.WON, 1_000, now)
    return policy


def test_a_session_is_claimed_once_per_process_however_many_connections_it_has() -> None:
    policy = LifecyclePolicy(CONFIG)
    assert policy.opened(ref(), Source.RECALL, 0.0) is True
    assert policy.opened(ref(), Source.RECALL, 0.1) is False, "a claim is on its way"
    policy.claim_done("rec-1", ClaimOutcome.LOST, 1_000, 0.2)
    assert policy.opened(ref(), Source.RECALL, 0.3) is False
    assert not policy.due(0.4).claims


def test_a_failed_claim_is_retried_on_a_tick() -> None:
    policy = LifecyclePolicy(CONFIG)
    policy.opened(ref(), Source.RECALL, 0.0)
    assert policy.due(0.5).claims == [], "not while the first is on its way"
    policy.claim_done("rec-1", ClaimOutcome.FAILED, None, 1.0)
    assert policy.due(2.0).claims == ["rec-1"]
    assert policy.due(3.0).claims == [], "marked as on its way"


def test_live_sessions_are_refreshed_every_refresh_interval_not_more() -> None:
    policy = claimed_policy()
    assert policy.due(0.5).refreshes == ["rec-1"], "the winner's first refresh sets the new log's TTL"
    policy.refresh_done("rec-1", RefreshOutcome.OK, 0.5)
    assert policy.due(5.0).refreshes == []
    assert policy.due(10.5).refreshes == ["rec-1"]
    policy.refresh_done("rec-1", RefreshOutcome.FAILED, 10.5)
    assert policy.due(11.5).refreshes == ["rec-1"], "a failed refresh is retried on the next tick"


def test_the_end_is_due_one_grace_after_the_last_connection_closed() -> None:
    policy = claimed_policy()
    policy.opened(ref(), Source.RECALL, 1.0)
    assert policy.closed("rec-1", 2.0) is False, "another connection is still open"
    assert policy.closed("rec-1", 3.0) is True
    assert policy.due(3.0 + 119.0).ends == []
    assert policy.due(3.0 + 120.0).ends == ["rec-1"]
    assert policy.due(3.0 + 120.0).refreshes == [], "a closed session is not refreshed"


def test_a_bot_that_comes_back_within_the_grace_does_not_end() -> None:
    policy = claimed_policy()
    policy.closed("rec-1", 5.0)
    assert policy.opened(ref(), Source.RECALL, 60.0) is False, "still known here: no new claim"
    assert policy.due(500.0).ends == []


def test_a_session_is_forgotten_once_it_ended_or_is_gone() -> None:
    for outcome in (EndOutcome.ENDED, EndOutcome.ALREADY, EndOutcome.GONE):
        policy = claimed_policy()
        policy.closed("rec-1", 1.0)
        policy.end_done("rec-1", outcome, 121.0)
        assert policy.sessions == {}, outcome


def test_a_failed_end_check_is_retried_and_a_returning_connection_cancels_it() -> None:
    policy = claimed_policy()
    policy.closed("rec-1", 0.0)
    policy.end_done("rec-1", EndOutcome.FAILED, 120.0)
    assert policy.due(121.0).ends == ["rec-1"]
    policy.opened(ref(), Source.RECALL, 121.5)
    policy.end_done("rec-1", EndOutcome.ENDED, 122.0)  # the answer to a check sent before it came back
    assert "rec-1" in policy.sessions and policy.due(123.0).ends == []


def test_alive_elsewhere_checks_again_a_grace_later_alive_by_our_own_close_checks_when_it_is_a_grace_old() -> None:
    policy = claimed_policy()
    policy.closed("rec-1", 0.0)
    policy.end_done("rec-1", EndOutcome.ALIVE, 120.0, remaining_s=0.05, mine=True)
    assert policy.sessions["rec-1"].end_at == pytest.approx(121.0), "at least a tick later"
    policy.end_done("rec-1", EndOutcome.ALIVE, 121.0, remaining_s=100.0, mine=False)
    assert policy.sessions["rec-1"].end_at == pytest.approx(121.0 + 100.0 + 120.0), "another replica ends it first"


def test_a_live_session_redis_forgot_is_claimed_again_as_log_lost_and_an_ended_one_as_reopened() -> None:
    for outcome, reason in ((RefreshOutcome.LOST, "log_lost"), (RefreshOutcome.ENDED, "reopened")):
        policy = claimed_policy()
        policy.refresh_done("rec-1", outcome, 10.0)
        assert policy.due(11.0).claims == ["rec-1"]
        assert policy.sessions["rec-1"].reason == reason
        assert policy.sessions["rec-1"].started_ms == 1_000, "the re-claim keeps the original start"
    policy = claimed_policy()
    policy.closed("rec-1", 1.0)
    policy.refresh_done("rec-1", RefreshOutcome.LOST, 2.0)
    assert policy.due(3.0).claims == [], "closed: the end check decides"


def test_a_redis_restart_makes_every_live_session_due_for_its_loss_check() -> None:
    policy = claimed_policy()
    policy.refresh_done("rec-1", RefreshOutcome.OK, 1.0)
    assert policy.due(2.0).refreshes == []
    policy.redis_restarted()
    assert policy.due(2.0).refreshes == ["rec-1"]


def test_short_graces_scale_the_timings_down() -> None:
    config = LifecycleConfig.from_grace(0.3, 60)
    assert config.refresh_s == pytest.approx(0.1) and config.tick_s < config.refresh_s
    assert LifecycleConfig.from_grace(120.0, 86_400).refresh_s == 10.0


def test_lifecycle_event_builds_the_schema_event() -> None:
    from datetime import datetime, timezone

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    event = lifecycle_event("session.ended", ref(), Source.RECALL, received=at, started=at, ended=at, reason="disconnected")
    assert event.type == "session.ended" and event.payload.reason == "disconnected" and event.session.bot_id == "bot-1"


# --- trackers on a real Redis -------------------------------------------------------------------

Process = tuple[EventPublisher, SessionTracker]


@pytest.fixture
async def process(redis_url: str, redis_client: aioredis.Redis) -> AsyncIterator[Callable[..., Awaitable[Process]]]:
    """``await process()``: one relay process' publisher and tracker (short timings), started."""
    made: list[tuple[EventPublisher, SessionTracker, aioredis.Redis]] = []

    async def make(url: str = redis_url, **config: Any) -> Process:
        metrics = RelayMetrics()
        publisher = EventPublisher(redis_url, metrics, PublisherConfig(timeout_s=2.0, log=LogConfig()), ChannelScheme())
        client = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        tracker = SessionTracker(client, publisher, metrics, LifecycleConfig.from_grace(GRACE, 60, **config))
        publisher.start()
        tracker.start()
        made.append((publisher, tracker, client))
        return publisher, tracker

    yield make
    for publisher, tracker, client in made:
        await tracker.aclose()
        await publisher.aclose(timeout=2.0)
        await client.aclose()


async def log_types(redis: aioredis.Redis, sid: str = "rec-1") -> list[dict[str, Any]]:
    entries = await redis.xrange(KEYS.log(sid))
    return [orjson.loads(fields[LOG_FIELD.encode()]) for _, fields in entries]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``check`` until it holds; a Redis that is restarting counts as not yet."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                if await check():
                    return
            except aioredis.ConnectionError:
                pass
            await asyncio.sleep(0.02)


async def lifecycle(redis: aioredis.Redis, sid: str = "rec-1") -> list[tuple[str, str | None]]:
    return [(e["type"], e["payload"].get("reason")) for e in await log_types(redis, sid) if e["type"].startswith("session.")]


async def open_and_wait(tracker: SessionTracker, session: SessionRef) -> None:
    waiter = tracker.connection_opened(session, Source.RECALL)
    if waiter is not None:
        await waiter


async def test_two_processes_seeing_one_meeting_start_and_end_it_once(process: Any, redis_client: aioredis.Redis) -> None:
    (_, a), (_, b) = await process(), await process()
    await asyncio.gather(open_and_wait(a, ref()), open_and_wait(b, ref()))
    await until(lambda: _has(redis_client, "session.started"))
    a.connection_closed("rec-1")
    b.connection_closed("rec-1")
    await until(lambda: _has(redis_client, "session.ended"))
    # Every tracker forgets it: the one that ended it at once, the other at its next check.
    await until(lambda: _true(not list(a.tracked) and not list(b.tracked)))
    assert await lifecycle(redis_client) == [("session.started", None), ("session.ended", "disconnected")]
    state = await redis_client.hgetall(KEYS.session("rec-1"))
    assert {b"started", b"ended", b"last_seen", b"bot_id", b"endpoint_id", b"metadata", b"ref"} <= state.keys()
    assert state[b"bot_id"] == b"bot-1" and orjson.loads(state[b"metadata"]) == {"team": "sales"}
    assert state[b"end_reason"] == b"disconnected"
    score = await redis_client.zscore(KEYS.sessions, "rec-1")
    assert score == int(state[b"started"])
    index_log = [orjson.loads(f[LOG_FIELD.encode()])["type"] for _, f in await redis_client.xrange(KEYS.sessions_log)]
    assert index_log == ["session.started", "session.ended"]
    for key in (KEYS.session("rec-1"), KEYS.log("rec-1")):
        assert 0 < await redis_client.ttl(key) <= 60, key


async def test_a_bot_that_moves_to_another_process_is_ended_once_by_that_process(process: Any, redis_client: aioredis.Redis) -> None:
    (pub_a, a), (pub_b, b) = await process(), await process()
    await open_and_wait(a, ref())
    a.connection_closed("rec-1")  # dropped; Recall retries, and lands on B
    await open_and_wait(b, ref())
    # A's grace passes while B holds the bot: A must not end it.
    await asyncio.sleep(GRACE * 2.5)
    assert await lifecycle(redis_client) == [("session.started", None)]
    b.connection_closed("rec-1")
    await until(lambda: _has(redis_client, "session.ended"))
    assert (pub_a.accepted, pub_b.accepted) == (1, 1), "A published the start, B the end"
    await asyncio.sleep(GRACE * 3)  # A's backstop check comes and finds it ended
    assert await lifecycle(redis_client) == [("session.started", None), ("session.ended", "disconnected")]
    assert not list(a.tracked) and not list(b.tracked)


async def test_a_bot_that_comes_back_within_the_grace_does_not_end(process: Any, redis_client: aioredis.Redis) -> None:
    _, a = await process()
    await open_and_wait(a, ref())
    for _ in range(3):
        a.connection_closed("rec-1")
        await asyncio.sleep(GRACE / 4)
        await open_and_wait(a, ref())
    await asyncio.sleep(GRACE * 2)
    assert await lifecycle(redis_client) == [("session.started", None)]
    a.connection_closed("rec-1")
    await until(lambda: _has(redis_client, "session.ended"))


async def test_the_claim_holds_the_connection_until_started_is_accepted(process: Any, redis_client: aioredis.Redis) -> None:
    publisher, a = await process()
    waiter = a.connection_opened(ref(), Source.RECALL)
    assert waiter is not None and not waiter.done()
    assert a.connection_opened(ref(), Source.RECALL) is waiter, "a second connection waits for the same claim"
    await waiter
    assert publisher.accepted == 1, "session.started was accepted before the connections go on"
    assert a.connection_opened(ref(), Source.RECALL) is None, "known here: no wait"


async def test_a_session_redis_lost_is_started_again_as_log_lost(process: Any, redis_client: aioredis.Redis, redis_server: Any) -> None:
    _, a = await process(refresh_s=60.0)  # only the restart (a new run_id) can make it look within the deadline
    await open_and_wait(a, ref())
    await until(lambda: _has(redis_client, "session.started"))
    redis_server.stop()
    redis_server.start()  # no persistence: everything is gone
    await until(lambda: _has(redis_client, "session.started"), timeout=15)
    assert await lifecycle(redis_client) == [("session.started", "log_lost")]
    assert await redis_client.zscore(KEYS.sessions, "rec-1") is not None, "back in the index"
    a.connection_closed("rec-1")
    await until(lambda: _has(redis_client, "session.ended"))


async def test_redis_down_costs_the_connections_nothing_and_is_counted(process: Any, redis_client: aioredis.Redis) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"  # nothing listens there
    _, a = await process(dead, claim_timeout_s=0.2)
    waiter = a.connection_opened(ref(), Source.RECALL)
    assert waiter is not None
    async with asyncio.timeout(2):
        await waiter  # resolves (the claim failed, or its time ran out): the connection reads on
    errors = a._metrics.registry.get_sample_value("relay_redis_errors_total", {"operation": "session_claim"})
    await until(lambda: _true((a._metrics.registry.get_sample_value(
        "relay_redis_errors_total", {"operation": "session_claim"}) or 0) >= 2), timeout=5)  # retried on ticks
    assert errors is None or errors >= 1
    a.connection_closed("rec-1")
    assert list(a.tracked) == ["rec-1"], "not ended without Redis: retried until it answers"


async def test_the_sweep_removes_index_members_whose_session_expired(process: Any, redis_client: aioredis.Redis) -> None:
    await redis_client.zadd(KEYS.sessions, {f"gone-{n}": n for n in range(5)})
    await redis_client.hset(KEYS.session("kept"), "started", "1")
    await redis_client.zadd(KEYS.sessions, {"kept": 10})
    await process(sweep_s=0.05, sweep_batch=2)

    async def swept() -> bool:
        return await redis_client.zrange(KEYS.sessions, 0, -1) == [b"kept"]

    await until(swept)


async def test_shutdown_ends_nothing(process: Any, redis_client: aioredis.Redis) -> None:
    _, a = await process()
    await open_and_wait(a, ref())
    a.connection_closed("rec-1")
    await a.aclose()
    _, b = await process()  # the other replica, which the bot did not reconnect to
    await asyncio.sleep(GRACE * 2)
    assert await lifecycle(redis_client) == [("session.started", None)]
    assert not await redis_client.hexists(KEYS.session("rec-1"), "ended")


# --- helpers ------------------------------------------------------------------------------------


async def _has(redis: aioredis.Redis, type_: str) -> bool:
    return any(t == type_ for t, _ in await lifecycle(redis))


async def _true(value: bool) -> bool:
    return value
