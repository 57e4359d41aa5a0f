"""A fast path for the frames a WebSocket client sends most: complete, unfragmented data frames.

websockets' :class:`~websockets.server.ServerProtocol` parses every frame with a chain of
generators (``Frame.parse`` over ``read_exact``), about 4 µs a frame on these machines: a fifth of
the relay's CPU per event under a flood of small transcript frames. :class:`DataFrameSplitter`
takes the common case off it (a masked, final TEXT or BINARY frame without reserved bits, within
the size limit) in well under a microsecond, unmasking with websockets' own C ``apply_mask``, and
gives everything else back to websockets, which stays the one implementation of the protocol:

* a PING or PONG frame is handed over whole, so websockets answers pings as before;
* anything else (a close, a fragment, reserved bits, an unmasked or oversized frame, an unknown
  opcode) hands over the rest of the stream for good: websockets checks it, closes as it always
  did (1002, 1009, the closing handshake), and the splitter yields nothing more.

Handing over only at frame boundaries keeps websockets' parser in step: it never sees half a
frame from before the hand-over. Pure: bytes in, frames out, no I/O (``tests/core/test_wsframes.py``
checks it against websockets frame for frame).

Text payloads come out as bytes, undecoded: the Recall ingress decodes them and, departing from
RFC 6455 on purpose, rejects an invalid UTF-8 text frame alone instead of failing the connection
(see relay/providers/recall/ingress.py). websockets' sans-I/O protocol does not check UTF-8 in
data frames either, so both paths behave the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from relay.core.internals import apply_mask

__all__ = ["BINARY", "CONTROL", "REST", "TEXT", "DataFrameSplitter"]

#: What :meth:`DataFrameSplitter.feed` yields, with the bytes that go with it.
TEXT: Final = 1  # an unmasked text payload
BINARY: Final = 2  # an unmasked binary payload
CONTROL: Final = 9  # a whole PING or PONG frame, as received, for websockets
REST: Final = 0  # the rest of the stream, for websockets from now on

_FIN_TEXT: Final = 0x81
_FIN_BINARY: Final = 0x82
_FIN_PING: Final = 0x89
_FIN_PONG: Final = 0x8A
_MASKED: Final = 0x80


class DataFrameSplitter:
    """Splits a client's byte stream into data frames until something else comes.

    Start it where websockets' parser waits for a frame (right after the opening handshake), feed
    it every read, and act on what :meth:`feed` yields, in order. After it yielded :data:`REST`
    (see :attr:`handed_over`), feed websockets directly.
    """

    __slots__ = ("max_size", "handed_over", "_buffer", "_needed")

    def __init__(self, max_size: int) -> None:
        #: Payloads longer than this go to websockets, which closes with 1009.
        self.max_size = max_size
        #: True once the rest of the stream went to websockets.
        self.handed_over = False
        self._buffer = bytearray()  # the start of a frame not yet complete
        self._needed = 0  # how long the buffer must grow before that frame can be complete

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        """Yield ``(TEXT | BINARY, payload)``, ``(CONTROL, frame)`` and at most one
        ``(REST, bytes)`` for the frames completed by ``data``; keep an incomplete one for later."""
        if self.handed_over:
            raise RuntimeError("the stream went to websockets already")
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._needed:  # a large frame arriving read by read: wait for all of it
                return
            data = bytes(buffer)
            buffer.clear()
        max_size = self.max_size
        n = len(data)
        pos = 0
        while pos < n:
            first = data[pos]
            if first != _FIN_TEXT and first != _FIN_BINARY and first != _FIN_PING and first != _FIN_PONG:
                break  # a close, a fragment, reserved bits, an unknown opcode: websockets' part
            if n - pos < 2:
                self._keep(data, pos, pos + 2)
                return
            second = data[pos + 1]
            length = second & 0x7F
            if length < 126:
                mask = pos + 2
            else:
                mask = pos + (4 if length == 126 else 10)
                if mask > n:
                    self._keep(data, pos, mask)
                    return
                length = int.from_bytes(data[pos + 2 : mask])
            if second < _MASKED or length > max_size or (first > _FIN_BINARY and length > 125):
                break  # websockets refuses it: unmasked, too big, a control frame over 125 bytes
            start = mask + 4
            end = start + length
            if end > n:
                self._keep(data, pos, end)
                return
            if first == _FIN_TEXT or first == _FIN_BINARY:
                yield first & 0x0F, apply_mask(data[start:end], data[mask:start])
            else:
                yield CONTROL, data[pos:end]
            pos = end
        else:
            return
        self.handed_over = True
        yield REST, data[pos:]

    def _keep(self, data: bytes, pos: int, end: int) -> None:
        """Buffer the incomplete frame at ``data[pos:]``, which is complete at ``end``."""
        self._buffer += data[pos:]
        self._needed = end - pos

    def take_rest(self) -> bytes:
        """Stop splitting: the bytes of an incomplete frame (maybe none), for websockets."""
        self.handed_over = True
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest
