"""The app factory: builds every component from :class:`~relay.settings.Settings` and wires them.

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
from starlette.routing import BaseRoute, Route, WebSocketRoute

from relay.metrics import CONTENT_TYPE_LATEST, RelayMetrics
from relay.observe import RecallObserver
from relay.providers.asapp.bridge import AsappBridge
from relay.providers.recall.auth import SignatureVerifier, TokenVerifier
from relay.providers.recall.ingress import RecallIngress
from relay.publish import ChannelScheme, EventPublisher, PublisherConfig
from relay.settings import Settings

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
    #: monotonic time the shutdown began (SIGTERM), set by the server; bounds the flush.
    shutdown_started: float | None = None

    def begin_shutdown(self) -> None:
        if self.shutdown_started is None:
            self.shutdown_started = time.monotonic()
        self.ingress.begin_shutdown()


def build_redis(settings: Settings) -> Redis:
    """One pooled client for the whole process. Retries are the publisher's job, so none here."""
    return Redis.from_url(
        settings.redis.url,
        socket_timeout=settings.redis.socket_timeout_s,
        socket_connect_timeout=min(settings.redis.socket_timeout_s, 2.0),
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


def create_app(settings: Settings) -> Starlette:
    """Build the relay as an ASGI app (uvicorn serves it; see :mod:`relay.server`)."""
    metrics = RelayMetrics()
    redis = build_redis(settings)
    publisher = EventPublisher(
        redis,
        metrics,
        PublisherConfig(
            queue_max_events=settings.redis.queue_max_events,
            batch_max_events=settings.redis.batch_max_events,
            outage_buffer_bytes=settings.redis.outage_buffer_bytes,
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

    recall = settings.recall
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
        max_connections=recall.max_connections,
    )
    relay = Relay(settings, metrics, redis, publisher, ingress, components)

    path = recall.path.rstrip("/") or "/recall"
    routes: list[BaseRoute] = [
        WebSocketRoute(path, ingress),
        WebSocketRoute(path + "/", ingress),
        Route("/metrics", _metrics, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
        *extra_routes,
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        publisher.start()
        for component in components:
            await component.start()
        log.info("relay ready: Recall endpoint at %s, publishing to Redis", path)
        try:
            yield
        finally:
            relay.begin_shutdown()
            for component in reversed(components):
                await component.aclose()
            grace = settings.server.shutdown_grace_s
            left = grace - (time.monotonic() - (relay.shutdown_started or time.monotonic()))
            await publisher.close(timeout=max(left, 0.5))
            stats = publisher.stats
            log.info(
                "relay stopped: %d events accepted, %d published, %d dropped",
                stats["accepted"], stats["published"], stats["dropped"],
            )  # fmt: skip
            await redis.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.relay = relay
    return RecallFastPath(app, ingress, {path, path + "/"})  # type: ignore[return-value]


class RecallFastPath:
    """Hands Recall WebSocket connections straight to the ingress, everything else to Starlette.

    A WebSocket lives for hours, and every ASGI layer it passes through keeps a suspended
    coroutine frame alive for that time: Starlette's error and exception middleware, the router
    and the route. Skipping them for the one hot route saves a few KB per connection.
    """

    def __init__(self, app: Starlette, ingress: RecallIngress, paths: set[str]) -> None:
        self.app = app
        self.state = app.state
        self._ingress = ingress
        self._paths = frozenset(paths)

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "websocket" and scope["path"] in self._paths:
            await self._ingress(scope, receive, send)
        else:
            await self.app(scope, receive, send)


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
