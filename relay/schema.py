"""The relay's one event schema.

Every provider's parser ends here: whatever arrives from Recall.ai, VideoDB or ASAPP becomes one of
the event models below, and nothing downstream of the parsers knows which provider an event came
from except by its ``source`` field.

An event is a small envelope (:class:`EventBase`) plus a typed ``payload`` chosen by ``type``.
``type`` is dotted so consumers can subscribe by prefix (``transcript.*``, ``participant.*``).
The union :data:`Event` discriminates on ``type``; a ``type`` the schema does not know validates as
:class:`GenericEvent`, so a new provider event type never breaks a consumer.

The schema is versioned by :data:`SCHEMA_VERSION`. Adding optional fields or new types keeps the
version; renaming or removing a field, or changing its meaning, bumps it. So consumers must ignore
fields they do not know: :func:`parse_event` does (the models themselves refuse unknown fields, so
that a typo in a parser fails its tests instead of shipping).
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, TypeAlias, Union

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

SCHEMA_VERSION: Final = 1


class Source(StrEnum):
    """Which provider an event came from."""

    RECALL = "recall"
    VIDEODB = "videodb"
    ASAPP = "asapp"


#: The random bits of event ids come from a generator of their own, so nothing else that uses the
#: shared ``random`` module (a ``random.seed()`` in a library, a test or a simulation) can make ids
#: repeat. ``Random()`` seeds itself from ``os.urandom``; a forked child reseeds it the same way,
#: or it would draw the very bits its parent draws next. It is module state on purpose, one per
#: process: a generator must remember where it is, and the stateless alternative, ``secrets``
#: (``os.urandom``: a syscall per id), costs about 0.7 us an id against 0.06 (measured): a tenth of
#: the parser's whole cost per event.
_ID_RANDOM: Final = random.Random()
os.register_at_fork(after_in_child=_ID_RANDOM.seed)
_id_bits: Final = _ID_RANDOM.getrandbits


def new_event_id(now_ns: int | None = None) -> str:
    """Return a UUIDv7 string: unique, and ordered by creation time.

    The first 48 bits are the Unix time in milliseconds and the next 12 bits a sub-millisecond
    fraction (RFC 9562, method 3), so ids sort by time to about a quarter of a microsecond; the
    remaining 62 bits are random (from :data:`_ID_RANDOM`), so ids from several relay processes
    never collide.
    """
    ns = time.time_ns() if now_ns is None else now_ns
    ms, rem = divmod(ns, 1_000_000)
    sub_ms = (rem * 4096) // 1_000_000
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | sub_ms << 64 | _id_bits(62) | _UUID7_FIXED_BITS
    # One id per event, so this is on the hot path: hex() is three times as fast as
    # f"{value:032x}"; the marker bit above the 128 id bits makes it keep the leading zeros.
    h = hex(value)  # "0x1" and the 32 digits
    return f"{h[3:11]}-{h[11:15]}-{h[15:19]}-{h[19:23]}-{h[23:]}"


#: Version 7 (bits 76-79), variant 0b10 (bits 62-63), and a marker bit above the 128 id bits.
_UUID7_FIXED_BITS: Final = 1 << 128 | 0x7 << 76 | 0b10 << 62


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _Model(BaseModel):
    # Unknown fields are refused so a typo in a parser fails its tests instead of shipping.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionRef(_Model):
    """What an event belongs to.

    For Recall the session is the recording (``recording.id``): a bot that reconnects keeps it.
    For VideoDB it is the capture session when known, else the rtstream. For ASAPP it is the Recall
    session whose audio was transcribed, so its transcripts sit beside that meeting's events.
    """

    id: str = Field(description="Session key: Recall recording id, VideoDB capture session or rtstream id.")
    bot_id: str | None = Field(default=None, description="Recall bot id.")
    endpoint_id: str | None = Field(default=None, description="Recall real-time endpoint id.")
    stream_id: str | None = Field(default=None, description="Provider stream inside the session (VideoDB rtstream, ASAPP stream).")
    stream_name: str | None = Field(default=None, description="Human name of that stream, e.g. `mic:default`.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="The Recall endpoint's metadata, as given at bot creation.")
    recording_metadata: dict[str, Any] = Field(default_factory=dict)
    bot_metadata: dict[str, Any] = Field(default_factory=dict)


class Participant(_Model):
    """A meeting participant, normalized across providers."""

    id: str | None = Field(default=None, description="Provider participant id as a string (Recall sends integers).")
    name: str | None = None
    email: str | None = None
    is_host: bool | None = None
    platform: str | None = None
    role: str | None = Field(default=None, description="`agent` or `customer` when a bridge assigned one (ASAPP).")
    extra: Any = Field(
        default_factory=dict,
        description="Provider extras (Recall `extra_data`): usually an object, but any JSON value the provider sends "
        "is kept as sent; `{}` when it sent none.",
    )


class EventTime(_Model):
    """When an event happened, as the provider says, and when the relay received it."""

    received: datetime = Field(description="When the relay received the frame (UTC).")
    relative: float | None = Field(default=None, description="Seconds since the session's recording started.")
    absolute: datetime | None = Field(default=None, description="Provider's wall-clock time for the event.")


# ---------------------------------------------------------------------------------------------
# Payloads
# ---------------------------------------------------------------------------------------------

ParticipantAction = Literal[
    "join", "leave", "update", "speech_on", "speech_off",
    "webcam_on", "webcam_off", "screenshare_on", "screenshare_off",
]  # fmt: skip


class ParticipantChange(_Model):
    action: ParticipantAction


class ChatMessage(_Model):
    text: str
    to: str | None = Field(default=None, description="`everyone` or `only_bot` (Recall).")


class Word(_Model):
    text: str
    start: float | None = Field(default=None, description="Seconds since the session start.")
    end: float | None = None


class Transcript(_Model):
    text: str = Field(description="The words joined by single spaces.")
    is_final: bool
    utterance_id: str | None = Field(
        default=None,
        description="The utterance this belongs to: a participant's partials and the final that ends them carry the "
        "same id (unique; key on session, participant and this id). Null when the provider gives nothing to pair "
        "them by (see \"Transcripts: partials and finals\").",
    )
    words: list[Word] = Field(default_factory=list)
    start: float | None = Field(default=None, description="Seconds since the session start.")
    end: float | None = None
    language: str | None = None
    start_time: datetime | None = Field(default=None, description="Wall-clock start, when the provider gives one (VideoDB).")
    end_time: datetime | None = Field(default=None, description="Wall-clock end, when the provider gives one (VideoDB).")


class ProviderData(_Model):
    """A transcription provider's own payload, passed through untouched."""

    data: Any


class AudioChunk(_Model):
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    sample_rate: int = 16000
    channels: int = 1
    mix: Literal["mixed", "separate"]
    audio: str = Field(description="Base64 of the PCM bytes. Empty when the speaker is silent.")
    bytes: int = Field(description="Length of the decoded audio in bytes.")
    duration_ms: float


class VideoFrame(_Model):
    codec: Literal["png", "h264"]
    stream: str | None = Field(default=None, description="`webcam` or `screenshare`.")
    image: str = Field(description="Base64 of the frame bytes.")
    bytes: int


class IndexResult(_Model):
    """A VideoDB visual or audio index description of a time span."""

    text: str
    start: datetime | None = None
    end: datetime | None = None


class Alert(_Model):
    label: str
    triggered: bool
    text: str | None = Field(default=None, description="What the provider says happened (VideoDB's alert `text`).")
    confidence: float | None = None
    start: datetime | None = None
    end: datetime | None = None


class SessionStatus(_Model):
    """A lifecycle change of a provider session (VideoDB capture session)."""

    status: str
    detail: dict[str, Any] = Field(default_factory=dict)


class SessionLifecycle(_Model):
    """A meeting began or ended, as the relay saw it; published once per meeting across relay processes."""

    reason: str | None = Field(
        default=None,
        description="For `session.ended`: `disconnected` (the bot's last connection closed and it did not come back "
        "within the grace period). For `session.started`: null (the meeting began), `log_lost` (Redis lost the "
        "meeting's log, e.g. restarted without persistence: what came before this entry is gone) or `reopened` (the "
        "meeting had been ended while a relay still held its bot, and goes on).",
    )
    started: datetime | None = Field(default=None, description="When the relay first saw the meeting.")
    ended: datetime | None = Field(default=None, description="For `session.ended`: when its last connection closed.")


class StreamSummary(_Model):
    """What a provider stream reported when it finished (ASAPP `finalResponse`)."""

    stream_id: str | None = None
    status_code: str | None = None
    audio_bytes: int | None = None
    audio_duration_ms: int | None = None
    streaming_seconds: float | None = None
    transcripts: int | None = None


class StreamError(_Model):
    """A provider stream stopped or failed; `permanent` says whether the relay gave up on it."""

    code: str
    message: str
    permanent: bool


class Generic(_Model):
    """An event type the relay does not model (yet), passed through as the provider sent it."""

    provider_type: str
    data: Any = None


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


class EventBase(_Model):
    """The envelope every event shares."""

    #: Audio and video go to channels of their own so text consumers are not flooded.
    is_media: ClassVar[bool] = False

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str = Field(default_factory=new_event_id, description="UUIDv7: unique and time-ordered.")
    source: Source
    type: str
    session: SessionRef
    participant: Participant | None = None
    time: EventTime
    log_id: str | None = Field(
        default=None,
        description="Where the event sits in its session's log (the Redis Stream entry id); null when the log is off. "
        "A live consumer that missed messages fills the gap from the log after it.",
    )

    @property
    def metric_type(self) -> str:
        """The ``type`` metric label: the type, or ``generic`` (provider types are unbounded)."""
        return "generic" if isinstance(self, GenericEvent) else self.type

    def to_json(self) -> bytes:
        """The event as published and logged; ``log_id`` is Redis's to give (see relay/core/event_log.py)."""
        return self.model_dump_json(exclude=_NOT_PUBLISHED).encode()


#: Filled in by Redis when the event is logged, so never part of the body the relay sends.
_NOT_PUBLISHED: Final[set[str]] = {"log_id"}

PARTICIPANT_TYPES: Final = tuple(f"participant.{a}" for a in ParticipantAction.__args__)  # type: ignore[attr-defined]


class ParticipantEvent(EventBase):
    type: Literal[PARTICIPANT_TYPES]  # type: ignore[valid-type]
    payload: ParticipantChange


class ChatMessageEvent(EventBase):
    type: Literal["chat.message"] = "chat.message"
    payload: ChatMessage


class TranscriptEvent(EventBase):
    type: Literal["transcript.final", "transcript.partial"]
    payload: Transcript


class ProviderDataEvent(EventBase):
    type: Literal["transcript.provider_data"] = "transcript.provider_data"
    payload: ProviderData


class AudioChunkEvent(EventBase):
    is_media: ClassVar[bool] = True
    type: Literal["audio.chunk"] = "audio.chunk"
    payload: AudioChunk


class VideoFrameEvent(EventBase):
    is_media: ClassVar[bool] = True
    type: Literal["video.frame"] = "video.frame"
    payload: VideoFrame


class IndexEvent(EventBase):
    type: Literal["index.visual", "index.audio"]
    payload: IndexResult


class AlertEvent(EventBase):
    type: Literal["alert"] = "alert"
    payload: Alert


class SessionStatusEvent(EventBase):
    type: Literal["session.status"] = "session.status"
    payload: SessionStatus


class SessionLifecycleEvent(EventBase):
    type: Literal["session.started", "session.ended"]
    payload: SessionLifecycle


class StreamSummaryEvent(EventBase):
    type: Literal["stream.summary"] = "stream.summary"
    payload: StreamSummary


class StreamErrorEvent(EventBase):
    type: Literal["stream.error"] = "stream.error"
    payload: StreamError


class GenericEvent(EventBase):
    """Any type not listed above: `payload.provider_type` names what the provider called it."""

    type: str = "generic"
    payload: Generic


EVENT_CLASSES: Final[tuple[type[EventBase], ...]] = (
    ParticipantEvent, ChatMessageEvent, TranscriptEvent, ProviderDataEvent, AudioChunkEvent,
    VideoFrameEvent, IndexEvent, AlertEvent, SessionStatusEvent, SessionLifecycleEvent, StreamSummaryEvent,
    StreamErrorEvent,
)  # fmt: skip

#: Every known ``type`` value and the class that models it.
TYPE_TO_CLASS: Final[dict[str, type[EventBase]]] = {
    value: cls
    for cls in EVENT_CLASSES
    for value in cls.model_fields["type"].annotation.__args__  # type: ignore[union-attr]
}


def _discriminate(value: Any) -> str:
    type_ = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    cls = TYPE_TO_CLASS.get(type_) if isinstance(type_, str) else None
    return cls.__name__ if cls is not None else GenericEvent.__name__


class EventRecord:
    """An event whose fields its parser has fully checked, kept as the JSON it publishes: the hot path's form.

    Building and dumping a pydantic model costs several times what the relay's hot path spends on
    everything else, and a parser that has checked every field itself (``RecallParser``) needs
    neither. So the parser builds :attr:`body`, the event exactly as it is published, and
    :meth:`to_json` is one ``orjson.dumps`` of it: no merging of defaults, no callback into Python
    for the session and participant (the parser keeps their JSON fields, which repeat on every event
    of a connection). :meth:`model` builds the validated model when something needs one (observers,
    tests), and ``tests/providers/recall/test_parse_equivalence.py`` holds the body to the model,
    byte for byte.
    """

    __slots__ = ("model_class", "session", "participant", "body", "_model")

    def __init__(
        self, model_class: type[EventBase], session: SessionRef, participant: Participant | None, body: dict[str, Any]
    ) -> None:
        self.model_class = model_class
        #: The models behind ``body["session"]`` and ``body["participant"]`` (the channel name needs
        #: the session; :meth:`model` reuses both).
        self.session = session
        self.participant = participant
        #: Every field of the event, JSON-ready and in published order: ``schema_version``, ``id``,
        #: ``source``, ``type``, ``session`` and ``participant`` (their models' JSON fields),
        #: ``time`` and ``payload`` (every field; those with defaults first, as published so far).
        self.body = body
        self._model: EventBase | None = None

    @property
    def source(self) -> Source:
        return self.body["source"]  # type: ignore[no-any-return]

    @property
    def type(self) -> str:
        return self.body["type"]  # type: ignore[no-any-return]

    @property
    def is_media(self) -> bool:
        return self.model_class.is_media

    @property
    def metric_type(self) -> str:
        return "generic" if self.model_class is GenericEvent else self.body["type"]

    @property
    def fields(self) -> dict[str, Any]:
        """The event's fields as its model takes them (``session`` and ``participant`` as models)."""
        return {**self.body, "session": self.session, "participant": self.participant}

    def to_json(self) -> bytes:
        return orjson.dumps(self.body, option=orjson.OPT_UTC_Z)

    def model(self) -> EventBase:
        """The validated pydantic model (built once); raises ``ValidationError`` if a field is off."""
        if self._model is None:
            self._model = self.model_class.model_validate(self.fields)
        return self._model


if TYPE_CHECKING:
    # A union built from a tuple at run time is no type a checker can read; statically an Event is
    # what every member of it is, an EventBase.
    Event: TypeAlias = EventBase
else:
    Event = Annotated[
        Union[tuple(Annotated[cls, Tag(cls.__name__)] for cls in (*EVENT_CLASSES, GenericEvent))],
        Discriminator(_discriminate),
    ]
"""Any relay event; validates a dict or JSON into the right class by its ``type``."""

EVENT_ADAPTER: Final[TypeAdapter[EventBase]] = TypeAdapter(Event)


def parse_event(data: bytes | str) -> EventBase:
    """Parse one published event (JSON) into its typed model, ignoring fields this schema does not know.

    A newer relay may add optional fields (see the module docstring); they are dropped here rather
    than failing the event. Anything else wrong raises :class:`pydantic.ValidationError`.
    """
    try:
        return EVENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        unknown = [err["loc"][1:] for err in exc.errors() if err["type"] == "extra_forbidden"]
        if not unknown or len(unknown) != exc.error_count():
            raise
    # Rare (a newer relay's event): strip what is unknown and validate again.
    value = orjson.loads(data)
    for loc in unknown:
        _drop(value, loc)
    return EVENT_ADAPTER.validate_python(value)


def _drop(value: Any, loc: tuple[int | str, ...]) -> None:
    """Delete the item at ``loc`` (a validation error's path) inside nested dicts and lists."""
    for part in loc[:-1]:
        value = value[part]
    del value[loc[-1]]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of :data:`Event`, as `relay schema` prints it."""
    schema = EVENT_ADAPTER.json_schema()
    schema["title"] = "relay event"
    schema["$comment"] = f"schema_version {SCHEMA_VERSION}"
    return schema
