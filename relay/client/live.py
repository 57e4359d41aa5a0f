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
turns it off). Pub/sub keeps nothing for absent subscribers: events published while the client is
disconnected are not seen. When the connection to Redis drops, the client resubscribes with
capped, jittered backoff (:class:`~relay.core.backoff.Backoff`) and counts it in :attr:`reconnects`.

**Media.** Audio and video travel on their own channels; ``media=True`` adds them to the text
events. A ``type`` naming a media type (``audio.chunk``, ``video.frame``) selects the media
channels by itself.

A message that is not a valid event (another publisher on the same prefix, a newer schema) is
counted in :attr:`invalid`, logged without its content, and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.core.backoff import Backoff
from relay.channels import ChannelScheme
from relay.schema import TYPE_TO_CLASS, EventBase, Source, parse_event
from relay.channels import DEFAULT_REDIS_URL

__all__ = ["RelayClient", "subscription_patterns"]

log = logging.getLogger("relay.client")


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
    ) -> None:
        if dedupe < 0:
            raise ValueError("dedupe must be >= 0")
        self.source = Source(source).value if source is not None else None
        self.type = type
        self.session = session
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
        except BaseException:
            await _close_pubsub(pubsub)
            raise
        self._pubsub = pubsub

    async def aclose(self) -> None:
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
            data = await self._next_message()
            event = self._accept(data)
            if event is not None:
                return event

    async def _next_message(self) -> Any:
        """The next published message's data, resubscribing after a lost connection."""
        while True:
            if self._pubsub is None:
                await self._resubscribe()
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

    def _accept(self, data: bytes | str) -> EventBase | None:
        """Parse, apply the exact session filter, and drop repeats."""
        try:
            event = parse_event(data)
        except ValidationError as exc:
            self.invalid += 1
            log.warning("skipped a message that is not a relay event (%d errors)", exc.error_count())
            return None
        # Channels carry a sanitized session id; two ids differing only in `:` vs `_` share one.
        if self.session is not None and event.session.id != self.session:
            return None
        if self.dedupe:
            if event.id in self._seen:
                self._seen.move_to_end(event.id)
                self.duplicates += 1
                return None
            self._seen[event.id] = None
            if len(self._seen) > self.dedupe:
                self._seen.popitem(last=False)
        return event


async def _close_pubsub(pubsub: PubSub) -> None:
    """``PubSub.aclose``, which redis-py leaves unannotated."""
    await pubsub.aclose()  # type: ignore[no-untyped-call]
