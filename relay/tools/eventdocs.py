"""Renders ``docs/events.md``: every event type of :mod:`relay.schema`, its channel, fields and a real example.

Run ``python -m relay.tools.eventdocs > docs/events.md``; ``tests/tools/test_eventdocs.py`` fails when the
committed file differs from what this renders, so the document cannot drift from the schema.

Examples are *produced*, not hand-written: the Recall ones come from
:class:`~relay.providers.recall.parse.RecallParser` fed the documented frames built by
:mod:`relay.dev.recall_frames`, the VideoDB ones from its parser fed socket frames and a webhook
shaped as in ``docs/protocols/videodb.md``, the ASAPP ones from its parser's event builders. A type with no parser would be built
from the schema classes and marked so (``Example(build=..., produced_by="")``).
To keep the document stable, ids and receive times in examples are fixed.
"""

from __future__ import annotations

import enum
import random
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel

from relay.providers.asapp import parse as asapp_parse
from relay.dev import recall_frames as frames
from relay.providers.recall.parse import RecallParser
from relay.providers.videodb import parse as videodb_parse
from relay.channels import ChannelScheme
from relay.core.sessions import lifecycle_event
from relay.schema import (
    PARTICIPANT_TYPES,
    SCHEMA_VERSION,
    EventBase,
    EventTime,
    Participant,
    SessionRef,
    Source,
)

__all__ = ["Example", "MEANINGS", "examples", "render", "documented_types", "main"]

RECEIVED: Final = datetime(2025, 3, 4, 10, 0, 5, 250000, tzinfo=timezone.utc)
STARTED: Final = datetime(2025, 3, 4, 10, 0, 0, tzinfo=timezone.utc)
#: Base64 longer than this is shortened in examples.
_MAX_STRING: Final = 60


@dataclass(frozen=True, slots=True)
class Example:
    """How to get one type's example event, and what produced it (``""``: built from the schema)."""

    build: Callable[[], EventBase]
    produced_by: str = ""


# What each type means, for readers who never saw the providers' docs.
MEANINGS: Final[dict[str, str]] = {
    "participant.*": "A participant joined, left, changed their details (name, email), started or stopped "
                     "speaking, or turned their webcam or screenshare on or off.",
    "chat.message": "A participant wrote in the meeting chat (`to`: `everyone` or `only_bot`).",
    "transcript.final": "A finished utterance: its words will not change. It replaces the partials with its "
                        "`utterance_id` (see \"Transcripts: partials and finals\").",
    "transcript.partial": "An interim result for an utterance still being spoken; later partials and the final "
                          "with the same `utterance_id` replace it.",
    "transcript.provider_data": "The transcription provider's own message, untouched, for consumers that need "
                                "provider-specific detail.",
    "audio.chunk": "A buffer of 16 kHz mono S16LE PCM: the meeting's mixed audio, or one participant's "
                   "(`mix: separate`). An empty buffer means the participant is unmuted but silent.",
    "video.frame": "One video frame of a participant's webcam or screenshare (PNG, or H.264).",
    "index.visual": "A VideoDB description of what was on screen during a time span.",
    "index.audio": "A VideoDB description of what was said or heard during a time span.",
    "alert": "A VideoDB alert: a described condition became true (or stopped being true).",
    "session.status": "A provider session changed state (e.g. a VideoDB capture session started or stopped).",
    "session.started": "The relay saw a meeting for the first time (once per meeting, whichever relay process saw "
                       "it): the first entry of the meeting's log.",
    "session.ended": "The meeting's bot left: its last connection closed and it did not come back within the grace "
                     "period (once per meeting): the last entry of the meeting's log.",
    "stream.summary": "A provider stream finished and reported its totals (ASAPP `finalResponse`).",
    "stream.error": "A provider stream stopped or failed; `permanent` says whether the relay gave up on it.",
    "generic": "An event type the relay does not model (yet), passed through as the provider sent it, so a new "
               "provider type never breaks consumers. `payload.provider_type` names it.",
}  # fmt: skip


#: Meanings of fields whose schema description is empty (the schema stays the source of truth
#: wherever it has one).
FIELD_NOTES: Final[dict[tuple[str, str], str]] = {
    ("EventBase", "schema_version"): "Bumped only by incompatible schema changes.",
    ("EventBase", "source"): "Which provider the event came from.",
    ("EventBase", "type"): "What happened; picks the `payload` model. Dotted, so consumers can match by prefix.",
    ("EventBase", "session"): "What the event belongs to (below).",
    ("EventBase", "participant"): "Who it is about, when the provider says (below).",
    ("EventBase", "time"): "When it happened and when the relay received it (below).",
    ("SessionRef", "recording_metadata"): "The Recall recording's metadata.",
    ("SessionRef", "bot_metadata"): "The Recall bot's metadata.",
    ("Participant", "name"): "Display name.",
    ("Participant", "email"): "Email, when the provider knows it (Recall: often only after `participant.update`).",
    ("Participant", "is_host"): "Whether the participant hosts the meeting.",
    ("Participant", "platform"): "Client platform as the provider names it (e.g. `desktop`).",
    ("ParticipantChange", "action"): "What changed; the event's `type` is `participant.<action>`.",
    ("ChatMessage", "text"): "The message.",
    ("Transcript", "end"): "End of the last word, when known.",
    ("Transcript", "is_final"): "`false` for partial (interim) results.",
    ("Transcript", "words"): "Each word with its start and end (seconds since the session start).",
    ("Transcript", "language"): "Language code, when the provider says.",
    ("ProviderData", "data"): "The provider's payload, as sent.",
    ("AudioChunk", "encoding"): "Always signed 16-bit little-endian PCM.",
    ("AudioChunk", "sample_rate"): "Samples per second.",
    ("AudioChunk", "channels"): "Always mono.",
    ("AudioChunk", "mix"): "`mixed`: the whole meeting; `separate`: the event's participant only.",
    ("AudioChunk", "duration_ms"): "`bytes / 32` for 16 kHz mono 16-bit audio.",
    ("VideoFrame", "codec"): "Image or stream format of `image`.",
    ("VideoFrame", "bytes"): "Length of the decoded frame in bytes.",
    ("IndexResult", "text"): "The description.",
    ("IndexResult", "start"): "Start of the described span.",
    ("IndexResult", "end"): "End of the described span.",
    ("Alert", "label"): "Which alert.",
    ("Alert", "triggered"): "Whether the condition holds.",
    ("Alert", "confidence"): "The provider's confidence, 0 to 1.",
    ("Alert", "start"): "Start of the span the alert covers.",
    ("Alert", "end"): "End of that span.",
    ("SessionStatus", "status"): "The provider's state name.",
    ("SessionStatus", "detail"): "Whatever else the provider said about the change.",
    ("StreamSummary", "stream_id"): "The provider's stream id.",
    ("StreamSummary", "status_code"): "The provider's final status.",
    ("StreamSummary", "audio_bytes"): "Audio bytes the provider received.",
    ("StreamSummary", "audio_duration_ms"): "Audio duration the provider received.",
    ("StreamSummary", "streaming_seconds"): "How long the stream was open.",
    ("StreamSummary", "transcripts"): "Transcripts the provider produced.",
    ("StreamError", "code"): "A short error identifier.",
    ("StreamError", "message"): "What went wrong, for humans.",
    ("StreamError", "permanent"): "`true`: the relay gave up on the stream; `false`: it is retrying.",
    ("Generic", "provider_type"): "The provider's own name for the event type.",
    ("Generic", "data"): "The provider's event data, as sent.",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------------------------


def _fixed(event: EventBase, n: int) -> EventBase:
    fixed = f"01956a3c-8f00-7000-8000-{n:012x}"
    update: dict[str, Any] = {"id": fixed}
    payload = getattr(event, "payload", None)
    if getattr(payload, "utterance_id", None) == event.id:  # an utterance the example opened: its id is the event's
        assert isinstance(payload, BaseModel)
        update["payload"] = payload.model_copy(update={"utterance_id": fixed})
    return event.model_copy(update=update)


def _recall(make: Callable[[frames.BotIdentity, frames.Frame], frames.Frame | bytes], n: int) -> Callable[[], EventBase]:
    def build() -> EventBase:
        bot = frames.BotIdentity.create(random.Random(2025), started_at=STARTED)
        alice = frames.participant(100, "Alice Moreau", is_host=True, email="alice@example.com")
        frame = make(bot, alice)
        [event] = RecallParser().feed(frame if isinstance(frame, bytes) else frames.encode(frame), received_at=RECEIVED)
        return _fixed(event, n)

    return build


def _videodb(n: int, frame: dict[str, Any]) -> Callable[[], EventBase]:
    def build() -> EventBase:
        return _fixed(videodb_parse.parse_frame(frame, received=RECEIVED, sessions={
            "rts-77c2aa": "cap-3f9a2c", "rts-81d0e4": "cap-3f9a2c"}), n)

    return build


def _videodb_webhook(n: int, body: dict[str, Any]) -> Callable[[], EventBase]:
    def build() -> EventBase:
        return _fixed(videodb_parse.parse_webhook(body, received=RECEIVED).published, n)

    return build


def _final_response(frame: bytes) -> asapp_parse.FinalResponse:
    message = asapp_parse.parse_message(frame)
    assert isinstance(message, asapp_parse.FinalResponse), message
    return message


def _asapp(n: int, make: Callable[[SessionRef, Participant], EventBase]) -> Callable[[], EventBase]:
    def build() -> EventBase:
        session = SessionRef(id="a5437136-4b69-429a-9e0c-cd388fd8fee6", stream_name="participant:100")
        who = Participant(id="100", name="Alice Moreau", email="alice@example.com", is_host=True, role="agent")
        return _fixed(make(session, who), n)

    return build


def _lifecycle(n: int, type_: Literal["session.started", "session.ended"]) -> Callable[[], EventBase]:
    def build() -> EventBase:
        ended = type_ == "session.ended"
        session = SessionRef(id="a5437136-4b69-429a-9e0c-cd388fd8fee6", bot_id="9b1d2f0e-5c1a-4a51-8e0b-1a2b3c4d5e6f")
        return _fixed(lifecycle_event(type_, session, Source.RECALL, received=RECEIVED, started=STARTED,
                                      ended=RECEIVED if ended else None, reason="disconnected" if ended else None), n)

    return build


def examples() -> dict[str, Example]:
    """Every documented type (``participant.*`` standing for the nine participant types) -> its example."""
    pcm = frames.tone_pcm(20)
    return {
        "participant.*": Example(_recall(lambda b, a: frames.participant_event(b, "join", a, 1.25), 1), "RecallParser"),
        "chat.message": Example(_recall(lambda b, a: frames.chat_message(b, a, "link is in the invite", 4.0), 2), "RecallParser"),
        "transcript.final": Example(_recall(
            lambda b, a: frames.transcript(b, a, frames.words_at("thanks for joining", 6.0)), 3), "RecallParser"),
        "transcript.partial": Example(_recall(
            lambda b, a: frames.transcript(b, a, [("thanks", 6.0, None)], partial=True), 4), "RecallParser"),
        "transcript.provider_data": Example(_recall(lambda b, a: frames.provider_data(b, {
            "type": "Results", "is_final": True,
            "channel": {"alternatives": [{"transcript": "thanks for joining", "confidence": 0.97}]}}), 5), "RecallParser"),
        "audio.chunk": Example(_recall(lambda b, a: frames.audio_separate(b, a, pcm, 6.02), 6), "RecallParser"),
        "video.frame": Example(_recall(lambda b, a: frames.video_png(b, a, frames.png_image(), 6.5), 7), "RecallParser"),
        "index.visual": Example(_videodb(8, {
            "channel": "visual_index", "rtstream_id": "rts-81d0e4", "rtstream_name": "display:1",
            "data": {"text": "A slide titled 'Q3 roadmap' with three bullet points.",
                     "start": 1764100830000, "end": 1764100840000}}), "videodb parse_frame"),
        "index.audio": Example(_videodb(9, {
            "channel": "audio_index", "rtstream_id": "rts-77c2aa", "rtstream_name": "mic:default",
            "data": {"text": "The speaker summarizes the quarter's results.",
                     "start": 1764100830000, "end": 1764100860000}}), "videodb parse_frame"),
        "alert": Example(_videodb(10, {
            "channel": "alert", "rtstream_id": "rts-81d0e4",
            "data": {"label": "person_on_phone", "triggered": True, "confidence": 0.91,
                     "start": 1764100830000, "end": 1764100835000}}), "videodb parse_frame"),
        "session.status": Example(_videodb_webhook(11, {
            "version": "2", "event": "capture_session.active", "timestamp": "2025-11-25T20:00:30Z",
            "capture_session_id": "cap-3f9a2c", "end_user_id": "user_abc", "status": "active",
            "data": {"rtstreams": [
                {"rtstream_id": "rts-77c2aa", "name": "mic:default", "media_types": ["audio"]},
                {"rtstream_id": "rts-81d0e4", "name": "display:1", "media_types": ["video"]}]}}),
            "videodb parse_webhook"),
        "session.started": Example(_lifecycle(15, "session.started")),
        "session.ended": Example(_lifecycle(16, "session.ended")),
        "stream.summary": Example(_asapp(12, lambda session, who: asapp_parse.summary_event(
            _final_response(orjson.dumps({
                "message": "finalResponse", "streamId": "asapp-7c21", "status": {"code": "1000", "description": "OK"},
                "summary": {"totalAudioBytes": 960000, "audioDurationMs": 60000, "streamingSeconds": 60.4,
                            "transcripts": 14}})),
            session=session, participant=who, received=RECEIVED)), "asapp parse_message + summary_event"),
        "stream.error": Example(_asapp(13, lambda session, who: asapp_parse.error_event(
            "4090", "stream too long (3 h limit)", permanent=False, session=session, participant=who,
            received=RECEIVED)), "asapp error_event"),
        "generic": Example(_recall(lambda b, a: {"event": "participant_events.reaction", "data": {
            **b.envelope("participant_events", b.participant_events_id),
            "data": {"participant": a, "timestamp": frames.timestamp(b, 9.0), "data": {"reaction": "thumbs_up"}}}}, 14),
            "RecallParser"),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f'`"{m.value}"`' for m in annotation)
    if isinstance(annotation, type):
        return {"str": "string", "float": "number", "int": "integer", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _fields_table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| field | type | meaning |", "| --- | --- | --- |"]
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        meaning = (info.description or FIELD_NOTES.get((model.__name__, name), "")).replace("|", "\\|")
        lines.append(f"| `{name}` | {_type_name(info.annotation)} | {meaning} |")
    return lines


def _shorten(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v) for v in value]
    if isinstance(value, str) and len(value) > _MAX_STRING:
        return f"{value[:40]}… ({len(value)} characters)"
    return value


def _example_json(event: EventBase) -> str:
    shortened = dict(event.model_dump(mode="json"))
    payload = shortened["payload"]
    if isinstance(payload, dict):
        shortened["payload"] = {k: _shorten(v) if k in ("audio", "image") else v for k, v in payload.items()}
    return orjson.dumps(shortened, option=orjson.OPT_INDENT_2).decode()


def _channel(event: EventBase, type_: str) -> str:
    kind = "media" if event.is_media else "events"
    return f"`{ChannelScheme().prefix}:{kind}:<source>:<session>:{type_}`"


#: The fixed prose of docs/events.md's transcript section (relay/providers/recall/parse.py, RecallParser).
TRANSCRIPT_SECTION: Final[tuple[str, ...]] = (
    "## Transcripts: partials and finals",
    "",
    "An utterance comes as partials (`transcript.partial`, each repeating the whole utterance so far), then",
    "one final (`transcript.final`) that replaces them. A participant's partials and their final share",
    "`payload.utterance_id`, so a consumer keys what it shows on `(session.id, participant.id,",
    "payload.utterance_id)` (`participant` may be null: key on null): a partial replaces the one with its",
    "key, the final replaces it for good, and a partial arriving after its final is dropped. Ids are UUIDs,",
    "unique across connections and relay processes: treat them as opaque strings.",
    "",
    "| source | `utterance_id` |",
    "| --- | --- |",
    "| `recall` | Recall names no utterance, so the relay pairs them on each bot connection: a participant's first partial opens an utterance (its id is that event's `id`), later partials carry it, the final carries it and closes it. A final without partials before it gets its own event's `id`. |",
    "| `asapp` | null: ASAPP sends finals only and names no utterance; each final stands alone. |",
    "| `videodb` | null: VideoDB's transcript frames name no segment. A final replaces the partials of its session and `session.stream_id` received before it. |",
    "",
    "What the relay cannot know (Recall):",
    "",
    "- **The next utterance's partials before the previous final.** Nothing in a frame tells them apart, so",
    "  they take the open utterance's id and its final replaces them; the next partial after that final",
    "  opens the new utterance and repeats its words, so a display shows them again a moment later and",
    "  nothing is lost.",
    "- **Reconnects.** A new connection (Recall retrying, perhaps to another relay process, or a relay",
    "  restart) cannot know the previous connection's open utterance: the final gets a fresh id, and the",
    "  partials sent before the drop keep an id that no final carries. So drop a participant's unfinished",
    "  partials when a later final of that participant arrives.",
    "- **Open utterances are bounded**: at most 1024 per connection; past that the oldest opened is",
    "  forgotten (its final gets a fresh id, as after a reconnect).",
    "",
)

#: The fixed prose of docs/events.md's "The log" section (relay/channels.py, relay/client/log.py).
LOG_SECTION: Final[tuple[str, ...]] = (
    "## The log",
    "",
    "Pub/sub keeps nothing for a consumer that is away, so every text event is also appended, in publish",
    "order, to a Redis Stream per session ([log] settings; on by default). A consumer that restarts, or",
    "that Redis cut off for lagging, resumes from where it was; a whole meeting can be replayed.",
    "",
    "**Keys** (`relay.channels.LogKeys`; `<tag>` is `session.id` with `: * ? [ ] { } \\` and whitespace",
    "replaced by `_`, inside a Redis Cluster hash tag so one meeting's keys share a shard):",
    "",
    "| key | type | holds |",
    "| --- | --- | --- |",
    "| `relay:log:{<tag>}` | Stream | the session's text events, one entry each, bounded by `[log] max_entries` (`MAXLEN ~`) |",
    "| `relay:medialog:{<tag>}` | Stream | audio and video, only with `[log] media = true`, bounded by `media_max_entries` |",
    "| `relay:session:{<tag>}` | Hash | the session's lifecycle state (`started`, `ended`, ...) |",
    "| `relay:sessions` | Sorted Set | every session id, scored by its start (Unix ms): discovery |",
    "| `relay:sessions:log` | Stream | every `session.started` and `session.ended` event, for followers of every meeting |",
    "",
    "A session's keys expire `[log] retention_s` after it ended (or after that long without activity).",
    "Two ids that differ only in the replaced characters share keys: readers filter on `session.id`.",
    "",
    "**Entries.** Each entry has one field, `e`: the event's JSON exactly as published, without",
    "`log_id`. The entry id *is* the event's `log_id`. Re-sends after a Redis failure are skipped by the",
    "relay (a per-producer sequence), so the log holds each event once.",
    "",
    "**Positions.** A position is an entry id, `<ms>-<seq>` (e.g. `1764658800123-0`). Resuming from",
    "`P` delivers the entries strictly after `P`; no position means the meeting's start. Save the",
    "`log_id` of the last event you handled.",
    "",
    "**`log_id` in live messages.** Each live message carries `log_id`, its place in the log (unless",
    "`[log] live_log_id = false`), so a live consumer that missed messages reads the log after the last",
    "`log_id` it saw. `relay.client.RelayClient` does that by itself after a lost subscription.",
    "",
    "**Reading** (`relay.client.RelayLog`): `replay(session, from_=None)` gives the meeting and ends at",
    "the end of the log; `follow(session, from_=None)` replays, then waits for new entries until",
    "`session.ended`; `follow_all(from_=checkpoint)` follows every meeting, discovering new ones in",
    "`relay:sessions:log`, and its `checkpoint` (`{\"discovery\": <position in relay:sessions:log>,",
    "\"sessions\": {<session id>: <position>}}`) is what to save. `relay replay SESSION [--from POS]",
    "[--json]` and `relay tail --session S --from-start` do the same from the shell.",
    "",
    "**Errors.** A consumer is told, never handed a silently partial meeting (`relay.errors.LogError`):",
    "",
    "| error | when |",
    "| --- | --- |",
    "| `BadPosition` | the position is not `<ms>-<seq>` |",
    "| `SessionNotFound` | the session has no log: never seen, or past its retention |",
    "| `HistoryTrimmed` | retention removed the position (or, replaying from the start, the meeting's beginning): `XINFO STREAM` shows `entries-added` above `length` and the first entry after the position. `allow_trimmed=True` reads what remains |",
    "| `HistoryLost` | the stream does not hold the position and retention did not remove it: it was recreated (Redis restarted without persistence). Also when a `session.started` with `payload.reason` `log_lost` (the relay's marker of such a loss) comes after the position. `allow_lost=True` reads on |",
    "",
    "Reads are verified: each page is read inclusive of its start position, so a position trimmed or",
    "lost under a slow reader is told, not skipped over.",
    "",
)


def render() -> str:
    """The whole of ``docs/events.md``."""
    out = [
        "# Relay events",
        "",
        "<!-- Generated by `python -m relay.tools.eventdocs > docs/events.md`; do not edit by hand. -->",
        "",
        f"Every event the relay publishes on Redis, schema version {SCHEMA_VERSION}. An event is an envelope",
        "(below) plus a `payload` chosen by `type`. Text events go to `relay:events:<source>:<session>:<type>`,",
        "audio and video to `relay:media:<source>:<session>:<type>`, so `PSUBSCRIBE relay:events:*` gets every",
        "text event without a single audio buffer. `<session>` is `session.id` with `: * ? [ ] \\` and",
        "whitespace replaced by `_`. Consumers parse any event with `relay.schema.parse_event`; a type they do",
        "not know parses as `generic`. Delivery is at least once: deduplicate on `id`.",
        "",
        "Examples are real parser output on documented provider frames where a parser exists (marked",
        "*produced by*), otherwise built from the schema classes; ids and times are fixed so this file is",
        "stable, and long base64 is shortened.",
        "",
        "## Envelope",
        "",
        *_fields_table(EventBase, skip=("payload",)),
        "",
    ]
    for title, model in (("session", SessionRef), ("participant", Participant), ("time", EventTime)):
        out += [f"### `{title}`", "", *_fields_table(model), ""]

    out += ["## Types", ""]
    documented = examples()
    for key, example in documented.items():
        event = example.build()
        cls = type(event)
        out += [f"### `{key}`", "", MEANINGS[key], ""]
        if key == "participant.*":
            out += ["| type | channel |", "| --- | --- |"]
            out += [f"| `{t}` | {_channel(event, t)} |" for t in PARTICIPANT_TYPES]
        else:
            out += [f"Channel: {_channel(event, event.type)}"]
        payload = cls.model_fields["payload"].annotation
        assert isinstance(payload, type) and issubclass(payload, BaseModel), payload
        out += ["", f"Payload (`{payload.__name__}`):", ""]
        out += _fields_table(payload)
        origin = f"produced by `{example.produced_by}` from a documented frame" if example.produced_by else "built from the schema classes (no parser output yet)"
        out += ["", f"Example ({origin}):", "", "```json", _example_json(event), "```", ""]
    out += TRANSCRIPT_SECTION
    out += LOG_SECTION
    return "\n".join(out)


def documented_types() -> set[str]:
    """Every concrete ``type`` value the document covers."""
    keys = set(examples())
    return (keys - {"participant.*"}) | set(PARTICIPANT_TYPES)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
