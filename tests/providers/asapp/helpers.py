"""Audio for ASAPP tests: deterministic speaker signals, Recall-sized chunks, and what the bridge must deliver."""

from __future__ import annotations

from typing import Literal

import numpy as np

from relay.providers.asapp.resample import Downsampler

CHUNK = 640  # 20 ms of 16 kHz audio, as Recall sends it


def speech(seed: int, seconds: float) -> bytes:
    """Deterministic, speaker-specific 16 kHz S16LE audio (a tone plus noise)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16_000)
    t = np.arange(n) / 16_000
    signal = 6000 * np.sin(2 * np.pi * (300 + 50 * seed) * t) + rng.normal(0, 1500, n)
    return signal.astype("<i2").tobytes()


def chunks(pcm: bytes, size: int = CHUNK) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def expected_8k(*parts: bytes, byte_order: Literal["little", "big"] = "little") -> bytes:
    """The 8 kHz audio the bridge must deliver for ``parts`` fed to one stream in CHUNK-sized buffers."""
    ds = Downsampler(byte_order=byte_order)
    return b"".join(ds.process(c) for part in parts for c in chunks(part)) + ds.flush()
