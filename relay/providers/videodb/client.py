"""One VideoDB collection's event socket: fetch URL, connect, bind jobs, publish, reconnect.

::

    GET /collection/{id}/websocket ──▶ connect (pings) ──▶ first frame: connection_id
         ▲                                   │                     │
         │ backoff (full jitter)             │ frames ──parse──▶ publisher
         └──── drop / dead socket / 5xx ◀────┘          │
                                                        └─ bind jobs of every live rtstream
                                                           (registry) to this connection id

* A fresh URL before **every** connect (VideoDB's URLs are temporary).
* After every connect the configured jobs of every live rtstream are bound **again** to the new
  ``connection_id``: VideoDB delivers a job's events only to the socket it was started with, so
  without this the events silently stop. New rtstreams (from webhooks, possibly on another replica)
  are picked up from the registry every ``sync_interval_s`` or at once after :meth:`nudge`.
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
from datetime import datetime, timezone

import httpx
import websockets
from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection, connect

from relay.core.backoff import Backoff
from relay.core.metrics import RelayMetrics
from relay.providers.videodb.config import ResolvedCollection, VideoDBSettings
from relay.errors import AuthRejected, FrameRejected, UpstreamError
from relay.providers.videodb.jobs import JobBinder, call
from relay.providers.videodb.parse import RtStreamInfo, parse_frame, parse_hello
from relay.providers.videodb.registry import RtStreamRegistry
from relay.core.publisher import EventPublisher

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
    ) -> None:
        self.collection = collection
        self._settings = settings
        self._publisher = publisher
        self._metrics = metrics
        self._registry = registry
        self._http = http
        self._binder = JobBinder(http, settings, metrics)
        self._sessions: dict[str, str] = {}  # rtstream id -> capture session id
        self._bound: set[str] = set()  # rtstreams bound to the current connection
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
        s = self._settings
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        down_since: float | None = None
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
            event = parse_frame(message, received=datetime.now(timezone.utc), sessions=self._sessions)
        except FrameRejected as exc:
            self._metrics.frames_rejected.labels(PROVIDER, exc.reason).inc()
            # Once per reason per socket at warning level: a broken upstream must not flood the log.
            level = logging.DEBUG if exc.reason in self._logged_reasons else logging.WARNING
            self._logged_reasons.add(exc.reason)
            log.log(level, "videodb %s: frame rejected (%s)", self.collection.id, exc)  # reason (field): no content
            return
        await self._publisher.publish(event, received_ns=received_ns)

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
        """Bind the jobs of every registered rtstream not yet bound to the current connection.

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
        self._sessions = {rts: info.capture_session_id for rts, info in streams.items()}
        self._bound.intersection_update(streams)
        for rts, info in streams.items():
            if rts not in self._bound and await self._bind(info, conn):
                self._bound.add(rts)

    async def _bind(self, stream: RtStreamInfo, conn: str) -> bool:
        ok = await self._binder.bind(stream, conn)
        if ok:
            log.info("videodb %s: jobs of %s bound to %s", self.collection.id, stream.rtstream_id, conn)
        return ok
