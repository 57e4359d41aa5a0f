"""Shared helpers for the VideoDB tests: settings against the emulator and a running service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette

from relay.metrics import RelayMetrics
from relay.providers.videodb.config import VideoDBSettings
from relay.providers.videodb.emulator import AppServer, VideoDBEmulator
from relay.providers.videodb.service import VideoDBService
from relay.publish import ChannelScheme, EventPublisher, PublisherConfig

API_KEY = "sk-test-videodb"

ACTIVE = {
    "version": "2",
    "event": "capture_session.active",
    "timestamp": "2026-01-20T12:34:56Z",
    "capture_session_id": "cap-1",
    "end_user_id": "user_abc",
    "status": "active",
    "data": {
        "rtstreams": [
            {"rtstream_id": "rts-1", "name": "mic:default", "media_types": ["audio"]},
            {"rtstream_id": "rts-3", "name": "display:1", "media_types": ["video"]},
        ]
    },
}


def settings_for(emulator: VideoDBEmulator, **overrides: Any) -> VideoDBSettings:
    """Test-sized settings: fast backoff, a 1 s lease, the registry re-read every 100 ms."""
    values: dict[str, Any] = dict(
        enabled=True,
        base_url=emulator.base_url,
        api_key=API_KEY,
        collections=["default"],
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
        lease_ttl_s=1.0,
        sync_interval_s=0.1,
        http_timeout_s=2.0,
        alerts=[{"label": "sensitive_content", "prompt": "Sensitive content is on screen"}],
    )
    values.update(overrides)
    return VideoDBSettings(**values)


def sample(metrics: RelayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a cheap in-process condition; used only where no event exists to wait on."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def wait_until_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Like :func:`wait_until` for a condition that needs I/O to check (e.g. taking a lease)."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


@dataclass
class Running:
    service: VideoDBService
    server: AppServer
    metrics: RelayMetrics
    publisher: EventPublisher

    @property
    def webhook_url(self) -> str:
        return self.server.url + "/videodb/webhook"


@contextlib.asynccontextmanager
async def running_service(settings: VideoDBSettings, redis_url: str) -> AsyncIterator[Running]:
    """A VideoDBService with its own publisher and Redis client, its webhook routes on a real port:
    what one relay process would run."""
    metrics = RelayMetrics()
    redis = aioredis.Redis.from_url(redis_url)
    publisher = EventPublisher(redis, metrics, PublisherConfig(), ChannelScheme())
    publisher.start()
    service = VideoDBService(settings, publisher, metrics, redis)
    try:
        async with AppServer(Starlette(routes=service.routes)) as server:
            await service.start()
            try:
                yield Running(service, server, metrics, publisher)
            finally:
                await service.aclose()
    finally:
        await publisher.close(timeout=5)
        await redis.aclose()
