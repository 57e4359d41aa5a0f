"""ASAPP AutoTranscribe server messages → typed messages → relay events. Pure: no I/O, no awaits.

:func:`parse_message` turns one text frame into a :class:`StartResponse`, :class:`TranscriptMessage`,
:class:`FinalResponse`, :class:`StatusMessage` (an error or notice carrying a status code) or
:class:`OtherMessage` (a type the bridge does not act on, e.g. ``vocabularyResponse``). A frame
that is not a JSON object of the documented shape raises :class:`relay.errors.FrameRejected`, whose
``reason`` is one of the relay's shared :data:`relay.errors.REJECT_REASONS` (``invalid_json``,
``not_an_object``, ``missing_field``, ``invalid_field``...) and whose ``detail`` names the field
(``message``, ``status.code``), never frame content, so callers can count and log it.

:func:`classify` says what a status code means for the stream (ASAPP's list: ``docs/protocols/asapp.md``,
"Status codes"; where this module still differs: that note's "Known gaps in the relay"),
and the ``*_event`` functions build the schema events the bridge publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from relay.errors import FrameRejected, not_json_reason
from relay.schema import (
    EventTime,
    Participant,
    SessionRef,
    Source,
    StreamError,
    StreamErrorEvent,
    StreamSummary,
    StreamSummaryEvent,
    Transcript,
    TranscriptEvent,
)

OK_CODE: Final = "1000"

class ErrorKind(StrEnum):
    """What a status code asks the stream to do."""

    OK = "ok"
    #: Give up on this stream: retrying cannot help (auth, bad request, bad audio format...).
    PERMANENT = "permanent"
    #: Server-side trouble: reconnect with a new URL after backoff, replaying unconfirmed audio.
    TRANSIENT = "transient"
    #: 4082: audio came faster than real time; reconnect and pace (a relay bug if it happens).
    TOO_FAST = "too_fast"
    #: 4083/4080: the stream idled out; reopen when audio comes again.
    IDLE = "idle"
    #: 4090: the 3 h limit; roll over to a new stream.
    TOO_LONG = "too_long"


_KINDS: Final[dict[str, ErrorKind]] = {
    OK_CODE: ErrorKind.OK,
    "4080": ErrorKind.IDLE,
    "4082": ErrorKind.TOO_FAST,
    "4083": ErrorKind.IDLE,
    "4090": ErrorKind.TOO_LONG,
    "5000": ErrorKind.TRANSIENT,
    "5001": ErrorKind.TRANSIENT,
    "5002": ErrorKind.TRANSIENT,
}


def classify(code: str) -> ErrorKind:
    """The kind of a status code.

    Listed codes as the relay maps them today (ASAPP's meanings: ``docs/protocols/asapp.md``, "Status
    codes"; 1008, 2002, 4080 and 4082 still differ there, see "Known gaps in the relay"). Any other
    5xxx is a server error (transient); anything else (1008, 2002, 4040, 4050, 4051, 4053, 4056,
    4084, 4091-4094, unknown codes) is permanent, because retrying a request the server refused
    would only loop.
    """
    kind = _KINDS.get(code)
    if kind is not None:
        return kind
    if len(code) == 4 and code.startswith("5") and code.isdigit():
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartResponse:
    stream_id: str | None
    code: str
    description: str

    @property
    def ok(self) -> bool:
        return self.code == OK_CODE


@dataclass(frozen=True, slots=True)
class TranscriptMessage:
    """A final transcript; ``start_ms``/``end_ms`` count from the start of the stream's audio."""

    start_ms: int
    end_ms: int
    text: str
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FinalResponse:
    stream_id: str | None
    code: str
    total_audio_bytes: int | None
    audio_duration_ms: int | None
    streaming_seconds: float | None
    transcripts: int | None


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """Any other message carrying a status code (errors the server sends before closing)."""

    message: str
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class OtherMessage:
    message: str


ServerMessage = StartResponse | TranscriptMessage | FinalResponse | StatusMessage | OtherMessage


def parse_message(frame: str | bytes) -> ServerMessage:
    """Parse one server text frame; raise :class:`~relay.errors.FrameRejected` if it is malformed."""
    if not isinstance(frame, (str, bytes, bytearray, memoryview)):
        raise FrameRejected("invalid_frame_type", type(frame).__name__)
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise FrameRejected(not_json_reason(frame)) from None
    if not isinstance(data, dict):
        raise FrameRejected("not_an_object")
    kind = data.get("message")
    if kind is None:
        raise FrameRejected("missing_field", "message")
    if not isinstance(kind, str) or not kind:
        raise FrameRejected("invalid_field", "message")
    if kind == "startResponse":
        code, description = _status(data, required=True)
        return StartResponse(_opt_str(data, "streamID", "streamId"), code, description)
    if kind == "transcript":
        return _transcript(data)
    if kind == "finalResponse":
        code, _ = _status(data, required=False)
        summary = data.get("summary")
        if summary is None:
            summary = {}
        if not isinstance(summary, dict):
            raise FrameRejected("invalid_field", "summary")
        return FinalResponse(
            stream_id=_opt_str(data, "streamId", "streamID"),
            code=code or OK_CODE,
            total_audio_bytes=_opt_int(summary, "totalAudioBytes"),
            audio_duration_ms=_opt_int(summary, "audioDurationMs"),
            streaming_seconds=_opt_float(summary, "streamingSeconds"),
            transcripts=_opt_int(summary, "transcripts"),
        )
    if "status" in data:
        code, description = _status(data, required=True)
        return StatusMessage(kind, code, description)
    return OtherMessage(kind)



def _status(data: dict[str, Any], *, required: bool) -> tuple[str, str]:
    status = data.get("status")
    if status is None:
        if not required:
            return "", ""
        raise FrameRejected("missing_field", "status")
    if not isinstance(status, dict):
        raise FrameRejected("invalid_field", "status")
    code = status.get("code")
    if code is None:
        raise FrameRejected("missing_field", "status.code")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)  # documented as a string; tolerate a number
    if not isinstance(code, str) or not code:
        raise FrameRejected("invalid_field", "status.code")
    description = status.get("description")
    return code, description if isinstance(description, str) else ""


def _transcript(data: dict[str, Any]) -> TranscriptMessage:
    start, end = data.get("start"), data.get("end")
    for name, value in (("start", start), ("end", end)):
        if value is None:
            raise FrameRejected("missing_field", name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or value != value:
            raise FrameRejected("invalid_field", name)  # not a non-negative number
    if end < start:  # type: ignore[operator]
        raise FrameRejected("invalid_field", "end")  # before start
    utterance = data.get("utterance")
    if utterance is None:
        raise FrameRejected("missing_field", "utterance")
    if not isinstance(utterance, list):
        raise FrameRejected("invalid_field", "utterance")
    texts = []
    for item in utterance:
        if not isinstance(item, dict):
            raise FrameRejected("invalid_field", "utterance[]")
        if item.get("text") is None:
            raise FrameRejected("missing_field", "utterance[].text")
        if not isinstance(item["text"], str):
            raise FrameRejected("invalid_field", "utterance[].text")
        if item["text"].strip():
            texts.append(item["text"].strip())
    return TranscriptMessage(int(start), int(end), " ".join(texts), data)  # type: ignore[arg-type]


def _opt_str(data: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str):
            return value
    return None


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) < 2**62:
        return int(value)
    return None


def _opt_float(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) < 1e15:
        return float(value)
    return None


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


def transcript_event(
    msg: TranscriptMessage,
    *,
    session: SessionRef,
    participant: Participant,
    start: float | None,
    end: float | None,
    language: str,
    received: datetime,
) -> TranscriptEvent:
    """A final transcript for the Recall ``session``; ``start``/``end`` are already on the meeting's timeline."""
    return TranscriptEvent(
        source=Source.ASAPP,
        type="transcript.final",
        session=session,
        participant=participant,
        time=EventTime(received=received, relative=start),
        payload=Transcript(text=msg.text, is_final=True, start=start, end=end, language=language),
    )


def summary_event(
    msg: FinalResponse, *, session: SessionRef, participant: Participant, received: datetime
) -> StreamSummaryEvent:
    return StreamSummaryEvent(
        source=Source.ASAPP,
        session=session,
        participant=participant,
        time=EventTime(received=received),
        payload=StreamSummary(
            stream_id=msg.stream_id,
            status_code=msg.code,
            audio_bytes=msg.total_audio_bytes,
            audio_duration_ms=msg.audio_duration_ms,
            streaming_seconds=msg.streaming_seconds,
            transcripts=msg.transcripts,
        ),
    )


def error_event(
    code: str, message: str, *, permanent: bool, session: SessionRef, participant: Participant, received: datetime
) -> StreamErrorEvent:
    """A stream error; ``code`` is an ASAPP status code, ``http_<status>`` or a relay reason."""
    return StreamErrorEvent(
        source=Source.ASAPP,
        session=session,
        participant=participant,
        time=EventTime(received=received),
        payload=StreamError(code=code, message=message[:500], permanent=permanent),
    )
