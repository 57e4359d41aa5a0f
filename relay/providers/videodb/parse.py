"""VideoDB payloads -> relay events. Pure: payload in, events out; no I/O, never awaits.

Three inputs (shapes in ``docs/protocols/videodb.md``, sections 3, 5 and 6):

* the socket's **first frame**, which names the ``connection_id`` jobs are bound to
  (:func:`parse_hello`);
* every later **socket frame** ``{"channel", "rtstream_id", "rtstream_name", "data"}``
  (:func:`parse_frame`): ``transcript`` -> ``transcript.final``/``transcript.partial``,
  ``scene_index``/``visual_index`` -> ``index.visual``, ``audio_index``/``spoken_index`` ->
  ``index.audio``, ``alert`` -> ``alert``, ``capture_session`` -> ``session.status``, any other
  channel -> ``generic`` (``payload.provider_type`` = the channel);
* a **webhook** body (capture-session lifecycle, :func:`parse_webhook`) -> ``session.status``.

**Session key.** A socket event is keyed by its capture session when the relay knows which session
the rtstream belongs to (learnt from the ``capture_session.active`` webhook and passed in as
``sessions``), else by the rtstream id: ``SessionRef(id=cap-... or rts-..., stream_id=rts-...,
stream_name=mic:default)``. A consumer follows one capture session with one channel pattern.

**Times.** VideoDB sends ``start``/``end`` as epoch milliseconds (``docs/protocols/videodb.md``, section 5); seconds were seen too.
A number at or above 1e11 is read as milliseconds (1e11 s is the year 5138, 1e11 ms is 1973), a
smaller one as seconds. Index and alert times go into their payloads as datetimes; a transcript's
``start`` becomes ``time.absolute`` (its payload ``start``/``end`` mean seconds since the session
started, which VideoDB does not tell us, so they stay empty).

Everything malformed raises :class:`relay.errors.FrameRejected` with one of the relay's shared
reasons (:data:`relay.errors.REJECT_REASONS`: ``invalid_json``, ``not_an_object``,
``missing_field``, ``invalid_field``...) and a ``detail`` naming the field (``channel``,
``data.start``), never payload content; no other exception escapes (a property test checks it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import orjson
from pydantic import ValidationError

from relay.errors import FrameRejected, not_json_reason
from relay.schema import (
    Alert,
    AlertEvent,
    EventBase,
    EventTime,
    Generic,
    GenericEvent,
    IndexEvent,
    IndexResult,
    SessionRef,
    SessionStatus,
    SessionStatusEvent,
    Source,
    Transcript,
    TranscriptEvent,
)

__all__ = [
    "Callback",
    "RtStreamInfo",
    "Webhook",
    "epoch_to_datetime",
    "parse_bool",
    "parse_callback",
    "parse_capture_session",
    "parse_frame",
    "parse_hello",
    "parse_transcript_record",
    "parse_webhook",
]

#: Numbers at or above this are epoch milliseconds, below it epoch seconds (see module docstring).
MS_THRESHOLD: Final = 1e11
#: Later than this (year ~5138 in seconds) is not a time.
_MAX_EPOCH_S: Final = 1e11

_VISUAL: Final = frozenset({"scene_index", "visual_index"})
_AUDIO: Final = frozenset({"audio_index", "spoken_index"})


@dataclass(frozen=True, slots=True)
class RtStreamInfo:
    """One rtstream of an active capture session, as the ``capture_session.active`` webhook lists it."""

    rtstream_id: str
    name: str | None
    media_types: tuple[str, ...]
    capture_session_id: str

    @property
    def has_audio(self) -> bool:
        return "audio" in self.media_types

    @property
    def has_video(self) -> bool:
        return "video" in self.media_types


@dataclass(frozen=True, slots=True)
class Webhook:
    """A parsed webhook delivery: its dedupe key parts, the event to publish, and active rtstreams."""

    event: str  # e.g. "capture_session.active"
    capture_session_id: str
    timestamp: str  # as sent: part of the dedupe key
    status: str
    rtstreams: tuple[RtStreamInfo, ...]
    published: SessionStatusEvent

    @property
    def dedupe_key(self) -> str:
        """capture_session_id + event + timestamp: identical for every redelivery of one event."""
        return f"{self.capture_session_id}|{self.event}|{self.timestamp}"


@dataclass(frozen=True, slots=True)
class Callback:
    """A transcript or alert callback on the webhook URL: the event to publish, and a dedupe key
    (the body's SHA-256: callbacks carry no delivery id either)."""

    dedupe_key: str
    published: EventBase


# ---------------------------------------------------------------------------------------------
# Small tolerant readers
# ---------------------------------------------------------------------------------------------


def _load_object(raw: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    if not isinstance(raw, (str, bytes, bytearray, memoryview)):
        raise FrameRejected("invalid_frame_type", type(raw).__name__)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameRejected(not_json_reason(raw)) from None
    if not isinstance(value, dict):
        raise FrameRejected("not_an_object")
    return value



def _required_str(container: Mapping[str, Any], key: str, path: str) -> str:
    """``container[key]`` as a non-empty string id: ``missing_field`` if absent or null, else ``invalid_field``."""
    value = container.get(key)
    if value is None:
        raise FrameRejected("missing_field", path)
    text = _str(value)
    if text is None:
        raise FrameRejected("invalid_field", path)
    return text


def _schema_field(exc: ValidationError) -> str:
    """The path of the first field the schema refused (its location only, never its input)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return ".".join(str(part) for part in errors[0]["loc"]) if errors else ""


def _str(value: Any) -> str | None:
    """A non-empty string, or None; numbers are accepted as ids (a provider may send them)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_bool(value: Any, field: str = "data.is_final") -> bool:
    """``True``/``False`` or the strings ``"true"``/``"false"`` (any case), also 1/0.

    Anything else raises ``FrameRejected("invalid_field", field)``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise FrameRejected("invalid_field", field)


def epoch_to_datetime(value: Any, field: str = "time") -> datetime | None:
    """Epoch milliseconds or seconds (numbers or numeric strings) as an aware UTC datetime.

    ``None`` stays ``None``; anything else that is not a plausible time raises
    ``FrameRejected("invalid_field", field)``.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise FrameRejected("invalid_field", field)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise FrameRejected("invalid_field", field) from None
    if not isinstance(value, (int, float)):
        raise FrameRejected("invalid_field", field)
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise FrameRejected("invalid_field", field)
    seconds = number / 1000.0 if number >= MS_THRESHOLD else number
    if seconds >= _MAX_EPOCH_S:
        raise FrameRejected("invalid_field", field)
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------------------------------------
# Socket
# ---------------------------------------------------------------------------------------------


def parse_hello(raw: str | bytes | Mapping[str, Any]) -> str:
    """The ``connection_id`` of the socket's first frame (top level or under ``data``)."""
    frame = _load_object(raw)
    top = frame.get("connection_id")
    nested = frame["data"].get("connection_id") if isinstance(frame.get("data"), Mapping) else None
    conn = _str(top)
    if conn is None:
        conn = _str(nested)
    if conn is None:
        raise FrameRejected("missing_field" if top is None and nested is None else "invalid_field", "connection_id")
    return conn


def session_for(rtstream_id: str, rtstream_name: str | None, sessions: Mapping[str, str]) -> SessionRef:
    """The session key of an rtstream: its capture session if known, else the rtstream itself."""
    return SessionRef(id=sessions.get(rtstream_id, rtstream_id), stream_id=rtstream_id, stream_name=rtstream_name)


#: Fields VideoDB's own apps send at the top level of a frame instead of under ``data``.
_TOP_LEVEL_DATA: Final = ("text", "is_final", "start", "end", "label", "event_label", "triggered", "confidence", "timestamp")
#: The channel, under any of the names seen (``channel``; ``type`` or ``event_type`` in VideoDB's apps).
_CHANNEL_KEYS: Final = ("channel", "type", "event_type")


def _channel_of(frame: Mapping[str, Any]) -> str | None:
    """The frame's channel (``None`` for a lifecycle frame that names none); FrameRejected if unusable."""
    for key in _CHANNEL_KEYS:
        value = frame.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise FrameRejected("invalid_field", key)
        if key != "channel" and value.startswith("capture_session."):
            return "capture_session"  # a lifecycle event name under "type"/"event_type"
        return value
    event = frame.get("event")
    if isinstance(event, str) and event.startswith("capture_session."):
        return "capture_session"  # a lifecycle frame without any channel
    if frame.get("capture_session_id") is not None and frame.get("status") is not None:
        return "capture_session"
    return None


def parse_frame(
    raw: str | bytes | Mapping[str, Any],
    *,
    received: datetime,
    sessions: Mapping[str, str] | None = None,
    collection: str | None = None,
) -> EventBase:
    """One socket event frame -> one relay event.

    Tolerated, as VideoDB's own apps send them (``docs/protocols/videodb.md``, section 5): the
    channel under ``type`` or ``event_type``; ``text`` (and the other data fields) at the top
    level; lifecycle frames without a channel; frames without ``rtstream_id``, attributed to
    the collection (``session.id`` = ``collection``) when one is given.

    :param received: when the relay read the frame (UTC); goes into ``time.received``.
    :param sessions: rtstream id -> capture session id, from the ``capture_session.active`` webhooks.
    :param collection: the collection whose socket delivered the frame.
    """
    frame = _load_object(raw)
    sessions = sessions or {}
    channel = _channel_of(frame)
    if channel is None:
        raise FrameRejected("missing_field", "channel")
    data = frame.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise FrameRejected("invalid_field", "data")

    if channel == "capture_session":
        return _capture_session_frame(frame, data, received, sessions)

    lifted = {key: frame[key] for key in _TOP_LEVEL_DATA if key in frame and key not in data}
    if lifted:
        data = {**data, **lifted}
    name = _str(frame.get("rtstream_name"))
    if frame.get("rtstream_id") is None and collection is not None:
        session = SessionRef(id=collection, stream_name=name)
    else:
        rtstream_id = _required_str(frame, "rtstream_id", "rtstream_id")
        session = session_for(rtstream_id, name, sessions)

    try:
        if channel == "transcript":
            return _transcript(session, data, received)
        if channel in _VISUAL or channel in _AUDIO:
            return IndexEvent(
                source=Source.VIDEODB,
                type="index.visual" if channel in _VISUAL else "index.audio",
                session=session,
                time=EventTime(received=received, absolute=epoch_to_datetime(data.get("start"), "data.start")),
                payload=IndexResult(
                    text=_text(data),
                    start=epoch_to_datetime(data.get("start"), "data.start"),
                    end=epoch_to_datetime(data.get("end"), "data.end"),
                ),
            )
        if channel == "alert":
            return _alert(session, data, received)
        return GenericEvent(
            source=Source.VIDEODB,
            session=session,
            time=EventTime(received=received),
            payload=Generic(provider_type=channel, data=dict(data)),
        )
    except ValidationError as exc:  # a value the schema refuses (e.g. a non-numeric confidence)
        raise FrameRejected("invalid_field", _schema_field(exc)) from None


def _text(data: Mapping[str, Any], prefix: str = "data.") -> str:
    text = data.get("text")
    if text is None:
        raise FrameRejected("missing_field", f"{prefix}text")
    if not isinstance(text, str):
        raise FrameRejected("invalid_field", f"{prefix}text")
    return text


def _transcript(session: SessionRef, data: Mapping[str, Any], received: datetime, prefix: str = "data.") -> TranscriptEvent:
    is_final = parse_bool(data.get("is_final", False), f"{prefix}is_final")
    start = epoch_to_datetime(data.get("start"), f"{prefix}start")
    end = epoch_to_datetime(data.get("end"), f"{prefix}end")
    return TranscriptEvent(
        source=Source.VIDEODB,
        type="transcript.final" if is_final else "transcript.partial",
        session=session,
        time=EventTime(received=received, absolute=start),
        payload=Transcript(text=_text(data, prefix), is_final=is_final, start_time=start, end_time=end),
    )


def _alert(session: SessionRef, data: Mapping[str, Any], received: datetime, prefix: str = "data.") -> AlertEvent:
    """Both published alert shapes: ``{label, triggered, confidence, start, end}`` and
    ``{event_label, timestamp, text}`` (``docs/protocols/videodb.md``, section 5); callbacks add
    ``start_time``/``end_time``. ``text`` (what VideoDB says it saw) becomes ``Alert.text``: a
    consumer gets the why of an alert, not only its label."""
    if data.get("label") is not None:
        label = _required_str(data, "label", f"{prefix}label")
    elif data.get("event_label") is not None:
        label = _required_str(data, "event_label", f"{prefix}event_label")
    else:
        raise FrameRejected("missing_field", f"{prefix}label")
    confidence = data.get("confidence")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
            raise FrameRejected("invalid_field", f"{prefix}confidence")

    def first_time(*keys: str) -> datetime | None:
        for key in keys:
            if data.get(key) is not None:
                return epoch_to_datetime(data.get(key), f"{prefix}{key}")
        return None

    text = data.get("text")
    if text is not None and not isinstance(text, str):
        raise FrameRejected("invalid_field", f"{prefix}text")
    start = first_time("start", "start_time", "timestamp")
    return AlertEvent(
        source=Source.VIDEODB,
        session=session,
        time=EventTime(received=received, absolute=start),
        payload=Alert(
            label=label,
            triggered=parse_bool(data.get("triggered", True), f"{prefix}triggered"),
            text=text or None,
            confidence=None if confidence is None else float(confidence),
            start=start,
            end=first_time("end", "end_time"),
        ),
    )


def _status_of(event: str | None, status: str | None) -> str | None:
    if status:
        return status
    if event and event.startswith("capture_session."):
        return event.removeprefix("capture_session.") or None
    return event


def _capture_session_frame(
    frame: Mapping[str, Any], data: Mapping[str, Any], received: datetime, sessions: Mapping[str, str]
) -> SessionStatusEvent:
    # The socket's capture_session shape is unconfirmed: read fields at the top level or under data.
    def pick(key: str) -> str | None:
        return _str(frame.get(key)) or _str(data.get(key))

    event, status = pick("event"), pick("status")
    if event is None:  # the lifecycle event named under "type" / "event_type" (VideoDB's apps)
        event = next((v for v in (pick("type"), pick("event_type")) if v and v.startswith("capture_session.")), None)
    status = _status_of(event, status)
    if status is None:  # neither a status nor an event to read it from
        raise FrameRejected("missing_field", "status")
    rtstream_id = pick("rtstream_id")
    cap = pick("capture_session_id") or (sessions.get(rtstream_id) if rtstream_id else None) or rtstream_id
    if cap is None:  # neither a capture session nor an rtstream to key the event by
        raise FrameRejected("missing_field", "capture_session_id")
    detail: dict[str, Any] = {"origin": "socket", **dict(data)}
    if event:
        detail["event"] = event
    return SessionStatusEvent(
        source=Source.VIDEODB,
        session=SessionRef(id=cap, stream_id=rtstream_id, stream_name=pick("rtstream_name")),
        time=EventTime(received=received),
        payload=SessionStatus(status=status, detail=detail),
    )


def parse_transcript_record(
    record: Any, rtstream_id: str, *, received: datetime, sessions: Mapping[str, str] | None = None
) -> TranscriptEvent:
    """One record of ``GET /rtstream/{id}/transcription`` (``data.transcription_records[]``:
    ``{start, end, text, word_timestamps}``, times in epoch seconds) -> a ``transcript.final``.

    Source: VideoDB API reference, "Get RTStream Transcription"
    (docs.videodb.io/api-reference/rtstream/transcription/get_rtstream_transcription).
    """
    if not isinstance(record, Mapping):
        raise FrameRejected("invalid_field", "transcription_records[]")
    session = session_for(rtstream_id, None, sessions or {})
    try:
        return _transcript(session, {**record, "is_final": True}, received, "transcription_records[].")
    except ValidationError as exc:
        raise FrameRejected("invalid_field", _schema_field(exc)) from None


# ---------------------------------------------------------------------------------------------
# Webhooks
# ---------------------------------------------------------------------------------------------


def parse_webhook(raw: str | bytes | Mapping[str, Any], *, received: datetime) -> Webhook:
    """A capture-session webhook body -> its ``session.status`` event and, when active, its rtstreams.

    ``payload.detail`` keeps what a consumer needs: ``event``, ``end_user_id``, ``timestamp`` and
    the envelope's ``data`` (rtstreams, ``exported_video_id``, the ``error`` object of a failure).
    """
    body = _load_object(raw)
    event = _required_str(body, "event", "event")
    cap = _required_str(body, "capture_session_id", "capture_session_id")
    status = _status_of(event, _str(body.get("status")))
    assert status is not None  # event is not None
    timestamp = body.get("timestamp")
    timestamp_s = timestamp if isinstance(timestamp, str) else ("" if timestamp is None else str(timestamp))
    data = body.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise FrameRejected("invalid_field", "data")

    rtstreams: list[RtStreamInfo] = []
    raw_streams = data.get("rtstreams", [])
    if raw_streams is not None:
        if not isinstance(raw_streams, list):
            raise FrameRejected("invalid_field", "data.rtstreams")
        for item in raw_streams:
            if not isinstance(item, Mapping):
                raise FrameRejected("invalid_field", "data.rtstreams[]")
            stream_id = _required_str(item, "rtstream_id", "data.rtstreams[].rtstream_id")
            media = item.get("media_types", [])
            if not isinstance(media, list):
                raise FrameRejected("invalid_field", "data.rtstreams[].media_types")
            rtstreams.append(
                RtStreamInfo(
                    rtstream_id=stream_id,
                    name=_str(item.get("name")),
                    media_types=tuple(m for m in media if isinstance(m, str)),
                    capture_session_id=cap,
                )
            )

    detail: dict[str, Any] = {"origin": "webhook", "event": event, "timestamp": timestamp_s, "data": dict(data)}
    if _str(body.get("end_user_id")) is not None:
        detail["end_user_id"] = _str(body.get("end_user_id"))
    if _str(body.get("version")) is not None:
        detail["version"] = _str(body.get("version"))
    try:
        published = SessionStatusEvent(
            source=Source.VIDEODB,
            session=SessionRef(id=cap),
            time=EventTime(received=received, absolute=_parse_iso(timestamp)),
            payload=SessionStatus(status=status, detail=detail),
        )
    except ValidationError as exc:
        raise FrameRejected("invalid_field", _schema_field(exc)) from None
    return Webhook(
        event=event,
        capture_session_id=cap,
        timestamp=timestamp_s,
        status=status,
        rtstreams=tuple(rtstreams) if event == "capture_session.active" or status == "active" else (),
        published=published,
    )


def _str_or_none(value: Any) -> str | None:
    """A non-empty string as sent, else ``None`` (callbacks are read leniently: never refused)."""
    return value if isinstance(value, str) and value else None


def _lenient_time(value: Any) -> datetime | None:
    """Epoch seconds/milliseconds or an ISO 8601 string; anything else is no time (never an error)."""
    iso = _parse_iso(value)
    if iso is not None:
        return iso
    try:
        return epoch_to_datetime(value)
    except FrameRejected:
        return None


def parse_callback(
    raw: str | bytes | Mapping[str, Any],
    *,
    received: datetime,
    collection: str,
    sessions: Mapping[str, str] | None = None,
) -> Webhook | Callback:
    """Whatever VideoDB POSTs to the callback URL (``docs/protocols/videodb.md``, section 6).

    * a capture-session lifecycle webhook (``event``, ``capture_session_id``) -> :func:`parse_webhook`
      (malformed: FrameRejected, answered 400);
    * a transcript callback (``{"type": "transcript", ...}``) -> a transcript event, read like a
      socket frame (unreadable: a ``generic`` event with the body, never refused);
    * an alert callback (``{event_id, label, confidence, explanation, timestamp, start_time,
      end_time, stream_url, player_url}``) -> an ``alert`` event (times read leniently), whose
      ``text`` is the callback's ``text`` or else its ``explanation`` (the callback's words for
      the same thing; a value that is not a string is no text, never an error);
    * any other JSON object -> a ``generic`` event (``provider_type`` ``callback``), so nothing
      VideoDB sends is refused or lost.

    Events without an rtstream are attributed to ``collection``.
    """
    body = _load_object(raw)
    if isinstance(raw, str):
        raw_bytes = raw.encode()
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        raw_bytes = bytes(raw)
    else:
        raw_bytes = orjson.dumps(dict(body), option=orjson.OPT_SORT_KEYS)
    key = hashlib.sha256(raw_bytes).hexdigest()
    kind = next((body[k] for k in _CHANNEL_KEYS if isinstance(body.get(k), str)), None)
    if body.get("event") is not None or (body.get("capture_session_id") is not None and kind is None and "event_id" not in body):
        return parse_webhook(body, received=received)
    sessions = sessions or {}
    rts = _str(body.get("rtstream_id"))
    session = session_for(rts, _str(body.get("rtstream_name")), sessions) if rts else SessionRef(id=collection)
    event: EventBase
    try:
        if kind == "transcript":
            event = parse_frame(body, received=received, sessions=sessions, collection=collection)
        elif kind == "alert" or "event_id" in body or body.get("label") is not None or body.get("event_label") is not None:
            data = body.get("data") if isinstance(body.get("data"), Mapping) else body
            assert isinstance(data, Mapping)
            label = _str(data.get("label")) or _str(data.get("event_label")) or _str(data.get("event_id")) or "alert"
            value = data.get("confidence")
            confidence = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None
            start = _lenient_time(data.get("start_time")) or _lenient_time(data.get("start")) or _lenient_time(data.get("timestamp"))
            event = AlertEvent(
                source=Source.VIDEODB,
                session=session,
                time=EventTime(received=received, absolute=start),
                payload=Alert(
                    label=label,
                    triggered=True,
                    text=_str_or_none(data.get("text")) or _str_or_none(data.get("explanation")),
                    confidence=confidence,
                    start=start,
                    end=_lenient_time(data.get("end_time")) or _lenient_time(data.get("end")),
                ),
            )
        else:
            raise FrameRejected("invalid_field", "type")
    except (FrameRejected, ValidationError):
        event = GenericEvent(
            source=Source.VIDEODB,
            session=session,
            time=EventTime(received=received),
            payload=Generic(provider_type=f"callback.{kind}" if kind else "callback", data=dict(body)),
        )
    return Callback(dedupe_key=key, published=event)


def _media_of(item: Mapping[str, Any]) -> tuple[str, ...]:
    media = item.get("media_types")
    if isinstance(media, list):
        return tuple(m for m in media if isinstance(m, str))
    hint = (_str(item.get("channel_id")) or _str(item.get("name")) or "").lower()
    if hint.startswith(("mic", "system_audio", "audio")):
        return ("audio",)
    if hint.startswith(("screen", "display", "camera", "video")):
        return ("video",)
    return ()


def parse_capture_session(data: Mapping[str, Any], capture_session_id: str) -> tuple[str | None, tuple[RtStreamInfo, ...]]:
    """``GET /collection/{c}/capture/session/{id}``'s ``data`` -> (status, rtstreams).

    The rtstreams as the SDK reads them (``videodb/client.py``, ``get_capture_session``): each with
    ``rtstream_id`` (or ``id``), ``name``, and ``media_types`` or, failing that, a ``channel_id``
    (``mic``, ``system_audio``: audio; ``screen``: video). Unreadable entries are skipped.
    """
    out = []
    items = data.get("rtstreams")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        rts = _str(item.get("rtstream_id")) or _str(item.get("id"))
        if rts is None:
            continue
        out.append(RtStreamInfo(rtstream_id=rts, name=_str(item.get("name")), media_types=_media_of(item),
                                capture_session_id=capture_session_id))  # fmt: skip
    return _str(data.get("status")), tuple(out)
