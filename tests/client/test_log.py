"""relay.client.log against a real redis-server: replay, follow, resume of every session, and the
errors that keep a consumer from being handed a partial meeting (bad position, unknown session,
trimmed history, lost history).

Entries are written two ways: with XADD in the documented format (``e`` = the event JSON without
``log_id``), and end to end through the relay's own :class:`EventPublisher` with the log on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from relay.channels import LOG_FIELD, ChannelScheme, LogKeys
from relay.client import Checkpoint, RelayLog, check_position, decode_entry, read
from relay.core.event_log import LogConfig
from relay.core.metrics import RelayMetrics
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.errors import BadPosition, HistoryLost, HistoryTrimmed, LogError, SessionNotFound
from relay.schema import (
    EventBase,
    EventTime,
    SessionLifecycle,
    SessionLifecycleEvent,
    SessionRef,
    Transcript,
    TranscriptEvent,
    utc_now,
)

KEYS = LogKeys()


def transcript(n: int, session: str = "rec-1") -> TranscriptEvent:
    return TranscriptEvent(
        source="recall", type="transcript.final", session=SessionRef(id=session),
        time=EventTime(received=utc_now()), payload=Transcript(text=f"t{n}", is_final=True),
    )  # fmt: skip


def lifecycle(type_: str, session: str = "rec-1", reason: str | None = None) -> SessionLifecycleEvent:
    return SessionLifecycleEvent(
        source="recall", type=type_, session=SessionRef(id=session), time=EventTime(received=utc_now()),  # type: ignore[arg-type]
        payload=SessionLifecycle(reason=reason, started=utc_now()),
    )  # fmt: skip


async def append(redis: aioredis.Redis, *events: EventBase, key: str | None = None, **xadd: Any) -> list[str]:
    """XADD each event as the relay does; returns the entry ids."""
    ids = []
    for event in events:
        entry_id = await redis.xadd(key or KEYS.log(event.session.id), {LOG_FIELD: event.to_json()}, **xadd)
        ids.append(entry_id.decode())
    return ids


async def collect(events: AsyncIterator[EventBase], timeout: float = 10.0) -> list[EventBase]:
    async with asyncio.timeout(timeout):
        return [event async for event in events]


def texts(events: list[EventBase]) -> list[str]:
    return [getattr(e.payload, "text", e.type) for e in events]


@pytest.fixture
async def relay_log(redis_client: aioredis.Redis) -> AsyncIterator[RelayLog]:
    async with RelayLog(redis=redis_client, page=7, block_ms=200) as log:
        yield log


# --- reading -------------------------------------------------------------------------------------


async def test_decode_entry_sets_log_id(redis_client) -> None:
    event = transcript(1)
    [entry_id] = await append(redis_client, event)
    [(raw_id, fields)] = await redis_client.xrange(KEYS.log("rec-1"))
    decoded = decode_entry(raw_id, fields)
    assert decoded == event.model_copy(update={"log_id": entry_id})
    assert decoded.log_id == entry_id


async def test_replay_is_the_whole_meeting_in_order_across_pages(redis_client, relay_log) -> None:
    sent = [lifecycle("session.started"), *(transcript(n) for n in range(30)), lifecycle("session.ended")]
    ids = await append(redis_client, *sent)
    got = await collect(relay_log.replay("rec-1"))
    assert [e.id for e in got] == [e.id for e in sent]
    assert [e.log_id for e in got] == ids


async def test_replay_from_a_position_is_strictly_after_it(redis_client, relay_log) -> None:
    sent = [transcript(n) for n in range(20)]
    ids = await append(redis_client, *sent)
    got = await collect(relay_log.replay("rec-1", from_=ids[9]))
    assert texts(got) == [f"t{n}" for n in range(10, 20)]
    assert await collect(relay_log.replay("rec-1", from_=ids[-1])) == []
    # The module-level reader does the same.
    assert texts(await collect(read(redis_client, "rec-1", ids[17], count=2))) == ["t18", "t19"]


async def test_sessions_sharing_a_key_are_told_apart(redis_client, relay_log) -> None:
    assert KEYS.log("a:b") == KEYS.log("a_b")
    await append(redis_client, transcript(1, "a:b"), transcript(2, "a_b"), transcript(3, "a:b"))
    assert texts(await collect(relay_log.replay("a:b"))) == ["t1", "t3"]
    assert texts(await collect(relay_log.replay("a_b"))) == ["t2"]


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["", "12", "abc-1", "1-2-3", "-1-0", "1-x", " 1-0", "99999999999999999999999-0"])
async def test_a_malformed_position_is_bad(redis_client, relay_log, position) -> None:
    await append(redis_client, transcript(1))
    with pytest.raises(BadPosition):
        await relay_log.check("rec-1", position)
    with pytest.raises(BadPosition):
        await collect(relay_log.replay("rec-1", from_=position))


async def test_a_session_without_a_log_is_not_found(redis_client, relay_log) -> None:
    with pytest.raises(SessionNotFound) as raised:
        await collect(relay_log.replay("nobody"))
    assert raised.value.session == "nobody"
    with pytest.raises(SessionNotFound):
        await collect(relay_log.follow("nobody", from_="1-0"))


async def test_redis_7_trimming_moves_entries_added_not_max_deleted(redis_client) -> None:
    """What the trimmed-vs-lost rule rests on, measured on the real server: MAXLEN ~ drops whole
    nodes, counts them in entries-added > length, and leaves max-deleted-entry-id at 0-0."""
    await redis_client.config_set("stream-node-max-entries", 10)
    try:
        for n in range(35):
            await redis_client.xadd("s", {"e": b"x"}, id=f"{n + 1}-0", maxlen=20, approximate=True)
        info = await redis_client.xinfo_stream("s")
    finally:
        await redis_client.config_set("stream-node-max-entries", 100)
    assert info["length"] == 25 and info["entries-added"] == 35
    assert info["first-entry"][0] == b"11-0"
    assert info["max-deleted-entry-id"] == b"0-0"


async def trimmed_log(redis_client: aioredis.Redis, n: int = 35) -> list[str]:
    """A log of ``n`` events written with MAXLEN ~ 20 and 10 entries a node: the first nodes go."""
    await redis_client.config_set("stream-node-max-entries", 10)
    await redis_client.config_set("stream-node-max-bytes", 0)  # nodes split by count alone
    try:
        return await append(redis_client, *(transcript(i) for i in range(n)), maxlen=20, approximate=True)
    finally:
        await redis_client.config_set("stream-node-max-entries", 100)
        await redis_client.config_set("stream-node-max-bytes", 4096)


async def test_a_trimmed_position_is_history_trimmed(redis_client, relay_log) -> None:
    ids = await trimmed_log(redis_client)
    assert await redis_client.xlen(KEYS.log("rec-1")) == 25
    with pytest.raises(HistoryTrimmed):
        await relay_log.check("rec-1", ids[3])
    with pytest.raises(HistoryTrimmed):
        await collect(relay_log.replay("rec-1", from_=ids[3]))
    # Positions still held are fine, and so is an explicit opt-in: what remains, from its start.
    assert texts(await collect(relay_log.replay("rec-1", from_=ids[30]))) == [f"t{n}" for n in range(31, 35)]
    remains = await collect(relay_log.replay("rec-1", from_=ids[3], allow_trimmed=True))
    assert texts(remains) == [f"t{n}" for n in range(10, 35)]


async def test_replay_from_the_start_of_a_trimmed_log_needs_an_opt_in(redis_client, relay_log) -> None:
    await trimmed_log(redis_client)
    with pytest.raises(HistoryTrimmed):
        await collect(relay_log.replay("rec-1"))
    with pytest.raises(HistoryTrimmed):
        await check_position(redis_client, "rec-1", None)
    assert len(await collect(relay_log.replay("rec-1", allow_trimmed=True))) == 25


async def test_an_xdel_removed_position_is_trimmed_too(redis_client, relay_log) -> None:
    ids = await append(redis_client, *(transcript(n) for n in range(5)))
    await redis_client.xdel(KEYS.log("rec-1"), ids[2])
    with pytest.raises(HistoryTrimmed):
        await relay_log.check("rec-1", ids[2])


async def test_a_position_the_stream_never_held_is_history_lost(redis_client, relay_log) -> None:
    """Redis restarted without persistence: the stream is recreated, with ids after the old ones
    (or around them) and nothing removed: not trimming, a lost log."""
    old = await append(redis_client, *(transcript(n) for n in range(5)))
    await redis_client.delete(KEYS.log("rec-1"))
    # Later ids, as a restart would give (a test is quicker: the same millisecond gives old ids again).
    later = int(old[-1].split("-")[0]) + 1000
    new = await append(redis_client, transcript(10), id=f"{later}-0")
    new += await append(redis_client, transcript(11))
    for position in (old[2], "1-0", f"{int(new[0].split('-')[0]) + 10**9}-0"):
        with pytest.raises(HistoryLost):
            await relay_log.check("rec-1", position)
    with pytest.raises(HistoryLost):
        await collect(relay_log.replay("rec-1", from_=old[2]))
    assert texts(await collect(relay_log.replay("rec-1", from_=old[2], allow_lost=True))) == ["t10", "t11"]
    # Recreated with ids that span the old position: still lost, not trimmed.
    await redis_client.delete(KEYS.log("rec-1"))
    await redis_client.xadd(KEYS.log("rec-1"), {LOG_FIELD: transcript(20).to_json()}, id="5-0")
    await redis_client.xadd(KEYS.log("rec-1"), {LOG_FIELD: transcript(21).to_json()}, id="9-0")
    with pytest.raises(HistoryLost):
        await relay_log.check("rec-1", "7-0")


async def test_a_log_lost_marker_after_the_position_is_history_lost(redis_client, relay_log) -> None:
    ids = await append(redis_client, lifecycle("session.started"), transcript(1))
    await append(redis_client, lifecycle("session.started", reason="log_lost"), transcript(2))
    with pytest.raises(HistoryLost):
        await collect(relay_log.replay("rec-1", from_=ids[1]))
    with pytest.raises(HistoryLost):
        await collect(relay_log.replay("rec-1"))
    got = await collect(relay_log.replay("rec-1", from_=ids[1], allow_lost=True))
    assert [e.type for e in got] == ["session.started", "transcript.final"]
    # A reader already past the marker is not told again.
    assert texts(await collect(relay_log.replay("rec-1", from_=got[0].log_id))) == ["t2"]


def test_every_log_error_is_a_log_error() -> None:
    assert all(issubclass(cls, LogError) for cls in (BadPosition, SessionNotFound, HistoryTrimmed, HistoryLost))


# --- follow --------------------------------------------------------------------------------------


async def test_follow_replays_then_waits_and_ends_at_session_ended(redis_client, relay_log) -> None:
    await append(redis_client, lifecycle("session.started"), transcript(0))
    got: list[EventBase] = []
    two = asyncio.Event()

    async def follow() -> None:
        async for event in relay_log.follow("rec-1"):
            got.append(event)
            if len(got) == 2:
                two.set()

    task = asyncio.create_task(follow())
    async with asyncio.timeout(10):
        await two.wait()
        await append(redis_client, *(transcript(n) for n in range(1, 12)), lifecycle("session.ended"))
        await task  # ends by itself at session.ended
    assert [e.type for e in got][-1] == "session.ended"
    assert texts(got[1:-1]) == [f"t{n}" for n in range(12)]


async def test_follow_with_a_dedicated_connection_does_not_hang_on_a_quiet_log(redis_client, relay_log) -> None:
    await append(redis_client, transcript(0))
    follower = relay_log.follow("rec-1")
    assert texts([await anext(follower)]) == ["t0"]
    waiting = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0.3)  # longer than block_ms: the follower asks again, still nothing
    assert not waiting.done()
    await append(redis_client, transcript(1))
    async with asyncio.timeout(5):
        assert texts([await waiting]) == ["t1"]
    await follower.aclose()  # type: ignore[attr-defined]


# --- every session -------------------------------------------------------------------------------


async def start_session(redis: aioredis.Redis, session: str, score: int = 1) -> None:
    event = lifecycle("session.started", session)
    await redis.zadd(KEYS.sessions, {session: score})
    await append(redis, event, key=KEYS.sessions_log)
    await append(redis, event)


async def test_follow_all_resumes_from_a_checkpoint_exactly_once(redis_client, relay_log) -> None:
    await start_session(redis_client, "a")
    await append(redis_client, *(transcript(n, "a") for n in range(5)))
    follower = relay_log.follow_all()
    got: list[EventBase] = []
    async with asyncio.timeout(10):
        async for event in follower:
            got.append(event)
            if len(got) == 4:
                break
    saved = follower.checkpoint.to_json()
    await follower.aclose()

    await start_session(redis_client, "b")
    await append(redis_client, *(transcript(n, "b") for n in range(3)), transcript(5, "a"), lifecycle("session.ended", "a"))
    await append(redis_client, lifecycle("session.ended", "b"))
    resumed = relay_log.follow_all(from_=Checkpoint.from_json(saved))
    rest: list[EventBase] = []
    async with asyncio.timeout(10):
        async for event in resumed:
            rest.append(event)
            if sum(e.type == "session.ended" for e in rest) == 2:
                break
    assert resumed.checkpoint.sessions == {}
    everything = got + rest
    assert len({e.id for e in everything}) == len(everything)  # nothing twice
    by_session = {s: [e.type if e.type.startswith("session.") else texts([e])[0] for e in everything if e.session.id == s]
                  for s in ("a", "b")}  # fmt: skip
    assert by_session["a"] == ["session.started", *(f"t{n}" for n in range(6)), "session.ended"]
    assert by_session["b"] == ["session.started", "t0", "t1", "t2", "session.ended"]


def test_a_checkpoint_round_trips_and_refuses_garbage() -> None:
    cp = Checkpoint("5-1", {"a": "7-0", "b": "0-0"})
    assert Checkpoint.from_json(cp.to_json()) == cp
    for bad in (b"", b"[]", b'{"discovery": "x", "sessions": {}}', b'{"discovery": "1-0", "sessions": {"a": 3}}'):
        with pytest.raises(BadPosition):
            Checkpoint.from_json(bad)


# --- end to end: the relay's own publisher writes the log ----------------------------------------


async def test_what_the_publisher_logs_replays_with_the_live_log_ids(redis_url, redis_client, collect, relay_log) -> None:
    live = collect("relay:events:*")
    publisher = EventPublisher(redis_url, RelayMetrics(), PublisherConfig(timeout_s=2.0, log=LogConfig()), ChannelScheme())
    publisher.start()
    sent = [transcript(n, session="rec-a" if n % 3 else "rec:b") for n in range(30)]
    for event in sent:
        publisher.accept(event)
    await live.wait_for(30)
    await publisher.aclose(timeout=5)
    live_ids = {e.id: e.log_id for e in live.events}
    for session in ("rec-a", "rec:b"):
        replayed = await collect_events(relay_log.replay(session))
        assert [e.id for e in replayed] == [e.id for e in sent if e.session.id == session]
        assert all(e.log_id == live_ids[e.id] for e in replayed)
        assert [e.model_copy(update={"log_id": None}) for e in replayed] == [e for e in sent if e.session.id == session]
        middle = replayed[len(replayed) // 2]
        after = await collect_events(relay_log.replay(session, from_=middle.log_id))
        assert after == replayed[len(replayed) // 2 + 1 :]


collect_events = collect
