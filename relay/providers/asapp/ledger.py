"""The audio ledger of one ASAPP stream: what was sent, what ASAPP confirmed, what to send again. Pure: no I/O.

A speaker's audio reaches ASAPP as one sequence of 8 kHz bytes whose *global* offsets never
restart, however many sockets carry it. Two classes keep the books:

* :class:`AudioLedger`, one per stream, keeps the *window*: the audio that may still be needed
  (sent but not confirmed, or not sent yet) and the offset sending has reached.
* :class:`SocketLedger`, one per socket, keeps which global bytes that socket carried and how far
  ASAPP confirmed them. ASAPP speaks in milliseconds of *that socket's* audio;
  :meth:`SocketLedger.to_global` maps a socket offset back to a global one.

When a socket ends without confirming everything it carried, :meth:`AudioLedger.rewind` moves
sending back to its first unconfirmed byte, so the next socket sends that audio again: nothing
still in the window is lost, and nothing confirmed is sent twice. The window is bounded, so a long
outage cannot exhaust memory; audio that leaves it before it was sent, or before it was confirmed
and had to be sent again, is lost, and the methods say how many bytes, for the stream to count.

All offsets and lengths are in bytes. Nothing here knows about time, sockets, metrics or asyncio:
:class:`~relay.providers.asapp.stream.AsappStream` does the I/O and calls these on its own task.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import NamedTuple

__all__ = ["AudioLedger", "Rewind", "SocketLedger"]


class Rewind(NamedTuple):
    """What :meth:`AudioLedger.rewind` did, in bytes."""

    #: Sent, not confirmed, and no longer in the window: never transcribed.
    lost: int
    #: Sent, not confirmed, and still in the window: to be sent again.
    replayed: int


class SocketLedger:
    """The part of the stream's audio one socket carried, and how far ASAPP confirmed it.

    For ASAPP a socket's audio is one gapless sequence: its *socket offsets* count the bytes sent on
    that socket. In the stream it may have gaps: audio that left the window unsent between two
    frames was skipped. Each discontinuity starts a *segment*, a pair (socket offset, global offset)
    of its first byte, so that any socket offset maps back to the global offset of the same byte.

    Before anything is recorded, the socket has :attr:`carried` nothing and every offset is 0.
    Afterwards these invariants hold:

    * the global offsets recorded only move forward (a socket never carries a byte twice);
    * :attr:`confirmed` only moves forward, and stays between the global offset of the socket's
      first byte and :attr:`sent_end`: a socket cannot confirm audio it did not carry.
    """

    __slots__ = ("_segments", "_bytes_sent", "_sent_end", "_confirmed")

    def __init__(self) -> None:
        self._segments: list[tuple[int, int]] = []
        self._bytes_sent = 0
        self._sent_end = 0
        self._confirmed = 0

    @property
    def carried(self) -> bool:
        """Whether any audio was recorded on this socket."""
        return bool(self._segments)

    @property
    def bytes_sent(self) -> int:
        """Bytes sent on this socket: the socket offset of the next byte."""
        return self._bytes_sent

    @property
    def sent_end(self) -> int:
        """Global offset after the last byte this socket carried."""
        return self._sent_end

    @property
    def confirmed(self) -> int:
        """Global offset up to which ASAPP confirmed this socket's audio.

        Once the socket :attr:`carried` audio, the next socket resumes from here.
        """
        return self._confirmed

    def record(self, offset: int, n: int) -> None:
        """Record that ``n`` bytes starting at global ``offset`` go out on this socket.

        Call it before the bytes are handed to the socket: if sending them fails, they count as
        carried and unconfirmed, so :meth:`AudioLedger.rewind` sends them again.

        Args:
            offset: Global offset of the first byte.
            n: Number of bytes.

        Raises:
            ValueError: If ``n`` isn't positive, or ``offset`` is before :attr:`sent_end` once the
                socket carried audio.
        """
        if n <= 0:
            raise ValueError(f"a frame has at least one byte, not {n}")
        if not self._segments:
            self._confirmed = offset
        elif offset < self._sent_end:
            raise ValueError(f"offset {offset} goes back before {self._sent_end}")
        if not self._segments or offset != self._sent_end:
            self._segments.append((self._bytes_sent, offset))
        self._bytes_sent += n
        self._sent_end = offset + n

    def to_global(self, socket_offset: int) -> int | None:
        """The global offset of the byte at ``socket_offset`` on this socket.

        Offsets past :attr:`bytes_sent` map as if the last segment went on. Returns None if
        nothing was recorded, or for a negative offset.
        """
        i = bisect_right(self._segments, (socket_offset, float("inf"))) - 1
        if i < 0:
            return None
        socket_start, global_start = self._segments[i]
        return global_start + socket_offset - socket_start

    def confirm(self, offset: int) -> None:
        """ASAPP transcribed this socket's audio up to global ``offset``.

        An offset at or before :attr:`confirmed` changes nothing; one past :attr:`sent_end` (ASAPP
        rounds to milliseconds) confirms up to :attr:`sent_end` only.
        """
        self._confirmed = max(self._confirmed, min(offset, self._sent_end))

    def confirm_all(self) -> None:
        """ASAPP transcribed everything this socket carried (its ``finalResponse``)."""
        self._confirmed = self._sent_end

    def __repr__(self) -> str:
        return (
            f"SocketLedger(bytes_sent={self._bytes_sent}, sent_end={self._sent_end}, "
            f"confirmed={self._confirmed}, segments={self._segments!r})"
        )


class AudioLedger:
    """The window of a stream's audio that may still be needed, and how far it was sent.

    Three global offsets split the stream's audio::

        ──── forgotten ────┬──── sent, unconfirmed ────┬──── not sent yet ────┐
                         start                        sent                    end

    * before :attr:`start`: confirmed by ASAPP, or lost; forgotten.
    * from :attr:`start` to :attr:`sent`: sent and not confirmed; kept to send again if the socket
      that carried it fails. This is the replay window. (One exception, see :meth:`advance`.)
    * from :attr:`sent` to :attr:`end`: appended, not sent yet.

    These invariants hold after every call:

    * ``start ≤ sent ≤ end``;
    * ``end - start ≤ max_bytes``: memory stays bounded, whatever ASAPP does;
    * the bytes kept are exactly those appended at offsets ``start`` to ``end``;
    * :attr:`start` and :attr:`end` only move forward; :attr:`sent` moves back only in
      :meth:`rewind`, and then never before :attr:`start`.

    Args:
        max_bytes: Bound on the bytes kept; beyond it the oldest go first.

    Raises:
        ValueError: If ``max_bytes`` isn't positive.
    """

    __slots__ = ("_audio", "_start", "_sent", "_max_bytes")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"the window must hold at least one byte, not {max_bytes}")
        self._audio = bytearray()
        self._start = 0
        self._sent = 0
        self._max_bytes = max_bytes

    @property
    def start(self) -> int:
        """Global offset of the oldest byte kept."""
        return self._start

    @property
    def sent(self) -> int:
        """Global offset of the next byte to send."""
        return self._sent

    @property
    def end(self) -> int:
        """Global offset after the last byte appended."""
        return self._start + len(self._audio)

    @property
    def unsent(self) -> int:
        """Bytes appended and not sent yet: ``end - sent``."""
        return self._start + len(self._audio) - self._sent

    @property
    def buffered(self) -> int:
        """Bytes kept: ``end - start``, at most ``max_bytes``."""
        return len(self._audio)

    @property
    def max_bytes(self) -> int:
        """Bound on :attr:`buffered`."""
        return self._max_bytes

    def append(self, audio: bytes) -> int:
        """Add ``audio`` at :attr:`end`; past ``max_bytes``, forget the oldest bytes.

        The window is cut by an even number of bytes (whole 16-bit samples), so it may end up one
        byte under ``max_bytes``. Forgetting sent bytes loses only the chance to send them again;
        forgetting unsent bytes moves :attr:`sent` past them, and they are never sent.

        Returns:
            The number of unsent bytes forgotten.
        """
        self._audio.extend(audio)
        excess = len(self._audio) - self._max_bytes
        if excess <= 0:
            return 0
        cut = self._start + excess + excess % 2
        lost = 0
        if cut > self._sent:
            lost = cut - self._sent
            self._sent = cut
        del self._audio[: cut - self._start]
        self._start = cut
        return lost

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes to send, from :attr:`sent` (fewer if fewer are unsent)."""
        begin = self._sent - self._start
        return bytes(self._audio[begin : begin + n])

    def advance(self, n: int) -> None:
        """Mark ``n`` more bytes as sent.

        The stream peeks a frame, sends it, then advances. If :meth:`append` pushed part of that
        frame out of the window meanwhile, it counted those bytes as lost and moved :attr:`sent`
        past them; advancing by ``n`` then marks as many bytes after the frame as sent, and those
        are skipped instead. The count of lost bytes is right; which bytes is not.

        Raises:
            ValueError: If ``n`` is negative or more than :attr:`unsent`.
        """
        if not 0 <= n <= self.unsent:
            raise ValueError(f"cannot send {n} bytes of {self.unsent} unsent")
        self._sent += n

    def confirm(self, offset: int) -> int | None:
        """ASAPP transcribed the audio before global ``offset``: forget it.

        Only sent audio is forgotten: an ``offset`` past :attr:`sent` moves :attr:`start` to
        :attr:`sent`, no further.

        Returns:
            The new :attr:`start`, or None if ``offset`` isn't past :attr:`start`, which is then
            unchanged.
        """
        if offset <= self._start:
            return None
        cut = min(offset, self._sent)
        del self._audio[: cut - self._start]
        self._start = cut
        return cut

    def rewind(self, socket: SocketLedger) -> Rewind:
        """``socket`` ended: send again, on the next one, what it carried and ASAPP did not confirm.

        :attr:`sent` goes back to ``socket.confirmed``, or to :attr:`start` if that audio is no
        longer kept (then the bytes in between are lost). It never moves forward, and a socket that
        carried nothing changes nothing.
        """
        if not socket.carried:
            return Rewind(0, 0)
        resume = socket.confirmed
        lost = 0
        if resume < self._start:
            lost = self._start - resume
            resume = self._start
        replayed = 0
        if resume < self._sent:
            replayed = self._sent - resume
            self._sent = resume
        return Rewind(lost, replayed)

    def abandon(self, socket: SocketLedger) -> int:
        """``socket`` ended and what it carried unconfirmed is not to be sent again (ASAPP said it
        cannot transcribe it): forget that audio as if it were confirmed, on both ledgers, so a
        later :meth:`rewind` of ``socket`` changes nothing.

        Only sent audio is forgotten: a frame recorded on ``socket`` whose send failed (never
        advanced) stays unsent, to go out on the next socket.

        Returns:
            The bytes ``socket`` sent that ASAPP never confirmed (kept or already out of the
            window): never transcribed. A socket that carried nothing returns 0.
        """
        if not socket.carried:
            return 0
        end = min(socket.sent_end, self._sent)
        abandoned = max(0, end - socket.confirmed)
        socket.confirm(end)
        self.confirm(end)
        return abandoned

    def discard(self) -> int:
        """Forget all the audio kept, as when the stream ends; :attr:`start` and :attr:`sent` move to :attr:`end`.

        Returns:
            The number of unsent bytes forgotten.
        """
        end = self.end
        lost = end - self._sent
        self._audio.clear()
        self._start = self._sent = end
        return lost

    def __repr__(self) -> str:
        return f"AudioLedger(start={self._start}, sent={self._sent}, end={self.end}, max_bytes={self._max_bytes})"
