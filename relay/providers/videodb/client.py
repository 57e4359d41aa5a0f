"""One VideoDB collection's event socket: fetch URL, connect, bind jobs, publish, reconnect.

::

    GET /collection/{id}/websocket ──▶ connect (pings) ──▶ first frame: connection_id
         ▲                                   │                     │
         │ backoff (full jitter)             │ frames ──parse──▶ publisher
         └──── drop / dead socket / 5xx ◀────┘          │
                                                        └─ bind jobs of every live rtstream
                                                           (registry) to this connection id

* A fresh URL before **every** connect (VideoDB's URLs are temporary).
* After every connect the configured jobs of every live rtstream are bound to the new
  ``connection_id`` (VideoDB delivers a job's events only to the socket it was started with),
  each index **replacing** its predecessor, which is stopped first
  (:mod:`~relay.providers.videodb.jobs`). Failed jobs are retried per rtstream and job with
  backoff (:mod:`~relay.providers.videodb.retry`) and reported if they keep failing. New
  rtstreams (from webhooks, possibly on another replica) are picked up from the registry every
  ``sync_interval_s`` or at once after :meth:`nudge`; on taking the lease the client first fetches
  the capture sessions the registry holds.
* After a **reconnect**, and after **taking the lease** over (a failover or rollout), the
  transcript segments the socket missed are fetched back over REST and published, deduplicated
  against the socket (:mod:`~relay.providers.videodb.dedupe`). The start of the last final
  segment published is kept per rtstream in Redis (:class:`~relay.providers.videodb.store.TranscriptCursor`),
  so the replica taking a collection over knows where its predecessor stopped.
* The gap from a drop until the new socket is re-bound is observed in ``relay_upstream_gap_seconds``.
* 401/403 (from the URL endpoint or a job start) stop this collection: error log, metric
  ``relay_upstream_errors_total{reason="auth"}``; everything else is retried with backoff.
* A malformed frame is counted (``relay_frames_rejected_total``) and skipped; the socket stays.

The client never holds the lease itself: :class:`~relay.providers.videodb.service.VideoDBService`
runs it only while this process holds the collection's lease, and cancels it when that ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import datetime, timezone

import httpx
import websockets
from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection, connect

from relay.core.backoff import Backoff
from relay.core.metrics import RelayMetrics
from relay.providers.videodb.config import ResolvedCollection, VideoDBSettings
from relay.errors import AuthRejected, FrameRejected, UpstreamError
from relay.providers.videodb.jobs import JobBinder, call, fetch_capture_session, job_label, wanted_jobs
from relay.providers.videodb.dedupe import SegmentDedupe, SegmentKey, segment_key
from relay.providers.videodb.parse import RtStreamInfo, parse_frame, parse_hello, parse_transcript_record, session_for
from relay.providers.videodb.registry import RtStreamRegistry
from relay.providers.videodb.retry import JobRetryPolicy
from relay.providers.videodb.store import JobStore, SegmentMarks, TranscriptCursor
from relay.core.publisher import EventPublisher
from relay.schema import EventBase, EventTime, Source, StreamError, StreamErrorEvent, Transcript, TranscriptEvent

__all__ = ["VideoDBCollectionClient", "raise_if_cancelling"]

log = logging.getLogger("relay.videodb.client")

PROVIDER = "videodb"


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library swallowed.

    A cancel that lands inside a Redis or HTTP call can come back as that library's own error
    (which we catch and retry), leaving the task marked as cancelling but running on; seen in
    tests as a shutdown that never finished. Checked after every such catch.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class VideoDBCollectionClient:
    """The socket of one collection; :meth:`run` until cancelled (or the key is rejected)."""

    def __init__(
        self,
        collection: ResolvedCollection,
        settings: VideoDBSettings,
        publisher: EventPublisher,
        metrics: RelayMetrics,
        registry: RtStreamRegistry,
        http: httpx.AsyncClient,
        store: JobStore,
        name_prefix: str = "relay",
        cursor: TranscriptCursor | None = None,
        marks: SegmentMarks | None = None,
    ) -> None:
        self.collection = collection
        self._settings = settings
        self._publisher = publisher
        self._metrics = metrics
        self._registry = registry
        self._http = http
        self._binder = JobBinder(http, settings, metrics, store, name_prefix)
        self._retry = JobRetryPolicy(settings.job_retry_initial_s, settings.job_retry_max_s, settings.job_failures_reported)
        self._sessions: dict[str, str] = {}  # rtstream id -> capture session id
        self._bound: set[tuple[str, str]] = set()  # (rtstream, job) bound to the current connection
        self._dedupe = SegmentDedupe()  # final transcript segments published (socket and backfill)
        self._last_start: dict[str, datetime] = {}  # rtstream -> start of the last final segment seen
        self._cursor = cursor  # the same, in Redis, for the replica that takes over
        self._cursor_failing = False  # a failed cursor write was logged (once per outage)
        self._marks = marks  # final segments published by any replica (socket, backfill, callbacks)
        # Final segments queued for publishing, to confirm once on Redis: (publisher position, key, rtstream, start).
        self._confirming: deque[tuple[int, SegmentKey, str, datetime | None]] = deque()
        self._confirmer: asyncio.Task[None] | None = None
        self._transcribed: set[str] = set()  # rtstreams whose transcript was bound in this client's life
        self._refreshed = False  # the registry's sessions were fetched from VideoDB once at start
        self._logged_reasons: set[str] = set()  # frame rejection reasons logged on this connection
        self._nudged = asyncio.Event()
        self.connection_id: str | None = None
        #: Set once VideoDB rejected the key: the collection is stopped until the relay restarts.
        self.rejected = False

    def nudge(self) -> None:
        """Re-read the registry now (a webhook registered new rtstreams in this process)."""
        self._nudged.set()

    async def run(self) -> None:
        """Connect and serve until cancelled; returns only when VideoDB rejects the key."""
        try:
            await self._run()
        finally:
            # Unconfirmed segments are left to their claims' expiry and the next holder's backfill.
            if self._confirmer is not None:
                self._confirmer.cancel()
            self._confirming.clear()

    async def _run(self) -> None:
        s = self._settings
        self._refreshed = False  # each hold of the lease starts by refreshing the sessions it inherits
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        down_since: float | None = None
        connected_in_hold = False  # the first connect of a hold fetches back a predecessor's gap
        target = self.collection.id
        while True:
            try:
                url = await self._fetch_url()
                async with connect(
                    url,
                    proxy=None,
                    open_timeout=s.http_timeout_s,
                    ping_interval=s.ping_interval_s,
                    ping_timeout=s.ping_timeout_s,
                    # After a ping timed out, websockets sends a close frame and waits this long
                    # for the TCP close; a vanished peer never answers, so bound it the same way.
                    close_timeout=s.ping_timeout_s,
                    max_size=s.max_frame_bytes,
                ) as ws:
                    hello = await asyncio.wait_for(ws.recv(), s.http_timeout_s)
                    self.connection_id = parse_hello(hello)
                    self._bound = set()
                    self._logged_reasons = set()
                    self._metrics.upstream_connects.labels(PROVIDER).inc()
                    self._metrics.upstream_connected.labels(PROVIDER, target).set(1)
                    log.info("videodb %s: connected (connection %s)", target, self.connection_id)
                    await self.sync()
                    raise_if_cancelling()
                    if not connected_in_hold:  # took the lease: fetch back what the predecessor missed
                        connected_in_hold = True
                        await self._backfill(known_only=True)
                    elif down_since is not None:  # a reconnect: fetch back what the socket missed
                        await self._backfill()
                    if down_since is not None:
                        self._metrics.upstream_gap_seconds.labels(PROVIDER).observe(time.monotonic() - down_since)
                        down_since = None
                    backoff.reset()
                    await self._serve(ws)
                reason = "closed"
            except AuthRejected as exc:
                self.rejected = True
                self._metrics.upstream_errors.labels(PROVIDER, "auth").inc()
                log.error("videodb %s: the API key was rejected (%s); not retrying this collection", target, exc)
                return
            except UpstreamError as exc:
                reason = exc.reason
            except FrameRejected as exc:  # a bounded label: hello_invalid_json, hello_not_an_object, hello_invalid
                reason = f"hello_{exc.reason}" if exc.reason in ("invalid_json", "not_an_object") else "hello_invalid"
            except (TimeoutError, asyncio.TimeoutError):
                reason = "timeout"
            except websockets.exceptions.InvalidStatus:
                reason = "ws_handshake"
            except (OSError, websockets.exceptions.WebSocketException):
                reason = "ws_network"
            finally:
                self._metrics.upstream_connected.labels(PROVIDER, target).set(0)
                self.connection_id = None
            raise_if_cancelling()
            if down_since is None:
                down_since = time.monotonic()
            self._metrics.upstream_errors.labels(PROVIDER, reason).inc()
            self._metrics.upstream_reconnects.labels(PROVIDER).inc()
            delay = backoff.next_delay()
            log.warning("videodb %s: socket down (%s); reconnecting in %.2fs", target, reason, delay)
            await asyncio.sleep(delay)

    async def _fetch_url(self) -> str:
        data = await call(self._http, "GET", f"/collection/{self.collection.id}/websocket")
        url = data.get("websocket_url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise UpstreamError("http_body")
        return url

    async def _serve(self, ws: ClientConnection) -> None:
        """Read frames until the socket closes, re-reading the registry alongside.

        Whichever of the two ends first ends both: a closed socket, or a rejected key while binding.
        """
        reader = asyncio.create_task(self._read(ws), name=f"videodb-read-{self.collection.id}")
        sync = asyncio.create_task(self._sync_loop(), name=f"videodb-sync-{self.collection.id}")
        try:
            done, _ = await asyncio.wait({reader, sync}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            sync.cancel()
            await asyncio.gather(reader, sync, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _read(self, ws: ClientConnection) -> None:
        async for message in ws:
            await self._handle(message)

    async def _handle(self, message: str | bytes) -> None:
        received_ns = time.monotonic_ns()
        self._metrics.frames_received.labels(PROVIDER).inc()
        self._metrics.bytes_received.labels(PROVIDER).inc(len(message))
        try:
            event = parse_frame(message, received=datetime.now(timezone.utc), sessions=self._sessions, collection=self.collection.id)
        except FrameRejected as exc:
            self._metrics.frames_rejected.labels(PROVIDER, exc.reason).inc()
            # Once per reason per socket at warning level: a broken upstream must not flood the log.
            level = logging.DEBUG if exc.reason in self._logged_reasons else logging.WARNING
            self._logged_reasons.add(exc.reason)
            log.log(level, "videodb %s: frame rejected (%s)", self.collection.id, exc)  # reason (field): no content
            return
        await self._deliver(event, received_ns)

    async def _deliver(self, event: EventBase, received_ns: int | None = None) -> bool:
        """Publish ``event`` unless it is a final transcript segment already published (False:
        seen by this client, else claimed in Redis by any replica's socket, backfill or callback);
        after publishing a final segment, advance the rtstream's cursor (in memory and Redis)."""
        final: tuple[str, Transcript] | None = None
        if isinstance(event, TranscriptEvent) and event.payload.is_final and event.session.stream_id is not None:
            final = event.session.stream_id, event.payload
            rts, p = final
            key = segment_key(rts, p.start_time, p.end_time, p.text)
            if not self._dedupe.first(key):
                return False
            if self._marks is not None and not await self._marks.first(key):
                return False  # a transcript callback (on any replica) was first
        await self._publisher.publish(event, received_ns=received_ns)
        if final is not None:
            # Confirmed once on Redis, not when queued: a process that dies with the segment
            # queued leaves a short claim and an unmoved cursor, so the replica taking over
            # fetches the segment back instead of skipping it (relay/providers/videodb/store.py).
            self._confirming.append((self._publisher.accepted, key, final[0], final[1].start_time))
            if self._confirmer is None or self._confirmer.done():
                self._confirmer = asyncio.create_task(self._confirm_published(), name=f"videodb-confirm-{self.collection.id}")
        return True

    async def _confirm_published(self) -> None:
        """Confirm each final segment once the publisher has it on Redis: its mark made lasting,
        the rtstream's cursor moved (in memory and Redis), in the order they were published."""
        confirming = self._confirming
        while confirming:
            position, key, rts, start = confirming[0]
            await self._publisher.wait_done(position)
            confirming.popleft()
            if self._marks is not None:
                await self._marks.confirm(key)
            if start is not None and (rts not in self._last_start or start > self._last_start[rts]):
                self._last_start[rts] = start
                await self._save_cursor(rts, start)

    async def _save_cursor(self, rts: str, start: datetime) -> None:
        if self._cursor is None:
            return
        try:
            async with asyncio.timeout(self._settings.http_timeout_s):
                await self._cursor.set(rts, start)
        except (RedisError, TimeoutError):
            raise_if_cancelling()
            self._metrics.redis_errors.labels("videodb_transcript_cursor").inc()
            if not self._cursor_failing:
                log.warning("videodb %s: cannot record the transcript position in Redis; a takeover may miss a gap",
                            self.collection.id)  # fmt: skip
            self._cursor_failing = True
        else:
            self._cursor_failing = False

    async def _since(self, rts: str) -> datetime | None:
        """The start of the last final segment published, by this process or (Redis) any other."""
        mine = self._last_start.get(rts)
        if self._cursor is None:
            return mine
        try:
            async with asyncio.timeout(self._settings.http_timeout_s):
                stored = await self._cursor.get(rts)
        except (RedisError, TimeoutError):
            raise_if_cancelling()
            self._metrics.redis_errors.labels("videodb_transcript_cursor").inc()
            return mine
        if stored is None or (mine is not None and mine >= stored):
            return mine
        return stored

    async def _backfill(self, *, known_only: bool = False) -> None:
        """After a reconnect or a takeover: publish the final transcript segments the socket
        missed, fetched with ``GET /rtstream/{id}/transcription?since=<start of the last segment
        published>`` (in memory, or in Redis by whichever replica held the socket) and deduplicated
        against what the socket delivered (:mod:`~relay.providers.videodb.dedupe`). With
        ``known_only`` (a takeover) only rtstreams with such a start are fetched: a transcript no
        replica published from is not fetched from its beginning."""
        max_pages = self._settings.backfill_max_pages
        for rts in sorted(self._transcribed):
            if not max_pages or (rts, "transcript") not in self._bound:
                continue
            since = await self._since(rts)
            if since is None and known_only:
                continue
            published = 0
            for page in range(1, max_pages + 1):
                params: dict[str, str | int | float] = {"page": page, "page_size": 100}
                if since is not None:
                    params["since"] = since.timestamp()
                try:
                    data = await call(self._http, "GET", f"/rtstream/{rts}/transcription", params=params)
                except AuthRejected:
                    raise
                except UpstreamError as exc:
                    raise_if_cancelling()
                    self._metrics.upstream_errors.labels(PROVIDER, f"backfill_{exc.reason}").inc()
                    log.warning("videodb %s: cannot fetch the missed transcript of %s (%s)", self.collection.id, rts, exc.reason)
                    break
                records = data.get("transcription_records")
                if not isinstance(records, list):
                    self._metrics.frames_rejected.labels(PROVIDER, "invalid_field").inc()
                    break
                for record in records:
                    try:
                        event = parse_transcript_record(record, rts, received=datetime.now(timezone.utc), sessions=self._sessions)
                    except FrameRejected as exc:
                        self._metrics.frames_rejected.labels(PROVIDER, exc.reason).inc()
                        continue
                    if await self._deliver(event):
                        published += 1
                if data.get("next_page") is not True:
                    break
            if published:
                log.info("videodb %s: %d transcript segments of %s fetched back after the gap", self.collection.id, published, rts)

    async def _sync_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._nudged.wait(), self._settings.sync_interval_s)
            except TimeoutError:
                pass
            self._nudged.clear()
            await self.sync()
            raise_if_cancelling()

    async def sync(self) -> None:
        """Bind every job of every registered rtstream not yet bound to the current connection
        (each failed job once its retry delay passed).

        The client calls it after each connect, every ``sync_interval_s`` and after :meth:`nudge`.
        """
        conn = self.connection_id
        if conn is None:
            return
        try:
            async with asyncio.timeout(self._settings.http_timeout_s):  # a partitioned Redis must not stall binding
                streams = await self._registry.all()
        except (RedisError, TimeoutError):
            raise_if_cancelling()
            self._metrics.redis_errors.labels("videodb_registry").inc()
            log.warning("videodb %s: cannot read the rtstream registry; retrying", self.collection.id)
            return
        if not self._refreshed:
            self._refreshed = True
            streams = await self._refresh_sessions(streams)
        self._sessions = {rts: info.capture_session_id for rts, info in streams.items()}
        wanted = {(rts, job) for rts, info in streams.items() for job in wanted_jobs(info, self._settings)}
        self._bound.intersection_update(wanted)
        self._retry.retain(wanted)
        self._dedupe.retain(streams)
        self._transcribed.intersection_update(streams)
        for gone in [rts for rts in self._last_start if rts not in streams]:
            del self._last_start[gone]
        for rts, info in streams.items():
            for job in wanted_jobs(info, self._settings):
                if (rts, job) in self._bound:
                    continue
                if job.startswith("alert:") and (rts, "visual_index") not in self._bound:
                    continue  # an alert lives on this connection's visual index: after it
                if self._retry.due((rts, job), time.monotonic()):
                    await self._bind(info, job, conn)

    async def _refresh_sessions(self, streams: dict[str, RtStreamInfo]) -> dict[str, RtStreamInfo]:
        """At start, for the sessions already active: fetch each capture session from VideoDB
        (``GET /collection/{c}/capture/session/{id}``) rather than trust the webhook's rtstreams;
        an ended session is forgotten. A failed fetch keeps what the registry has."""
        for cap in sorted({info.capture_session_id for info in streams.values()}):
            try:
                async with asyncio.timeout(self._settings.http_timeout_s * 2):
                    status, fetched = await fetch_capture_session(self._http, self.collection.id, cap)
                    if status in ("stopped", "exported", "failed"):
                        await self._registry.remove_session(cap)
                        log.info("videodb %s: capture session %s has %s; its rtstreams are forgotten", self.collection.id, cap, status)
                    elif fetched:
                        await self._registry.add(fetched)
            except AuthRejected:
                raise
            except (UpstreamError, RedisError, TimeoutError) as exc:
                raise_if_cancelling()
                reason = exc.reason if isinstance(exc, UpstreamError) else "redis"
                self._metrics.upstream_errors.labels(PROVIDER, f"session_{reason}").inc()
                log.warning("videodb %s: cannot refresh capture session %s (%s)", self.collection.id, cap, reason)
        try:
            async with asyncio.timeout(self._settings.http_timeout_s):
                return await self._registry.all()
        except (RedisError, TimeoutError):
            raise_if_cancelling()
            return streams

    async def _bind(self, stream: RtStreamInfo, job: str, conn: str) -> None:
        """Bind one job; a failure is counted, logged and retried with backoff (AuthRejected propagates)."""
        key = (stream.rtstream_id, job)
        label = job_label(job)
        try:
            async with asyncio.timeout(self._settings.http_timeout_s * 4):  # a few calls, each bounded
                await self._binder.bind_job(stream, job, conn)
        except AuthRejected:
            raise
        except (UpstreamError, RedisError, TimeoutError) as exc:
            raise_if_cancelling()
            if isinstance(exc, UpstreamError):
                reason = exc.reason
            else:
                reason = "redis"
                self._metrics.redis_errors.labels("videodb_jobs").inc()
            self._metrics.videodb_jobs_bound.labels(label, "error").inc()
            failure = self._retry.failed(key, time.monotonic())
            log.warning("videodb %s: starting %s on %s failed (%s, %d in a row); retrying in %.1fs",
                        self.collection.id, job, stream.rtstream_id, reason, failure.failures, failure.delay)  # fmt: skip
            if failure.report:
                await self._report(stream, job, reason, failure.failures)
            return
        self._retry.succeeded(key)
        self._bound.add(key)
        if job == "transcript":
            self._transcribed.add(stream.rtstream_id)
        self._metrics.videodb_jobs_bound.labels(label, "ok").inc()
        log.info("videodb %s: %s of %s bound to %s", self.collection.id, job, stream.rtstream_id, conn)

    async def _report(self, stream: RtStreamInfo, job: str, reason: str, failures: int) -> None:
        """A job that keeps failing: an error log, ``outcome="failing"``, and a ``stream.error`` event."""
        self._metrics.videodb_jobs_bound.labels(job_label(job), "failing").inc()
        message = (f"starting {job} on rtstream {stream.rtstream_id} failed {failures} times in a row ({reason}); "
                   f"retrying at most every {self._settings.job_retry_max_s:g}s")  # fmt: skip
        log.error("videodb %s: %s", self.collection.id, message)
        event = StreamErrorEvent(
            source=Source.VIDEODB,
            session=session_for(stream.rtstream_id, stream.name, self._sessions),
            time=EventTime(received=datetime.now(timezone.utc)),
            payload=StreamError(code=f"job_failed:{job_label(job)}", message=message, permanent=False),
        )
        await self._publisher.publish(event)
