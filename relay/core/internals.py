"""Every use of uvicorn's and websockets' non-public names, fenced in one module.

The relay's hottest code goes under both libraries' public APIs where it is worth it for speed or
safety, and nowhere else. Each such use is here, with the reason, so that a new release that
changes one of them fails one contract test (tests/core/test_internals.py) by name, not a
hostile-input test by symptom. pyproject.toml bounds both libraries from above; raise a bound on
purpose, after that test passes against the new release.

uvicorn:

* :class:`HttpToolsProtocol` (``uvicorn.protocols.http.httptools_impl``) is subclassed here by
  :class:`RelayHttpProtocol` to put a deadline and a size limit on the request head (the server
  uses it, relay/server/serve.py). The subclass overrides ``connection_made``, ``data_received``,
  ``on_headers_complete``, ``handle_websocket_upgrade`` and ``connection_lost``, and reads the
  instance's ``loop``, ``transport``, ``client`` and ``parser`` (it drops the parser after an
  upgrade, see there).
* The ``ws=`` option takes a protocol factory that uvicorn calls as ``factory(config=...,
  server_state=..., app_state=...)``; :func:`server_connections` reads ``server_state.connections``,
  the set whose members uvicorn calls ``shutdown()`` on when it stops (the Recall ingress' 1012
  drain).
* :func:`forget_captured_signals` clears ``Server._captured_signals``, which uvicorn re-raises
  once it has stopped (the relay's drained SIGTERM is a clean exit).

websockets:

* :func:`apply_mask` is websockets' C unmasking (``websockets.speedups``, not documented), used by
  :class:`relay.core.wsframes.DataFrameSplitter`; the pure-Python one where the C extension is
  missing.
* :func:`parser_failure` reads ``ServerProtocol.parser_exc``: the exception websockets' parser
  stopped on (protocol error, oversize frame, EOF mid-frame). The sans-I/O API reports it only by
  the close it queues; the ingress needs the cause to count it and to stop feeding the splitter.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = [
    "HttpToolsProtocol",
    "RelayHttpProtocol",
    "apply_mask",
    "clear_parser_failure",
    "forget_captured_signals",
    "parser_failure",
    "server_connections",
]

log = logging.getLogger("relay")


class RelayHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a deadline and a size limit for the request head.

    uvicorn waits forever for the first request on a new connection and buffers a header of any
    size, so a client that connects and sends nothing, trickles a header or sends an endless one
    would hold a socket, a file descriptor and memory. Here the request line and headers,
    WebSocket upgrade included, must arrive within ``handshake_timeout_s`` and fit in
    ``max_head_bytes`` (else HTTP 431), or the connection is closed.
    """

    handshake_timeout_s: float = 10.0
    max_head_bytes: int = 64 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.handshake_timeout_s, self._head_timed_out
        )
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._head_bytes < 0:  # refused: discard the rest until the close
            return
        if self._head_deadline is not None:  # still reading the request head
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()
                return
        super().data_received(data)

    def _refuse_head(self) -> None:
        self._cancel_head_deadline()
        self._head_bytes = -1
        log.warning("refused a request head over %d bytes from %s (HTTP 431)",
                    self.max_head_bytes, "%s:%d" % self.client if self.client else "?")  # fmt: skip
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        # Closing with unread input would reset the connection and could lose the answer: end our
        # side, drop what still comes for a moment, then close.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(1.0, self.transport.close)

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        # The socket now belongs to the WebSocket protocol. Drop the parser, whose callbacks point
        # back here: that cycle would keep this object and the transport alive until the cyclic
        # GC runs, ~30 objects per connection for it to find (relay/core/gc_policy.py).
        self.parser = None  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _cancel_head_deadline(self) -> None:
        if getattr(self, "_head_deadline", None) is not None:
            self._head_deadline.cancel()  # type: ignore[union-attr]
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection from %s that sent no request head in %.0f s",
                     "%s:%d" % self.client if self.client else "?", self.handshake_timeout_s)  # fmt: skip
            self.transport.close()


class _ServerState(Protocol):
    connections: set[Any]


def server_connections(server_state: _ServerState | None) -> set[Any]:
    """The set of connections uvicorn shuts down when it stops (a new empty one outside uvicorn)."""
    return server_state.connections if server_state is not None else set()


def forget_captured_signals(server: uvicorn.Server) -> None:
    """Keep uvicorn from re-raising the signals it caught once it has stopped."""
    server._captured_signals.clear()


def parser_failure(protocol: ServerProtocol) -> Exception | None:
    """What websockets' parser failed on, or None while it is parsing."""
    return protocol.parser_exc


def clear_parser_failure(protocol: ServerProtocol) -> None:
    """Drop the traceback of the parser's failure: it refers back to the connection through the
    parser coroutine's frame, a cycle only the cyclic GC would free (relay/core/gc_policy.py)."""
    exc = protocol.parser_exc
    if exc is not None:
        exc.__traceback__ = None
