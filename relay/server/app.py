"""The app factory: builds every component from :class:`~relay.server.settings.Settings` and wires them.

Nothing is global: :func:`create_app` makes the metrics registry, the Redis client, the publisher,
the Recall ingress and the provider bridges, hands each what it needs, and keeps them on
``app.state.relay`` (a :class:`Relay`) for the lifespan, the ops endpoints and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from relay.core.gc_policy import GcFreezer
from relay.core.metrics import CONTENT_TYPE_LATEST, RelayMetrics
from relay.core.observers import RecallObserver
from relay.providers.asapp.bridge import AsappBridge
from relay.providers.recall.auth import SignatureVerifier, TokenVerifier
from relay.providers.recall.ingress import RecallIngress
from relay.providers.videodb.service import VideoDBService
from relay.channels import ChannelScheme
from relay.core.event_log import LogConfig
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.core.sessions import LifecycleConfig, SessionTracker
from relay.server.settings import Settings

log = logging.getLogger("relay")


class Component(Protocol):
    """A provider bridge with a lifetime: started after the publisher, closed before it."""

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...


@dataclass
class Relay:
    """The running relay's parts."""

    settings: Settings
    metrics: RelayMetrics
    redis: Redis
    publisher: EventPublisher
    ingress: RecallIngress
    components: list[Component] = field(default_factory=list)
    #: session.started/ended and the sessions index (None when the log is off).
    sessions: SessionTracker | None = None
    #: monotonic time the shutdown began (SIGTERM), set by the server; bounds the flush.
    shutdown_started: float | None = None

    def begin_shutdown(self) -> None:
        if self.shutdown_started is None:
            self.shutdown_started = time.monotonic()
        self.ingress.begin_shutdown()


def build_redis(settings: Settings) -> Redis:
    """The pooled client for readiness, leases and webhook dedupe (events go over the publisher's own
    link, relay/core/redis_link.py). Retries are the callers' job, so none here."""
    return Redis.from_url(
        settings.redis.url,
        socket_timeout=settings.redis.socket_timeout_s,
        socket_connect_timeout=min(settings.redis.socket_timeout_s, 2.0),
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


def log_config(settings: Settings) -> LogConfig | None:
    """The publisher's part of ``[log]``; None when the log is off."""
    log = settings.log
    if not log.enabled:
        return None
    return LogConfig(max_entries=log.max_entries, media=log.media, media_max_entries=log.media_max_entries,
                     live_log_id=log.live_log_id, partials=log.partials)  # fmt: skip


def create_app(settings: Settings) -> Starlette:
    """Build the relay as an ASGI app (uvicorn serves it; see :mod:`relay.server.serve`)."""
    metrics = RelayMetrics()
    redis = build_redis(settings)
    publisher = EventPublisher(
        settings.redis.url,
        metrics,
        PublisherConfig(
            queue_max_events=settings.redis.queue_max_events,
            batch_max_events=settings.redis.batch_max_events,
            outage_buffer_bytes=settings.redis.outage_buffer_bytes,
            timeout_s=settings.redis.socket_timeout_s,
            log=log_config(settings),
        ),
        ChannelScheme(settings.redis.channel_prefix),
    )
    components: list[Component] = []
    observers: list[RecallObserver] = []
    extra_routes: list[BaseRoute] = []

    if settings.asapp.enabled:
        asapp = AsappBridge(settings.asapp, publisher, metrics)
        components.append(asapp)
        observers.append(asapp)

    if settings.videodb.enabled:
        # Redis keys (leases, rtstream registry, webhook dedupe) share the channel prefix, so two
        # relay deployments on one Redis stay apart the same way their channels do.
        videodb = VideoDBService(settings.videodb, publisher, metrics, redis, key_prefix=settings.redis.channel_prefix)
        components.append(videodb)
        extra_routes.extend(videodb.routes)

    sessions = None
    if settings.log.enabled:
        lifecycle = LifecycleConfig.from_grace(settings.log.end_grace_s, settings.log.retention_s)
        sessions = SessionTracker(redis, publisher, metrics, lifecycle)

    recall = settings.recall
    path = recall.path.rstrip("/") or "/recall"
    signatures = None
    if recall.signing_secrets or recall.require_signature:
        signatures = SignatureVerifier(
            (s.get_secret_value() for s in recall.signing_secrets),
            tolerance_s=recall.signature_tolerance_s,
            required=recall.require_signature,
        )
    ingress = RecallIngress(
        publisher=publisher,
        metrics=metrics,
        tokens=TokenVerifier(t.get_secret_value() for t in recall.tokens),
        signatures=signatures,
        observers=observers,
        paths=(path, path + "/"),
        max_connections=recall.max_connections,
        max_frame_bytes=recall.max_frame_bytes,
        ping_interval_s=recall.ping_interval_s,
        ping_timeout_s=recall.ping_timeout_s,
        # Within uvicorn's wait for connections to close (half the grace), leaving time to flush.
        drain_timeout_s=settings.server.shutdown_grace_s * 0.4,
        sessions=sessions,
    )
    relay = Relay(settings, metrics, redis, publisher, ingress, components, sessions=sessions)
    freezer = GcFreezer()

    routes: list[BaseRoute] = [
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        *extra_routes,
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        publisher.start()
        if sessions is not None:
            sessions.start()
        ingress.start()
        for component in components:
            await component.start()
        # Full GC passes stop the loop for a time that grows with the heap: keep startup objects and
        # connection state out of them (relay/core/gc_policy.py).
        freezer.freeze_startup()
        freezing = asyncio.create_task(freezer.run(), name="relay-gc-freezer")
        log.info("relay ready: Recall endpoint at %s, publishing to Redis", path)
        try:
            yield
        finally:
            freezing.cancel()
            relay.begin_shutdown()
            assert relay.shutdown_started is not None
            deadline = relay.shutdown_started + settings.server.shutdown_grace_s

            def left(share: float = 1.0) -> float:
                return max((deadline - time.monotonic()) * share, 0.5)

            # Bridges first, together, with half of what is left: their last events (ASAPP final
            # transcripts and summaries) still go through the publisher, which gets the rest.
            if components:
                closing = [asyncio.create_task(c.aclose()) for c in components]
                _, late = await asyncio.wait(closing, timeout=left(0.5))
                for task in late:
                    log.error("shutdown: %r did not close in time", task)
                    task.cancel()
            await ingress.aclose(timeout=left(0.5))
            if sessions is not None:
                await sessions.aclose()  # ends no session: the bots reconnect to another replica
            await publisher.aclose(timeout=left())
            stats = publisher.stats
            log.info(
                "relay stopped: %d events accepted, %d published, %d dropped",
                stats["accepted"], stats["published"], stats["dropped"],
            )  # fmt: skip
            await redis.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.relay = relay
    return app


def _relay(request: Request) -> Relay:
    return request.app.state.relay  # type: ignore[no-any-return]


async def _metrics(request: Request) -> Response:
    return Response(_relay(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _healthz(request: Request) -> Response:
    """Liveness: the process serves requests. Redis being down is not a reason to restart it."""
    return JSONResponse({"status": "ok"})


async def _readyz(request: Request) -> Response:
    """Readiness: Redis answers and the relay is not draining."""
    relay = _relay(request)
    problems: dict[str, Any] = {}
    if relay.shutdown_started is not None:
        problems["shutdown"] = "draining"
    try:
        async with asyncio.timeout(1.0):
            await relay.redis.ping()
    except (RedisError, OSError, TimeoutError):
        problems["redis"] = "unavailable"
    if problems:
        return JSONResponse({"status": "unavailable", **problems}, status_code=503)
    return JSONResponse({"status": "ready"})
