"""Fixtures shared by the whole suite: a private Redis, subscribers, the relay server, emulators.

Everything here talks over real sockets: a ``redis-server`` started for this test session on a free
port, the relay app served by uvicorn on a free port, and the provider emulators likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import settings

from relay.dev.local_redis import RedisServerProcess
from relay.core.metrics import RelayMetrics
from relay.schema import EventBase, parse_event

# Property tests assert behaviour, not speed: hypothesis' default 200 ms deadline per example fails
# them at random on a loaded CI machine, which is a timed test in disguise.
settings.register_profile("relay", deadline=None)
settings.load_profile("relay")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServerProcess]:
    """This test session's own redis-server; tests may ``stop()`` and ``start()`` it (same port)."""
    with RedisServerProcess() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServerProcess) -> str:
    """The private Redis' URL, restarted if a previous test left it stopped."""
    redis_server.start()
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def metrics() -> RelayMetrics:
    return RelayMetrics()


class EventCollector:
    """A Redis pattern subscriber that keeps every event it receives, parsed into the schema.

    It subscribes synchronously and reads on its own thread, like a separate consumer process:
    after ``subscribe()`` returns, every later publish is seen, even if no await happened in
    between (which lets a test restart Redis and subscribe before the relay can publish).
    Tests wait on it (``await collector.wait_for(n)``) instead of sleeping.
    """

    def __init__(self, url: str, pattern: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self.pattern = pattern
        self.events: list[EventBase] = []
        self.channels: list[str] = []
        self.errors: list[BaseException] = []
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self) -> EventCollector:
        self._pubsub.psubscribe(self.pattern)
        self._pubsub.get_message(timeout=5.0)  # the subscription confirmation: from here, publishes are seen
        self._thread = threading.Thread(target=self._read, name=f"collector {self.pattern}", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.1)
            except Exception as exc:  # Redis went away: keep what was read, report it
                self.errors.append(exc)
                return
            if message is None or message["type"] != "pmessage":
                continue
            event = parse_event(message["data"])
            self._loop.call_soon_threadsafe(self._add, message["channel"].decode(), event)

    def _add(self, channel: str, event: EventBase) -> None:
        self.channels.append(channel)
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[EventBase]:
        """Wait until at least ``count`` events arrived; fail the test after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self._pubsub.close()
        self._client.close()


@pytest.fixture
async def collect(redis_url: str) -> AsyncIterator[Any]:
    """``collect("relay:events:*")`` returns a subscribed :class:`EventCollector` (no await needed)."""
    collectors: list[EventCollector] = []

    def make(pattern: str = "relay:*") -> EventCollector:
        collector = EventCollector(redis_url, pattern).subscribe()
        collectors.append(collector)
        return collector

    yield make
    for collector in collectors:
        collector.close()


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# --- relay server ----------------------------------------------------------------------------------

RECALL_TOKEN = "test-token-0123456789abcdef"


class TcpProxy:
    """A loopback TCP proxy in front of a server (Redis) that can fail the way networks do.

    * :meth:`cut` closes every connection open now (a reset); new ones flow.
    * :meth:`block` closes them and refuses new ones (closed as soon as accepted) until
      :meth:`unblock`: the server is unreachable for a while, then back with its data intact.
    * :attr:`eat_replies`: the server runs what it is sent, but its replies are swallowed: a
      failure mid-batch, the case where a client that re-sends could duplicate.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self.eat_replies = False
        self.blocked = False
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        self.eat_replies = False
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def block(self) -> None:
        self.blocked = True
        self.cut()

    def unblock(self) -> None:
        self.blocked = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if not (replies and self.eat_replies):
                        dst.write(data)
                        await dst.drain()
            dst.close()

        for src, dst, replies in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(pipe(src, dst, replies))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@dataclass
class RunningRelay:
    """A relay served by uvicorn on a free port, in this test's event loop."""

    app: Any
    server: Any
    port: int
    scheme: str = "ws"

    @property
    def relay(self) -> Any:
        return self.app.state.relay

    def recall_url(self, token: str | None = RECALL_TOKEN, path: str = "/recall/") -> str:
        query = f"?token={token}" if token is not None else ""
        return f"{self.scheme}://127.0.0.1:{self.port}{path}{query}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.scheme == 'wss' else 'http'}://127.0.0.1:{self.port}"

    def metric(self, name: str, **labels: str) -> float:
        return self.relay.metrics.registry.get_sample_value(name, labels) or 0.0

    async def stop(self) -> None:
        self.server.should_exit = True
        await self._task

    _task: Any = None


@pytest.fixture
async def start_relay(redis_url: str) -> AsyncIterator[Any]:
    """``await start_relay(recall={...}, ...)`` serves a relay with these settings overrides."""
    from relay.server.app import create_app
    from relay.server.serve import RelayServer, uvicorn_config
    from relay.server.settings import load_settings

    running: list[RunningRelay] = []

    async def start(**sections: dict[str, Any]) -> RunningRelay:
        overrides: dict[str, Any] = {
            "redis": {"url": redis_url, "start_local": False},
            "recall": {"tokens": [RECALL_TOKEN]},
            "server": {"shutdown_grace_s": 5.0},
        }
        for section, values in sections.items():
            overrides[section] = {**overrides.get(section, {}), **values}
        settings = load_settings(None, **overrides)
        app = create_app(settings)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn_config(app, settings)
        config.loop = "none"  # the test's loop
        server = RelayServer(config, app.state.relay, embedded=True)  # signals stay pytest's
        result = RunningRelay(app=app, server=server, port=port, scheme="wss" if settings.server.tls_certfile else "ws")
        result._task = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not server.started:
                if result._task.done():
                    result._task.result()
                await asyncio.sleep(0.01)
        running.append(result)
        return result

    yield start
    for result in running:
        if not result._task.done():
            await result.stop()


# --- asapp emulator ---


@pytest.fixture
async def asapp_emulator() -> AsyncIterator[Any]:
    """An ASAPP emulator on a free port, with test-sized limits: audio may run at 20x real time,
    one transcript per 200 ms of audio. Tests may change ``asapp_emulator.config`` fields at any time."""
    from relay.dev.asapp_emulator import AsappEmulator, EmulatorConfig

    config = EmulatorConfig(speed=20.0, burst_ms=2_000, idle_s=10.0, transcript_ms=200)
    async with AsappEmulator(config) as emulator:
        yield emulator


# --- videodb emulator ---


@pytest.fixture
async def videodb_emulator() -> AsyncIterator[Any]:
    """A VideoDB emulator on a free port: API key ``sk-test-videodb``, collections ``default`` and
    ``other``. Tests drive it with ``emit``/``send_raw``/``drop``/``fail_url``/``post_webhook``."""
    from relay.dev.videodb_emulator import VideoDBEmulator

    async with VideoDBEmulator(api_key="sk-test-videodb", collections=("default", "other")) as emulator:
        yield emulator


# --- recall simulator ---


@pytest.fixture
async def recall_bot() -> AsyncIterator[Any]:
    """``bot = await recall_bot(url, retry=..., connect=True)``: a connected ``SimulatedBot``,
    closed at teardown (so no test leaks a socket or its retry task)."""
    from relay.dev.recall_simulator import SimulatedBot

    bots: list[Any] = []

    async def make(url: str, *, connect: bool = True, **kwargs: Any) -> Any:
        bot = SimulatedBot(url, **kwargs)
        bots.append(bot)
        if connect:
            await bot.connect()
        return bot

    yield make
    for bot in bots:
        await bot.close()
