"""Recall audio (16 kHz S16LE) to ASAPP audio (8 kHz L16, little- or big-endian by setting), chunk by chunk.

Halving the rate needs a low-pass filter below 4 kHz first, or everything between 4 and 8 kHz folds
back into the band as noise (aliasing). :class:`Downsampler` uses soxr's streaming resampler, which
keeps the filter's state between chunks, so a stream resampled in Recall's small buffers is the
same as the whole recording resampled at once. Pure computation: no I/O.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import soxr

IN_RATE: Final = 16_000
OUT_RATE: Final = 8_000
#: Bytes per millisecond of 8 kHz 16-bit mono audio.
OUT_BYTES_PER_MS: Final = OUT_RATE * 2 // 1000
#: Bytes per millisecond of 16 kHz 16-bit mono audio.
IN_BYTES_PER_MS: Final = IN_RATE * 2 // 1000


class Downsampler:
    """Streaming 16 kHz → 8 kHz resampler for 16-bit mono PCM: little-endian in (Recall's), ``byte_order`` out.

    :meth:`process` may be given buffers of any length (an odd trailing byte is held for the next
    call); :meth:`flush` returns the filter's tail at the end of the stream. Over a whole stream the
    output is ``input_samples / 2`` samples, give or take one.
    """

    def __init__(self, quality: str = "HQ", *, byte_order: Literal["little", "big"] = "little") -> None:
        # float32 inside, rounded to int16 here: soxr's own int16 output is dithered (random), and the
        # output must be deterministic so tests can prove byte-exact delivery.
        self._stream = soxr.ResampleStream(IN_RATE, OUT_RATE, 1, dtype="float32", quality=quality)
        self._odd = b""
        self._out_dtype = "<i2" if byte_order == "little" else ">i2"
        self.bytes_in = 0

    def process(self, pcm: bytes) -> bytes:
        """Resample one buffer; returns the 8 kHz audio that is ready (possibly empty)."""
        if self._odd:
            pcm = self._odd + pcm
            self._odd = b""
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        if not pcm:
            return b""
        self.bytes_in += len(pcm)
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        return _to_pcm(self._stream.resample_chunk(samples), self._out_dtype)

    def flush(self) -> bytes:
        """The filter's remaining output; call once at the end of the stream."""
        self._odd = b""
        return _to_pcm(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True), self._out_dtype)


def _to_pcm(samples: np.ndarray, dtype: str) -> bytes:
    pcm: bytes = np.clip(np.rint(samples), -32768, 32767).astype(dtype).tobytes()
    return pcm


def frame_length(available: int, *, max_bytes: int, min_bytes: int = 20 * OUT_BYTES_PER_MS, final: bool = False) -> int:
    """How many bytes of ``available`` audio to send as the next frame (0: wait for more).

    ASAPP takes 20..100 ms per frame: send up to ``max_bytes`` once at least ``min_bytes`` are
    there; at the end of a stream (``final``) send whatever is left, however short. Always whole
    16-bit samples.
    """
    available -= available % 2
    if available >= min_bytes or (final and available > 0):
        return min(available, max_bytes)
    return 0
