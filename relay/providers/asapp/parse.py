"""ASAPP AutoTranscribe server messages → typed messages → relay events. Pure: no I/O, no awaits.

:func:`parse_message` turns one text frame into a :class:`StartResponse`, :class:`TranscriptMessage`,
:class:`FinalResponse` or :class:`OtherMessage` (a type the bridge does not act on, e.g.
``vocabularyResponse``). ASAPP ends every stream with a ``finalResponse`` carrying a status: 1000
after a clean ``finishStream``, any other code a failure (a refused ``startStream``, an idle
timeout, the duration limit, a server error); there is no separate error message. A frame
that is not a JSON object of the documented shape raises :class:`relay.errors.FrameRejected`, whose
``reason`` is one of the relay's shared :data:`relay.errors.REJECT_REASONS` (``invalid_json``,
``not_an_object``, ``missing_field``, ``invalid_field``...) and whose ``detail`` names the field
(``message``, ``status.code``), never frame content, so callers can count and log it.

:func:`classify` says what a status code means for the stream (ASAPP's list and this project's
policy: ``docs/protocols/asapp.md``, "Status codes"), and the ``*_event`` functions build the
schema events the bridge publishes.
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
    """What a status code asks the stream to do (``docs/protocols/asapp.md``, "Status codes")."""

    OK = "ok"
    #: Give up on this stream: retrying cannot help (a bad request, settings, an audio format...).
    PERMANENT = "permanent"
    #: Server-side trouble (5000, 5001, 5002, 2002): a new URL after backoff, resending unconfirmed audio.
    TRANSIENT = "transient"
    #: 1008, an invalid or expired access token: a fresh URL at once, a bounded number of times.
    TOKEN = "token"
    #: 4083, the connection idled out: a new stream when audio comes, resending unconfirmed audio.
    IDLE = "idle"
    #: 4090, the streaming duration limit: roll over to a new stream at once, resending unconfirmed audio.
    TOO_LONG = "too_long"
    #: 4080, ASAPP could not transcribe the audio: that audio is reported lost (sending it again
    #: would fail again); a new stream opens when new audio comes.
    UNTRANSCRIBABLE = "untranscribable"


#: ASAPP's documented status codes and their kinds (the policy column of the note's table).
_KINDS: Final[dict[str, ErrorKind]] = {
    OK_CODE: ErrorKind.OK,
    "1008": ErrorKind.TOKEN,
    "2002": ErrorKind.TRANSIENT,
    "4040": ErrorKind.PERMANENT,
    "4050": ErrorKind.PERMANENT,
    "4051": ErrorKind.PERMANENT,
    "4053": ErrorKind.PERMANENT,
    "4056": ErrorKind.PERMANENT,
    "4080": ErrorKind.UNTRANSCRIBABLE,
    "4082": ErrorKind.PERMANENT,
    "4083": ErrorKind.IDLE,
    "4084": ErrorKind.PERMANENT,
    "4090": ErrorKind.TOO_LONG,
    "4091": ErrorKind.PERMANENT,
    "4092": ErrorKind.PERMANENT,
    "4093": ErrorKind.PERMANENT,
    "4094": ErrorKind.PERMANENT,
    "5000": ErrorKind.TRANSIENT,
    "5001": ErrorKind.TRANSIENT,
    "5002": ErrorKind.TRANSIENT,
}


def classify(code: str) -> ErrorKind:
    """The kind of a status code.

    The codes ASAPP lists have the kinds of ``docs/protocols/asapp.md``, "Status codes": 1008 a
    fresh URL (bounded), 2002 and 5000-5002 transient, 4083 idle, 4090 the duration limit, 4080
    untranscribable audio, the other 4xxx permanent. An unlisted 5xxx is a server error
    (transient); any other unlisted code is permanent, because retrying a request the server
    refused for a reason the relay does not know would only loop.
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
    """The end of a stream, whatever ended it: ``code`` 1000 after ``finishStream``, anything else a failure."""

    stream_id: str | None
    code: str
    description: str
    total_audio_bytes: int | None
    audio_duration_ms: int | None
    streaming_seconds: float | None
    transcripts: int | None

    @property
    def ok(self) -> bool:
        return self.code == OK_CODE


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A message type the relay does not act on (``vocabularyResponse``, or one ASAPP does not document)."""

    message: str


ServerMessage = StartResponse | TranscriptMessage | FinalResponse | OtherMessage


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
        code, description = _status(data)
        return StartResponse(_opt_str(data, "streamID", "streamId"), code, description)
    if kind == "transcript":
        return _transcript(data)
    if kind == "finalResponse":
        code, description = _status(data)
        summary = data.get("summary")
        if summary is None:
            summary = {}
        if not isinstance(summary, dict):
            raise FrameRejected("invalid_field", "summary")
        return FinalResponse(
            stream_id=_opt_str(data, "streamId", "streamID"),
            code=code,
            description=description,
            total_audio_bytes=_opt_int(summary, "totalAudioBytes"),
            audio_duration_ms=_opt_int(summary, "audioDurationMs"),
            streaming_seconds=_opt_float(summary, "streamingSeconds"),
            transcripts=_opt_int(summary, "transcripts"),
        )
    return OtherMessage(kind)


def _status(data: dict[str, Any]) -> tuple[str, str]:
    status = data.get("status")
    if status is None:
        raise FrameRejected("missing_field", "status")
    if not isinstance(status, dict):
        raise FrameRejected("invalid_field", "status")
    code = status.get("code")
    if code is None:
        raise FrameRejected("missing_field", "status.code")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)  # a string on the WebSocket page, a number in the Media Gateway examples
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
