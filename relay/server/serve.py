"""Serving the relay with uvicorn: WebSocket settings, TLS, and the graceful shutdown.

On SIGTERM (or SIGINT) the relay stops accepting connections and marks itself not ready, uvicorn
closes every open Recall socket with 1012 (service restart) so Recall's retries go to another
replica, the publisher flushes what was accepted, and the process exits within
``server.shutdown_grace_s``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from relay.core.internals import RelayHttpProtocol, forget_captured_signals
from relay.server.app import Relay
from relay.server.settings import Settings

log = logging.getLogger("relay")


class RelayServer(uvicorn.Server):
    """uvicorn's server, telling the relay the moment a shutdown begins.

    ``embedded=True`` (the demo, tests): it serves in a program that owns the signals, so it
    leaves them alone (see :mod:`relay.dev.embedded`) and stops when told (``should_exit``).
    """

    def __init__(self, config: uvicorn.Config, relay: Relay, *, embedded: bool = False) -> None:
        super().__init__(config)
        self.relay = relay
        self.embedded = embedded

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.embedded:
            yield
        else:
            with super().capture_signals():
                yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.relay.begin_shutdown()
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals once it has stopped, so the process would die by
        # SIGTERM; a drain that completed is a clean exit (status 0).
        forget_captured_signals(self)


def uvicorn_config(app: Starlette, settings: Settings, *, fd: int | None = None) -> uvicorn.Config:
    """The uvicorn configuration the relay runs with (also used by tests, on a bound socket)."""
    server = settings.server
    grace = server.shutdown_grace_s
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        fd=fd,
        # WebSocket upgrades go to the Recall ingress' own protocol (see relay.providers.recall.
        # ingress): frames, size limit, pings and backpressure are handled there, not over ASGI.
        ws=app.state.relay.ingress.protocol_factory,
        http=type("RelayHttp", (RelayHttpProtocol,), {"handshake_timeout_s": server.handshake_timeout_s}),
        loop="uvloop",
        lifespan="on",
        log_config=None,  # relay.core.logs configured logging (with redaction) already
        access_log=server.access_log,
        ssl_certfile=str(server.tls_certfile) if server.tls_certfile else None,
        ssl_keyfile=str(server.tls_keyfile) if server.tls_keyfile else None,
        proxy_headers=True,
        forwarded_allow_ips=server.forwarded_allow_ips,
        # Sockets close at once with 1012; this bounds waiting for handlers still publishing.
        # uvicorn annotates int but passes it to asyncio.wait_for, which takes seconds as a float.
        timeout_graceful_shutdown=max(grace / 2, 0.5),  # type: ignore[arg-type]
        server_header=False,
    )


def run(app: Starlette, settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT; blocks."""
    config = uvicorn_config(app, settings)
    server = RelayServer(config, app.state.relay)
    server.run(sockets=[sock] if sock else None)


# --- several processes ------------------------------------------------------------------------------


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too; the kernel spreads connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(config_file: Path | None, overrides: dict[str, Any], secrets: list[str]) -> None:
    from relay.server.app import create_app
    from relay.core.logs import configure_logging
    from relay.server.settings import load_settings

    settings = load_settings(config_file, **overrides)
    configure_logging(settings.server.log_level, secrets)
    run(create_app(settings), settings, reuse_port_socket(settings.server.host, settings.server.port))


def run_workers(settings: Settings, config_file: Path | None, overrides: dict[str, Any], secrets: list[str]) -> int:
    """Serve with ``settings.server.workers`` processes sharing the port (SO_REUSEPORT).

    Each worker is a whole relay (its own publisher, Redis connection and metrics: scrape each, or
    sum in Prometheus). The parent forwards SIGTERM/SIGINT and waits; if a worker dies on its own,
    the others are stopped and the parent exits 1 so the supervisor restarts the set.
    """
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=_worker, args=(config_file, overrides, secrets), name=f"relay-worker-{i}", daemon=False)
        for i in range(settings.server.workers)
    ]
    stopping = False

    def forward(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers:
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc in workers:
            proc.start()
        log.info("serving with %d worker processes on port %d", len(workers), settings.server.port)
        failed = False
        while any(proc.exitcode is None for proc in workers):
            for proc in workers:
                proc.join(timeout=0.2)
                if proc.exitcode not in (None, 0) and not stopping:
                    log.error("%s exited with %s; stopping the others", proc.name, proc.exitcode)
                    failed = True
                    forward(signal.SIGTERM, None)
        # A worker stopped by the forwarded signal before it could install its handlers exits
        # by that signal: that is a clean stop too.
        clean = (0, -signal.SIGTERM, -signal.SIGINT) if stopping else (0,)
        return 1 if failed or any(proc.exitcode not in clean for proc in workers) else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
