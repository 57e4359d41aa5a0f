"""Contract tests for the non-public names of uvicorn and websockets that relay/core/internals.py
fences in. Each test names the internal it holds to; when a release changes one, the failure says
which, before any behaviour test fails by symptom. pyproject.toml bounds both libraries: raise a
bound once these pass against the new release."""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
from importlib.metadata import version

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from websockets.utils import apply_mask as python_apply_mask

from relay.core import internals


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def test_the_installed_releases_are_within_the_bounds_these_tests_were_run_against() -> None:
    # The bounds of pyproject.toml, repeated: a newer release must pass this file first.
    assert _parse_version(version("uvicorn")) < (0, 55)
    assert _parse_version(version("websockets")) < (18, 0)


# --- uvicorn ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", ["connection_made", "data_received", "on_headers_complete", "handle_websocket_upgrade", "connection_lost"]
)
def test_httptools_protocol_has_the_methods_the_head_guard_overrides(method: str) -> None:
    assert callable(getattr(internals.HttpToolsProtocol, method, None)), f"HttpToolsProtocol.{method} is gone"


async def test_httptools_protocol_sets_the_state_the_head_guard_reads() -> None:
    config = uvicorn.Config(app=lambda scope, receive, send: None, lifespan="off")
    config.load()
    state = ServerState()
    protocol = internals.HttpToolsProtocol(config=config, server_state=state, app_state={})
    ours, theirs = socket.socketpair()
    try:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: protocol, sock=ours)
        assert protocol.loop is loop
        assert protocol.transport is transport
        assert hasattr(protocol, "client")
        assert protocol.parser is not None  # dropped after an upgrade (relay/server/serve.py)
        assert protocol in state.connections  # what uvicorn shuts down when it stops
        transport.close()
    finally:
        theirs.close()


def test_uvicorn_calls_the_ws_factory_with_server_state_and_shuts_its_connections_down() -> None:
    upgrade = inspect.getsource(internals.HttpToolsProtocol.handle_websocket_upgrade)
    assert "server_state=" in upgrade and "app_state=" in upgrade, "uvicorn's ws= factory is called differently"
    shutdown = inspect.getsource(uvicorn.Server.shutdown)
    assert "server_state.connections" in shutdown and ".shutdown()" in shutdown, "uvicorn's shutdown changed"
    assert internals.server_connections(None) == set()
    state = ServerState()
    assert internals.server_connections(state) is state.connections


def test_uvicorn_re_raises_the_signals_kept_in_captured_signals() -> None:
    server = uvicorn.Server(uvicorn.Config(app=lambda scope, receive, send: None))
    assert server._captured_signals == []
    server._captured_signals.append(15)
    internals.forget_captured_signals(server)
    assert server._captured_signals == []
    assert "_captured_signals" in inspect.getsource(uvicorn.Server.capture_signals)
    assert "_captured_signals" in inspect.getsource(uvicorn.Server.handle_exit)


# --- websockets ------------------------------------------------------------------------------------


def test_apply_mask_is_websockets_c_unmasking_and_agrees_with_the_pure_one() -> None:
    import websockets.speedups

    assert internals.apply_mask is websockets.speedups.apply_mask, "websockets.speedups.apply_mask is gone"
    for size in (0, 1, 7, 125, 4096 + 3):
        data, mask = os.urandom(size), os.urandom(4)
        assert internals.apply_mask(data, mask) == python_apply_mask(data, mask)


def _open_server_protocol() -> ServerProtocol:
    protocol = ServerProtocol()
    protocol.receive_data(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    (request,) = protocol.events_received()
    protocol.send_response(protocol.accept(request))  # type: ignore[arg-type]
    return protocol


def test_parser_exc_is_none_while_parsing_and_the_failure_after_a_protocol_error() -> None:
    protocol = _open_server_protocol()
    assert internals.parser_failure(protocol) is None
    protocol.receive_data(Frame(Opcode.TEXT, b"hi").serialize(mask=True, extensions=[]))
    assert internals.parser_failure(protocol) is None
    protocol.receive_data(Frame(Opcode.TEXT, b"unmasked").serialize(mask=False, extensions=[]))
    failure = internals.parser_failure(protocol)
    assert isinstance(failure, Exception), "ServerProtocol.parser_exc no longer holds the parser's failure"
    internals.clear_parser_failure(protocol)
    assert failure.__traceback__ is None


def test_parser_exc_holds_eof_mid_frame() -> None:
    protocol = _open_server_protocol()
    protocol.receive_data(Frame(Opcode.TEXT, b"hello").serialize(mask=True, extensions=[])[:3])
    protocol.receive_eof()
    assert isinstance(internals.parser_failure(protocol), EOFError)
