"""The durable per-meeting log, read back: replay a meeting, follow it, resume everything.

The relay appends every text event to its session's Redis Stream (``<prefix>:log:{<session>}``,
:class:`relay.channels.LogKeys`; docs/events.md, "The log"). Each entry holds the event's JSON in
field :data:`~relay.channels.LOG_FIELD`, and the entry id is the event's ``log_id``: its
**position**. A position ``P`` (``"<ms>-<seq>"``) means "everything strictly after ``P``";
``None`` means "from the start of the meeting". Save the ``log_id`` of the last event you handled
and resume from it::

    from relay.client import RelayLog

    async with RelayLog("redis://127.0.0.1:6379/0") as log:
        async for event in log.replay(session_id):                 # the whole meeting, then stop
            print(event.log_id, event.type)
        async for event in log.follow(session_id, from_=saved):    # resume, then live until session.ended
            handle(event)
            saved = event.log_id

        follower = log.follow_all(from_=Checkpoint.from_json(saved_blob))   # every meeting
        async for event in follower:
            handle(event)
            saved_blob = follower.checkpoint.to_json()

**Told, never handed a partial meeting.** Before reading, and whenever a read finds that its
position is no longer in the stream, :func:`check_position` says why, as a
:class:`~relay.errors.LogError`:

* :class:`~relay.errors.BadPosition`: not ``<ms>-<seq>``.
* :class:`~relay.errors.SessionNotFound`: the session has no log (never seen, or expired).
* :class:`~relay.errors.HistoryTrimmed`: retention removed entries the reader has not seen (the
  position, or, reading from the start, the meeting's beginning). ``allow_trimmed=True`` reads
  what remains instead.
* :class:`~relay.errors.HistoryLost`: the stream does not hold the position and retention did not
  remove it, so the stream was recreated (Redis restarted without persistence); or the reader met
  a ``session.started`` entry whose ``payload.reason`` is ``"log_lost"`` (the relay writes one
  when it notices the loss). ``allow_lost=True`` reads on from there (the marker is delivered).

How trimmed is told from lost: Redis 7.0's ``XINFO STREAM`` counts ``entries-added`` over the
stream's life, so ``entries-added > length`` means entries were removed. Trimming (``MAXLEN ~``,
whole radix-tree nodes) does **not** move ``max-deleted-entry-id`` in Redis 7.0 (only ``XDEL``
does; measured, tests/client/test_log.py), so both are looked at. A recreated stream that has
itself been trimmed since is reported as trimmed: either way the reader is told. Redis >= 7.0 is
required.

**Verified reads.** Every page is ``XRANGE key P + COUNT n+1``, inclusive of ``P``: if the first
entry is not ``P`` itself, ``P`` is gone (trimmed under a slow reader, or lost in a restart) and
the reader is told instead of being handed what follows. ``XREAD BLOCK`` only wakes a follower;
what it reads comes from verified pages.

This module imports only the schema, the channel names, the errors, the backoff, redis, pydantic
and orjson, so a consumer gets no part of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.channels import DEFAULT_REDIS_URL, LOG_FIELD, LogKeys
from relay.core.backoff import Backoff
from relay.errors import BadPosition, HistoryLost, HistoryTrimmed, SessionNotFound
from relay.schema import EventBase, SessionLifecycleEvent, parse_event

__all__ = [
    "Checkpoint",
    "LogFollower",
    "Page",
    "RelayLog",
    "check_position",
    "decode_entry",
    "is_log_lost",
    "parse_position",
    "read",
    "read_page",
    "read_since",
]

log = logging.getLogger("relay.client.log")

#: The position before every entry: "from the start".
START: Final = "0-0"
_POSITION: Final = re.compile(r"\A(\d{1,20})-(\d{1,20})\Z")
_U64: Final = 2**64
#: Errors after which a follower reconnects (the position it holds is verified on the next read).
_CONNECTION_ERRORS: Final = (RedisConnectionError, RedisTimeoutError, OSError)


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_position(position: str | bytes | None) -> tuple[int, int] | None:
    """``"<ms>-<seq>"`` as a comparable pair; ``None`` (and ``"0-0"``) is the start.

    :raises BadPosition: anything else (an abbreviated id, a negative number, text).

    >>> parse_position("1733130000000-3")
    (1733130000000, 3)
    >>> parse_position(None) is None
    True
    """
    if position is None:
        return None
    text = _str(position) if isinstance(position, (bytes, str)) else None
    match = _POSITION.match(text) if text is not None else None
    if text is None or match is None:
        raise BadPosition(f"not a log position (want <ms>-<seq>, e.g. 1733130000000-0): {str(position)[:64]!r}")
    ms, seq = int(match[1]), int(match[2])
    if ms >= _U64 or seq >= _U64:
        raise BadPosition(f"not a log position (out of range): {text[:64]!r}")
    return None if (ms, seq) == (0, 0) else (ms, seq)


def _normal(position: str | bytes | None) -> str | None:
    """The position in canonical form (``None`` for the start), validated."""
    pair = parse_position(position)
    return None if pair is None else f"{pair[0]}-{pair[1]}"


def decode_entry(entry_id: bytes | str, fields: Mapping[Any, Any]) -> EventBase:
    """One stream entry as its event, with ``log_id`` set to the entry id.

    :raises ValidationError: the entry is not a relay event (:func:`relay.schema.parse_event`).
    :raises KeyError: the entry has no :data:`~relay.channels.LOG_FIELD`.
    """
    body = fields.get(LOG_FIELD.encode())
    if body is None:
        body = fields[LOG_FIELD]
    event = parse_event(body)
    return event.model_copy(update={"log_id": _str(entry_id)})


def is_log_lost(event: EventBase) -> bool:
    """The relay's marker that a session's log was lost before this entry (``session.started``
    with ``payload.reason == "log_lost"``)."""
    return isinstance(event, SessionLifecycleEvent) and event.type == "session.started" and event.payload.reason == "log_lost"


# --- the rules ---------------------------------------------------------------------------------


async def _check_key(
    redis: Redis, key: str, position: str | None, *, name: str, allow_trimmed: bool = False, allow_lost: bool = False
) -> str | None:
    """:func:`check_position` for one stream key; returns where to read after (``None``: the
    start), which differs from ``position`` only when an ``allow_*`` flag accepted a gap."""
    if position is not None and await redis.xrange(key, position, position, count=1):
        return position
    try:
        info = await redis.xinfo_stream(key)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            raise SessionNotFound(f"no log for session {name!r} (never seen, or past its retention)", name) from None
        raise
    length = int(info["length"])
    added = info.get("entries-added")
    removed = added is not None and int(added) > length
    first_entry = info.get("first-entry")
    first = parse_position(first_entry[0]) if first_entry else None
    if position is None:
        if removed and not allow_trimmed:
            raise HistoryTrimmed(
                f"the start of session {name!r} was removed by retention (the log now begins at "
                f"{_str(first_entry[0]) if first_entry else 'nothing'}); pass allow_trimmed to read what remains",
                name,
            )
        return None
    pos = parse_position(position)
    last = parse_position(info.get("last-generated-id") or START)
    max_deleted = parse_position(info.get("max-deleted-entry-id") or START)
    trimmed = (max_deleted is not None and pos is not None and max_deleted >= pos) or (
        removed and (first is None or (pos is not None and first > pos))
    )
    beyond = pos is not None and (last is None or pos > last)
    if trimmed and not beyond:
        if allow_trimmed:
            return None
        raise HistoryTrimmed(
            f"position {position} of session {name!r} was removed by retention: entries after it are gone; "
            "pass allow_trimmed to read what remains",
            name,
        )
    if allow_lost:
        return None
    raise HistoryLost(
        f"the log of session {name!r} does not hold position {position} and retention did not remove it: "
        "the log was lost (Redis restarted without persistence?) and what came before is gone",
        name,
    )


async def check_position(
    redis: Redis,
    session: str,
    position: str | None,
    *,
    prefix: str = "relay",
    allow_trimmed: bool = False,
    allow_lost: bool = False,
) -> str | None:
    """Check that a reader of ``session`` from ``position`` would get the whole rest of the meeting.

    Returns the position to read after: ``position`` itself (canonical), or ``None`` (the start of
    what the log holds) when ``allow_trimmed``/``allow_lost`` accepted a gap.

    :raises BadPosition: ``position`` is not ``<ms>-<seq>``.
    :raises SessionNotFound: the session has no log.
    :raises HistoryTrimmed: retention removed the position (or the meeting's start, for ``None``).
    :raises HistoryLost: the stream does not hold the position and retention did not remove it.
    """
    normal = _normal(position)
    key = LogKeys(prefix).log(session)
    return await _check_key(redis, key, normal, name=session, allow_trimmed=allow_trimmed, allow_lost=allow_lost)


# --- pages -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Page:
    """One verified read of a stream: its events (filtered), and where the next read starts."""

    events: list[EventBase]
    #: The id of the last entry read (filtered out or not), or the position read after.
    position: str | None
    #: How many entries the stream returned after the position (before filtering).
    entries: int
    #: False when the position was not in the stream: nothing was read (see :func:`check_position`).
    verified: bool = True
    #: Entries skipped because they are not relay events.
    invalid: int = 0


async def read_page(redis: Redis, key: str, after: str | None, *, session: str | None, count: int) -> Page:
    """Up to ``count`` entries of stream ``key`` strictly after ``after``, verified: the read is
    inclusive of ``after``, and ``verified`` is False (no events) when ``after`` is not there.
    Events of another session (``session`` given; sanitized ids may share a key) are skipped."""
    raw: Any
    if after is None:
        raw = await redis.xrange(key, "-", "+", count=count)
    else:
        raw = await redis.xrange(key, after, "+", count=count + 1)
        if not raw or _str(raw[0][0]) != after:
            return Page([], after, 0, verified=False)
        raw = raw[1:]
    return _page(raw, after, session)


def _page(raw: list[Any], after: str | None, session: str | None) -> Page:
    events: list[EventBase] = []
    invalid = 0
    for entry_id, fields in raw:
        try:
            event = decode_entry(entry_id, fields)
        except (ValidationError, KeyError, orjson.JSONDecodeError, ValueError):
            invalid += 1
            log.warning("skipped log entry %s: not a relay event", _str(entry_id))
            continue
        if session is None or event.session.id == session:
            events.append(event)
    position = _str(raw[-1][0]) if raw else after
    return Page(events, position, len(raw), invalid=invalid)


async def read(
    redis: Redis,
    session: str,
    after: str | None = None,
    *,
    count: int = 500,
    prefix: str = "relay",
    allow_trimmed: bool = False,
    allow_lost: bool = False,
) -> AsyncIterator[EventBase]:
    """The events of ``session``'s log strictly after ``after`` (``None``: from the start), in
    order, up to the end of the log as it is while reading; pages of ``count`` entries.

    Raises as :func:`check_position` does, before the first event or when a page finds the
    position gone; and :class:`~relay.errors.HistoryLost` at a ``log_lost`` marker unless
    ``allow_lost`` (then the marker is yielded and reading goes on).
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    key = LogKeys(prefix).log(session)
    position = await check_position(redis, session, after, prefix=prefix, allow_trimmed=allow_trimmed, allow_lost=allow_lost)
    while True:
        page = await read_page(redis, key, position, session=session, count=count)
        if not page.verified:
            position = await _check_key(redis, key, position, name=session, allow_trimmed=allow_trimmed, allow_lost=allow_lost)
            continue
        for event in page.events:
            _raise_if_lost(event, session, allow_lost)
            yield event
        position = page.position
        if page.entries < count:
            return


async def read_since(
    redis: Redis, session: str, since_ms: int, *, count: int = 500, prefix: str = "relay", allow_lost: bool = False
) -> AsyncIterator[EventBase]:
    """The events of ``session``'s log appended after a time (Unix ms, Redis' clock: entry ids
    are its time), for a reader that holds no position; nothing if the session has no log. Not
    verified (a time is not an entry); a ``log_lost`` marker raises as in :func:`read`."""
    key = LogKeys(prefix).log(session)
    after = f"{max(since_ms, 0)}-0"
    while True:
        raw: Any = await redis.xrange(key, f"({after}", "+", count=count)
        page = _page(raw, after, session)
        for event in page.events:
            _raise_if_lost(event, session, allow_lost)
            yield event
        if page.entries < count or page.position is None:
            return
        after = page.position


def _raise_if_lost(event: EventBase, session: str, allow_lost: bool) -> None:
    if not allow_lost and is_log_lost(event):
        raise HistoryLost(
            f"the log of session {session!r} was lost before {event.log_id} (a log_lost marker): what came "
            "before it is gone; pass allow_lost to read on",
            session,
        )


# --- the client --------------------------------------------------------------------------------


@dataclass(slots=True)
class Checkpoint:
    """Where a follower of every session stands: save it, and resume from it.

    * ``discovery``: the position in ``<prefix>:sessions:log`` read up to (``"0-0"``: its start).
    * ``sessions``: each meeting in progress -> the ``log_id`` of the last event delivered
      (``"0-0"``: none yet, read from its start). A meeting leaves the mapping once its
      ``session.ended`` was delivered.

    Its JSON form (:meth:`to_json`) is ``{"discovery": "<id>", "sessions": {"<session id>": "<id>"}}``.
    """

    discovery: str = START
    sessions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps({"discovery": self.discovery, "sessions": self.sessions})

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        """:raises BadPosition: not a checkpoint, or a position in it is not one."""
        try:
            value = orjson.loads(data)
            discovery, sessions = value["discovery"], value["sessions"]
        except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
            raise BadPosition(f"not a checkpoint: {type(exc).__name__}") from None
        if not isinstance(discovery, str) or not isinstance(sessions, dict):
            raise BadPosition("not a checkpoint: discovery must be a position, sessions a mapping")
        out = cls(_normal(discovery) or START, {})
        for name, position in sessions.items():
            if not isinstance(position, str):
                raise BadPosition(f"not a checkpoint: the position of {name!r} is not a string")
            out.sessions[name] = _normal(position) or START
        return out

    def copy(self) -> Checkpoint:
        return Checkpoint(self.discovery, dict(self.sessions))


class RelayLog:
    """Reads the relay's durable per-meeting log; see the module docstring.

    :param redis_url: the relay's Redis (``RELAY_REDIS_URL``).
    :param prefix: the relay's ``RELAY_REDIS_CHANNEL_PREFIX``.
    :param redis: an existing client to use instead of ``redis_url`` (not closed by this one).
    :param page: entries per ``XRANGE`` read.
    :param block_ms: how long one ``XREAD BLOCK`` of a follower waits before asking again.
    :param reconnect: followers reconnect after a lost connection (the position is then
        verified, so a Redis that came back without the log is told as
        :class:`~relay.errors.HistoryLost`); else the error propagates.
    """

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        *,
        prefix: str = "relay",
        redis: Redis | None = None,
        page: int = 500,
        block_ms: int = 5_000,
        reconnect: bool = True,
    ) -> None:
        if page < 1:
            raise ValueError("page must be >= 1")
        if block_ms < 1:
            raise ValueError("block_ms must be >= 1")
        self.prefix = prefix
        self.keys = LogKeys(prefix)
        self.page = page
        self.block_ms = block_ms
        self.reconnect = reconnect
        #: Times a follower re-established its connection after losing it.
        self.reconnects = 0
        self._owns_redis = redis is None
        self.redis = redis if redis is not None else Redis.from_url(redis_url, socket_connect_timeout=2.0)

    async def aclose(self) -> None:
        if self._owns_redis:
            await self.redis.aclose()

    async def __aenter__(self) -> RelayLog:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- one session -------------------------------------------------------------------------

    async def check(
        self, session: str, position: str | None = None, *, allow_trimmed: bool = False, allow_lost: bool = False
    ) -> str | None:
        """:func:`check_position` with this log's Redis and prefix."""
        return await check_position(
            self.redis, session, position, prefix=self.prefix, allow_trimmed=allow_trimmed, allow_lost=allow_lost
        )

    def replay(
        self, session: str, from_: str | None = None, *, allow_trimmed: bool = False, allow_lost: bool = False
    ) -> AsyncIterator[EventBase]:
        """The meeting's events after ``from_`` (``None``: the whole meeting), ending at the end of
        the log as it is while reading; it never waits for a live meeting."""
        return read(self.redis, session, from_, count=self.page, prefix=self.prefix,
                    allow_trimmed=allow_trimmed, allow_lost=allow_lost)  # fmt: skip

    async def follow(
        self, session: str, from_: str | None = None, *, allow_trimmed: bool = False, allow_lost: bool = False
    ) -> AsyncIterator[EventBase]:
        """:meth:`replay`, then the meeting's new events as they are appended, until its
        ``session.ended`` was yielded (or the caller stops iterating)."""
        key = self.keys.log(session)
        position = await self.check(session, from_, allow_trimmed=allow_trimmed, allow_lost=allow_lost)
        backoff = Backoff(initial=0.1, maximum=5.0)
        caught_up = False
        while True:
            try:
                if caught_up:
                    await self.redis.xread({key: position or START}, count=1, block=self.block_ms)
                page = await read_page(self.redis, key, position, session=session, count=self.page)
                if not page.verified:
                    try:
                        position = await _check_key(self.redis, key, position, name=session,
                                                    allow_trimmed=allow_trimmed, allow_lost=allow_lost)  # fmt: skip
                    except SessionNotFound:  # it was there when following began
                        raise HistoryLost(f"the log of session {session!r} disappeared while it was followed", session) from None
                    caught_up = False
                    continue
            except _CONNECTION_ERRORS as exc:
                if not self.reconnect:
                    raise
                log.warning("lost Redis while following session %r (%s); reconnecting", session, type(exc).__name__)
                await asyncio.sleep(backoff.next_delay())
                self.reconnects += 1
                caught_up = False
                continue
            backoff.reset()
            for event in page.events:
                _raise_if_lost(event, session, allow_lost)
                yield event
                if event.type == "session.ended":
                    return
            position = page.position
            caught_up = page.entries < self.page

    # --- every session -----------------------------------------------------------------------

    def follow_all(
        self, from_: Checkpoint | None = None, *, allow_trimmed: bool = False, allow_lost: bool = False
    ) -> LogFollower:
        """Every meeting: those in progress, from where ``from_`` left them, and every meeting
        that starts after, from its start. ``from_=None`` starts with every meeting the sessions
        index (``<prefix>:sessions``) holds now, each from its start (meetings whose log expired
        are skipped). Iterate the returned :class:`LogFollower`; save its :attr:`~LogFollower.checkpoint`."""
        return LogFollower(self, from_, allow_trimmed=allow_trimmed, allow_lost=allow_lost)

    async def sessions(self, since_ms: int | None = None) -> list[str]:
        """Session ids in the sessions index, oldest first; ``since_ms``: started at or after (Unix ms)."""
        raw: Any = await self.redis.zrangebyscore(self.keys.sessions, "-inf" if since_ms is None else since_ms, "+inf")
        return [_str(member) for member in raw]


class LogFollower:
    """Every session's events, from a :class:`Checkpoint`; made by :meth:`RelayLog.follow_all`.

    An async iterator. Events of one session come in log order; sessions interleave. After
    handling an event, :attr:`checkpoint` is where to resume so that every later event, and none
    before, is delivered again. Raises as :func:`check_position` does for any session (and for
    the discovery stream, ``<prefix>:sessions:log``).
    """

    def __init__(self, relay_log: RelayLog, start: Checkpoint | None, *, allow_trimmed: bool, allow_lost: bool) -> None:
        self._log = relay_log
        self._state = start.copy() if start is not None else None
        self.allow_trimmed = allow_trimmed
        self.allow_lost = allow_lost
        self._iter: AsyncGenerator[EventBase, None] | None = None
        #: Sessions dropped because their log was gone when read from the start (expired).
        self.skipped: list[str] = []
        # Sessions seen to end (in the sessions log, or their session.ended delivered: its log_id),
        # and those that the sessions log says were reopened while they were followed.
        self._ended: dict[str, str | None] = {}
        self._reopened: set[str] = set()

    @property
    def checkpoint(self) -> Checkpoint:
        """A copy of where this follower stands (see :class:`Checkpoint`)."""
        return self._state.copy() if self._state is not None else Checkpoint()

    def __aiter__(self) -> AsyncIterator[EventBase]:
        return self

    async def __anext__(self) -> EventBase:
        if self._iter is None:
            self._iter = self._run()
        return await self._iter.__anext__()

    async def aclose(self) -> None:
        if self._iter is not None:
            with contextlib.suppress(RuntimeError):
                await self._iter.aclose()

    async def _initial(self) -> Checkpoint:
        """Every session in the index now, from its start, and discovery from the tail of the
        sessions log, read atomically: a session that starts after is in the log after it."""
        redis, keys = self._log.redis, self._log.keys
        pipe = redis.pipeline(transaction=True)
        pipe.xrevrange(keys.sessions_log, "+", "-", count=1)
        pipe.zrange(keys.sessions, 0, -1)
        tail: Any
        members: Any
        tail, members = await pipe.execute()
        discovery = _str(tail[0][0]) if tail else START
        return Checkpoint(discovery, {_str(m): START for m in members})

    async def _run(self) -> AsyncGenerator[EventBase, None]:
        relay_log = self._log
        redis, keys, page_size = relay_log.redis, relay_log.keys, relay_log.page
        if self._state is None:
            self._state = await self._initial()
        state = self._state
        backoff = Backoff(initial=0.1, maximum=5.0)
        # Sessions (and the discovery stream, None) with something to read, or to verify.
        dirty: set[str | None] = {None, *state.sessions}
        checked: set[str | None] = set()
        while True:
            try:
                if not dirty:
                    await self._wait(state)
                    dirty = {None, *state.sessions}
                # Discovery first, so a session that started is read in the same round.
                if None in dirty:
                    discovery = None if state.discovery == START else state.discovery
                    if None not in checked:
                        if discovery is not None or await redis.exists(keys.sessions_log):
                            discovery = await self._check(keys.sessions_log, discovery, "<sessions log>")
                        checked.add(None)
                    page = await read_page(redis, keys.sessions_log, discovery, session=None, count=page_size)
                    if not page.verified:
                        checked.discard(None)
                        continue
                    for event in page.events:
                        self._discovered(event, state, dirty)
                    state.discovery = page.position or START
                    if page.entries < page_size:
                        dirty.discard(None)
                for session in sorted(s for s in dirty if s is not None):
                    async for event in self._drain(session, checked, dirty):
                        yield event
            except _CONNECTION_ERRORS as exc:
                if not relay_log.reconnect:
                    raise
                log.warning("lost Redis while following every session (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(backoff.next_delay())
                relay_log.reconnects += 1
                dirty = {None, *state.sessions}
                checked.clear()
                continue
            backoff.reset()

    async def _drain(self, session: str, checked: set[str | None], dirty: set[str | None]) -> AsyncIterator[EventBase]:
        """One page of one session (verified), its events yielded with the checkpoint advanced."""
        state = self._state
        assert state is not None
        redis, key = self._log.redis, self._log.keys.log(session)
        saved = state.sessions.get(session)
        if saved is None:
            dirty.discard(session)
            return
        position = None if saved == START else saved
        if session not in checked:
            try:
                position = await self._check(key, position, session)
            except SessionNotFound:
                if position is not None:
                    raise
                # Expired, or not written yet (the index or sessions log can be ahead of it).
                if session in self._ended or await redis.zscore(self._log.keys.sessions, session) is None:
                    self.skipped.append(session)
                    del state.sessions[session]
                dirty.discard(session)
                return
            checked.add(session)
            state.sessions[session] = position or START
        page = await read_page(redis, key, position, session=session, count=self._log.page)
        if not page.verified:
            checked.discard(session)
            return  # still dirty: checked (and raised, or accepted) in the next round
        for event in page.events:
            _raise_if_lost(event, session, self.allow_lost)
            state.sessions[session] = event.log_id or START
            if event.type == "session.ended":
                if session in self._reopened:  # it goes on after this end: keep following it
                    self._reopened.discard(session)
                    yield event
                    continue
                del state.sessions[session]
                self._ended[session] = event.log_id
                dirty.discard(session)
                checked.discard(session)
                yield event
                return
            yield event
        state.sessions[session] = page.position or START
        if page.entries < self._log.page:
            dirty.discard(session)

    def _discovered(self, event: EventBase, state: Checkpoint, dirty: set[str | None]) -> None:
        """A sessions-log entry: a meeting to follow from its start, or one that was reopened
        (``session.started`` with reason ``reopened``) to follow on after its end."""
        session = event.session.id
        if event.type == "session.ended":
            self._ended.setdefault(session, None)
            return
        if event.type != "session.started":
            return
        reopened = isinstance(event, SessionLifecycleEvent) and event.payload.reason == "reopened"
        if session in state.sessions:
            if reopened:
                self._reopened.add(session)
            return
        if session in self._ended:
            ended_at = self._ended[session]
            if not reopened or ended_at is None:
                return
            del self._ended[session]
            state.sessions[session] = ended_at
        else:
            state.sessions[session] = START
        dirty.add(session)

    async def _check(self, key: str, position: str | None, name: str) -> str | None:
        return await _check_key(self._log.redis, key, position, name=name,
                                allow_trimmed=self.allow_trimmed, allow_lost=self.allow_lost)  # fmt: skip

    async def _wait(self, state: Checkpoint) -> None:
        """Block until any followed stream (or the sessions log) has an entry after its position."""
        keys = self._log.keys
        streams: dict[str, str] = {}
        for session, position in state.sessions.items():
            key = keys.log(session)
            streams[key] = min(streams.get(key, position), position, key=lambda p: parse_position(p) or (0, 0))
        streams[keys.sessions_log] = state.discovery
        await self._log.redis.xread(streams, count=1, block=self._log.block_ms)  # type: ignore[arg-type]
