"""Shared helpers for the VideoDB tests: settings against the emulator and a running service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette

from relay.core.metrics import RelayMetrics
from relay.providers.videodb.config import VideoDBSettings
from relay.dev.embedded import AppServer
from relay.dev.videodb_emulator import VideoDBEmulator
from relay.providers.videodb.service import VideoDBService
from relay.channels import ChannelScheme
from relay.core.publisher import EventPublisher, PublisherConfig

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
        job_retry_initial_s=0.05,
        job_retry_max_s=0.2,
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
async def running_service(settings: VideoDBSettings, redis_url: str, publisher_url: str | None = None) -> AsyncIterator[Running]:
    """A VideoDBService with its own publisher and Redis client, its webhook routes on a real port:
    what one relay process would run. ``publisher_url``: the publisher's Redis, if not ``redis_url``
    (a proxy, to cut the publisher off alone)."""
    metrics = RelayMetrics()
    redis = aioredis.Redis.from_url(redis_url)
    publisher = EventPublisher(publisher_url or redis_url, metrics, PublisherConfig(), ChannelScheme())
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
        await publisher.aclose(timeout=5)
        await redis.aclose()


class FreezableProxy:
    """A TCP proxy on loopback that can be frozen: bytes stop flowing both ways but nothing is
    closed, like a peer that vanished behind a NAT or a network partition. Only timeouts notice."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._frozen: list[asyncio.Event] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._partitioned = False
        self.port = 0

    async def __aenter__(self) -> FreezableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        """End a freeze: close every connection; new ones flow normally again."""
        self._partitioned = False
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        self._frozen.clear()

    def freeze(self, new_connections_too: bool = False) -> None:
        """Freeze every connection open now, and with ``new_connections_too`` every later one."""
        self._partitioned = new_connections_too
        for event in self._frozen:
            event.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        frozen = asyncio.Event()
        if self._partitioned:
            frozen.set()
        self._frozen.append(frozen)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                if frozen.is_set():
                    await asyncio.Event().wait()  # swallow everything from now on
                dst.write(data)
                await dst.drain()
            dst.close()

        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
