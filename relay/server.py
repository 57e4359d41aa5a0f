"""Serving the relay with uvicorn: WebSocket settings, TLS, and the graceful shutdown.

On SIGTERM (or SIGINT) the relay stops accepting connections and marks itself not ready, uvicorn
closes every open Recall socket with 1012 (service restart) so Recall's retries go to another
replica, the publisher flushes what was accepted, and the process exits within
``server.shutdown_grace_s``.
"""

from __future__ import annotations

import socket
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from relay.app import Relay
from relay.settings import Settings


class RelayServer(uvicorn.Server):
    """uvicorn's server, telling the relay the moment a shutdown begins."""

    def __init__(self, config: uvicorn.Config, relay: Relay) -> None:
        super().__init__(config)
        self.relay = relay

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.relay.begin_shutdown()
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals once it has stopped, so the process would die by
        # SIGTERM; a drain that completed is a clean exit (status 0).
        self._captured_signals.clear()


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
        http="httptools",
        loop="uvloop",
        lifespan="on",
        log_config=None,  # relay.logs configured logging (with redaction) already
        access_log=server.access_log,
        ssl_certfile=str(server.tls_certfile) if server.tls_certfile else None,
        ssl_keyfile=str(server.tls_keyfile) if server.tls_keyfile else None,
        proxy_headers=True,
        forwarded_allow_ips=server.forwarded_allow_ips,
        # Sockets close at once with 1012; this bounds waiting for handlers still publishing.
        timeout_graceful_shutdown=max(grace / 2, 0.5),
        server_header=False,
    )


def run(app: Starlette, settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT; blocks."""
    config = uvicorn_config(app, settings)
    server = RelayServer(config, app.state.relay)
    server.run(sockets=[sock] if sock else None)
