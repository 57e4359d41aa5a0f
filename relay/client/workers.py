"""Worker groups: every meeting processed by exactly one worker of a group, taken over when it dies.

::

    from relay.client import Meeting, WorkerGroup

    async def summarize(meeting: Meeting) -> None:
        async for event in meeting:          # the whole meeting, in log order, session.started first
            ...                              # at least once: dedupe on event.id
        # returning normally means "done": the meeting is acknowledged and never handed out again

    async with WorkerGroup("redis://127.0.0.1:6379/0", group="summaries", consumer="worker-1") as group:
        await group.run(summarize)           # until group.stop(), a signal handler's task cancel, or an error

**Claims.** A group is a Redis consumer group ``<group>`` on ``<prefix>:sessions:log``
(:class:`relay.channels.LogKeys`), created with ``MKSTREAM`` from the first entry still there
(``start="earliest"``) or from now (``"latest"``, the default) when it does not exist yet. A
worker reads ``session.started`` entries with ``XREADGROUP``; the entry, pending under the worker's
name, *is* its claim on that meeting, and no other worker of the group is given it. ``session.ended``
entries are acknowledged at once: the meeting's own log ends with ``session.ended``, which is what
ends a meeting. A worker reads only as many entries as it has free slots (``max_meetings``), so it
never holds a claim it is not serving.

**Heartbeat and takeover.** While it holds a meeting, a worker refreshes its claim every
``claim_idle_s / 3`` (``XCLAIM ... JUSTID`` with min-idle 0, in a script that first checks, with
``XPENDING``, that the entry is still its own, so a worker that was paused cannot steal a meeting
back). A claim idle longer than ``claim_idle_s`` belongs to a dead worker: every worker with a free
slot looks every ``claim_idle_s / 2`` (``XAUTOCLAIM`` with that min-idle) and resumes what it finds
from the group's checkpoint. So a SIGKILLed worker's meetings continue within about
``1.5 * claim_idle_s``. Every worker of a group must use the same ``claim_idle_s``. A worker whose
heartbeat could not reach Redis for ``claim_idle_s`` gives its meetings up (they may be taken by
now). Its handler then sees :class:`MeetingReleased` (``reason="claim_lost"``), as does a worker
whose claim another one took.

**Checkpoints, and what a crash repeats.** The group keeps one Hash,
``<prefix>:group:{<group>}:progress`` (one key per group: fine on a Redis Cluster), with two fields
per meeting in progress: ``pos:<session>``, the log position up to which the meeting was handled,
and ``owner:<session>``, the worker that may move it (set when a worker takes the meeting, checked
by the script that saves, so a worker that lost its claim cannot overwrite its successor's
position). An event counts as handled when the handler asks for the next one. The position is
saved per **batch**: when the handler has handled every event of one read (at most ``batch``
events; for a live meeting, whatever arrived since the last read) and before waiting for more. So
after a crash the successor repeats at most the last batch (the events after the saved position),
in order: delivery is at least once, and keeping the first of each ``event.id`` gives every event
exactly once, in log order. After the meeting is acknowledged its two fields are deleted (a crash
between the two steps leaves two small fields behind, never a repeated meeting).

**Stopping.** :meth:`WorkerGroup.stop` (or leaving the ``async with``) stops taking meetings; each
handler gets :class:`MeetingReleased` (``reason="stopping"``) at its next ``async for`` step (a
blocked read notices within ``block_s``), its position is saved, and its claim is released (made
idle at once, so another worker takes it over without waiting ``claim_idle_s``). A handler still
running after ``stop_grace_s`` is cancelled; what it had not handled is repeated by the successor.

**Errors.** The log may not hold the whole meeting: :class:`relay.errors.HistoryTrimmed`
(retention removed entries after the position), :class:`~relay.errors.HistoryLost` (the log does
not hold a position it should), :class:`~relay.errors.SessionNotFound` (no log for the meeting,
``missing_log_s`` after its claim). The meeting's iterator raises them, never a hang or a silently
partial meeting. A handler that catches one and returns gives the meeting up (it is acknowledged);
an exception a handler lets escape (including those) stops :meth:`WorkerGroup.run`, which releases
its other meetings and raises it; that meeting's claim is left to go idle, so it is retried by some
worker after ``claim_idle_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.channels import DEFAULT_REDIS_URL, LogKeys
from relay.core.backoff import Backoff
from relay.client.log import check_position, decode_entry, is_log_lost, read_page
from relay.errors import HistoryLost, MeetingReleased, SessionNotFound
from relay.schema import EventBase

__all__ = [
    "ClaimTiming",
    "Meeting",
    "MeetingHandler",
    "MeetingReleased",
    "WorkerGroup",
    "entry_action",
    "Progress",
    "validate_name",
]

log = logging.getLogger("relay.client.workers")

#: Group and consumer names: they appear in key names and logs, so nothing that needs quoting.
_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: Errors after which a read is retried (the position is verified again by the next read).
_CONNECTION_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)

#: The log positions before everything.
_ORIGIN: Final = "0-0"


# --- the pure policy -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimTiming:
    """When claims are refreshed, swept for and given up, all from one setting, ``claim_idle_s``.

    Refreshing three times per idle limit leaves two chances to miss before anyone may take over;
    sweeping twice per limit bounds a takeover to about 1.5 limits after the last refresh.
    """

    claim_idle_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.claim_idle_s > 0:
            raise ValueError("claim_idle_s must be > 0")

    @property
    def idle_ms(self) -> int:
        """XAUTOCLAIM's min-idle: a claim idle this long belongs to a dead worker."""
        return max(1, round(self.claim_idle_s * 1000))

    @property
    def heartbeat_s(self) -> float:
        return self.claim_idle_s / 3

    @property
    def sweep_s(self) -> float:
        return self.claim_idle_s / 2

    @property
    def release_idle_ms(self) -> int:
        """The idle time a released claim is given: past the limit, so the next sweep takes it.
        (Twice the limit, not "forever": Redis ignores an idle time longer than its clock.)"""
        return 2 * self.idle_ms

    def expired(self, last_refresh: float, now: float) -> bool:
        """Whether claims last refreshed at ``last_refresh`` (monotonic seconds) may be taken by now."""
        return now - last_refresh >= self.claim_idle_s


def entry_action(event: EventBase | None) -> Literal["claim", "ack"]:
    """What a worker does with a ``sessions:log`` entry: a ``session.started`` is a meeting to claim
    and process; anything else (``session.ended``, an entry that is no event) is acknowledged."""
    return "claim" if event is not None and event.type == "session.started" else "ack"


def validate_name(kind: str, name: str) -> str:
    """A group or consumer name: 1-128 of ``A-Z a-z 0-9 . _ -`` (it goes into key names and logs)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(f"{kind} name must be 1-128 characters of A-Z a-z 0-9 . _ - (got {name!r})")
    return name


@dataclass(slots=True)
class Progress:
    """Where one meeting stands, the rule of the module docstring's checkpoints, without I/O.

    ``read``: the last log entry read (handed out or skipped); ``handled``: the position a
    successor may resume after; ``saved``: what the group's Hash holds. An event handed out counts
    as handled when the next one is asked for; a save is due only when nothing read is left to
    hand out (one save per batch, and before every wait).
    """

    read: str = "0-0"
    handled: str = "0-0"
    saved: str = "0-0"
    #: Events read and not handed out yet.
    unread: int = 0
    #: The event handed out last, until the next is asked for.
    out: str | None = None

    @classmethod
    def resumed(cls, position: str | None) -> Progress:
        at = position or _ORIGIN
        return cls(read=at, handled=at, saved=at)

    def on_read(self, position: str, events: int) -> None:
        """A read up to ``position`` gave ``events`` of this meeting (the rest were skipped)."""
        self.read = position
        self.unread += events
        if not self.unread and self.out is None:
            self.handled = position  # everything read was skipped: handled by definition

    def on_next(self) -> None:
        """The handler asks for the next event: the one it had is handled."""
        if self.out is not None:
            self.handled = self.out if self.unread else self.read
            self.out = None

    def on_out(self, log_id: str) -> None:
        self.unread -= 1
        self.out = log_id

    def due(self) -> str | None:
        """The position to save now, or ``None``: only between batches, and only if it moved."""
        return self.handled if not self.unread and self.handled != self.saved else None


# --- scripts: each touches one key, so they run on a Redis Cluster too ---------------------------

#: KEYS[1] sessions:log; ARGV: group, consumer, idle ms, ids... Refreshes (or, with a large idle,
#: releases) the ids still pending under this consumer; returns those.
_KEEP_SCRIPT: Final = """\
local kept = {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    kept[#kept + 1] = ARGV[i]
  end
end
return kept
"""

#: KEYS[1] sessions:log; ARGV: group, consumer, id. XACK only if the claim is still this consumer's.
_ACK_SCRIPT: Final = """\
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #p == 0 then return 0 end
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
"""

#: KEYS[1] progress; ARGV: owner field, consumer, pos field, position. Saves only for the owner.
_SAVE_SCRIPT: Final = """\
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
return 1
"""

#: KEYS[1] progress; ARGV: owner field, consumer, pos field. Deletes both, for the owner only.
_FORGET_SCRIPT: Final = """\
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1], ARGV[3])
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _entries(reply: Any) -> list[tuple[str, Any]]:
    """The ``(id, fields)`` of an XREAD/XREADGROUP reply of one stream (RESP2 list or RESP3 map)."""
    streams = reply.values() if isinstance(reply, dict) else (entries for _, entries in reply or ())
    out: list[tuple[str, Any]] = []
    for entries in streams:
        out.extend((_text(raw_id), fields) for raw_id, fields in entries)
    return out


# --- a meeting -------------------------------------------------------------------------------------


class Meeting:
    """One meeting a worker holds: an async iterator of its log's events, in order, resumed.

    Iterate it once. The first event is ``session.started`` unless the meeting was resumed after
    :attr:`resumed_from`; the last is ``session.ended``, after which the iteration ends. An event
    counts as handled when the next one is asked for (see the module docstring for when that is
    saved, and what a crash repeats). Reads are :func:`relay.client.log.read_page`'s verified pages,
    so a position trimmed away under a slow handler raises instead of skipping ahead.
    """

    def __init__(self, group: WorkerGroup, session: str, claim_id: str, started: EventBase, resumed_from: str | None) -> None:
        self.session = session
        #: The ``sessions:log`` entry this worker's claim is.
        self.claim_id = claim_id
        #: The ``session.started`` event from ``sessions:log``.
        self.started = started
        #: The position this worker resumed after (a checkpoint), or ``None`` (the meeting's start).
        self.resumed_from = resumed_from
        #: Entries skipped because they were not valid events.
        self.invalid = 0
        self.progress = Progress.resumed(resumed_from)
        self._group = group
        self._key = group.keys.log(session)
        self._buffer: deque[EventBase] = deque()
        self._checked = False
        self._caught_up = False
        self._ended = False
        self._released: Literal["stopping", "claim_lost"] | None = None
        self._raised_release = False

    @property
    def position(self) -> str:
        """The log position up to which this meeting is handled (what a successor resumes after)."""
        return self.progress.handled

    @property
    def released(self) -> bool:
        return self._released is not None

    def _release(self, reason: Literal["stopping", "claim_lost"]) -> None:
        if self._released is None:
            self._released = reason

    def __aiter__(self) -> Meeting:
        return self

    async def __anext__(self) -> EventBase:
        self.progress.on_next()
        if self._ended:
            raise StopAsyncIteration
        backoff = Backoff(initial=0.1, maximum=2.0)
        while not self._buffer:
            try:
                await self._save()
                if self._released is not None:
                    self._raised_release = True
                    raise MeetingReleased(self.session, self._released)
                if not self._checked:
                    await self._check()
                else:
                    await self._read()
            except _CONNECTION_ERRORS as exc:  # the next read verifies the position again
                log.warning("lost Redis reading meeting %r (%s); retrying", self.session, type(exc).__name__)
                await asyncio.sleep(backoff.next_delay())
        event = self._buffer.popleft()
        self.progress.on_out(event.log_id or self.progress.read)
        if is_log_lost(event):
            raise HistoryLost(f"the log of session {self.session!r} was lost before {event.log_id}", self.session)
        if event.type == "session.ended":
            self._ended = True
        return event

    async def _save(self) -> None:
        """Save the handled position when due; a refused save means another worker owns the meeting."""
        due = self.progress.due()
        if due is None:
            return
        if await self._group._save(self.session, due):
            self.progress.saved = due
        else:
            self._release("claim_lost")

    async def _check(self) -> None:
        """:func:`~relay.client.log.check_position` of where this meeting resumes. A missing log is
        waited for up to ``missing_log_s`` when reading from the start (the sessions index may be
        written before the meeting's first entry)."""
        group = self._group
        deadline = time.monotonic() + group.missing_log_s
        while True:
            try:
                await check_position(group.redis, self.session, self.resumed_from, prefix=group.keys.prefix)
            except SessionNotFound:
                left = deadline - time.monotonic()
                if self.resumed_from is not None or left <= 0:
                    raise
                await group.redis.xread({self._key: "$"}, count=1, block=max(1, round(min(group.block_s, left) * 1000)))
                if self._released is not None:
                    return
                continue
            self._checked = True
            return

    async def _read(self) -> None:
        """One verified page after the read position; when caught up, first wait up to ``block_s``
        for the log to grow (``XREAD BLOCK`` only wakes; the page is what is read)."""
        group = self._group
        after = self.progress.read
        if self._caught_up:
            await group.redis.xread({self._key: after}, count=1, block=max(1, round(group.block_s * 1000)))
        page = await read_page(group.redis, self._key, None if after == _ORIGIN else after, session=self.session,
                               count=group.batch)  # fmt: skip
        if not page.verified:  # the position went away under us: say why (raises), or read again
            await check_position(group.redis, self.session, after, prefix=group.keys.prefix)
            self._caught_up = False
            return
        self.invalid += page.invalid
        events = page.events
        for n, event in enumerate(events):
            if event.type == "session.ended":
                events = events[: n + 1]
                break
        self._buffer.extend(events)
        self.progress.on_read(page.position or after, len(events))
        self._caught_up = page.entries < group.batch


#: What :meth:`WorkerGroup.run` calls for each meeting it holds.
MeetingHandler = Callable[[Meeting], Awaitable[None]]


# --- the group -------------------------------------------------------------------------------------


class WorkerGroup:
    """One worker of a group; see the module docstring for claims, checkpoints and takeover.

    :param redis_url: the relay's Redis (``RELAY_REDIS_URL``).
    :param group: the group's name; workers with the same name share its meetings.
    :param consumer: this worker's name, unique in the group (default: host, pid and a random
        suffix). A worker restarted under the same name resumes its own meetings at once.
    :param prefix: the relay's ``RELAY_REDIS_CHANNEL_PREFIX``.
    :param max_meetings: meetings this worker handles at once.
    :param claim_idle_s: a claim not refreshed for this long is taken over (same in every worker).
    :param start: where a group created now begins: ``"latest"`` (meetings started from now on)
        or ``"earliest"`` (every meeting still in ``sessions:log``). An existing group is kept.
    :param batch: entries per read of a meeting's log (the most a crash repeats).
    :param block_s: the longest a read of a live meeting waits before it looks at stop and claim state.
    :param stop_grace_s: how long :meth:`stop` waits for handlers before cancelling them.
    :param missing_log_s: how long a claimed meeting's log may be missing before :class:`SessionNotFound`.
    :param redis: an existing client to use instead of ``redis_url`` (not closed by this one).
    """

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        *,
        group: str,
        consumer: str | None = None,
        prefix: str = "relay",
        max_meetings: int = 16,
        claim_idle_s: float = 30.0,
        start: Literal["latest", "earliest"] = "latest",
        batch: int = 100,
        block_s: float = 1.0,
        stop_grace_s: float = 10.0,
        missing_log_s: float = 10.0,
        redis: Redis | None = None,
    ) -> None:
        self.group = validate_name("group", group)
        default = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.consumer = validate_name("consumer", consumer if consumer is not None else _safe(default))
        if max_meetings < 1:
            raise ValueError("max_meetings must be >= 1")
        if batch < 1:
            raise ValueError("batch must be >= 1")
        if not block_s > 0 or stop_grace_s < 0 or missing_log_s < 0:
            raise ValueError("block_s must be > 0; stop_grace_s and missing_log_s >= 0")
        if start not in ("latest", "earliest"):
            raise ValueError("start must be 'latest' or 'earliest'")
        self.timing = ClaimTiming(claim_idle_s)
        self.keys = LogKeys(prefix)
        self.progress = self.keys.group_progress(self.group)
        self.max_meetings = max_meetings
        self.start = start
        self.batch = batch
        self.block_s = block_s
        self.stop_grace_s = stop_grace_s
        self.missing_log_s = missing_log_s
        #: Meetings this worker finished (handler returned; acknowledged).
        self.finished = 0
        #: Meetings this worker took over from another (idle) claim.
        self.taken_over = 0
        #: ``sessions:log`` entries that were no event.
        self.invalid = 0
        self._owns_redis = redis is None
        self.redis: Redis = redis if redis is not None else Redis.from_url(redis_url, socket_connect_timeout=2.0)
        self._keep = self.redis.register_script(_KEEP_SCRIPT)
        self._ack = self.redis.register_script(_ACK_SCRIPT)
        self._save_script = self.redis.register_script(_SAVE_SCRIPT)
        self._forget = self.redis.register_script(_FORGET_SCRIPT)
        self._active: dict[str, tuple[Meeting, asyncio.Task[None]]] = {}  # by claim id
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._failure: BaseException | None = None
        self._running = False

    @property
    def active(self) -> list[str]:
        """The session ids of the meetings this worker holds now."""
        return [meeting.session for meeting, _ in self._active.values()]

    # --- lifecycle ---------------------------------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the consumer group (and ``sessions:log``) unless it exists."""
        try:
            await self.redis.xgroup_create(
                self.keys.sessions_log, self.group, id="0" if self.start == "earliest" else "$", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def __aenter__(self) -> WorkerGroup:
        try:
            await self.ensure_group()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_redis:
            await self.redis.aclose()

    def stop(self) -> None:
        """Stop taking meetings and release those held (see the module docstring); :meth:`run` returns."""
        self._stopping.set()
        for meeting, _ in self._active.values():
            meeting._release("stopping")

    # --- running -----------------------------------------------------------------------------------

    async def run(self, handler: MeetingHandler) -> None:
        """Handle meetings with ``handler`` until :meth:`stop`; raises what a handler let escape."""
        if self._running:
            raise RuntimeError("run() is already running")
        self._running = True
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"workers {self.group} heartbeat")
        try:
            await self.ensure_group()
            await self._serve(handler)
        finally:
            self.stop()
            await self._drain()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._running = False
        if self._failure is not None:
            raise self._failure

    async def _serve(self, handler: MeetingHandler) -> None:
        backoff = Backoff(initial=0.1, maximum=5.0)
        # First what a previous process under this name left claimed (as many as fit; the rest go
        # idle and are swept like a dead worker's).
        own_pending = True
        next_sweep = 0.0
        while not self._stopping.is_set():
            free = self.max_meetings - len(self._active)
            if free <= 0:
                self._slot_free.clear()
                await _wait_any(self._slot_free, self._stopping)
                continue
            try:
                now = time.monotonic()
                if own_pending:
                    entries = await self._read_group("0", free, block_ms=None)
                    own_pending = False
                    taken = False
                elif now >= next_sweep:
                    entries = await self._sweep(free)
                    next_sweep = now + self.timing.sweep_s
                    taken = True
                else:
                    wait = min(self.block_s, next_sweep - now, self.timing.sweep_s)
                    entries = await self._read_group(">", free, block_ms=max(1, round(wait * 1000)))
                    taken = False
                backoff.reset()
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                log.warning("worker group %s: Redis unreachable (%s); retrying", self.group, type(exc).__name__)
                await _sleep_unless(self._stopping, backoff.next_delay())
                continue
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("worker group %s: the group is gone; creating it again", self.group)
                await self.ensure_group()
                continue
            if self._stopping.is_set():  # read while stopping: acknowledge what needs no claim, hand claims on
                claims = [i for i, fields in entries if entry_action(self._entry_event(i, fields)) == "claim"]
                with contextlib.suppress(RedisError, OSError):
                    done = [i for i, _ in entries if i not in claims]
                    if done:
                        await self.redis.xack(self.keys.sessions_log, self.group, *done)
                    await self._release_claims([i for i in claims if i not in self._active])
                break
            for entry_id, fields in entries:
                await self._dispatch(handler, entry_id, fields, taken_over=taken)

    async def _read_group(self, after: str, count: int, block_ms: int | None) -> list[tuple[str, Any]]:
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.keys.sessions_log: after}, count=count, block=block_ms
        )
        return _entries(reply)

    async def _sweep(self, free: int) -> list[tuple[str, Any]]:
        """Take over up to ``free`` claims idle past the limit (a dead worker's), walking the whole PEL."""
        out: list[tuple[str, Any]] = []
        cursor = _ORIGIN
        while len(out) < free:
            reply = await self.redis.xautoclaim(
                self.keys.sessions_log, self.group, self.consumer, self.timing.idle_ms, cursor, count=free - len(out)
            )
            cursor = _text(reply[0])
            out.extend((_text(raw_id), fields) for raw_id, fields in reply[1] if fields is not None)
            if cursor == _ORIGIN:
                break
        return out

    def _entry_event(self, entry_id: str, fields: Any) -> EventBase | None:
        """A ``sessions:log`` entry's event; ``None`` (counted, logged) when it is none."""
        try:
            return decode_entry(entry_id, fields) if isinstance(fields, dict) else None
        except (ValidationError, KeyError, ValueError):
            self.invalid += 1
            log.warning("worker group %s: sessions:log entry %s is no event; acknowledged", self.group, entry_id)
            return None

    async def _dispatch(self, handler: MeetingHandler, entry_id: str, fields: Any, *, taken_over: bool) -> None:
        if entry_id in self._active:
            return  # ours already (a late heartbeat let the sweep see it): refreshed now
        event = self._entry_event(entry_id, fields)
        if entry_action(event) == "ack" or event is None:
            await self.redis.xack(self.keys.sessions_log, self.group, entry_id)
            return
        session = event.session.id
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.progress, f"owner:{session}", self.consumer)
            pipe.hget(self.progress, f"pos:{session}")
            _, saved = await pipe.execute()
        resumed = _text(saved) if saved is not None else None
        if taken_over:
            self.taken_over += 1
            log.info("worker %s took over meeting %r (from %s)", self.consumer, session, resumed or "its start")
        meeting = Meeting(self, session, entry_id, event, resumed)
        task = asyncio.create_task(self._handle(handler, meeting), name=f"meeting {session}")
        self._active[entry_id] = (meeting, task)

    async def _handle(self, handler: MeetingHandler, meeting: Meeting) -> None:
        try:
            await handler(meeting)
        except MeetingReleased:
            pass
        except asyncio.CancelledError:
            if not meeting.released:
                raise
        except BaseException as exc:  # the handler's failure stops the worker (module docstring)
            log.error("worker %s: the handler failed on meeting %r", self.consumer, meeting.session, exc_info=exc)
            meeting._release("claim_lost")  # not acknowledged, not released: retried after claim_idle_s
            if self._failure is None:
                self._failure = exc
            self.stop()
        else:
            # Returning is "done", unless the handler returned from a MeetingReleased it caught.
            if not meeting._raised_release:
                await self._finish(meeting)
                return
        finally:
            self._active.pop(meeting.claim_id, None)
            self._slot_free.set()
        if meeting._released == "stopping":
            await self._hand_on(meeting)

    async def _hand_on(self, meeting: Meeting) -> None:
        """A stopping worker's meeting: save what its handler handled (if due; a cancelled one may
        be mid-batch) and release the claim for an immediate takeover."""
        with contextlib.suppress(RedisError, OSError):
            if meeting.progress.handled != meeting.progress.saved:
                await self._save(meeting.session, meeting.progress.handled)
            await self._release_claims([meeting.claim_id])

    async def _finish(self, meeting: Meeting) -> None:
        """Acknowledge the claim (only if still ours), then drop the meeting's checkpoint."""
        acked = await self._ack(keys=[self.keys.sessions_log], args=[self.group, self.consumer, meeting.claim_id])
        await self._forget(keys=[self.progress], args=[f"owner:{meeting.session}", self.consumer, f"pos:{meeting.session}"])
        if acked:
            self.finished += 1

    async def _save(self, session: str, position: str) -> bool:
        saved = await self._save_script(
            keys=[self.progress], args=[f"owner:{session}", self.consumer, f"pos:{session}", position]
        )
        return bool(saved)

    async def _heartbeat(self) -> None:
        """Refresh every claim held; a claim no longer ours, or all after ``claim_idle_s`` without
        reaching Redis, is given up."""
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self.timing.heartbeat_s)
            held = list(self._active)
            if not held:
                last_ok = time.monotonic()
                continue
            try:
                kept = await self._keep(keys=[self.keys.sessions_log], args=[self.group, self.consumer, 0, *held])
            except (RedisError, OSError) as exc:
                log.warning("worker %s: heartbeat failed (%s)", self.consumer, type(exc).__name__)
                if self.timing.expired(last_ok, time.monotonic()):
                    for meeting, _ in list(self._active.values()):
                        meeting._release("claim_lost")
                continue
            last_ok = time.monotonic()
            still = {_text(k) for k in kept}
            for claim_id in held:
                if claim_id not in still and claim_id in self._active:
                    meeting = self._active[claim_id][0]
                    log.warning("worker %s lost meeting %r to another worker", self.consumer, meeting.session)
                    meeting._release("claim_lost")

    async def _drain(self) -> None:
        """Wait for handlers (``stop_grace_s``), then cancel the rest (each releases its claim)."""
        tasks = [task for _, task in self._active.values()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.stop_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _release_claims(self, claim_ids: list[str]) -> None:
        """Make claims still ours idle past the limit, so the next sweep of any worker takes them."""
        if claim_ids:
            await self._keep(
                keys=[self.keys.sessions_log], args=[self.group, self.consumer, self.timing.release_idle_ms, *claim_ids]
            )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:128]


async def _wait_any(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep_unless(event: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), delay)
