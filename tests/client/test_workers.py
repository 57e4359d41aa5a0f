"""relay.client.workers against a real redis-server: one worker per meeting, spreading, takeover
from a dead worker's checkpoint, fencing of a worker whose claim was taken, live meetings,
graceful stop, and the errors a handler is told instead of hanging. The pure policy is tested alone.

Meetings are written as the relay writes them: XADD of real schema events (field ``e``, the JSON
without ``log_id``) to the meeting's log and, for ``session.started``/``session.ended``, to
``sessions:log``. Tests wait on a recorder's event, never on sleeps; a short ``claim_idle_s``
keeps takeovers quick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from relay.channels import LOG_FIELD, LogKeys
from relay.client import ClaimTiming, Meeting, MeetingReleased, Progress, WorkerGroup
from relay.channels import LogKeys
from relay.client.workers import entry_action, validate_name
from relay.errors import HistoryLost, HistoryTrimmed, SessionNotFound
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
FAST: dict[str, Any] = {"claim_idle_s": 0.6, "block_s": 0.05, "stop_grace_s": 2.0, "start": "earliest"}


# --- writing meetings as the relay does --------------------------------------------------------


def transcript(session: str, n: int) -> TranscriptEvent:
    return TranscriptEvent(
        source="recall", type="transcript.final", session=SessionRef(id=session),
        time=EventTime(received=utc_now()), payload=Transcript(text=f"{session}/{n}", is_final=True),
    )  # fmt: skip


def lifecycle(type_: str, session: str, reason: str | None = None) -> SessionLifecycleEvent:
    return SessionLifecycleEvent(
        source="recall", type=type_, session=SessionRef(id=session), time=EventTime(received=utc_now()),  # type: ignore[arg-type]
        payload=SessionLifecycle(reason=reason, started=utc_now()),
    )  # fmt: skip


async def xadd(redis: aioredis.Redis, key: str, event: EventBase) -> str:
    return (await redis.xadd(key, {LOG_FIELD: event.to_json()})).decode()


async def start(redis: aioredis.Redis, session: str, events: int = 0) -> None:
    started = lifecycle("session.started", session)
    await xadd(redis, KEYS.log(session), started)
    for n in range(events):
        await xadd(redis, KEYS.log(session), transcript(session, n))
    await xadd(redis, KEYS.sessions_log, started)


async def say(redis: aioredis.Redis, session: str, n: int) -> str:
    return await xadd(redis, KEYS.log(session), transcript(session, n))


async def end(redis: aioredis.Redis, session: str) -> None:
    ended = lifecycle("session.ended", session, "disconnected")
    await xadd(redis, KEYS.log(session), ended)
    await xadd(redis, KEYS.sessions_log, ended)


async def log_ids(redis: aioredis.Redis, session: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await redis.xrange(KEYS.log(session))]


def first_of_each(events: list[EventBase]) -> list[EventBase]:
    """Dedupe by event id, keeping the first: what a consumer does with at-least-once delivery."""
    seen: set[str] = set()
    return [e for e in events if not (e.id in seen or seen.add(e.id))]  # type: ignore[func-returns-value]


# --- a recording handler -----------------------------------------------------------------------


class Recorder:
    """Keeps every event each worker's handler got; tests wait on :meth:`until`."""

    def __init__(self) -> None:
        self.events: dict[str, list[EventBase]] = defaultdict(list)
        self.workers: dict[str, set[str]] = defaultdict(set)  # session -> workers that got events of it
        self.done: dict[str, list[str]] = defaultdict(list)  # session -> workers whose handler returned
        self.released: list[tuple[str, str, str]] = []  # (worker, session, reason)
        self.errors: list[BaseException] = []
        self._changed = asyncio.Event()

    def handler(self, worker: str, *, gate: asyncio.Event | None = None) -> Callable[[Meeting], Any]:
        async def handle(meeting: Meeting) -> None:
            try:
                async for event in meeting:
                    self.events[meeting.session].append(event)
                    self.workers[meeting.session].add(worker)
                    self._changed.set()
                    if gate is not None:
                        await gate.wait()
            except MeetingReleased as exc:
                self.released.append((worker, meeting.session, exc.reason))
                self._changed.set()
                raise
            self.done[meeting.session].append(worker)
            self._changed.set()

        return handle

    async def until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@contextlib.asynccontextmanager
async def running(group: WorkerGroup, handler: Callable[[Meeting], Any]) -> AsyncIterator[asyncio.Task[None]]:
    """``group.run(handler)`` as a task, stopped (and its error, if any, raised) on exit."""
    async with group:
        task = asyncio.create_task(group.run(handler))
        try:
            yield task
        finally:
            group.stop()
            if not task.done() or not task.cancelled():
                await asyncio.wait_for(task, 10)


async def pending(redis: aioredis.Redis, group: str) -> int:
    return int((await redis.xpending(KEYS.sessions_log, group))["pending"])


# --- the pure policy ---------------------------------------------------------------------------


def test_claim_timing_refreshes_three_times_and_sweeps_twice_per_idle_limit() -> None:
    timing = ClaimTiming(3.0)
    assert (timing.idle_ms, timing.heartbeat_s, timing.sweep_s) == (3000, 1.0, 1.5)
    assert timing.release_idle_ms > timing.idle_ms  # a released claim is swept at once
    assert not timing.expired(10.0, 12.9) and timing.expired(10.0, 13.0)
    with pytest.raises(ValueError):
        ClaimTiming(0)


def test_only_session_started_is_a_claim() -> None:
    assert entry_action(lifecycle("session.started", "m")) == "claim"
    assert entry_action(lifecycle("session.ended", "m")) == "ack"
    assert entry_action(transcript("m", 1)) == "ack"
    assert entry_action(None) == "ack"


@pytest.mark.parametrize("name", ["", "a b", "x{y}", "a:b", "é", "a" * 129])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name must be"):
        validate_name("group", name)
    with pytest.raises(ValueError, match="group name"):
        WorkerGroup(group=name)


def test_progress_key_is_one_key_per_group_in_a_hash_tag() -> None:
    assert LogKeys("relay").group_progress("summaries") == "relay:group:{summaries}:progress"


def test_progress_saves_once_per_batch_and_counts_an_event_handled_when_the_next_is_asked() -> None:
    p = Progress.resumed(None)
    p.on_read("1-3", 3)  # a batch: 1-1, 1-2, 1-3
    assert p.due() is None  # nothing handled yet
    p.on_next()
    p.on_out("1-1")
    p.on_next()  # 1-1 handled, but the batch is not: no save mid-batch
    assert (p.handled, p.due()) == ("1-1", None)
    p.on_out("1-2")
    p.on_next()
    p.on_out("1-3")
    assert p.handled == "1-2"  # 1-3 handed out, not handled: a crash now repeats it
    p.on_next()
    assert p.due() == "1-3"
    p.saved = "1-3"
    assert p.due() is None
    p.on_read("1-9", 0)  # a read of another session's entries only: skipped, so handled
    assert p.due() == "1-9"
    assert Progress.resumed("5-0").read == "5-0"


# --- against Redis -----------------------------------------------------------------------------


async def test_one_meeting_goes_to_exactly_one_worker_of_three(redis_client: aioredis.Redis, redis_url: str) -> None:
    rec = Recorder()
    groups = [WorkerGroup(redis_url, group="g", consumer=f"w{i}", **FAST) for i in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for i, group in enumerate(groups):
            await stack.enter_async_context(running(group, rec.handler(f"w{i}")))
        await start(redis_client, "m1", events=5)
        await end(redis_client, "m1")
        await rec.until(lambda: bool(rec.done["m1"]))
    assert len(rec.workers["m1"]) == 1 and rec.done["m1"] == list(rec.workers["m1"])
    assert [e.log_id for e in rec.events["m1"]] == await log_ids(redis_client, "m1")  # whole, in order, once
    assert [e.type for e in rec.events["m1"]][:: len(rec.events["m1"]) - 1] == ["session.started", "session.ended"]
    assert sum(g.finished for g in groups) == 1
    assert await pending(redis_client, "g") == 0  # the claim and the session.ended entry acknowledged
    assert await redis_client.hgetall(LogKeys("relay").group_progress("g")) == {}  # checkpoint dropped when done


async def test_ten_live_meetings_spread_over_three_workers_within_their_limits(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    rec = Recorder()
    groups = [WorkerGroup(redis_url, group="g", consumer=f"w{i}", max_meetings=4, **FAST) for i in range(3)]
    sessions = [f"m{n}" for n in range(10)]
    async with contextlib.AsyncExitStack() as stack:
        for i, group in enumerate(groups):
            await stack.enter_async_context(running(group, rec.handler(f"w{i}")))
        for session in sessions:
            await start(redis_client, session, events=2)
        await rec.until(lambda: all(len(rec.events[s]) == 3 for s in sessions))
        held = [len(g.active) for g in groups]
        assert sum(held) == 10 and max(held) <= 4 and min(held) >= 2  # 4 + 4 + 2 at least, by capacity
        for session in sessions:
            await say(redis_client, session, 2)
            await end(redis_client, session)
        await rec.until(lambda: all(rec.done[s] for s in sessions))
    for session in sessions:
        assert len(rec.workers[session]) == 1
        assert [e.log_id for e in rec.events[session]] == await log_ids(redis_client, session)
    assert await pending(redis_client, "g") == 0


async def test_a_dead_workers_meetings_are_taken_over_from_its_checkpoint(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    """A worker that died holding two meetings (its claims pending, one checkpoint saved) and never
    heartbeats again: the others take both over after claim_idle_s and resume after the checkpoint."""
    async with WorkerGroup(redis_url, group="g", **FAST):
        pass  # creates the group
    await start(redis_client, "a", events=4)
    await start(redis_client, "b", events=1)
    await redis_client.xreadgroup("g", "ghost", {KEYS.sessions_log: ">"}, count=2)  # the dead worker's claims
    saved = (await log_ids(redis_client, "a"))[2]  # it had handled a's started, t0 and t1
    await redis_client.hset(LogKeys("relay").group_progress("g"), mapping={"owner:a": "ghost", "pos:a": saved})
    rec = Recorder()
    groups = [WorkerGroup(redis_url, group="g", consumer=f"w{i}", **FAST) for i in range(2)]
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with contextlib.AsyncExitStack() as stack:
        for i, group in enumerate(groups):
            await stack.enter_async_context(running(group, rec.handler(f"w{i}")))
        await rec.until(lambda: len(rec.events["a"]) >= 2 and len(rec.events["b"]) >= 2)
        took = loop.time() - began
        await end(redis_client, "a")
        await end(redis_client, "b")
        await rec.until(lambda: bool(rec.done["a"] and rec.done["b"]))
    ids_a = await log_ids(redis_client, "a")
    assert [e.log_id for e in rec.events["a"]] == ids_a[3:]  # resumed after the checkpoint, nothing before
    assert [e.log_id for e in rec.events["b"]] == await log_ids(redis_client, "b")  # no checkpoint: from the start
    assert sum(g.taken_over for g in groups) == 2
    assert FAST["claim_idle_s"] <= took < 1.5 * FAST["claim_idle_s"] + 2.0
    assert await pending(redis_client, "g") == 0


async def test_a_worker_whose_claim_was_taken_stops_and_cannot_move_the_checkpoint(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    """A worker paused past claim_idle_s loses the meeting to another; when it resumes, its
    heartbeat and its save are refused: its handler is told (claim_lost), the successor's
    checkpoint stands."""
    rec = Recorder()
    gate = asyncio.Event()
    group = WorkerGroup(redis_url, group="g", consumer="slow", **FAST)
    async with running(group, rec.handler("slow", gate=gate)):
        await start(redis_client, "m", events=3)
        await rec.until(lambda: len(rec.events["m"]) == 1)  # holds the meeting, stuck in its handler
        claim = (await redis_client.xrange(KEYS.sessions_log))[0][0]
        # What a successor's takeover does: the claim and the owner become its own, its position saved.
        await redis_client.xclaim(KEYS.sessions_log, "g", "successor", 0, [claim], justid=True)
        await redis_client.hset(LogKeys("relay").group_progress("g"), mapping={"owner:m": "successor", "pos:m": "9-9"})
        gate.set()
        await rec.until(lambda: bool(rec.released))
    assert rec.released == [("slow", "m", "claim_lost")]
    assert not rec.done["m"] and group.finished == 0
    assert await redis_client.hget(LogKeys("relay").group_progress("g"), "pos:m") == b"9-9"
    detail = await redis_client.xpending_range(KEYS.sessions_log, "g", "-", "+", 10)
    assert [d["consumer"] for d in detail] == [b"successor"]  # not stolen back


async def test_the_heartbeat_gives_up_a_claim_taken_by_another_and_never_takes_it_back(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    rec = Recorder()
    gate = asyncio.Event()
    meetings: list[Meeting] = []
    handle = rec.handler("slow", gate=gate)

    async def keep(meeting: Meeting) -> None:
        meetings.append(meeting)
        await handle(meeting)

    group = WorkerGroup(redis_url, group="g", consumer="slow", **FAST)
    async with running(group, keep):
        await start(redis_client, "m", events=1)
        await rec.until(lambda: len(rec.events["m"]) == 1)
        claim = (await redis_client.xrange(KEYS.sessions_log))[0][0]
        await redis_client.xclaim(KEYS.sessions_log, "g", "successor", 0, [claim], justid=True)
        async with asyncio.timeout(5):  # a few heartbeats (claim_idle_s / 3 each); no event marks them
            while not meetings[0].released:
                await asyncio.sleep(0.02)
        detail = await redis_client.xpending_range(KEYS.sessions_log, "g", "-", "+", 10)
        assert [d["consumer"] for d in detail] == [b"successor"]
        gate.set()
        await rec.until(lambda: bool(rec.released))
    assert rec.released == [("slow", "m", "claim_lost")]


async def test_a_live_meeting_is_followed_until_it_ends(redis_client: aioredis.Redis, redis_url: str) -> None:
    rec = Recorder()
    async with running(WorkerGroup(redis_url, group="g", consumer="w", **FAST), rec.handler("w")):
        await start(redis_client, "live")
        for n in range(5):
            await rec.until(lambda: len(rec.events["live"]) == n + 1)  # caught up, blocked on the log
            await say(redis_client, "live", n)
        await rec.until(lambda: len(rec.events["live"]) == 6)
        assert not rec.done["live"]
        await end(redis_client, "live")
        await rec.until(lambda: bool(rec.done["live"]))
    assert [e.log_id for e in rec.events["live"]] == await log_ids(redis_client, "live")


async def test_stop_releases_meetings_for_an_immediate_takeover_after_the_saved_position(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    rec = Recorder()
    slow = {**FAST, "claim_idle_s": 5.0}  # a takeover that waited for the idle limit would fail the timeout
    first = WorkerGroup(redis_url, group="g", consumer="first", **slow)
    async with running(first, rec.handler("first")):
        await start(redis_client, "m", events=3)
        await rec.until(lambda: len(rec.events["m"]) == 4)
    assert rec.released == [("first", "m", "stopping")]
    assert await redis_client.hget(LogKeys("relay").group_progress("g"), "pos:m") == rec.events["m"][-1].log_id.encode()  # type: ignore[union-attr]
    async with running(WorkerGroup(redis_url, group="g", consumer="second", **slow), rec.handler("second")):
        await say(redis_client, "m", 3)
        await end(redis_client, "m")
        await rec.until(lambda: bool(rec.done["m"]), timeout=4.0)
    assert [e.log_id for e in rec.events["m"]] == await log_ids(redis_client, "m")  # nothing repeated
    assert rec.done["m"] == ["second"]


async def test_a_restarted_worker_resumes_its_own_meetings_at_once(redis_client: aioredis.Redis, redis_url: str) -> None:
    await start(redis_client, "m", events=2)
    async with WorkerGroup(redis_url, group="g", **FAST):
        pass
    await redis_client.xreadgroup("g", "w", {KEYS.sessions_log: ">"}, count=1)  # "w" died holding it
    rec = Recorder()
    slow = {**FAST, "claim_idle_s": 30.0}
    async with running(WorkerGroup(redis_url, group="g", consumer="w", **slow), rec.handler("w")):
        await end(redis_client, "m")
        await rec.until(lambda: bool(rec.done["m"]), timeout=5.0)


async def test_group_start_latest_skips_meetings_before_it(redis_client: aioredis.Redis, redis_url: str) -> None:
    await start(redis_client, "old", events=1)
    rec = Recorder()
    async with running(WorkerGroup(redis_url, group="g", consumer="w", **{**FAST, "start": "latest"}), rec.handler("w")):
        await start(redis_client, "new")
        await end(redis_client, "new")
        await rec.until(lambda: bool(rec.done["new"]))
    assert "old" not in rec.events


# --- errors: told, never a hang ------------------------------------------------------------------


async def test_a_trimmed_meeting_is_told_to_the_handler_and_run_raises_it(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    await start(redis_client, "t", events=5)
    await redis_client.xtrim(KEYS.log("t"), maxlen=2, approximate=False)  # its start is gone
    rec = Recorder()
    group = WorkerGroup(redis_url, group="g", consumer="w", **FAST)
    async with group:
        with pytest.raises(HistoryTrimmed):
            await asyncio.wait_for(group.run(rec.handler("w")), 10)
    assert rec.events["t"] == []  # handed nothing of the partial meeting
    assert await pending(redis_client, "g") == 1  # not acknowledged: retried after claim_idle_s


async def test_a_handler_that_catches_the_error_gives_the_meeting_up(redis_client: aioredis.Redis, redis_url: str) -> None:
    await start(redis_client, "t", events=5)
    await redis_client.xtrim(KEYS.log("t"), maxlen=2, approximate=False)
    told: list[Exception] = []
    returned = asyncio.Event()

    async def handle(meeting: Meeting) -> None:
        try:
            async for _ in meeting:
                pass
        except HistoryTrimmed as exc:
            told.append(exc)
        returned.set()

    group = WorkerGroup(redis_url, group="g", consumer="w", **FAST)
    async with running(group, handle) as task:
        await asyncio.wait_for(returned.wait(), 10)
        assert not task.done()  # the worker goes on
    assert group.finished == 1 and await pending(redis_client, "g") == 0  # stop waited for the acknowledgement
    assert len(told) == 1 and told[0].session == "t"  # type: ignore[attr-defined]


async def test_a_lost_log_is_history_lost(redis_client: aioredis.Redis, redis_url: str) -> None:
    """A checkpoint the log does not hold, and that retention did not remove: the log was lost."""
    await start(redis_client, "l", events=2)
    async with WorkerGroup(redis_url, group="g", **FAST):
        pass
    await redis_client.xreadgroup("g", "ghost", {KEYS.sessions_log: ">"}, count=1)
    await redis_client.hset(LogKeys("relay").group_progress("g"), mapping={"owner:l": "ghost", "pos:l": "1-0"})
    group = WorkerGroup(redis_url, group="g", consumer="w", **FAST)
    async with group:
        with pytest.raises(HistoryLost):
            await asyncio.wait_for(group.run(Recorder().handler("w")), 10)


async def test_a_meeting_without_a_log_is_session_not_found(redis_client: aioredis.Redis, redis_url: str) -> None:
    await xadd(redis_client, KEYS.sessions_log, lifecycle("session.started", "ghost-meeting"))
    group = WorkerGroup(redis_url, group="g", consumer="w", missing_log_s=0.3, **FAST)
    async with group:
        with pytest.raises(SessionNotFound):
            await asyncio.wait_for(group.run(Recorder().handler("w")), 10)
