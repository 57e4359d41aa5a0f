"""Builders of the frames a Recall.ai bot sends to a real-time WebSocket endpoint.

Pure functions: ids, metadata and timestamps in, the documented JSON shape out (a ``dict``, ready
for :func:`encode`), or ``bytes`` for the legacy binary protocols. The simulator, the tests and the
event docs use them, so every shape here follows the Recall docs (see
``docs/protocols/recall.md``)::

    bot = BotIdentity.create()
    alice = participant(100, "Alice Example", is_host=True)
    encode(participant_event(bot, "join", alice, 1.5))
    encode(transcript(bot, alice, words_at("hello there", 2.0)))
    encode(audio_separate(bot, alice, tone_pcm(20), 2.0))

Media helpers make realistic content without files: :func:`tone_pcm` (16 kHz S16LE sine),
:func:`silence_pcm`, and :func:`png_image` (a valid PNG of any size).
"""

from __future__ import annotations

import base64
import math
import random
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

import numpy as np
import orjson

__all__ = [
    "BotIdentity", "Frame", "ParticipantAction", "encode", "participant", "timestamp",
    "participant_event", "chat_message", "Word", "words_at", "transcript", "provider_data",
    "audio_mixed", "audio_separate", "video_png", "video_h264", "legacy_header",
    "legacy_video_header", "legacy_audio", "legacy_video", "tone_pcm", "silence_pcm", "png_image", "SAMPLE_RATE",
]  # fmt: skip

Frame = dict[str, Any]
ParticipantAction = Literal[
    "join", "leave", "update", "speech_on", "speech_off",
    "webcam_on", "webcam_off", "screenshare_on", "screenshare_off",
]  # fmt: skip
#: One transcript word: (text, start seconds, end seconds or None), relative to recording start.
Word = tuple[str, float, float | None]

SAMPLE_RATE: Final = 16_000


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(frozen=True)
class BotIdentity:
    """Everything a bot repeats in each frame's envelope: its recording, bot, endpoint and artifacts.

    ``started_at`` is when the recording started: ``relative`` times are seconds since then, and
    ``absolute`` times are derived from it.
    """

    bot_id: str
    recording_id: str
    endpoint_id: str
    participant_events_id: str
    transcript_id: str
    audio_mixed_id: str
    audio_separate_id: str
    video_separate_id: str
    started_at: datetime
    endpoint_metadata: dict[str, Any] = field(default_factory=dict)
    recording_metadata: dict[str, Any] = field(default_factory=dict)
    bot_metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        rng: random.Random | None = None,
        *,
        started_at: datetime | None = None,
        endpoint_metadata: dict[str, Any] | None = None,
        recording_metadata: dict[str, Any] | None = None,
        bot_metadata: dict[str, Any] | None = None,
    ) -> BotIdentity:
        """A bot with fresh random UUIDs (reproducible with a seeded ``rng``) and example metadata."""
        rng = rng or random.Random()
        return cls(
            bot_id=_uuid(rng),
            recording_id=_uuid(rng),
            endpoint_id=_uuid(rng),
            participant_events_id=_uuid(rng),
            transcript_id=_uuid(rng),
            audio_mixed_id=_uuid(rng),
            audio_separate_id=_uuid(rng),
            video_separate_id=_uuid(rng),
            started_at=started_at or datetime.now(timezone.utc),
            endpoint_metadata={"tenant": "acme"} if endpoint_metadata is None else endpoint_metadata,
            recording_metadata={} if recording_metadata is None else recording_metadata,
            bot_metadata={"team": "sales"} if bot_metadata is None else bot_metadata,
        )

    def envelope(self, artifact: str, artifact_id: str) -> Frame:
        """The ``data`` keys besides ``data.data``: endpoint, recording, bot and the artifact."""
        return {
            "realtime_endpoint": {"id": self.endpoint_id, "metadata": self.endpoint_metadata},
            artifact: {"id": artifact_id, "metadata": {}},
            "recording": {"id": self.recording_id, "metadata": self.recording_metadata},
            "bot": {"id": self.bot_id, "metadata": self.bot_metadata},
        }


def encode(frame: Frame) -> str:
    """A frame as the JSON text a bot sends."""
    return orjson.dumps(frame).decode()


def timestamp(bot: BotIdentity, relative: float) -> Frame:
    """A Recall timestamp: seconds since the recording started, and the matching ISO 8601 time."""
    absolute = bot.started_at + timedelta(seconds=relative)
    return {"absolute": absolute.isoformat().replace("+00:00", "Z"), "relative": relative}


def participant(
    id: int | None,
    name: str | None,
    *,
    is_host: bool | None = False,
    platform: str | None = "desktop",
    email: str | None = None,
    extra_data: Any = None,
) -> Frame:
    """A Recall participant object (ids are integers, unique within the meeting).

    ``extra_data`` may be any JSON value (``None`` sends ``{}``; set the key on the result to send null).
    """
    return {
        "id": id,
        "name": name,
        "is_host": is_host,
        "platform": platform,
        "extra_data": extra_data if extra_data is not None else {},
        "email": email,
    }


def _event(event: str, bot: BotIdentity, artifact: str, artifact_id: str, data: Any) -> Frame:
    return {"event": event, "data": {"data": data, **bot.envelope(artifact, artifact_id)}}


def participant_event(bot: BotIdentity, action: ParticipantAction, who: Frame, relative: float) -> Frame:
    """``participant_events.<action>``: join, leave, update, speech/webcam/screenshare on and off."""
    return _event(
        f"participant_events.{action}", bot, "participant_events", bot.participant_events_id,
        {"participant": who, "timestamp": timestamp(bot, relative), "data": None},
    )  # fmt: skip


def chat_message(
    bot: BotIdentity, who: Frame, text: str, relative: float, to: Literal["everyone", "only_bot"] = "everyone"
) -> Frame:
    """``participant_events.chat_message``."""
    return _event(
        "participant_events.chat_message", bot, "participant_events", bot.participant_events_id,
        {"participant": who, "timestamp": timestamp(bot, relative), "data": {"text": text, "to": to}},
    )  # fmt: skip


def words_at(text: str, start: float, seconds_per_word: float = 0.35) -> list[Word]:
    """Split ``text`` into words spoken back to back from ``start``."""
    out: list[Word] = []
    t = start
    for word in text.split():
        out.append((word, round(t, 3), round(t + seconds_per_word, 3)))
        t += seconds_per_word
    return out


def transcript(
    bot: BotIdentity, who: Frame | None, words: Sequence[Word], *, partial: bool = False, absolute: bool = False
) -> Frame:
    """``transcript.data`` (final) or ``transcript.partial_data``.

    Word times carry only ``relative`` unless ``absolute`` (the docs say they may lack it); a word
    whose end is ``None`` gets ``end_timestamp: null``, as partial results do.
    """

    def ts(t: float) -> Frame:
        return timestamp(bot, t) if absolute else {"relative": t}

    return _event(
        "transcript.partial_data" if partial else "transcript.data", bot, "transcript", bot.transcript_id,
        {
            "words": [
                {"text": text, "start_timestamp": ts(start), "end_timestamp": ts(end) if end is not None else None}
                for text, start, end in words
            ],
            "participant": who,
        },
    )  # fmt: skip


def provider_data(bot: BotIdentity, payload: Any) -> Frame:
    """``transcript.provider_data``: the transcription provider's raw message, passed through."""
    return _event("transcript.provider_data", bot, "transcript", bot.transcript_id, payload)


def audio_mixed(bot: BotIdentity, pcm: bytes, relative: float) -> Frame:
    """``audio_mixed_raw.data``: a buffer of the meeting's mixed audio (16 kHz S16LE mono)."""
    return _event(
        "audio_mixed_raw.data", bot, "audio_mixed_raw", bot.audio_mixed_id,
        {"buffer": base64.b64encode(pcm).decode(), "timestamp": timestamp(bot, relative)},
    )  # fmt: skip


def audio_separate(bot: BotIdentity, who: Frame, pcm: bytes, relative: float) -> Frame:
    """``audio_separate_raw.data``: one participant's audio; empty ``pcm`` = unmuted but silent."""
    return _event(
        "audio_separate_raw.data", bot, "audio_separate_raw", bot.audio_separate_id,
        {"buffer": base64.b64encode(pcm).decode(), "timestamp": timestamp(bot, relative), "participant": who},
    )  # fmt: skip


def video_png(
    bot: BotIdentity, who: Frame, png: bytes, relative: float, stream: Literal["webcam", "screenshare"] = "webcam"
) -> Frame:
    """``video_separate_png.data``: one participant's webcam or screenshare frame."""
    return _event(
        "video_separate_png.data", bot, "video_separate_png", bot.video_separate_id,
        {"buffer": base64.b64encode(png).decode(), "timestamp": timestamp(bot, relative), "type": stream,
         "participant": who},
    )  # fmt: skip


def video_h264(
    bot: BotIdentity, who: Frame, h264: bytes, relative: float, stream: Literal["webcam", "screenshare"] = "webcam"
) -> Frame:
    """``video_separate_h264.data``: like PNG but H.264 (shape unconfirmed by Recall's docs)."""
    frame = video_png(bot, who, h264, relative, stream)
    frame["event"] = "video_separate_h264.data"
    return frame


# --- legacy binary protocols (audio, video) -------------------------------------------------------
#
# As Recall's legacy pages show them (docs/protocols/recall.md, section 6): one stream per
# connection, a JSON header first, then binary frames, every integer u32 little-endian.


def legacy_header(
    bot_id: str, recording_id: str | None, *, separate_streams: bool = False, offset: float | None = 0.0
) -> Frame:
    """The first (text) frame of a legacy audio connection; ``offset`` is seconds since ``in_call_recording``.

    Some versions send no ``recording_id`` (the separate-streams page shows none) or no ``offset``:
    pass ``None`` to leave either out.
    """
    header: Frame = {"protocol_version": 1, "bot_id": bot_id}
    if recording_id is not None:
        header["recording_id"] = recording_id
    header["separate_streams"] = separate_streams
    if offset is not None:
        header["offset"] = offset
    return header


def legacy_video_header(bot_id: str) -> Frame:
    """The first (text) frame of a legacy video connection: ``{"protocol_version": 1, "bot_id"}``, nothing else."""
    return {"protocol_version": 1, "bot_id": bot_id}


def legacy_audio(pcm: bytes, participant_id: int | None = None) -> bytes:
    """A legacy binary audio frame; with separate streams, prefixed by the participant id (u32 LE)."""
    return pcm if participant_id is None else struct.pack("<I", participant_id) + pcm


def legacy_video(participant_id: int, timestamp_ms: int, png: bytes) -> bytes:
    """A legacy binary video frame: participant id, then milliseconds since the video started (u32
    LE each), then the PNG bytes."""
    return struct.pack("<II", participant_id, timestamp_ms) + png


# --- media content ---------------------------------------------------------------------------


def tone_pcm(ms: int, frequency: float = 220.0, *, amplitude: float = 0.2, start_sample: int = 0) -> bytes:
    """``ms`` milliseconds of a sine tone as 16 kHz S16LE mono PCM (32 bytes per ms).

    ``start_sample`` continues the phase across consecutive buffers, so chunks join without clicks.
    """
    n = SAMPLE_RATE * ms // 1000
    t = (np.arange(n) + start_sample) / SAMPLE_RATE
    samples = np.sin(2 * math.pi * frequency * t) * (amplitude * 32767)
    return samples.astype("<i2").tobytes()


def silence_pcm(ms: int) -> bytes:
    return bytes(SAMPLE_RATE * ms // 1000 * 2)


def png_image(width: int = 64, height: int = 36, rgb: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """A valid PNG of one colour (8-bit RGB); Recall's are 360×640, tens of KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + bytes(rgb) * width  # filter byte 0 then RGB pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height))
            + chunk(b"IEND", b""))  # fmt: skip
