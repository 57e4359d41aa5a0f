"""Every use of uvicorn's and websockets' non-public names, fenced in one module.

The relay's hottest code goes under both libraries' public APIs where it is worth it for speed or
safety, and nowhere else. Each such use is here, with the reason, so that a new release that
changes one of them fails one contract test (tests/core/test_internals.py) by name, not a
hostile-input test by symptom. pyproject.toml bounds both libraries from above; raise a bound on
purpose, after that test passes against the new release.

uvicorn:

* :class:`HttpToolsProtocol` (``uvicorn.protocols.http.httptools_impl``) is subclassed by
  :class:`relay.server.serve.RelayHttpProtocol` to put a deadline and a size limit on the request
  head. The subclass overrides ``connection_made``, ``data_received``, ``on_headers_complete``,
  ``handle_websocket_upgrade`` and ``connection_lost``, and reads the instance's ``loop``,
  ``transport``, ``client`` and ``parser`` (it drops the parser after an upgrade, see there).
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

from typing import Any, Protocol

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.server import ServerProtocol

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["HttpToolsProtocol", "apply_mask", "clear_parser_failure", "forget_captured_signals", "parser_failure", "server_connections"]


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
