"""EventPublisher: the one way events leave the relay, to Redis pub/sub.

Publishing is decoupled from the sockets that produce events::

    producers ──accept()/publish()──▶ pending ──PUBLISH batches──▶ RedisPublishLink ──▶ Redis
                                         │                        (≤ 4 batches in flight)
                                         └─ while Redis is down: held in order, bounded by bytes

* **No task per event.** Accepting an event appends it to ``pending`` and, at most once per event
  loop iteration, schedules a flush, so the events accepted in one iteration go out in one write
  over one dedicated connection (:class:`~relay.core.redis_link.RedisPublishLink`: commands packed
  here, replies counted in C); a long iteration sends every ``early_flush_events`` instead of
  holding them to its end. The link's completion callback sends the next batch.
* **Backpressure.** At ``queue_max_events`` unsent events, :meth:`EventPublisher.accept` tells its
  caller to stop producing (a Recall connection stops reading its socket, so TCP slows the bot)
  and :meth:`EventPublisher.call_when_room` resumes it once the queue is half empty;
  :meth:`EventPublisher.publish` waits for room instead. Events a socket had already read are still
  accepted, so the queue can exceed its bound by what each connection had read when it filled.
* **Outages.** When the link fails (connection lost, an error reply, or no answer within
  ``timeout_s``), the batches in flight go back to the front of ``pending``, producers are no longer
  held back (sockets keep flowing), and the link reconnects with capped exponential backoff. Back
  online, the backlog goes out in order before anything newer. Past ``outage_buffer_bytes`` it
  sheds media (audio, video) first and text last, oldest first; every drop is counted and logged.
* **The log.** With a :class:`~relay.core.event_log.LogConfig`, a batch's events are grouped by
  session (and kind) and each group is one ``EVALSHA`` that appends its text events (and media, if
  asked) to the session's Stream and publishes each with its ``log_id``, in order
  (relay/core/event_log.py); without one, each event is one ``PUBLISH``. Batching, backpressure
  and outages below work the same either way.
* **Delivery** is at least once on pub/sub: a batch cut short by a failure is sent again whole, so
  a consumer may see an event twice (dedupe on ``id``) but never loses an accepted one. The log
  holds each event once: the script skips what a re-sent batch had already appended.
* **Metrics** are counted in plain integers per event and added to Prometheus once per flush and per
  batch: each Prometheus increment takes a lock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import Counter

from relay.core.backoff import Backoff
from relay.core.event_log import LogConfig, group_head, group_prefix, load_script_command, pack_entry, xadd_head
from relay.core.metrics import RelayMetrics
from relay.core.redis_link import RedisPublishLink, publish_head
from relay.channels import ChannelScheme, LogKeys
from relay.schema import EventBase, EventRecord

log = logging.getLogger("relay.publish")

#: Routes (command head, labels) cached per (source, session, type); cleared when full (sessions come
#: and go). Several thousand meetings at once must fit: a route costs a few hundred bytes.
_MAX_CACHED_ROUTES: Final = 32_768
#: Bodies per log script call (relay/core/event_log.py), about what Redis reads from a client at a time
#: (16 KiB): a call's live messages are queued for each
#: subscriber at once, so it must stay far below pub/sub output-buffer limits (Redis' default
#: soft limit is 8 MB; a tight hard limit is 1 MB).
_MAX_GROUP_BYTES: Final = 16 * 1024


class _Outgoing:
    """One accepted event: its packed command head and body, and what its metrics need."""

    __slots__ = ("head", "body", "label", "media", "received_ns", "seq", "channel")

    def __init__(self, head: bytes, body: bytes, label: tuple[str, str], media: bool, received_ns: int, seq: int,
                 channel: bytes) -> None:  # fmt: skip
        #: ``PUBLISH <channel>`` up to the body; with the log, its group's script head (one object
        #: per session and kind, so it is also the group's key).
        self.head = head
        self.body = body
        self.label = label  # metric labels: (source, event type or "generic" for types the schema does not model)
        self.media = media
        self.received_ns = received_ns
        self.seq = seq  # 0: not logged; else its place in this publisher's order (the script's re-send check)
        self.channel = channel  # with the script: the channel as a RESP bulk string; with plain XADD: its PUBLISH head


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    queue_max_events: int = 10_000
    batch_max_events: int = 500
    batches_in_flight: int = 4
    #: Pending events that are sent at once rather than at the end of the loop iteration.
    early_flush_events: int = 64
    outage_buffer_bytes: int = 256 * 1024 * 1024
    #: A batch unanswered this long fails the link (Redis stalled); it is then re-sent.
    timeout_s: float = 5.0
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    #: Write the durable per-meeting log (None: pub/sub only).
    log: LogConfig | None = None


class EventPublisher:
    """Publishes events to Redis in pipelined batches; see the module docstring for the design."""

    def __init__(self, redis_url: str, metrics: RelayMetrics, config: PublisherConfig, channels: ChannelScheme) -> None:
        self._url = redis_url
        self._metrics = metrics
        self._config = config
        self.channels = channels
        self.log_keys = LogKeys(channels.prefix)
        #: Names this process's writes in each session's re-send check (relay/core/event_log.py).
        self.producer = secrets.token_hex(8)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: RedisPublishLink | None = None
        self._connector: asyncio.Task[None] | None = None
        self._closing = False
        #: Accepted, not yet sent, in order.
        self._pending: deque[_Outgoing] = deque()
        #: Sent, not yet acknowledged: whole batches, oldest first.
        self._inflight: deque[list[_Outgoing]] = deque()
        self._held_bytes = 0  # pending + in flight
        self._held_media = 0
        self._flush_scheduled = False
        self._redis_ok = True
        self._down_since: float | None = None
        self._accepted = 0
        self._published = 0
        self._dropped = 0
        self._routes: dict[tuple[object, str, str], tuple[bytes, tuple[str, str], bool, bool, bytes]] = {}
        self._group_heads: dict[tuple[str, bool], bytes] = {}
        # Counted per event in plain ints, added to Prometheus per flush (see the module docstring).
        self._received_counts: dict[tuple[str, str], int] = {}
        self._received_children: dict[tuple[str, str], Any] = {}
        self._published_children: dict[tuple[str, str], Any] = {}
        self._room_waiters: list[asyncio.Future[None]] = []
        self._paused: list[Callable[[], None]] = []
        self._done_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._log_error_logged_at = -60.0
        metrics.queue_depth.set_function(lambda: len(self._pending))
        metrics.outage_buffer_bytes.set_function(lambda: self._held_bytes)
        metrics.outage_buffer_events.set_function(lambda: len(self._pending) + sum(map(len, self._inflight)))
        metrics.redis_up.set(1)

    # --- producer side -------------------------------------------------------------------------

    def accept(self, event: EventBase | EventRecord, received_ns: int | None = None) -> bool:
        """Accept one event without waiting; False when the queue is full.

        On False the event *is* accepted, but the caller should stop producing (stop reading its
        socket) and register with :meth:`call_when_room` to be told when to go on.
        """
        key = (event.source, event.session.id, event.type)
        route = self._routes.get(key)
        if route is None:
            route = self._route(event, key)
        head, label, media, logged, channel = route
        body = event.to_json()
        self._accepted += 1
        seq = self._accepted if logged else 0
        self._pending.append(_Outgoing(head, body, label, media, time.monotonic_ns() if received_ns is None else received_ns,
                                       seq, channel))  # fmt: skip
        self._held_bytes += len(body)
        if media:
            self._held_media += 1
        counts = self._received_counts
        counts[label] = counts.get(label, 0) + 1
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        elif len(self._pending) >= self._config.early_flush_events and self._link is not None:
            # A long loop iteration (thousands of sockets ready at once) need not hold what it has
            # read until it ends: Redis and the subscribers work meanwhile, on another core.
            self._send()
        if self._held_bytes > self._config.outage_buffer_bytes:
            self._shed()
        return not (self._redis_ok and len(self._pending) >= self._config.queue_max_events)

    def _route(self, event: EventBase | EventRecord, key: tuple[object, str, str]) -> tuple[bytes, tuple[str, str], bool, bool, bytes]:
        """What every event of one (source, session, type) shares: its command head, metric labels,
        kind, whether it is logged, and (with the log) its channel as a RESP bulk string."""
        if len(self._routes) >= _MAX_CACHED_ROUTES:
            self._routes.clear()
            self._group_heads.clear()
        channel = self.channels.channel(event)
        log, media = self._config.log, event.is_media
        labels = (event.source.value, event.metric_type)
        if log is None:
            route = self._routes[key] = (publish_head(channel), labels, media, False, b"")
            return route
        session = event.session.id
        logged = (log.media or not media) and (log.partials or event.type != "transcript.partial")
        if not log.live_log_id:
            # No script: XADD (when logged) then PUBLISH, plain commands (relay/core/event_log.py).
            publish = publish_head(channel)
            if not logged:
                route = self._routes[key] = (publish, labels, media, False, b"")
                return route
            log_key, bound = (self.log_keys.media_log(session), log.media_max_entries) if media else (self.log_keys.log(session), log.max_entries)
            route = self._routes[key] = (xadd_head(log_key, bound), labels, media, True, publish)
            return route
        head = self._group_heads.get((session, media))
        if head is None:
            keys = self.log_keys
            log_key, bound = (keys.media_log(session), log.media_max_entries) if media else (keys.log(session), log.max_entries)
            field = f"producer:{self.producer}:m" if media else f"producer:{self.producer}"
            head = self._group_heads[(session, media)] = group_head(log_key, keys.session(session), bound, field, log.live_log_id)
        name = channel.encode()
        route = self._routes[key] = (head, labels, media, logged, b"$%d\r\n%s\r\n" % (len(name), name))
        return route

    def call_when_room(self, resume: Callable[[], None]) -> None:
        """Call ``resume`` once the queue is half empty, or Redis is down (producers then flow on)."""
        self._paused.append(resume)

    async def publish(self, event: EventBase | EventRecord, received_ns: int | None = None) -> None:
        """Accept one event, first waiting (backpressure) while the queue is full."""
        while self._redis_ok and len(self._pending) >= self._config.queue_max_events:
            room = asyncio.get_running_loop().create_future()
            self._room_waiters.append(room)
            await room
        self.accept(event, received_ns)

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
            "pending": len(self._pending) + sum(map(len, self._inflight)),
        }

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._connector = asyncio.create_task(self._connect(), name="relay-publisher-connect")
            if self._pending:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)

    async def aclose(self, timeout: float) -> None:
        """Publish what is pending for up to ``timeout`` seconds, then stop; what is left is counted as dropped."""
        if self._loop is None:
            return
        try:
            await asyncio.wait_for(self.wait_done(self._accepted), timeout)
        except TimeoutError:
            pass
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            try:
                await self._connector
            except asyncio.CancelledError:
                pass
            self._connector = None
        if self._link is not None:
            self._link.close()
            self._link = None
        self._flush_counts()
        left = [item for batch in self._inflight for item in batch]
        left.extend(self._pending)
        self._inflight.clear()
        self._pending.clear()
        for item in left:
            self._count_drop(item, "shutdown")
        if left:
            log.error("shutdown: %d accepted events could not be published in time and were dropped", len(left))
        self._held_bytes = self._held_media = 0
        self._loop = None

    # --- sending -------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Once per loop iteration with new events: fold the counts into Prometheus, send."""
        self._flush_scheduled = False
        self._flush_counts()
        self._send()

    def _send(self) -> None:
        """Send what is pending, in batches, while the link has room for another batch in flight."""
        link = self._link
        if link is None:
            return
        pending, inflight = self._pending, self._inflight
        batch_max, window = self._config.batch_max_events, self._config.batches_in_flight
        sent = False
        log = self._config.log
        grouped = log is not None and log.live_log_id
        while pending and len(inflight) < window:
            n = min(batch_max, len(pending))
            batch = [pending.popleft() for _ in range(n)]
            parts: list[bytes] = []
            if grouped:
                # One script call per session and kind, each in its accepted order (event_log.py),
                # and at most _MAX_GROUP_BYTES of bodies: one call's messages reach every
                # subscriber at once, and must stay well under its output-buffer limit.
                ordered: list[tuple[bytes, list[_Outgoing]]] = []
                open_groups: dict[bytes, list[Any]] = {}  # head -> [its open group, bytes in it]
                for item in batch:
                    current = open_groups.get(item.head)
                    if current is None or current[1] >= _MAX_GROUP_BYTES:
                        group: list[_Outgoing] = []
                        ordered.append((item.head, group))
                        current = open_groups[item.head] = [group, 0]
                    current[0].append(item)
                    current[1] += len(item.body)
                for head, items in ordered:
                    parts += (group_prefix(len(items)), head)
                    for item in items:
                        parts += pack_entry(item.channel, item.seq, item.body)
                commands = len(ordered)
            else:
                commands = n
                for item in batch:
                    body = item.body
                    size = b"$%d\r\n" % len(body)
                    parts += (item.head, size, body, b"\r\n")
                    if item.seq:  # logged without the script: the XADD above, then its PUBLISH
                        parts += (item.channel, size, body, b"\r\n")
                        commands += 1
            inflight.append(batch)
            link.send(b"".join(parts), commands)
            sent = True
        if sent:
            self._room_freed()

    def _on_batch(self) -> None:
        """The link's callback: the oldest batch in flight was acknowledged."""
        batch = self._inflight.popleft()
        now = time.monotonic_ns()
        counts: dict[tuple[str, str], int] = {}
        size = media = 0
        for item in batch:
            size += len(item.body)
            media += item.media
            label = item.label
            counts[label] = counts.get(label, 0) + 1
        self._held_bytes -= size
        self._held_media -= media
        _add_counts(counts, self._metrics.events_published, self._published_children)
        # Once per batch, for its oldest event: the longest wait in the batch.
        self._metrics.publish_latency.observe((now - batch[0].received_ns) / 1e9)
        self._metrics.publish_batch_size.observe(len(batch))
        self._published += len(batch)
        if self._done_waiters:
            self._wake_done_waiters()
        if self._pending and not self._flush_scheduled:
            self._send()

    def _flush_counts(self) -> None:
        if self._received_counts:
            _add_counts(self._received_counts, self._metrics.events_received, self._received_children)
            self._received_counts.clear()

    def _room_freed(self) -> None:
        """Wake producers waiting for room: ``publish`` callers at once, paused sockets at half."""
        size, bound = len(self._pending), self._config.queue_max_events
        if self._room_waiters and (size < bound or not self._redis_ok):
            waiters, self._room_waiters = self._room_waiters, []
            for room in waiters:
                if not room.done():
                    room.set_result(None)
        if self._paused and (size <= bound // 2 or not self._redis_ok):
            paused, self._paused = self._paused, []
            for resume in paused:
                resume()

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

    # --- the link ------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Open the link, retrying with capped exponential backoff until it is up."""
        backoff = Backoff(self._config.backoff_initial_s, self._config.backoff_max_s)
        while True:
            try:
                setup = [load_script_command()] if self._config.log is not None else []
                link = await RedisPublishLink.open(self._url, timeout_s=self._config.timeout_s, setup=setup)
            except (OSError, TimeoutError) as exc:
                self._metrics.redis_errors.labels("connect").inc()
                self._mark_down(exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            link.on_batch = self._on_batch
            link.on_lost = self._on_lost
            link.on_log_error = self._on_log_error
            self._link = link
            self._connector = None
            self._mark_up()
            self._flush()
            return

    def _on_lost(self, exc: BaseException | None) -> None:
        """The link's callback: it failed. Re-send what was in flight, first, once reconnected."""
        self._link = None
        if self._closing:
            return
        while self._inflight:
            self._pending.extendleft(reversed(self._inflight.pop()))
        self._metrics.redis_errors.labels("publish").inc()
        self._mark_down(exc)
        self._room_freed()
        self._connector = asyncio.create_task(self._connect(), name="relay-publisher-connect")

    def _on_log_error(self, reply: bytes) -> None:
        """The link's callback: events went out live but could not be appended to their log
        (``log:<how many>:<error>``, relay/core/event_log.py)."""
        count, _, detail = reply[4:].partition(b":")
        self._metrics.redis_errors.labels("log_append").inc(int(count) if count.isdigit() else 1)
        reply = b"log:" + detail
        now = time.monotonic()
        if now - self._log_error_logged_at >= 60.0:  # one line a minute, however many events
            self._log_error_logged_at = now
            log.error("an event could not be appended to its session's log (published live only): %s",
                      reply[4:204].decode(errors="replace"))  # fmt: skip

    def _mark_down(self, exc: BaseException | None) -> None:
        if self._redis_ok:
            self._redis_ok = False
            self._down_since = time.monotonic()
            self._metrics.redis_up.set(0)
            log.error("redis unavailable (%s); buffering up to %d bytes of events",
                      type(exc).__name__ if exc else "connection closed", self._config.outage_buffer_bytes)  # fmt: skip
            self._room_freed()

    def _mark_up(self) -> None:
        if self._redis_ok:
            return
        self._redis_ok = True
        self._metrics.redis_up.set(1)
        down_for = time.monotonic() - self._down_since if self._down_since else 0.0
        log.warning("redis available again after %.1f s; publishing %d buffered events",
                    down_for, len(self._pending))  # fmt: skip

    # --- shedding ------------------------------------------------------------------------------

    def _shed(self) -> None:
        """Bring what is held under 90 % of its bound: oldest unsent media first, then oldest text."""
        target = self._config.outage_buffer_bytes * 9 // 10
        dropped: dict[str, int] = {}
        if self._held_media:
            kept: deque[_Outgoing] = deque()
            for item in self._pending:
                if item.media and self._held_bytes > target:
                    self._forget(item, "outage_buffer_full_media", dropped)
                else:
                    kept.append(item)
            self._pending = kept
        while self._held_bytes > target and self._pending:
            self._forget(self._pending.popleft(), "outage_buffer_full_text", dropped)
        for reason, n in dropped.items():
            log.error("outage buffer full: dropped %d events (%s)", n, reason)

    def _forget(self, item: _Outgoing, reason: str, tally: dict[str, int]) -> None:
        self._held_bytes -= len(item.body)
        if item.media:
            self._held_media -= 1
        self._count_drop(item, reason)
        tally[reason] = tally.get(reason, 0) + 1

    def _count_drop(self, item: _Outgoing, reason: str) -> None:
        self._dropped += 1
        self._metrics.events_dropped.labels(item.label[0], reason).inc()
        if self._done_waiters:
            self._wake_done_waiters()


def _add_counts(counts: dict[tuple[str, str], int], family: Counter, children: dict[tuple[str, str], Any]) -> None:
    """Add per-(source, type) counts to a labelled counter, its children bound once per label pair."""
    for label, n in counts.items():
        child = children.get(label)
        if child is None:
            child = children[label] = family.labels(*label)
        child.inc(n)
