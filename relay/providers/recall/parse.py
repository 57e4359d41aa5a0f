"""Recall.ai real-time WebSocket frames -> relay events: a pure, sans-I/O parser for ONE connection.

The ingress owns the socket; it hands every received frame to :meth:`RecallParser.feed` and
publishes what comes back. The parser never awaits and never does I/O, so it is tested with the
documented payloads alone (``tests/providers/recall/test_parse.py``).

Two protocols arrive on the same kind of socket:

* **Real-time endpoints** (current): JSON text frames ``{"event": ..., "data": {...}}``; a binary
  frame holding UTF-8 JSON is accepted as the same thing. See ``docs/protocols/recall.md``.
* **Legacy binary protocols** (older bots), one stream per connection: a JSON header, then binary
  frames. Audio: ``{"protocol_version": 1, "bot_id", "separate_streams"}`` (some versions add
  ``recording_id`` and ``offset``; without ``recording_id`` the bot id keys the session), then
  S16LE 16 kHz PCM (with ``separate_streams``, each frame starts with a 4-byte little-endian
  participant id). Video: ``{"protocol_version": 1, "bot_id"}`` (no ``separate_streams``), then
  frames of a u32 LE participant id, a u32 LE millisecond timestamp and PNG bytes. The header
  **emits no event**: it carries nothing but the session, which every following event repeats; it
  only sets :attr:`RecallParser.session` and switches binary frames to media.

Transcripts carry an utterance id that a participant's partials and their final share (Recall sends
none: the parser pairs them per connection, see :class:`RecallParser`; the contract for consumers is
in ``docs/events.md``, "Transcripts: partials and finals").

Errors: any malformed frame raises :class:`FrameRejected` -- and nothing else, whatever the input --
whose ``reason`` is one of :data:`relay.errors.REJECT_REASONS` (a bounded metric label). Unknown fields are
ignored; known fields of the wrong type are errors. Unknown event *types* are not errors: Recall
adds types, so they pass through as :class:`~relay.schema.GenericEvent`.

Speed: this is the relay's hot path (tens of audio frames per second per bot). JSON is parsed once
by orjson; base64 is checked without decoding it (its length gives the byte count); the session
and participants are built (and dumped to JSON fields) once per connection and reused while the bot
sends the same ones; and events leave as :class:`~relay.schema.EventRecord` from
:meth:`RecallParser.feed_records`: the event's JSON-ready body, built here in published order, which
``to_json`` serializes in one orjson call, with no pydantic model per event.
:meth:`RecallParser.feed` validates each into its model: the tests use it; the property tests hold
the two to the same JSON, and ``test_parse_equivalence.py`` to the same bytes.

The hot kinds (transcripts, audio, video) of a text frame first try a typed fast path: one
msgspec decode into Structs, tagged by the event name, checked in C; anything it does not take (another
kind, an unexpected field or type, a value it would misjudge) goes to the checked path, which alone
decides errors (``test_parse_fast_path.py`` holds the two to the same bytes and errors). Measured
(``python -m bench.parse_micro``, parse+to_json): transcript 10.6 -> 8.2 us, audio 8.0 -> 6.9,
participant_events.join 6.2 -> 6.4 (the prefix check and one call). Utterance ids cost the transcript
about 0.2 us (parse+json 6.22 -> 6.43, old and new parser interleaved in one process; the benchmark's
frame is a lone final, which opens an utterance every time; a second UUID would have cost 0.8). Left out: ``orjson.Fragment``
for the session and participant JSON saved 0.2 us per event.

The two paths (and the legacy protocol) differ only in how they *read* a frame: each event's
published layout -- envelope, ``time``, payload -- is written once, in the record builders
(:func:`_event`, :func:`_transcript_record`, :func:`_audio_record`, :func:`_video_record`), which
every path calls with the values it read (which costs the fast path nothing the benchmark tells
from its noise, about 1%). The word readers stay three (:func:`_plain_words` and
:func:`_checked_words` on dicts, the loop of :func:`_fast_transcript` on the fast path's Structs),
each giving the words in the one published shape: decoding words into dicts so that the fast path
could use the dict readers costs about 1.5 us per transcript (measured).
"""

from __future__ import annotations

import binascii
import struct
from datetime import datetime, timezone
from typing import Any, ClassVar, Final, TypeVar, Union

import msgspec
import orjson

from pydantic import BaseModel, ValidationError

from relay.errors import FrameRejected, not_json_reason
from relay.schema import (
    SCHEMA_VERSION,
    AudioChunkEvent,
    ChatMessageEvent,
    EventBase,
    EventRecord,
    GenericEvent,
    Participant,
    ParticipantEvent,
    ProviderDataEvent,
    SessionRef,
    Source,
    TranscriptEvent,
    VideoFrameEvent,
    new_event_id,
)

__all__ = ["RecallParser", "PCM_BYTES_PER_MS", "PNG_MAGIC"]

_E = TypeVar("_E", bound=BaseModel)

#: 16 kHz mono signed 16-bit PCM: 32 bytes per millisecond.
PCM_BYTES_PER_MS: Final = 32
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"

_RECALL: Final = Source.RECALL
_UTC: Final = timezone.utc
#: Characters of standard base64; ``bytes.translate(None, _B64_ALPHABET)`` leaves only the others.
_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_LE_U32: Final = struct.Struct("<I")
_LE_U32_U32: Final = struct.Struct("<II")
#: Marks a cached participant made from a legacy binary id (no participant object to compare).
_LEGACY: Final = object()
#: What a legacy connection carries, as its header says (see ``RecallParser._legacy_header``).
_MIXED: Final = "mixed"
_SEPARATE: Final = "separate"
_VIDEO: Final = "video"
#: Above this many remembered participants a connection starts over (bounds memory per socket).
_MAX_CACHED_PARTICIPANTS: Final = 1024
#: Above this many open utterances (partials sent, final not yet) a connection forgets its oldest:
#: a participant who left mid-utterance must not hold memory for the rest of the meeting.
_MAX_OPEN_UTTERANCES: Final = 1024

#: A session or participant model with its JSON fields, as an event's ``session`` or ``participant``
#: publishes them. Both repeat on every event of a connection, so they are dumped once, when the
#: parser first meets them, and every event after that reuses the dict.
_Known = tuple[Any, "dict[str, Any] | None"]
_NOBODY: Final[_Known] = (None, None)
#: When an event happened, as the frame says: ``(relative, absolute)``, both optional; :func:`_event`
#: adds when the relay received it and lays the three out as the event's ``time``.
_Moment = tuple[float | None, datetime | None]
_NO_TIME: Final[_Moment] = (None, None)


# ---------------------------------------------------------------------------------------------
# Field readers: each checks one JSON value's type and raises FrameRejected naming the field.
# ---------------------------------------------------------------------------------------------


def _obj(value: Any, field: str) -> dict[str, Any]:
    if type(value) is dict:
        return value
    raise FrameRejected("missing_field" if value is None else "invalid_field", field)


def _opt_obj(value: Any, field: str) -> dict[str, Any]:
    """An optional object such as ``metadata``: null or absent reads as ``{}``."""
    if type(value) is dict:
        return value
    if value is None:
        return {}
    raise FrameRejected("invalid_field", field)


def _str(value: Any, field: str) -> str:
    if type(value) is str:
        return value
    raise FrameRejected("missing_field" if value is None else "invalid_field", field)


def _opt_str(value: Any, field: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise FrameRejected("invalid_field", field)


def _opt_bool(value: Any, field: str) -> bool | None:
    if value is None or type(value) is bool:
        return value
    raise FrameRejected("invalid_field", field)


def _opt_float(value: Any, field: str) -> float | None:
    # bool is an int subclass; `true` is not a number of seconds.
    t = type(value)
    if t is float:
        return value  # type: ignore[no-any-return]
    if t is int:
        return float(value)
    if value is None:
        return None
    raise FrameRejected("invalid_field", field)


def _opt_datetime(value: Any, field: str) -> datetime | None:
    """An ISO 8601 time, normalized to UTC (Recall sends UTC; a time without offset is UTC)."""
    if value is None:
        return None
    if type(value) is not str:
        raise FrameRejected("invalid_field", field)
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=_UTC)
        return parsed.astimezone(_UTC)
    except (ValueError, OverflowError):
        raise FrameRejected("invalid_field", field) from None


def _base64_len(value: str, field: str) -> int:
    """Check that ``value`` is standard padded base64 and return its decoded length, without decoding.

    Decoding would copy the buffer only to count it (and ``binascii`` is slower than this check):
    the string must be ASCII, a multiple of 4 long, use only the base64 alphabet, and carry ``=``
    only as the last one or two characters. (That it is a string at all is the caller's check:
    :func:`_str` on the checked path, the decoder on the fast path.)
    """
    n = len(value)
    if not n:
        return 0
    if n % 4 or not value.isascii():
        raise FrameRejected("invalid_base64", field)
    pad = 2 if value.endswith("==") else 1 if value[-1] == "=" else 0
    if value.find("=", 0, n - pad) != -1 or value.encode("ascii").translate(None, _B64_ALPHABET):
        raise FrameRejected("invalid_base64", field)
    return n // 4 * 3 - pad


def _time(raw: Any) -> _Moment:
    """A Recall ``data.data.timestamp`` (``{relative, absolute}``, either may be missing), checked.

    Every event but a transcript has one, so a float ``relative`` is taken without a call; anything
    else goes through the field readers, which raise the errors. (Parsing ``absolute`` inline saved
    nothing measurable.)
    """
    if raw is None:
        return _NO_TIME
    if type(raw) is not dict:
        raise FrameRejected("invalid_field", "data.data.timestamp")
    relative = raw.get("relative")
    if type(relative) is not float:
        relative = _opt_float(relative, "data.data.timestamp.relative")
    return relative, _opt_datetime(raw.get("absolute"), "data.data.timestamp.absolute")


def _known(model: BaseModel) -> _Known:
    return model, model.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# Record builders: the one place each published layout is written, whichever path read the frame.
# ---------------------------------------------------------------------------------------------
#
# The checked path, the typed fast path and the legacy protocol read their values differently (dicts,
# Structs, binary headers), then hand them to these; so a new field of the envelope, of ``time`` or
# of a payload is one edit here (plus, for a value the frame carries, its readers). They take values
# already checked and check nothing; their arguments are evaluated in the order the checked path
# has always checked its fields, which decides the error of a frame with several bad ones.


def _event(
    cls: type[EventBase], type_: str, session: _Known, participant: _Known, time: _Moment, received: datetime,
    payload: dict[str, Any],
) -> EventRecord:
    """One Recall event: the envelope every kind shares around its ``time`` and ``payload``.

    ``payload`` must hold every field of the kind's payload model, those with defaults first (the
    order events have always been published in; ``test_parse_equivalence.py`` pins it); ``time``
    is laid out the same way.
    """
    return EventRecord(cls, session[0], participant[0], {
        "schema_version": SCHEMA_VERSION,
        "id": new_event_id(),
        "source": _RECALL,
        "type": type_,
        "session": session[1],
        "participant": participant[1],
        "time": {"relative": time[0], "absolute": time[1], "received": received},
        "payload": payload,
    })  # fmt: skip


def _transcript_record(
    utterances: dict[tuple[str, Any], str], session: _Known, participant: _Known, received: datetime,
    is_final: bool, words: list[dict[str, Any]], texts: list[str], first_abs: datetime | None, language: str | None,
) -> EventRecord:
    """A transcript: ``words`` (``{text, start, end}`` each) and their ``texts``, as the word readers
    (:func:`_plain_words`, :func:`_checked_words`, :func:`_fast_transcript`) read them. Its time is
    its first word's.

    Its utterance id comes from ``utterances``, the parser's open utterances, which this updates
    (the rule: :class:`RecallParser`). So every path calls this only once the frame has parsed: a
    bad frame opens or closes nothing. A new utterance's id is the id of the event that opens it:
    made anyway, unique across connections and processes, so opening one costs no second UUID
    (0.8 us). (Done here, not in a parser method around this: a call fewer per transcript.)"""
    who = participant[1]
    key = (session[0].id, None if who is None else who["id"])
    utterance_id = utterances.pop(key, None) if is_final else utterances.get(key)
    start = words[0]["start"] if words else None
    payload = {
        "utterance_id": utterance_id,
        "words": words,
        "start": start,
        "end": words[-1]["end"] if words else None,
        "language": language,
        "start_time": None,
        "end_time": None,
        "text": " ".join(texts),
        "is_final": is_final,
    }
    record = _event(
        TranscriptEvent, "transcript.final" if is_final else "transcript.partial", session, participant,
        (start, first_abs), received, payload,
    )  # fmt: skip
    if utterance_id is None:
        payload["utterance_id"] = utterance_id = record.body["id"]
        if not is_final:
            if len(utterances) >= _MAX_OPEN_UTTERANCES:
                del utterances[next(iter(utterances))]  # the oldest opened
            utterances[key] = utterance_id
    return record


def _audio_record(
    session: _Known, participant: _Known, time: _Moment, received: datetime, separate: bool, audio: str, size: int
) -> EventRecord:
    """An audio chunk: ``audio`` is the base64 of ``size`` bytes of 16 kHz S16LE PCM."""
    return _event(AudioChunkEvent, "audio.chunk", session, participant, time, received, {
        "encoding": "pcm_s16le",
        "sample_rate": 16000,
        "channels": 1,
        "mix": "separate" if separate else "mixed",
        "audio": audio,
        "bytes": size,
        "duration_ms": size / PCM_BYTES_PER_MS,
    })  # fmt: skip


def _video_record(
    session: _Known, participant: _Known, time: _Moment, received: datetime, stream: str | None, codec: str,
    image: str, size: int,
) -> EventRecord:
    """A video frame: ``image`` is the base64 of ``size`` bytes."""
    return _event(VideoFrameEvent, "video.frame", session, participant, time, received, {
        "stream": stream,
        "codec": codec,
        "image": image,
        "bytes": size,
    })  # fmt: skip


def _validate(cls: type[_E], fields: dict[str, Any]) -> _E:
    """Build an event; pydantic checks it once, in Rust, nested dicts and all.

    (Validating one nested dict is cheaper than ``model_construct`` of each sub-model, and keeps the
    schema's own checks.) The fields were type-checked above, so a failure here is a parser bug or
    a value the checks above let through: reported as ``invalid_field`` with its location.
    """
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        loc = ".".join(str(p) for p in exc.errors(include_url=False, include_input=False)[0]["loc"])
        raise FrameRejected("invalid_field", loc) from None


def _word_time(raw: Any, field: str) -> tuple[float | None, datetime | None]:
    if raw is None:
        return None, None
    if type(raw) is not dict:
        raise FrameRejected("invalid_field", field)
    return _opt_float(raw.get("relative"), field + ".relative"), _opt_datetime(raw.get("absolute"), field + ".absolute")


def _build_participant(raw: dict[str, Any]) -> _Known:
    pid = raw.get("id")
    if type(pid) is int:
        pid = str(pid)
    elif pid is not None and type(pid) is not str:
        raise FrameRejected("invalid_field", "participant.id")
    return _known(_validate(Participant, {
        "id": pid,
        "name": _opt_str(raw.get("name"), "participant.name"),
        "email": _opt_str(raw.get("email"), "participant.email"),
        "is_host": _opt_bool(raw.get("is_host"), "participant.is_host"),
        "platform": _opt_str(raw.get("platform"), "participant.platform"),
        # Any JSON value Recall sends is carried as sent (its sample apps type it ``any``); null or
        # absent reads as ``{}``, as it always has.
        "extra": {} if (extra := raw.get("extra_data")) is None else extra,
    }))  # fmt: skip


def _build_session(data: dict[str, Any]) -> _Known:
    recording = _obj(data.get("recording"), "data.recording")
    bot = _opt_obj(data.get("bot"), "data.bot")
    endpoint = _opt_obj(data.get("realtime_endpoint"), "data.realtime_endpoint")
    return _known(_validate(SessionRef, {
        "id": _str(recording.get("id"), "data.recording.id"),
        "bot_id": _opt_str(bot.get("id"), "data.bot.id"),
        "endpoint_id": _opt_str(endpoint.get("id"), "data.realtime_endpoint.id"),
        "metadata": _opt_obj(endpoint.get("metadata"), "data.realtime_endpoint.metadata"),
        "recording_metadata": _opt_obj(recording.get("metadata"), "data.recording.metadata"),
        "bot_metadata": _opt_obj(bot.get("metadata"), "data.bot.metadata"),
    }))  # fmt: skip


def _plain_words(raw_words: list[Any]) -> tuple[list[dict[str, Any]], list[str]] | None:
    """A transcript's words and their texts, if every word has the common shape; else ``None``.

    The hottest loop of the parser (a transcript has tens of words). The common shape, the one
    Recall documents, is ``{"text": str, "start_timestamp": {"relative": float}, "end_timestamp":
    {"relative": float} | null}``; subscripts (cheaper than ``.get``) read it, and anything else (a
    missing key, a wrong type, an ``absolute`` time or any other extra key, an integer time) gives
    ``None`` rather than an error, so :func:`_checked_words` decides every error exactly as before.
    """
    words: list[dict[str, Any]] = []
    texts: list[str] = []
    try:
        for raw in raw_words:
            text = raw["text"]  # TypeError when raw is not a dict
            st = raw["start_timestamp"]
            start = st["relative"]  # TypeError when st is null or not a dict
            et = raw["end_timestamp"]
            if et is None:
                end = None
            elif type(end := et["relative"]) is not float or len(et) != 1:
                return None
            if type(text) is not str or type(start) is not float or len(st) != 1:
                return None
            words.append({"text": text, "start": start, "end": end})
            texts.append(text)
    except (KeyError, TypeError):
        return None
    return words, texts


def _checked_words(raw_words: list[Any]) -> tuple[list[dict[str, Any]], list[str], datetime | None]:
    """A transcript's words, their texts and the first word's absolute time, every field checked.

    The general path, for words :func:`_plain_words` does not take: it raises the
    :class:`FrameRejected` of the first bad field (word by word: text, start, end).
    """
    words: list[dict[str, Any]] = []
    texts: list[str] = []
    first_abs: datetime | None = None
    for raw in raw_words:
        if type(raw) is not dict:
            raise FrameRejected("invalid_field", "data.data.words[]")
        text = _str(raw.get("text"), "data.data.words[].text")
        start, start_abs = _word_time(raw.get("start_timestamp"), "data.data.words[].start_timestamp")
        end, _ = _word_time(raw.get("end_timestamp"), "data.data.words[].end_timestamp")
        if not words:
            first_abs = start_abs
        words.append({"text": text, "start": start, "end": end})
        texts.append(text)
    return words, texts, first_abs


def _loads(frame: str | bytes | bytearray | memoryview) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise FrameRejected(not_json_reason(frame)) from None


def _looks_like_json(frame: bytes | bytearray | memoryview) -> bool:
    """Whether a binary frame starts like a JSON object (after optional whitespace)."""
    head = bytes(frame[:64]).lstrip()
    return head[:1] == b"{"


# ---------------------------------------------------------------------------------------------
# The typed fast path: the hot frame kinds, decoded and type-checked by msgspec in one C call
# ---------------------------------------------------------------------------------------------
#
# These Structs document the wire shape of the frames the relay gets most of (transcripts, audio,
# video), as Recall sends them. They are only ever a shortcut: a frame they do not fit (a wrong
# type, a missing field, another event) goes to the checked path above, which decides every error,
# so a field is typed here exactly as strictly as the checked path reads it, never more loosely.
# Every struct is ``gc=False`` (decoded data holds no cycles: the collector need not track it).
#
# Every byte of a frame is either typed here or compared with bytes orjson already accepted, because
# msgspec's JSON grammar is not quite orjson's where it does not convert: a skipped field may hold a
# number out of double range (``1e400``) or, in a binary frame, invalid UTF-8, which orjson refuses
# (``invalid_json``, ``invalid_utf8``). So unknown fields are refused (``forbid_unknown_fields``: such
# a frame takes the checked path, which ignores them), only text frames take this path, and the
# envelope (recording, bot, endpoint, the artifact) and the participant are kept as raw JSON
# (:class:`msgspec.Raw`, a slice of the frame). They repeat byte for byte on every frame of a
# connection: comparing bytes finds the session and participant already built; new bytes go to the
# checked path, which builds them (orjson's values, orjson's errors), and the fast path remembers
# them for the next frame.

_RAW_NULL: Final = msgspec.Raw(b"null")  # an absent field reads as null, as ``dict.get`` does


class _Time(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """``{relative, absolute}``: either may be missing or null. An integer ``relative`` is taken
    as a float (as the checked path does); ``absolute`` is ISO 8601, parsed by the checked reader."""

    relative: Union[float, None] = None
    absolute: Union[str, None] = None


class _Word(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    text: str
    start_timestamp: Union[_Time, None] = None
    end_timestamp: Union[_Time, None] = None


class _TranscriptData(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    words: list[_Word]
    participant: msgspec.Raw = _RAW_NULL
    language: Union[str, None] = None


class _MixedAudioData(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    buffer: str  # base64 PCM; checked by _base64_len (the decoder only knows it is a string)
    timestamp: Union[_Time, None] = None
    # No participant: mixed audio has none, and the checked path does not read one.


class _SeparateAudioData(_MixedAudioData, gc=False):
    participant: msgspec.Raw = _RAW_NULL


class _VideoData(_SeparateAudioData, gc=False):
    type: Union[str, None] = None  # "webcam" | "screenshare"


class _Envelope(msgspec.Struct, kw_only=True, gc=False, forbid_unknown_fields=True):
    """``data``: the event's ``data`` and the objects that name its session, kept raw (see above),
    with the artifact the event belongs to under whichever name Recall gives it."""

    recording: msgspec.Raw = _RAW_NULL
    bot: msgspec.Raw = _RAW_NULL
    realtime_endpoint: msgspec.Raw = _RAW_NULL
    transcript: msgspec.Raw = _RAW_NULL
    audio_mixed: msgspec.Raw = _RAW_NULL
    audio_mixed_raw: msgspec.Raw = _RAW_NULL
    audio_separate: msgspec.Raw = _RAW_NULL
    audio_separate_raw: msgspec.Raw = _RAW_NULL
    video_separate: msgspec.Raw = _RAW_NULL
    video_separate_png: msgspec.Raw = _RAW_NULL
    video_separate_h264: msgspec.Raw = _RAW_NULL


class _TranscriptEnvelope(_Envelope, kw_only=True, gc=False):
    data: _TranscriptData


class _MixedAudioEnvelope(_Envelope, kw_only=True, gc=False):
    data: _MixedAudioData


class _SeparateAudioEnvelope(_Envelope, kw_only=True, gc=False):
    data: _SeparateAudioData


class _VideoEnvelope(_Envelope, kw_only=True, gc=False):
    data: _VideoData


class _Frame(msgspec.Struct, tag_field="event", gc=False, forbid_unknown_fields=True):
    """``{"event": <tag>, "data": ...}``; the tag (the Recall event name) picks the subclass."""


class _TranscriptFinal(_Frame, tag="transcript.data", gc=False):
    data: _TranscriptEnvelope


class _TranscriptPartial(_Frame, tag="transcript.partial_data", gc=False):
    data: _TranscriptEnvelope


class _MixedAudio(_Frame, tag="audio_mixed_raw.data", gc=False):
    data: _MixedAudioEnvelope


class _SeparateAudio(_Frame, tag="audio_separate_raw.data", gc=False):
    data: _SeparateAudioEnvelope


class _VideoPng(_Frame, tag="video_separate_png.data", gc=False):
    data: _VideoEnvelope


class _VideoH264(_Frame, tag="video_separate_h264.data", gc=False):
    data: _VideoEnvelope


_FAST_FRAMES: Final = (_TranscriptFinal, _TranscriptPartial, _MixedAudio, _SeparateAudio, _VideoPng, _VideoH264)


def _tag(cls: type[_Frame]) -> str:
    """The event name a frame Struct is tagged with (msgspec types a tag as ``str | int | None``)."""
    tag = cls.__struct_config__.tag
    if type(tag) is not str:
        raise TypeError(f"{cls.__name__} has no event name for a tag")
    return tag


_FAST_EVENTS: Final = frozenset(_tag(cls) for cls in _FAST_FRAMES)
#: How a fast kind's text frame starts, as Recall (and orjson or ``json.dumps``) writes it: checked
#: before decoding, because a failed decode (any other event) costs about 0.9 us and a
#: ``startswith`` 0.05. A frame written otherwise only misses the shortcut.
_FAST_PREFIXES: Final = tuple(f'{{"event":{sep}"{event}"' for event in sorted(_FAST_EVENTS) for sep in ("", " "))
_decode_fast: Final = msgspec.json.Decoder(Union[_FAST_FRAMES]).decode


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------

_PARTICIPANT_EVENTS: Final = {
    f"participant_events.{a}": f"participant.{a}"
    for a in ("join", "leave", "update", "speech_on", "speech_off",
              "webcam_on", "webcam_off", "screenshare_on", "screenshare_off")
}  # fmt: skip


class RecallParser:
    """Turns the frames of ONE Recall connection into relay events.

    Create one per accepted socket and call :meth:`feed` for each frame, in order. It keeps only
    what the protocol needs across frames: the legacy header (if any), the last session, a
    cache of participants, and each participant's open utterance (below); memory is bounded per
    connection.

    **Utterance ids** (``payload.utterance_id`` of transcripts). Recall names no utterance, so the
    parser pairs them: per session and participant, the first ``transcript.partial_data`` opens an
    utterance whose id is that event's own id (a UUIDv7: unique across connections, reconnects and
    relay processes); later partials carry it, and ``transcript.data`` (the final) carries it and
    closes it. A final with no open utterance (no partials, or they came on another connection)
    gets its own event id. Partials of a next utterance that arrive before the previous final
    join the open utterance (nothing in a frame tells them apart), so they are replaced by that
    final; the next partial after it opens the new utterance, and since each partial repeats the
    whole utterance so far, nothing is lost. A reconnect is a new parser, which cannot know the
    previous connection's open utterance: its final gets a fresh id, and the partials sent before
    the drop keep an id that no final carries. At most :data:`_MAX_OPEN_UTTERANCES` stay open; past
    that the oldest opened is forgotten (its final then gets a fresh id).
    """

    __slots__ = (
        "_session", "_session_key", "_participants", "_legacy", "_legacy_samples", "_raw_sessions", "_raw_participants",
        "_utterances",
    )  # fmt: skip

    def __init__(self) -> None:
        self._session: _Known = _NOBODY  # (SessionRef, its JSON fields) of the last frame that named one
        self._session_key: bytes | None = None
        self._participants: dict[Any, tuple[object, _Known]] = {}  # id -> (its JSON bytes or _LEGACY, participant)
        self._legacy: tuple[str, float] | None = None  # (_MIXED | _SEPARATE | _VIDEO, offset) once a header came
        self._legacy_samples: dict[int | None, int] = {}  # legacy PCM bytes seen per stream, for timing
        # The fast path's memory of envelopes and participants the checked path accepted, by their
        # raw JSON: [(envelope Raws, session)], a few (a connection's event kinds name different
        # artifacts), and participant bytes -> participant.
        self._raw_sessions: list[tuple[tuple[msgspec.Raw, ...], _Known]] = []
        self._raw_participants: dict[bytes, _Known] = {}
        # (session id, participant id) -> the id of its open utterance, oldest opened first.
        self._utterances: dict[tuple[str, Any], str] = {}

    @property
    def session(self) -> SessionRef | None:
        """The session of the last frame that named one (``None`` before the first)."""
        return self._session[0]  # type: ignore[no-any-return]

    @property
    def legacy(self) -> bool:
        """Whether this connection speaks a legacy binary protocol, audio or video (a header was received)."""
        return self._legacy is not None

    @property
    def legacy_stream(self) -> str | None:
        """What a legacy connection carries: ``"mixed"`` or ``"separate"`` audio, or ``"video"``."""
        return None if self._legacy is None else self._legacy[0]

    def feed(self, frame: str | bytes | bytearray | memoryview, received_at: datetime | None = None) -> list[EventBase]:
        """Parse one frame into zero or more validated events; raise :class:`FrameRejected` if it is malformed.

        ``received_at`` is when the relay received the frame (UTC; default: now). A failed frame
        leaves the parser's state as it was, so the connection can go on.
        """
        records = self.feed_records(frame, received_at)
        try:
            return [record.model() for record in records]
        except ValidationError as exc:  # the checks below let a bad value through: a parser bug
            loc = ".".join(str(p) for p in exc.errors(include_url=False, include_input=False)[0]["loc"])
            raise FrameRejected("invalid_field", loc) from None

    def feed_records(
        self, frame: str | bytes | bytearray | memoryview, received_at: datetime | None = None
    ) -> list[EventRecord]:
        """Like :meth:`feed`, but the events stay :class:`~relay.schema.EventRecord`: the hot path.

        Every field is checked here by hand; the records serialize to the JSON their models would
        (``tests/providers/recall/test_parse_equivalence.py``), without a pydantic model per event.
        """
        received = received_at if received_at is not None else datetime.now(_UTC)
        try:
            if type(frame) is str:
                return self._text(frame, received)
            if isinstance(frame, (bytes, bytearray, memoryview)):
                return self._binary(frame, received)
            raise FrameRejected("invalid_frame_type", type(frame).__name__)
        except FrameRejected:
            raise
        except Exception as exc:  # a parser bug must cost one frame, not the connection
            raise FrameRejected("internal_error", type(exc).__name__) from exc

    # --- the typed fast path (see the Structs above) ---------------------------------------------

    def _text(self, frame: str, received: datetime) -> list[EventRecord]:
        """A text frame: the fast path if it takes the frame, else the checked path."""
        if not frame.startswith(_FAST_PREFIXES):
            return self._json(_loads(frame), received)
        try:
            msg = _decode_fast(frame)
        except Exception:  # not a fast kind, or not its shape, or not JSON: the checked path decides
            return self._json(_loads(frame), received)
        try:
            out = self._fast(msg, received)
        except FrameRejected:  # a bad value (time, base64): the checked path names the first bad field
            out = None
        if out is not None:
            return out
        records = self._json(_loads(frame), received)
        self._learn(msg, records[0])
        return records

    def _fast(self, msg: _Frame, received: datetime) -> list[EventRecord] | None:
        """The frame's events, or ``None`` if its envelope or participant is new to this path."""
        env = msg.data  # type: ignore[attr-defined]
        key = _raw_key(env)
        for known_key, session in self._raw_sessions:
            if known_key == key:
                break
        else:
            return None
        inner = env.data
        cls = type(msg)
        if cls is _SeparateAudio or cls is _MixedAudio:
            buffer = inner.buffer
            size = _base64_len(buffer, "data.data.buffer")
            separate = cls is _SeparateAudio
            if separate:
                participant = self._raw_participants.get(bytes(inner.participant))
                if participant is None:
                    return None
            else:
                participant = _NOBODY
            out = _audio_record(session, participant, _fast_time(inner.timestamp), received, separate, buffer, size)
        else:
            participant = self._raw_participants.get(bytes(inner.participant))
            if participant is None:
                return None
            if cls is _TranscriptFinal or cls is _TranscriptPartial:
                out = _fast_transcript(self._utterances, session, participant, received, cls is _TranscriptFinal, inner)
            else:
                buffer = inner.buffer
                out = _video_record(
                    session, participant, _fast_time(inner.timestamp), received,
                    inner.type, "png" if cls is _VideoPng else "h264", buffer, _base64_len(buffer, "data.data.buffer"),
                )  # fmt: skip
        if session is not self._session:
            # The checked path's key (its raw dicts) no longer names the last session.
            self._session, self._session_key = session, None
        return [out]

    def _learn(self, msg: _Frame, record: EventRecord) -> None:
        """Remember the envelope and participant of a frame the checked path just accepted."""
        env = msg.data  # type: ignore[attr-defined]
        key = _raw_key(env)
        if not any(known == key for known, _ in self._raw_sessions):
            if len(self._raw_sessions) >= 8:
                del self._raw_sessions[0]
            self._raw_sessions.append((key, self._session))
        if type(msg) is not _MixedAudio:
            if len(self._raw_participants) >= _MAX_CACHED_PARTICIPANTS:
                self._raw_participants.clear()
            self._raw_participants[bytes(env.data.participant)] = (record.participant, record.body["participant"])

    # --- JSON frames -----------------------------------------------------------------------------

    def _json(self, obj: Any, received: datetime) -> list[EventRecord]:
        if type(obj) is not dict:
            raise FrameRejected("not_an_object")
        event = obj.get("event")
        if event is None and "protocol_version" in obj:
            self._legacy_header(obj)
            return []
        name = _str(event, "event")
        data = _obj(obj.get("data"), "data")
        # As JSON bytes, not a tuple of dicts: ``==`` takes ``true`` for ``1`` and ``1`` for ``1.0``,
        # so a metadata value changing only in type would keep the session built before.
        key = orjson.dumps((data.get("recording"), data.get("bot"), data.get("realtime_endpoint")))
        session = self._session_of(key, data)
        inner = data.get("data")
        handler = self._HANDLERS.get(name)
        if handler is not None:
            # A transcription provider's payload is whatever that provider sends.
            if name != "transcript.provider_data":
                inner = _obj(inner, "data.data")
            out = handler(self, name, inner, session, received)
        else:
            out = self._generic(name, inner, session, received)
        # Only once the frame parsed: a bad frame changes nothing.
        self._session, self._session_key = session, key
        return [out]

    def _session_of(self, key: bytes, data: dict[str, Any]) -> _Known:
        # Every frame of a connection repeats the same recording/bot/endpoint: compare their JSON
        # bytes (cheap) and rebuild only when they change.
        if self._session[0] is not None and key == self._session_key:
            return self._session
        return _build_session(data)

    def _participant(self, raw: Any, field: str = "data.data.participant") -> _Known:
        if raw is None:
            return _NOBODY
        if type(raw) is not dict:
            raise FrameRejected("invalid_field", field)
        pid = raw.get("id")
        if type(pid) not in (int, str):
            return _build_participant(raw)
        # Compared as JSON bytes, not with ``==``, which takes ``true`` for ``1`` and ``1`` for
        # ``1.0``: a participant whose ``extra_data`` or ``is_host`` changes so must be built anew
        # (and checked anew: ``"is_host": 1`` is an error however alike it is to ``true``).
        blob = orjson.dumps(raw)
        cached = self._participants.get(pid)
        if cached is not None and cached[0] == blob:
            return cached[1]
        participant = _build_participant(raw)
        if len(self._participants) >= _MAX_CACHED_PARTICIPANTS:
            self._participants.clear()
        self._participants[pid] = (blob, participant)
        return participant

    def _participant_event(self, name: str, inner: dict[str, Any], session: _Known, received: datetime) -> EventRecord:
        type_ = _PARTICIPANT_EVENTS[name]
        return _event(
            ParticipantEvent, type_, session,
            self._participant(inner.get("participant")),
            _time(inner.get("timestamp")), received,
            {"action": type_[12:]},
        )  # fmt: skip

    def _chat(self, name: str, inner: dict[str, Any], session: _Known, received: datetime) -> EventRecord:
        message = _obj(inner.get("data"), "data.data.data")
        participant = self._participant(inner.get("participant"))
        time = _time(inner.get("timestamp"))
        text = _str(message.get("text"), "data.data.data.text")
        return _event(
            ChatMessageEvent, "chat.message", session, participant, time, received,
            {"to": _opt_str(message.get("to"), "data.data.data.to"), "text": text},
        )  # fmt: skip

    def _transcript(self, name: str, inner: dict[str, Any], session: _Known, received: datetime) -> EventRecord:
        raw_words = inner.get("words")
        if type(raw_words) is not list:
            raise FrameRejected("missing_field" if raw_words is None else "invalid_field", "data.data.words")
        first_abs: datetime | None = None
        plain = _plain_words(raw_words)
        if plain is not None:
            words, texts = plain
        else:
            words, texts, first_abs = _checked_words(raw_words)
        return _transcript_record(
            self._utterances, session, self._participant(inner.get("participant")), received,
            name == "transcript.data", words, texts, first_abs, _opt_str(inner.get("language"), "data.data.language"),
        )  # fmt: skip

    def _audio(self, name: str, inner: dict[str, Any], session: _Known, received: datetime) -> EventRecord:
        buffer = _str(inner.get("buffer"), "data.data.buffer")
        size = _base64_len(buffer, "data.data.buffer")
        separate = name == "audio_separate_raw.data"
        return _audio_record(
            session, self._participant(inner.get("participant")) if separate else _NOBODY,
            _time(inner.get("timestamp")), received, separate, buffer, size,
        )  # fmt: skip

    def _video(self, name: str, inner: dict[str, Any], session: _Known, received: datetime) -> EventRecord:
        buffer = _str(inner.get("buffer"), "data.data.buffer")
        size = _base64_len(buffer, "data.data.buffer")
        return _video_record(
            session, self._participant(inner.get("participant")), _time(inner.get("timestamp")), received,
            _opt_str(inner.get("type"), "data.data.type"), "png" if name == "video_separate_png.data" else "h264",
            buffer, size,
        )  # fmt: skip

    def _provider_data(self, name: str, inner: Any, session: _Known, received: datetime) -> EventRecord:
        return _event(ProviderDataEvent, "transcript.provider_data", session, _NOBODY, _NO_TIME, received, {"data": inner})

    def _generic(self, name: str, inner: Any, session: _Known, received: datetime) -> EventRecord:
        # Unknown type: pass `data.data` through untouched. Participant and time are taken when
        # they have the documented shape and ignored otherwise: an unknown event must not fail on
        # fields whose meaning we cannot know.
        participant = _NOBODY
        time = _NO_TIME
        if type(inner) is dict:
            try:
                participant = self._participant(inner.get("participant"))
            except FrameRejected:
                pass
            try:
                time = _time(inner.get("timestamp"))
            except FrameRejected:
                pass
        return _event(GenericEvent, "generic", session, participant, time, received, {"data": inner, "provider_type": name})

    _HANDLERS: ClassVar[dict[str, Any]] = {
        **dict.fromkeys(_PARTICIPANT_EVENTS, _participant_event),
        "participant_events.chat_message": _chat,
        "transcript.data": _transcript,
        "transcript.partial_data": _transcript,
        "transcript.provider_data": _provider_data,
        "audio_mixed_raw.data": _audio,
        "audio_separate_raw.data": _audio,
        "video_separate_png.data": _video,
        "video_separate_h264.data": _video,
    }

    # --- legacy protocol -------------------------------------------------------------------------

    def _legacy_header(self, obj: dict[str, Any]) -> None:
        """The first frame of a legacy connection: which stream it carries, and the session.

        An audio header has ``separate_streams``; the video header is ``{"protocol_version": 1,
        "bot_id"}`` alone (docs/protocols/recall.md, section 6). ``recording_id`` and ``offset`` come
        with some versions only: without a recording id, the bot id keys the session.
        """
        version = obj.get("protocol_version")
        if type(version) is not int:
            raise FrameRejected("invalid_field", "protocol_version")
        if version != 1:
            raise FrameRejected("unsupported_protocol", "protocol_version")
        separate = obj.get("separate_streams")
        if separate is None:
            stream = _VIDEO if "separate_streams" not in obj else _MIXED
        elif type(separate) is bool:
            stream = _SEPARATE if separate else _MIXED
        else:
            raise FrameRejected("invalid_field", "separate_streams")
        offset = _opt_float(obj.get("offset"), "offset") or 0.0
        recording_id = _opt_str(obj.get("recording_id"), "recording_id")
        bot_id = _str(obj.get("bot_id"), "bot_id")
        session = _known(_validate(SessionRef, {
            "id": bot_id if recording_id is None else recording_id,
            "bot_id": bot_id,
        }))  # fmt: skip
        self._session, self._session_key = session, None
        self._legacy = (stream, offset)
        self._legacy_samples = {}

    def _binary(self, frame: bytes | bytearray | memoryview, received: datetime) -> list[EventRecord]:
        if self._legacy is None:
            if not _looks_like_json(frame):
                raise FrameRejected("binary_before_header")
            return self._json(_loads(frame), received)
        if frame[:1] == b"{":
            # A participant id of 123 also starts with "{": try JSON, fall back to media.
            try:
                obj = orjson.loads(frame)
            except orjson.JSONDecodeError:
                pass
            else:
                return self._json(obj, received)
        if self._legacy[0] == _VIDEO:
            if len(frame) < 8:
                raise FrameRejected("short_binary_frame", "participant id and timestamp")
            if frame[8:16] != PNG_MAGIC:
                raise FrameRejected("invalid_field", "video frame PNG signature")
            return [self._legacy_video(frame, received)]
        # An audio connection: a frame carrying a PNG after 8 bytes is taken for a video frame
        # (a bot that multiplexes both, as this relay's simulator once did); PCM never looks so.
        if frame[8:16] == PNG_MAGIC:
            return [self._legacy_video(frame, received)]
        return [self._legacy_audio(frame, received)]

    def _legacy_participant(self, pid: int) -> _Known:
        cached = self._participants.get(pid)
        if cached is not None and cached[0] is _LEGACY:
            return cached[1]
        participant = _known(Participant(id=str(pid)))
        if len(self._participants) >= _MAX_CACHED_PARTICIPANTS:
            self._participants.clear()
        self._participants[pid] = (_LEGACY, participant)
        return participant

    def _legacy_audio(self, frame: bytes | bytearray | memoryview, received: datetime) -> EventRecord:
        assert self._legacy is not None and self._session[0] is not None
        stream, offset = self._legacy
        separate = stream == _SEPARATE
        participant = _NOBODY
        pid: int | None = None
        pcm = memoryview(frame)
        if separate:
            if len(frame) < 4:
                raise FrameRejected("short_binary_frame", "participant id")
            (pid,) = _LE_U32.unpack_from(frame)
            participant = self._legacy_participant(pid)
            pcm = pcm[4:]
        # Legacy frames carry no timestamp: a stream's position is the header's offset plus the
        # audio already received on it.
        size = len(pcm)
        seen = self._legacy_samples.get(pid, 0)
        self._legacy_samples[pid] = seen + size
        return _audio_record(
            self._session, participant, (offset + seen / (PCM_BYTES_PER_MS * 1000), None), received,
            separate, _b64(pcm), size,
        )  # fmt: skip

    def _legacy_video(self, frame: bytes | bytearray | memoryview, received: datetime) -> EventRecord:
        assert self._session[0] is not None
        pid, ms = _LE_U32_U32.unpack_from(frame)
        image = memoryview(frame)[8:]
        return _video_record(
            self._session, self._legacy_participant(pid), (ms / 1000, None), received,
            None, "png", _b64(image), len(image),
        )  # fmt: skip


def _raw_key(env: _Envelope) -> tuple[msgspec.Raw, ...]:
    return (
        env.recording, env.bot, env.realtime_endpoint, env.transcript, env.audio_mixed, env.audio_mixed_raw,
        env.audio_separate, env.audio_separate_raw, env.video_separate, env.video_separate_png, env.video_separate_h264,
    )  # fmt: skip


def _fast_time(t: _Time | None) -> _Moment:
    """:func:`_time` of a decoded timestamp."""
    if t is None:
        return _NO_TIME
    absolute = t.absolute
    return t.relative, None if absolute is None else _opt_datetime(absolute, "data.data.timestamp.absolute")


def _fast_transcript(
    utterances: dict[tuple[str, Any], str], session: _Known, participant: _Known, received: datetime,
    is_final: bool, inner: _TranscriptData,
) -> EventRecord:
    """:meth:`RecallParser._transcript` of a decoded transcript: its words read as :func:`_checked_words`
    reads them (the decoder checked their types), then the same :func:`_transcript_record` (only
    after every word has parsed: a word that sends the frame to the checked path must not have
    opened or closed an utterance).

    The fast path's own word reader, because decoding the words into dicts that :func:`_plain_words`
    could read instead costs about 1.5 us more per transcript than decoding them into Structs and
    reading them here (3.1 -> 4.6 us, decode and words, on the benchmark's 7-word transcript). It
    builds the record itself rather than return the words (a tuple fewer per transcript, under 1%).
    ``test_parse_words.py`` holds it to the checked reader, ``test_parse_fast_path.py`` to the bytes.
    """
    words: list[dict[str, Any]] = []
    texts: list[str] = []
    first_abs: datetime | None = None
    for word in inner.words:
        text = word.text
        st = word.start_timestamp
        if st is None:
            start = None
        else:
            start = st.relative
            if st.absolute is not None:
                absolute = _opt_datetime(st.absolute, "data.data.words[].start_timestamp.absolute")
                if not words:
                    first_abs = absolute
        et = word.end_timestamp
        if et is None:
            end = None
        else:
            end = et.relative
            if et.absolute is not None:
                _opt_datetime(et.absolute, "data.data.words[].end_timestamp.absolute")
        words.append({"text": text, "start": start, "end": end})
        texts.append(text)
    return _transcript_record(utterances, session, participant, received, is_final, words, texts, first_abs, inner.language)


def _b64(data: memoryview) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")
