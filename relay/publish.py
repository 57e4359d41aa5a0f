"""EventPublisher: the one way events leave the relay, to Redis pub/sub.

Publishing is decoupled from the sockets that produce events::

    producers ──publish()──▶ bounded queue ──▶ drain task ──pipelined PUBLISH batches──▶ Redis
                                                   │
                                                   └─ while Redis is down: outage backlog
                                                      (bounded by bytes, published in order later)

* **Backpressure.** :meth:`EventPublisher.publish` awaits while the queue is full. A Recall socket
  handler awaiting it stops reading its socket, so a slow Redis slows the bots down instead of
  growing memory.
* **Outages.** When Redis stops answering, the drain task keeps moving accepted events into the
  backlog so sockets keep flowing, and retries Redis with capped exponential backoff. Back online,
  it publishes the backlog in order before anything newer. Past ``outage_buffer_bytes`` it sheds
  media (audio, video) first and text last, oldest first; every drop is counted and logged.
* **Delivery** is at least once: a batch cut short by a dropped connection is sent again whole, so
  a consumer may see an event twice (dedupe on ``id``) but never loses an accepted one.
* **One connection.** All events go through one drain task using one pooled client, however many
  bots are connected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.metrics import RelayMetrics
from relay.schema import EventBase, EventRecord

log = logging.getLogger("relay.publish")

#: Characters that would break channel parsing or act as glob syntax in PSUBSCRIBE patterns.
_CHANNEL_UNSAFE: Final = str.maketrans({c: "_" for c in ":*?[]\\ \t\r\n"})


@dataclass(frozen=True, slots=True)
class ChannelScheme:
    """Names Redis channels so consumers can subscribe by pattern.

    ``<prefix>:events:<source>:<session>:<type>`` for text events and
    ``<prefix>:media:<source>:<session>:<type>`` for audio and video, so ``relay:events:*`` gets
    every text event of every provider without a single audio buffer. ``<session>`` is the session
    id with ``: * ? [ ] \\`` and whitespace replaced by ``_`` (the event body keeps the real id).

    Examples: ``relay:events:recall:*:transcript.*`` (all Recall transcripts),
    ``relay:*:*:<session>:*`` (everything about one session), ``relay:media:recall:*:audio.chunk``.
    """

    prefix: str = "relay"

    def channel(self, event: EventBase | EventRecord) -> str:
        kind = "media" if event.is_media else "events"
        session = event.session.id.translate(_CHANNEL_UNSAFE) or "_"
        return f"{self.prefix}:{kind}:{event.source.value}:{session}:{event.type}"

    def pattern(
        self, *, source: str | None = None, session: str | None = None, type: str | None = None, media: bool = False
    ) -> str:
        """The PSUBSCRIBE pattern for a filter; ``None`` matches anything. ``type`` may end in ``*``."""
        kind = "media" if media else "events"
        sess = session.translate(_CHANNEL_UNSAFE) if session is not None else "*"
        return f"{self.prefix}:{kind}:{source or '*'}:{sess}:{type or '*'}"


@dataclass(slots=True)
class _Outgoing:
    channel: str
    body: bytes
    source: str
    type: str  # metric label: the event type, or "generic" for types the schema does not model
    media: bool
    received_ns: int


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    queue_max_events: int = 10_000
    batch_max_events: int = 500
    outage_buffer_bytes: int = 256 * 1024 * 1024
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0


class EventPublisher:
    """Publishes events to Redis in pipelined batches; see the module docstring for the design."""

    def __init__(
        self, redis: Redis, metrics: RelayMetrics, config: PublisherConfig, channels: ChannelScheme
    ) -> None:
        self._redis = redis
        self._metrics = metrics
        self._config = config
        self.channels = channels
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue(maxsize=config.queue_max_events)
        self._backlog: deque[_Outgoing] = deque()
        self._backlog_bytes = 0
        self._backlog_media = 0
        self._redis_ok = True
        self._down_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._published = 0
        self._dropped = 0
        self._accepted = 0
        # Bound metric children per (source, type): label lookups cost more than the increment.
        self._received_children: dict[tuple[str, str], Any] = {}
        self._done_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._published_children: dict[tuple[str, str], Any] = {}
        metrics.queue_depth.set_function(self._queue.qsize)
        # The backlog holds at most one batch while Redis keeps up; it grows during an outage and
        # drains after it, which is what these show (both phases).
        metrics.outage_buffer_bytes.set_function(lambda: self._backlog_bytes)
        metrics.outage_buffer_events.set_function(lambda: len(self._backlog))
        metrics.redis_up.set(1)

    # --- producer side -------------------------------------------------------------------------

    async def publish(self, event: EventBase | EventRecord, received_ns: int | None = None) -> None:
        """Accept one event; waits (backpressure) while the queue is full."""
        item = self._accept(event, received_ns)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            await self._queue.put(item)

    def try_publish(self, event: EventBase | EventRecord, received_ns: int | None = None) -> bool:
        """Accept one event if the queue has room, without waiting; False (nothing accepted) if full.

        For producers that cannot await (a socket protocol's ``data_received``): on False they
        stop reading their socket and fall back to awaiting :meth:`publish`.
        """
        if self._queue.full():
            return False
        self._queue.put_nowait(self._accept(event, received_ns))
        return True

    def _accept(self, event: EventBase | EventRecord, received_ns: int | None) -> _Outgoing:
        type_label = event.metric_type
        item = _Outgoing(
            channel=self.channels.channel(event),
            body=event.to_json(),
            source=event.source.value,
            type=type_label,
            media=event.is_media,
            received_ns=time.monotonic_ns() if received_ns is None else received_ns,
        )
        self._received(item.source, type_label).inc()
        self._accepted += 1
        return item

    def _received(self, source: str, type_label: str):  # type: ignore[no-untyped-def]
        key = (source, type_label)
        child = self._received_children.get(key)
        if child is None:
            child = self._received_children[key] = self._metrics.events_received.labels(source, type_label)
        return child

    @property
    def accepted(self) -> int:
        """Events accepted since start (a position in the stream, for :meth:`wait_done`)."""
        return self._accepted

    async def wait_done(self, position: int) -> None:
        """Wait until every event up to ``position`` (an earlier :attr:`accepted`) was published or dropped."""
        if self._published + self._dropped >= position:
            return
        future = asyncio.get_running_loop().create_future()
        self._done_waiters.append((position, future))
        await future

    def _wake_done_waiters(self) -> None:
        done = self._published + self._dropped
        still = []
        for position, future in self._done_waiters:
            if position <= done:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((position, future))
        self._done_waiters = still

    @property
    def redis_ok(self) -> bool:
        return self._redis_ok

    @property
    def stats(self) -> dict[str, int]:
        """Counts since start: accepted, published, dropped, and still pending."""
        return {
            "accepted": self._accepted,
            "published": self._published,
            "dropped": self._dropped,
            "pending": self._queue.qsize() + len(self._backlog),
        }

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="relay-publisher")

    async def close(self, timeout: float) -> None:
        """Publish what is pending for up to ``timeout`` seconds, then stop; what is left is counted as dropped."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            pass
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        left = list(self._backlog)
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        for item in left:
            self._count_drop(item, "shutdown")
        if left:
            log.error("shutdown: %d accepted events could not be published in time and were dropped", len(left))
        self._backlog.clear()
        self._backlog_bytes = self._backlog_media = 0

    # --- drain task ----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self._config.backoff_initial_s
        batch_max = self._config.batch_max_events
        while True:
            if not self._backlog:
                self._append(await self._queue.get())
            if self._redis_ok:
                self._move(batch_max - len(self._backlog))
            else:
                self._move(None)
                if not await self._ping():
                    await self._wait_moving(backoff)
                    backoff = min(backoff * 2, self._config.backoff_max_s)
                    continue
                backoff = self._config.backoff_initial_s
                self._mark_up()
            batch = list(islice(self._backlog, batch_max))
            try:
                await self._send(batch)
            except (RedisError, OSError) as exc:
                self._mark_down(exc)
                continue
            self._on_sent(batch)

    async def _send(self, batch: list[_Outgoing]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for item in batch:
                pipe.publish(item.channel, item.body)
            await pipe.execute()

    def _on_sent(self, batch: list[_Outgoing]) -> None:
        now = time.monotonic_ns()
        children = self._published_children
        latency = self._metrics.publish_latency
        for item in batch:
            self._backlog.popleft()
            self._backlog_bytes -= len(item.body)
            if item.media:
                self._backlog_media -= 1
            key = (item.source, item.type)
            child = children.get(key)
            if child is None:
                child = children[key] = self._metrics.events_published.labels(*key)
            child.inc()
            latency.observe((now - item.received_ns) / 1e9)
            self._queue.task_done()
        self._published += len(batch)
        self._metrics.publish_batch_size.observe(len(batch))
        if self._done_waiters:
            self._wake_done_waiters()

    async def _ping(self) -> bool:
        try:
            await self._redis.ping()
        except (RedisError, OSError):
            self._metrics.redis_errors.labels("ping").inc()
            return False
        return True

    async def _wait_moving(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds while Redis is down, still taking events off the queue."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return
            self._append(item)
            self._move(None)

    def _mark_down(self, exc: BaseException) -> None:
        self._metrics.redis_errors.labels("publish").inc()
        if self._redis_ok:
            self._redis_ok = False
            self._down_since = time.monotonic()
            self._metrics.redis_up.set(0)
            log.error("redis unavailable (%s); buffering up to %d bytes of events", type(exc).__name__,
                      self._config.outage_buffer_bytes)  # fmt: skip

    def _mark_up(self) -> None:
        self._redis_ok = True
        self._metrics.redis_up.set(1)
        down_for = time.monotonic() - self._down_since if self._down_since else 0.0
        log.warning("redis available again after %.1f s; publishing %d buffered events",
                    down_for, len(self._backlog))  # fmt: skip

    # --- backlog -------------------------------------------------------------------------------

    def _move(self, limit: int | None) -> None:
        """Move up to ``limit`` queued events (all when None) into the backlog."""
        queue = self._queue
        n = queue.qsize() if limit is None else min(limit, queue.qsize())
        for _ in range(n):
            self._append(queue.get_nowait())

    def _append(self, item: _Outgoing) -> None:
        self._backlog.append(item)
        self._backlog_bytes += len(item.body)
        if item.media:
            self._backlog_media += 1
        if self._backlog_bytes > self._config.outage_buffer_bytes:
            self._shed()

    def _shed(self) -> None:
        """Bring the backlog under 90 % of its bound: oldest media first, then oldest text."""
        target = self._config.outage_buffer_bytes * 9 // 10
        dropped: dict[str, int] = {}
        if self._backlog_media:
            kept: deque[_Outgoing] = deque()
            for item in self._backlog:
                if item.media and self._backlog_bytes > target:
                    self._forget(item, "outage_buffer_full_media", dropped)
                else:
                    kept.append(item)
            self._backlog = kept
        while self._backlog_bytes > target and self._backlog:
            self._forget(self._backlog.popleft(), "outage_buffer_full_text", dropped)
        for reason, n in dropped.items():
            log.error("outage buffer full: dropped %d events (%s)", n, reason)

    def _forget(self, item: _Outgoing, reason: str, tally: dict[str, int]) -> None:
        self._backlog_bytes -= len(item.body)
        if item.media:
            self._backlog_media -= 1
        self._count_drop(item, reason)
        self._queue.task_done()
        tally[reason] = tally.get(reason, 0) + 1

    def _count_drop(self, item: _Outgoing, reason: str) -> None:
        self._dropped += 1
        self._metrics.events_dropped.labels(item.source, reason).inc()
        if self._done_waiters:
            self._wake_done_waiters()
