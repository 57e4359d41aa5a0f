"""uvicorn inside a program that owns its event loop and its signals.

The emulators, the demo and the tests serve ASGI apps in their own event loop, next to other
servers. uvicorn's :class:`uvicorn.Server` takes over SIGINT and SIGTERM for as long as it
serves (``signal.signal``, replacing whatever the program installed) and re-raises them when it
stops. With several servers in one process, a Ctrl-C then reached only the server started last:
in ``relay demo`` the VideoDB emulator shut down while the relay was still connected to it, and
the chain of re-raised signals stopped the rest in reverse. :class:`EmbeddedServer` leaves the
signals alone; the program decides what a signal stops, and in which order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["AppServer", "EmbeddedServer"]


class EmbeddedServer(uvicorn.Server):
    """:class:`uvicorn.Server` that never touches signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AppServer:
    """An ASGI app served by uvicorn on this event loop, on a free port unless one is given.

    ``async with AppServer(app) as server: server.url``. Used by the VideoDB emulator and by tests
    that need an app (e.g. the relay's webhook routes) on a real socket.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, graceful_shutdown_s: int | None = None) -> None:
        self.host = host
        self.port = port
        # WebSockets over uvicorn's sans-I/O protocol (websockets' current API): its other
        # implementation is built on websockets.legacy, deprecated upstream.
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", ws="websockets-sansio",
            timeout_graceful_shutdown=graceful_shutdown_s,
        )  # fmt: skip
        self._server = EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name=f"asgi-server-{self.host}:{self.port}")
        while not self._server.started:  # uvicorn offers no awaitable for "listening"
            if self._task.done():
                await self._task  # raises the bind error
                raise RuntimeError("server exited before it started")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await self._task
            self._task = None

    async def __aenter__(self) -> AppServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
