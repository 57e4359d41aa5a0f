"""VideoDBService: everything VideoDB, as the app factory builds and runs it.

Per configured collection, a runner loop::

    standby ──lease acquired──▶ holder: run the collection's socket client, renew every ttl/3
       ▲                           │
       └──── lease lost / released / client stopped ◀──┘

so across any number of relay processes exactly one holds each collection's socket (see
:mod:`~relay.providers.videodb.lease`), and a standby takes over within ``sync_interval_s`` of a
release, or ``lease_ttl_s`` after a holder died. Plus the webhook endpoint (:attr:`routes`), which
every process serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.routing import BaseRoute

from relay.core.metrics import RelayMetrics
from relay.providers.videodb.client import VideoDBCollectionClient, raise_if_cancelling
from relay.providers.videodb.config import ResolvedCollection, VideoDBSettings
from relay.providers.videodb.jobs import fetch_capture_session
from relay.providers.videodb.lease import Lease
from relay.providers.videodb.parse import RtStreamInfo
from relay.providers.videodb.registry import RtStreamRegistry
from relay.providers.videodb.store import JobStore, SegmentMarks, TranscriptCursor
from relay.providers.videodb.webhooks import WebhookReceiver
from relay.core.publisher import EventPublisher

__all__ = ["VideoDBService"]

log = logging.getLogger("relay.videodb")


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it, cancelling again should a library swallow the first cancel."""
    attempts = 0
    while not task.done():
        if attempts:
            log.warning("videodb: %s ignored a cancel; cancelling again", task.get_name())
        task.cancel()
        attempts += 1
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        task.exception()  # retrieved: the caller logs it if it matters


class _CollectionRunner:
    """Holds (or waits for) one collection's lease and runs its client while held."""

    def __init__(self, collection: ResolvedCollection, settings: VideoDBSettings, client: VideoDBCollectionClient,
                 lease: Lease, metrics: RelayMetrics) -> None:  # fmt: skip
        self.collection = collection
        self.client = client
        self.lease = lease
        self._settings = settings
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None

    @property
    def holding(self) -> bool:
        return self.lease.held

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"videodb-{self.collection.id}")

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        cid = self.collection.id
        while not self.client.rejected:
            try:
                async with asyncio.timeout(self.lease.ttl_ms / 1000):
                    acquired = await self.lease.acquire()
            except (RedisError, TimeoutError):
                raise_if_cancelling()
                self._metrics.redis_errors.labels("videodb_lease").inc()
                acquired = False
            if not acquired:
                await asyncio.sleep(self._settings.sync_interval_s)
                continue
            self._metrics.videodb_lease_held.labels(cid).set(1)
            self._metrics.videodb_lease_acquired.labels(cid).inc()
            log.info("videodb %s: lease acquired; this process holds the socket", cid)
            try:
                await self._hold()
            finally:
                self._metrics.videodb_lease_held.labels(cid).set(0)
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self._settings.http_timeout_s):
                        await self.lease.release()
            # Lost the lease, or the client crashed: pause before competing again, so a crash
            # loop cannot spin and another process gets a fair chance at the lease.
            if not self.client.rejected:
                await asyncio.sleep(self._settings.sync_interval_s)

    async def _hold(self) -> None:
        """Run the client while renewing; return when the lease is lost or the client stops."""
        client = asyncio.create_task(self.client.run(), name=f"videodb-client-{self.collection.id}")
        try:
            interval = self.lease.ttl_ms / 1000 / 3
            while not client.done():
                await asyncio.wait({client}, timeout=interval)
                if client.done():
                    break
                try:
                    # A renewal that hangs (Redis unreachable but not refusing) must not outlive
                    # the lease: past its validity another process may hold the collection.
                    async with asyncio.timeout(max(self.lease.remaining_s, 0.01)):
                        renewed = await self.lease.renew()
                    if not renewed:
                        log.warning("videodb %s: lease lost to another process; closing the socket", self.collection.id)
                        return
                except (RedisError, TimeoutError):
                    raise_if_cancelling()
                    self._metrics.redis_errors.labels("videodb_lease").inc()
                    if not self.lease.held:  # too long since the last renewal: another may hold it now
                        log.warning("videodb %s: cannot renew the lease (Redis); closing the socket", self.collection.id)
                        return
        finally:
            await cancel_and_wait(client)
            if not client.cancelled() and client.exception() is not None:
                # A bug, not an upstream failure (those are retried inside the client): log it; the
                # runner gives the lease up and starts over, so one collection cannot wedge.
                self._metrics.upstream_errors.labels("videodb", "internal").inc()
                log.error("videodb %s: client crashed", self.collection.id, exc_info=client.exception())


class VideoDBService:
    """The VideoDB bridge: one socket per collection (leased across processes) and the webhooks.

    :param key_prefix: prefix of this service's Redis keys (leases, registry, webhook dedupe).
    """

    def __init__(
        self,
        settings: VideoDBSettings,
        publisher: EventPublisher,
        metrics: RelayMetrics,
        redis: Redis,
        *,
        key_prefix: str = "relay",
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self._http: dict[str, httpx.AsyncClient] = {}
        self._runners: dict[str, _CollectionRunner] = {}
        registries: dict[str, RtStreamRegistry] = {}
        marks: dict[str, SegmentMarks] = {}
        collections = settings.resolved() if settings.enabled else []
        for collection in collections:
            http = httpx.AsyncClient(
                base_url=collection.base_url,
                headers={"x-access-token": collection.api_key.get_secret_value()},
                timeout=settings.http_timeout_s,
                trust_env=False,
            )
            registry = RtStreamRegistry(redis, key_prefix, collection.id)
            store = JobStore(redis, key_prefix, collection.id)
            cursor = TranscriptCursor(redis, key_prefix, collection.id)
            # A claim not confirmed as published expires when a dead holder's lease does, before a
            # standby can take the collection over and fetch the gap back.
            marks[collection.id] = SegmentMarks(redis, key_prefix, collection.id, settings.segment_dedupe_ttl_s, metrics,
                                                settings.http_timeout_s, pending_s=settings.lease_ttl_s)  # fmt: skip
            client = VideoDBCollectionClient(collection, settings, publisher, metrics, registry, http, store, key_prefix,
                                             cursor=cursor, marks=marks[collection.id])  # fmt: skip
            lease = Lease(redis, f"{key_prefix}:videodb:{collection.id}:lease", settings.lease_ttl_s)
            self._http[collection.id] = http
            registries[collection.id] = registry
            self._runners[collection.id] = _CollectionRunner(collection, settings, client, lease, metrics)
        self._webhooks = WebhookReceiver(settings, publisher, metrics, redis, registries, self._on_active, key_prefix,
                                         fetch_session=self._fetch_session, segment_marks=marks)  # fmt: skip
        self._started = False

    @property
    def routes(self) -> list[BaseRoute]:
        """The webhook routes (empty when VideoDB is disabled)."""
        return self._webhooks.routes if self._runners else []

    def holds(self, collection_id: str) -> bool:
        """True while this process holds the collection's socket lease."""
        runner = self._runners.get(collection_id)
        return runner is not None and runner.holding

    def is_running(self, collection_id: str) -> bool:
        """False once the collection stopped for good (its key was rejected) or the service closed."""
        runner = self._runners.get(collection_id)
        return runner is not None and runner.running

    def client(self, collection_id: str) -> VideoDBCollectionClient:
        return self._runners[collection_id].client

    async def _fetch_session(self, collection_id: str, capture_session_id: str) -> tuple[str | None, tuple[RtStreamInfo, ...]]:
        return await fetch_capture_session(self._http[collection_id], collection_id, capture_session_id)

    def _on_active(self, collection_id: str) -> None:
        # Only the holder binds; another process' holder picks the rtstreams up from the registry.
        runner = self._runners.get(collection_id)
        if runner is not None and runner.holding:
            runner.client.nudge()

    async def start(self) -> None:
        if self._started or not self._runners:
            return
        self._started = True
        self._webhooks.start()
        for runner in self._runners.values():
            runner.start()

    async def aclose(self) -> None:
        """Finish queued webhooks, close the sockets and release the leases."""
        started = time.monotonic()
        await self._webhooks.aclose()
        await asyncio.gather(*(runner.aclose() for runner in self._runners.values()))
        for http in self._http.values():
            await http.aclose()
        self._started = False
        log.debug("videodb: closed in %.2fs", time.monotonic() - started)
