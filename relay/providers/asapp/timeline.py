"""Where a speaker's ASAPP audio sits on the meeting's timeline. Pure: no I/O.

A speaker's audio reaches ASAPP as one gapless byte sequence (8 kHz L16), but Recall sends nothing
while a participant is muted, so byte offsets and meeting time drift apart. :class:`AudioTimeline`
keeps *anchors* (byte offset of a chunk's first sample, Recall's ``relative`` time of that chunk)
and maps an offset back to meeting seconds from the nearest anchor at or before it. Anchors are
dropped once no transcript can refer to them any more (:meth:`forget_before`).
"""

from __future__ import annotations

from bisect import bisect_right

from relay.providers.asapp.resample import OUT_BYTES_PER_MS


class AudioTimeline:
    """Maps byte offsets of a speaker's 8 kHz audio to seconds since the recording started."""

    def __init__(self) -> None:
        self._offsets: list[int] = []
        self._times: list[float] = []

    def add(self, offset: int, relative: float) -> None:
        """Audio starting at byte ``offset`` was recorded at ``relative`` seconds."""
        if self._offsets and offset <= self._offsets[-1]:
            # Same offset again (empty chunks): the later time is the truer one for what follows.
            if offset == self._offsets[-1]:
                self._times[-1] = relative
            return
        if self._times:
            expected = self._times[-1] + (offset - self._offsets[-1]) / (OUT_BYTES_PER_MS * 1000)
            if abs(expected - relative) < 0.005:
                return  # contiguous audio: the previous anchor already predicts it
        self._offsets.append(offset)
        self._times.append(relative)

    def at(self, offset: int) -> float | None:
        """Meeting seconds of the audio at byte ``offset``; None before the first anchor."""
        i = bisect_right(self._offsets, offset) - 1
        if i < 0:
            return None
        return round(self._times[i] + (offset - self._offsets[i]) / (OUT_BYTES_PER_MS * 1000), 3)

    def forget_before(self, offset: int) -> None:
        """Drop anchors no longer needed to map ``offset`` or anything after it."""
        i = bisect_right(self._offsets, offset) - 1
        if i > 0:
            del self._offsets[:i]
            del self._times[:i]

    def __len__(self) -> int:
        return len(self._offsets)
