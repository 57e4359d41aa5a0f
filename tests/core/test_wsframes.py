"""DataFrameSplitter against websockets itself: for any stream of client frames, cut into reads
anywhere, the splitter plus websockets (for what it hands over) sees exactly what websockets alone
sees: the same frames in the same order, the same replies, the same protocol error."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from relay.core.wsframes import BINARY, CONTROL, REST, TEXT, DataFrameSplitter

MAX_SIZE = 70_000
HANDSHAKE = (
    b"GET /recall HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def opened(max_size: int = MAX_SIZE) -> ServerProtocol:
    """A server protocol past its opening handshake: its parser waits for the first frame."""
    ws = ServerProtocol(max_size=max_size)
    ws.receive_data(HANDSHAKE)
    [request] = ws.events_received()
    assert isinstance(request, Request)
    ws.send_response(ws.accept(request))
    ws.data_to_send()
    return ws


def client_frame(opcode: Opcode, data: bytes, fin: bool = True, rsv1: bool = False, mask: bool = True) -> bytes:
    """A frame as a client writes it; ``rsv1`` and ``mask=False`` make the invalid kinds."""
    raw = bytearray(Frame(opcode, data, fin).serialize(mask=True))
    if rsv1:
        raw[0] |= 0x40
    if not mask:  # websockets writes a client's frames masked only: take the mask off again
        length = raw[1] & 0x7F
        head = 2 if length < 126 else 4 if length == 126 else 10
        raw[1] &= 0x7F
        del raw[head : head + 4]
        raw[head:] = data
    return bytes(raw)


def frames_seen(ws: ServerProtocol) -> list[tuple[Opcode, bytes, bool]]:
    return [(e.opcode, e.data, e.fin) for e in ws.events_received() if isinstance(e, Frame)]


def websockets_alone(stream: bytes, cuts: list[int]) -> tuple[list[tuple[Opcode, bytes, bool]], bytes, type | None]:
    ws = opened()
    seen: list[tuple[Opcode, bytes, bool]] = []
    for chunk in _chunks(stream, cuts):
        ws.receive_data(chunk)
        seen += frames_seen(ws)
    return seen, b"".join(ws.data_to_send()), type(ws.parser_exc) if ws.parser_exc else None


def splitter_then_websockets(stream: bytes, cuts: list[int]) -> tuple[list[tuple[Opcode, bytes, bool]], bytes, type | None]:
    ws = opened()
    splitter = DataFrameSplitter(MAX_SIZE)
    seen: list[tuple[Opcode, bytes, bool]] = []
    for chunk in _chunks(stream, cuts):
        if splitter.handed_over:
            ws.receive_data(chunk)
            seen += frames_seen(ws)
            continue
        for kind, data in splitter.feed(chunk):
            if kind in (TEXT, BINARY):
                seen.append((Opcode(kind), data, True))
            else:
                assert kind in (CONTROL, REST)
                ws.receive_data(data)
                seen += frames_seen(ws)
    return seen, b"".join(ws.data_to_send()), type(ws.parser_exc) if ws.parser_exc else None


def _chunks(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in zip(points, points[1:])]


sizes = st.sampled_from([0, 1, 125, 126, 127, 65_535, 65_536, MAX_SIZE, MAX_SIZE + 1]) | st.integers(0, 300)
frame_specs = st.one_of(
    st.tuples(st.just("text"), sizes),
    st.tuples(st.just("binary"), sizes),
    st.tuples(st.sampled_from(["ping", "pong"]), st.integers(0, 125)),
    st.tuples(st.just("long_ping"), st.integers(126, 200)),
    st.tuples(st.sampled_from(["close", "fragment", "rsv1", "unmasked", "continuation", "bad_opcode"]), st.integers(0, 40)),
)


def build(spec: tuple[str, int]) -> bytes:
    kind, size = spec
    data = os.urandom(size)
    match kind:
        case "text":
            return client_frame(Opcode.TEXT, data)  # websockets checks no UTF-8 in frames; nor do we
        case "binary":
            return client_frame(Opcode.BINARY, data)
        case "ping":
            return client_frame(Opcode.PING, data)
        case "pong":
            return client_frame(Opcode.PONG, data)
        case "long_ping":  # control frames carry at most 125 bytes: websockets fails the connection
            return b"\x89" + client_frame(Opcode.BINARY, data)[1:]
        case "close":
            return client_frame(Opcode.CLOSE, Close(1000, "bye").serialize())
        case "fragment":
            return client_frame(Opcode.TEXT, data, fin=False) + client_frame(Opcode.CONT, data)
        case "rsv1":
            return client_frame(Opcode.TEXT, data, rsv1=True)
        case "unmasked":
            return client_frame(Opcode.BINARY, data, mask=False)
        case "continuation":
            return client_frame(Opcode.CONT, data)
        case _:
            return b"\x83\x80" + os.urandom(4)  # opcode 3 is reserved
    raise AssertionError(kind)


@given(st.lists(frame_specs, max_size=12), st.lists(st.integers(0, 1 << 20), max_size=12))
def test_the_splitter_with_websockets_sees_what_websockets_alone_sees(specs: list[tuple[str, int]], cuts: list[int]) -> None:
    stream = b"".join(build(spec) for spec in specs)
    assert splitter_then_websockets(stream, cuts) == websockets_alone(stream, cuts)


def test_data_frames_come_out_unmasked_in_order_whatever_the_reads() -> None:
    payloads = [b'{"event": "transcript.data"}', os.urandom(126), os.urandom(70_000 - 1)]
    stream = client_frame(Opcode.TEXT, payloads[0]) + b"".join(client_frame(Opcode.BINARY, p) for p in payloads[1:])
    for read in (1, 2, 3, 7, 1000, len(stream)):
        splitter = DataFrameSplitter(MAX_SIZE)
        out = [item for i in range(0, len(stream), read) for item in splitter.feed(stream[i : i + read])]
        assert out == [(TEXT, payloads[0]), (BINARY, payloads[1]), (BINARY, payloads[2])]
        assert not splitter.handed_over and splitter.take_rest() == b""


def test_a_ping_is_handed_over_whole_and_splitting_goes_on() -> None:
    ping = client_frame(Opcode.PING, b"are you there")
    text = client_frame(Opcode.TEXT, b"hello")
    splitter = DataFrameSplitter(MAX_SIZE)
    assert list(splitter.feed(text + ping + text)) == [(TEXT, b"hello"), (CONTROL, ping), (TEXT, b"hello")]
    assert not splitter.handed_over


@pytest.mark.parametrize(
    "odd",
    [
        client_frame(Opcode.CLOSE, Close(1000, "").serialize()),
        client_frame(Opcode.TEXT, b"part", fin=False),
        client_frame(Opcode.TEXT, b"x", rsv1=True),
        client_frame(Opcode.TEXT, b"plain", mask=False),
        client_frame(Opcode.BINARY, bytes(MAX_SIZE + 1)),
    ],
    ids=["close", "fragment", "rsv1", "unmasked", "oversize"],
)
def test_anything_else_hands_the_rest_of_the_stream_over(odd: bytes) -> None:
    text = client_frame(Opcode.TEXT, b"before")
    after = client_frame(Opcode.TEXT, b"after")
    splitter = DataFrameSplitter(MAX_SIZE)
    assert list(splitter.feed(text + odd + after)) == [(TEXT, b"before"), (REST, odd + after)]
    assert splitter.handed_over
    with pytest.raises(RuntimeError):
        list(splitter.feed(after))


def test_an_incomplete_frame_waits_and_take_rest_returns_it() -> None:
    frame = client_frame(Opcode.BINARY, os.urandom(1000))
    splitter = DataFrameSplitter(MAX_SIZE)
    assert list(splitter.feed(frame[:500])) == []
    assert splitter.take_rest() == frame[:500]
    assert splitter.handed_over
