"""The marker each benchmark frame carries: send time, bot and sequence number, found again in Redis.

Text frames carry it as a transcript word (``@@M`` + 33 digits); audio frames carry it as the first
36 bytes of the PCM, so in the base64 ``buffer`` it is the first 48 characters and starts with
``QEBN`` (base64 of ``@@M``). The subscriber finds it in whatever a target publishes (the relay's
normalized event, a baseline's re-encoded JSON, or the raw frame), so every target is measured by
the same code and nothing depends on the relay's schema.
"""

from __future__ import annotations

import base64
from typing import Final

PREFIX: Final = b"@@M"
B64_PREFIX: Final = base64.b64encode(PREFIX)  # b"QEBN"
SIZE: Final = 36  # a multiple of 3: its base64 is self-contained (48 characters, no padding)
B64_SIZE: Final = 48
PLACEHOLDER: Final = PREFIX + b"0" * (SIZE - len(PREFIX))
B64_PLACEHOLDER: Final = base64.b64encode(PLACEHOLDER)


def make(sent_ns: int, bot: int, seq: int) -> bytes:
    """The marker of frame ``seq`` of ``bot``, sent at ``sent_ns`` (``time.time_ns()``)."""
    return b"@@M%019d%06d%08d" % (sent_ns, bot, seq)


def find(message: bytes) -> tuple[int, int] | None:
    """``(key, sent_ns)`` of the first marker in ``message``; ``key`` is unique per (bot, seq)."""
    i = message.find(PREFIX)
    if i >= 0:
        raw = message[i : i + SIZE]
    else:
        i = message.find(B64_PREFIX)
        if i < 0:
            return None
        raw = base64.b64decode(message[i : i + B64_SIZE])
    try:
        return int(raw[22:36]), int(raw[3:22])
    except ValueError:
        return None
