"""The 16 → 8 kHz resampler keeps speech-band tones, removes what would alias, and streams exactly."""

from __future__ import annotations

import numpy as np
import pytest

from relay.providers.asapp.resample import Downsampler, frame_length


def tone(freq: float, seconds: float = 1.0, amplitude: float = 10_000.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def rms(pcm: bytes, trim: int = 400) -> float:
    """RMS of the samples, ignoring the filter's start-up and tail transients."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)[trim:-trim]
    return float(np.sqrt(np.mean(samples**2)))


def downsample(pcm: bytes, chunk: int | None = None) -> bytes:
    ds = Downsampler()
    if chunk is None:
        return ds.process(pcm) + ds.flush()
    out = b"".join(ds.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk))
    return out + ds.flush()


def test_1khz_tone_keeps_its_level() -> None:
    src = tone(1000)
    out = downsample(src, chunk=640)
    gain_db = 20 * np.log10(rms(out) / rms(src))
    assert abs(gain_db) < 1.0


def test_6khz_tone_is_removed_not_aliased() -> None:
    # 6 kHz is above the 4 kHz Nyquist limit of 8 kHz audio: decimating without a filter would fold
    # it to 2 kHz at full level.
    src = tone(6000)
    out = downsample(src, chunk=640)
    attenuation_db = 20 * np.log10(rms(src) / max(rms(out), 1e-9))
    assert attenuation_db >= 40
    naive = np.frombuffer(src, dtype="<i2")[::2].tobytes()
    assert 20 * np.log10(rms(src) / rms(naive)) < 10  # the naive way really would alias


def test_output_length_is_half() -> None:
    src = tone(440, seconds=2.0)
    out = downsample(src, chunk=321)  # odd chunk sizes: split samples must be rejoined
    assert abs(len(out) - len(src) // 2) <= 4
    assert len(out) % 2 == 0


@pytest.mark.parametrize("chunk", [2, 320, 641, 3200])
def test_streaming_equals_one_shot(chunk: int) -> None:
    rng = np.random.default_rng(7)
    src = (rng.normal(0, 3000, 16_000) + 8000 * np.sin(np.arange(16_000) * 0.3)).astype("<i2").tobytes()
    whole = np.frombuffer(downsample(src), dtype="<i2").astype(np.int32)
    streamed = np.frombuffer(downsample(src, chunk=chunk), dtype="<i2").astype(np.int32)
    assert len(whole) == len(streamed)
    diff = np.abs(whole - streamed)
    # int16 output is rounded (soxr may dither), so streamed and one-shot differ by a few LSB at most.
    assert np.max(diff) <= 4
    assert np.mean(diff) < 1.0


def test_frame_length() -> None:
    assert frame_length(100, max_bytes=1600) == 0  # under 20 ms: wait
    assert frame_length(100, max_bytes=1600, final=True) == 100
    assert frame_length(321, max_bytes=1600) == 320
    assert frame_length(5000, max_bytes=1600) == 1600
    assert frame_length(1, max_bytes=1600, final=True) == 0


@pytest.mark.parametrize("chunk", [640, 641])
def test_big_endian_output_is_the_same_samples_byte_swapped(chunk: int) -> None:
    src = tone(440, seconds=0.5)
    little = downsample(src, chunk=chunk)
    ds = Downsampler(byte_order="big")
    big = b"".join(ds.process(src[i : i + chunk]) for i in range(0, len(src), chunk)) + ds.flush()
    assert len(big) == len(little) and big != little
    assert np.array_equal(np.frombuffer(big, dtype=">i2"), np.frombuffer(little, dtype="<i2"))
