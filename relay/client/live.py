"""The consumer client: typed relay events from Redis, without hand-parsing channels or JSON.

::

    from relay.client import RelayClient

    async with RelayClient("redis://127.0.0.1:6379/0", source="recall", type="transcript.*") as client:
        async for event in client:
            print(event.session.id, event.participant and event.participant.name, event.payload.text)

Filters map onto Redis ``PSUBSCRIBE`` patterns through :class:`~relay.channels.ChannelScheme`, the
same code that names the channels the relay publishes on, so the two cannot drift apart. Each
event arrives as its schema model (:func:`relay.schema.parse_event`): a
:class:`~relay.schema.TranscriptEvent` has a typed ``payload``, an unknown type is a
:class:`~relay.schema.GenericEvent`.

**Delivery** is at least once (the relay publishes a batch again whole after a Redis hiccup), so
the client drops repeats by event ``id``, remembering the last ``dedupe`` ids (a bounded LRU; 0
turns it off). When the connection to Redis drops, the client resubscribes with capped, jittered
backoff (:class:`~relay.core.backoff.Backoff`) and counts it in :attr:`reconnects`.

**Gaps are filled from the log** (``fill_gaps=True``, the default). Pub/sub keeps nothing for an
absent subscriber, but every live message carries ``log_id``, its place in its session's log
(:mod:`relay.client.log`). The client remembers, per session (the last ``gap_sessions``, LRU), the
``log_id`` of the last event it delivered. Once a lost subscription (Redis restarted, or Redis cut
the client off for lagging: the pub/sub output-buffer limit) is back, it reads each of those
sessions' logs after that position, and the logs of the sessions it has no position for (the
newest ``gap_sessions`` of the sessions index, ``<prefix>:sessions``, from a minute before the
last delivered ``log_id``, or the subscription), applies its filters,
and delivers what it missed before any newer live message; repeats are dropped by ``id`` and by
position, so each event comes once, in order per session. It costs nothing until a reconnect.
:attr:`filled` counts the events it delivered from the log. Media is not filled (its log is
optional and short). When a log cannot fill the gap (trimmed past the position, or lost with a
Redis that restarted without persistence) the client logs a warning, counts it in
:attr:`unfilled` and keeps the error in :attr:`gap_errors`; with ``strict=True`` the iteration
raises that :class:`~relay.errors.LogError` instead, after delivering what came before it.
Not covered: a session that is not among the newest ``gap_sessions`` of the index and had no
event the client delivered before the gap (sessions without a lifecycle, e.g. VideoDB's, are in no
index), unless it is the ``session`` filtered on.

**Media.** Audio and video travel on their own channels; ``media=True`` adds them to the text
events. A ``type`` naming a media type (``audio.chunk``, ``video.frame``) selects the media
channels by itself.

A message that is not a valid event (another publisher on the same prefix, a newer schema) is
counted in :attr:`invalid`, logged without its content, and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Final

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.client.log import is_log_lost, parse_position, read, read_since
from relay.core.backoff import Backoff
from relay.channels import ChannelScheme, LogKeys
from relay.errors import HistoryLost, LogError, SessionNotFound
from relay.schema import TYPE_TO_CLASS, EventBase, Source, parse_event
from relay.channels import DEFAULT_REDIS_URL

__all__ = ["RelayClient", "subscription_patterns"]

log = logging.getLogger("relay.client")

#: How far before the newest delivered ``log_id`` the gap fill looks for sessions that started
#: (and reads sessions it never delivered anything of): room for the relays' and Redis' clocks.
GAP_MARGIN_MS: Final = 60_000


def subscription_patterns(
    channels: ChannelScheme,
    *,
    source: str | None = None,
    type: str | None = None,
    session: str | None = None,
    media: bool = False,
) -> list[str]:
    """The ``PSUBSCRIBE`` patterns for a filter: text channels, plus media ones when asked for.

    >>> subscription_patterns(ChannelScheme(), source="recall", type="transcript.*")
    ['relay:events:recall:*:transcript.*']
    >>> subscription_patterns(ChannelScheme(), type="audio.chunk")
    ['relay:media:*:*:audio.chunk']
    """
    cls = TYPE_TO_CLASS.get(type) if type is not None else None
    if cls is not None:  # an exact, known type lives on exactly one kind of channel
        kinds = [cls.is_media]
    else:
        kinds = [False, True] if media else [False]
    return [channels.pattern(source=source, session=session, type=type, media=kind) for kind in kinds]


class RelayClient:
    """An async iterator of the relay's events matching a filter; see the module docstring.

    :param redis_url: where the relay publishes (``RELAY_REDIS_URL``).
    :param source: ``recall``, ``videodb`` or ``asapp``; ``None`` for all.
    :param type: an event type (``transcript.final``) or a prefix pattern (``transcript.*``).
    :param session: one session id (Recall: the recording id).
    :param media: also receive ``audio.chunk`` and ``video.frame`` events.
    :param prefix: the relay's ``RELAY_REDIS_CHANNEL_PREFIX``.
    :param dedupe: how many recent event ids to remember for dropping repeats; 0 keeps repeats.
    :param reconnect: resubscribe after a lost connection (else the iteration raises).
    :param redis: an existing client to use instead of ``redis_url`` (not closed by this one).
    :param fill_gaps: after a lost subscription, deliver what was missed from the log.
    :param gap_sessions: how many sessions' last positions to remember for that.
    :param strict: raise a :class:`~relay.errors.LogError` when the log cannot fill a gap
        (else it is logged and counted in :attr:`unfilled`).
    """

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        *,
        source: Source | str | None = None,
        type: str | None = None,
        session: str | None = None,
        media: bool = False,
        prefix: str = "relay",
        dedupe: int = 10_000,
        reconnect: bool = True,
        redis: Redis | None = None,
        fill_gaps: bool = True,
        gap_sessions: int = 1_000,
        strict: bool = False,
    ) -> None:
        if dedupe < 0:
            raise ValueError("dedupe must be >= 0")
        if gap_sessions < 1:
            raise ValueError("gap_sessions must be >= 1")
        self.source = Source(source).value if source is not None else None
        self.type = type
        self.session = session
        self.media = media
        self.prefix = prefix
        self.patterns = subscription_patterns(
            ChannelScheme(prefix), source=self.source, type=type, session=session, media=media
        )
        self.dedupe = dedupe
        self.reconnect = reconnect
        #: Events skipped because their id was seen recently.
        self.duplicates = 0
        #: Messages skipped because they were not valid events.
        self.invalid = 0
        #: Times the subscription was re-established after a lost connection.
        self.reconnects = 0
        self.fill_gaps = fill_gaps
        self.gap_sessions = gap_sessions
        self.strict = strict
        #: Events delivered from the log to fill the gaps of lost subscriptions.
        self.filled = 0
        #: Gaps the log could not fill (a session's history trimmed or lost); see :attr:`gap_errors`.
        self.unfilled = 0
        #: The latest of those errors (at most 100).
        self.gap_errors: deque[LogError] = deque(maxlen=100)
        self._positions: OrderedDict[str, str] = OrderedDict()  # session -> last delivered log_id
        self._newest_ms = 0  # the newest delivered log_id's time (Redis' clock)
        self._subscribed_ms: int | None = None  # Redis' clock when this client first subscribed
        self._filling: AsyncGenerator[EventBase | LogError, None] | None = None
        self._owns_redis = redis is None
        self._redis = redis if redis is not None else Redis.from_url(redis_url, socket_connect_timeout=2.0)
        self._pubsub: PubSub | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._backoff = Backoff(initial=0.1, maximum=5.0)

    # --- lifecycle -----------------------------------------------------------------------------

    async def subscribe(self) -> None:
        """Subscribe; from when this returns, every matching publish is received."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.psubscribe(*self.patterns)
            # Wait for every confirmation so a publish right after this call is not missed.
            confirmed = 0
            while confirmed < len(self.patterns):
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    raise RedisTimeoutError("no subscription confirmation from Redis")
                confirmed += message["type"] == "psubscribe"
            if self.fill_gaps and self._subscribed_ms is None:
                seconds, micros = await self._redis.time()
                self._subscribed_ms = seconds * 1000 + micros // 1000
        except BaseException:
            await _close_pubsub(pubsub)
            raise
        self._pubsub = pubsub

    async def aclose(self) -> None:
        if self._filling is not None:
            with contextlib.suppress(Exception):
                await self._filling.aclose()
            self._filling = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await _close_pubsub(self._pubsub)
            self._pubsub = None
        if self._owns_redis:
            await self._redis.aclose()

    async def __aenter__(self) -> RelayClient:
        try:
            await self.subscribe()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- iteration -----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[EventBase]:
        return self

    async def __anext__(self) -> EventBase:
        while True:
            if self._filling is not None:
                event = await self._next_filled()
                if event is not None:
                    return event
                continue
            data = await self._next_message()  # None: resubscribed, the gap fill comes first
            event = self._accept(data)
            if event is not None:
                return event

    async def _next_filled(self) -> EventBase | None:
        """The next event of the gap fill (None: skipped, or the fill is over or interrupted)."""
        assert self._filling is not None
        try:
            item = await anext(self._filling)
        except StopAsyncIteration:
            self._filling = None
            return None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # Lost again while filling: resubscribe, and fill again from the positions delivered.
            log.warning("lost Redis while filling a gap from the log (%s)", type(exc).__name__)
            await self._drop_filling()
            return None
        if isinstance(item, LogError):
            self.unfilled += 1
            self.gap_errors.append(item)
            log.warning("could not fill a gap from the log: %s", item)
            if self.strict:
                raise item
            return None
        event = self._accept_event(item)
        if event is not None:
            self.filled += 1
        return event

    async def _next_message(self) -> Any:
        """The next published message's data, resubscribing after a lost connection."""
        while True:
            if self._pubsub is None:
                await self._resubscribe()
                if self.fill_gaps:
                    self._filling = self._fill()
                    return None
            assert self._pubsub is not None
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if not self.reconnect:
                    raise
                log.warning("lost the Redis subscription (%s); resubscribing", type(exc).__name__)
                with contextlib.suppress(RedisError, OSError):
                    await _close_pubsub(self._pubsub)
                self._pubsub = None
                continue
            if message is not None and message["type"] == "pmessage":
                self._backoff.reset()
                return message["data"]

    async def _resubscribe(self) -> None:
        while True:
            await asyncio.sleep(self._backoff.next_delay())
            try:
                await self.subscribe()
            except (RedisError, OSError) as exc:
                log.debug("resubscribe failed: %s", type(exc).__name__)
                continue
            self.reconnects += 1
            return

    def remember(self, event: EventBase) -> bool:
        """Count ``event`` as delivered by other means (e.g. read from the log before going live):
        a live repeat of it is then dropped, by id and by log position. False if it already was."""
        return self._accept_event(event) is not None

    def _accept(self, data: bytes | str | None) -> EventBase | None:
        """Parse, apply the exact session filter, and drop repeats."""
        if data is None:
            return None
        try:
            event = parse_event(data)
        except ValidationError as exc:
            self.invalid += 1
            log.warning("skipped a message that is not a relay event (%d errors)", exc.error_count())
            return None
        # Channels carry a sanitized session id; two ids differing only in `:` vs `_` share one.
        if self.session is not None and event.session.id != self.session:
            return None
        return self._accept_event(event)

    def _accept_event(self, event: EventBase) -> EventBase | None:
        """Drop repeats (by id, and by log position), and remember the session's position."""
        if event.log_id is not None and self.fill_gaps:
            known = self._positions.get(event.session.id)
            position = _position_or_none(event.log_id)
            if known is not None and position is not None and position <= (parse_position(known) or (0, 0)):
                self.duplicates += 1
                return None
        if self.dedupe:
            if event.id in self._seen:
                self._seen.move_to_end(event.id)
                self.duplicates += 1
                return None
            self._seen[event.id] = None
            if len(self._seen) > self.dedupe:
                self._seen.popitem(last=False)
        if event.log_id is not None and self.fill_gaps and _position_or_none(event.log_id) is not None:
            self._positions[event.session.id] = event.log_id
            self._positions.move_to_end(event.session.id)
            if len(self._positions) > self.gap_sessions:
                self._positions.popitem(last=False)
            self._newest_ms = max(self._newest_ms, int(event.log_id.split("-", 1)[0]))
        return event

    # --- gap filling ---------------------------------------------------------------------------

    def _matches(self, event: EventBase) -> bool:
        """The subscription's filters, applied to an event read from the log."""
        if self.source is not None and event.source.value != self.source:
            return False
        if self.session is not None and event.session.id != self.session:
            return False
        if event.is_media and not self.media and not (self.type and TYPE_TO_CLASS.get(self.type, EventBase).is_media):
            return False
        return self.type is None or fnmatch.fnmatchcase(event.type, self.type)

    async def _fill(self) -> AsyncGenerator[EventBase | LogError, None]:
        """What the subscription missed, from the log: each remembered session after its last
        delivered position, then the sessions it has no position for (the newest ``gap_sessions``
        of the index, whenever they started: one may have begun long before the subscription and
        sent nothing it saw before the gap), from a minute before the gap."""
        keys = LogKeys(self.prefix)
        since_ms = max(self._subscribed_ms or 0, self._newest_ms - GAP_MARGIN_MS)
        sessions: dict[str, str | None] = {s: p for s, p in self._positions.items() if self.session in (None, s)}
        if self.session is not None:
            sessions.setdefault(self.session, None)
        else:
            started: Any = await self._redis.zrevrangebyscore(keys.sessions, "+inf", "-inf", start=0, num=self.gap_sessions)
            for member in started:
                sessions.setdefault(member.decode() if isinstance(member, bytes) else member, None)
        for session, position in sessions.items():
            position = self._positions.get(session, position)  # delivered since the fill began
            try:
                if position is not None:
                    events = read(self._redis, session, position, prefix=self.prefix)
                else:
                    events = read_since(self._redis, session, since_ms, prefix=self.prefix)
                async for event in events:
                    if self._matches(event):
                        yield event
            except SessionNotFound as exc:
                if position is not None:  # it had a log: the log is gone
                    yield HistoryLost(f"the log of session {session!r} is gone: {exc}", session)
            except LogError as exc:
                yield exc

    async def _drop_filling(self) -> None:
        if self._filling is not None:
            with contextlib.suppress(Exception):
                await self._filling.aclose()
        self._filling = None
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await _close_pubsub(self._pubsub)
        self._pubsub = None


def _position_or_none(log_id: str) -> tuple[int, int] | None:
    try:
        return parse_position(log_id)
    except LogError:
        return None


async def _close_pubsub(pubsub: PubSub) -> None:
    """``PubSub.aclose``, which redis-py leaves unannotated."""
    await pubsub.aclose()  # type: ignore[no-untyped-call]
