"""RecallParser on the documented Recall.ai payloads: every event kind, the legacy protocol, every error."""

from __future__ import annotations

import base64
import copy
import struct
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from relay.dev import recall_frames as frames
from relay.errors import REJECT_REASONS, FrameRejected
from relay.providers.recall.parse import RecallParser
from relay.schema import (
    AudioChunkEvent,
    ChatMessageEvent,
    GenericEvent,
    Participant,
    ParticipantEvent,
    ProviderDataEvent,
    SessionRef,
    TranscriptEvent,
    VideoFrameEvent,
    Word,
    parse_event,
)

RECEIVED = datetime(2025, 3, 4, 10, 0, 5, 250000, tzinfo=timezone.utc)

# The envelope exactly as Recall's "Real-Time Event Payloads" page shows it (ids are examples).
ENVELOPE: dict[str, Any] = {
    "realtime_endpoint": {"id": "5ae0b4e1-6f5c-4a49-8a3e-1c4bb0d0a3f1", "metadata": {"tenant": "acme"}},
    "recording": {"id": "a5437136-4b69-429a-9e0c-cd388fd8fee6", "metadata": {"crm_id": 42}},
    "bot": {"id": "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b", "metadata": {"team": "sales"}},
}
SESSION = SessionRef(
    id="a5437136-4b69-429a-9e0c-cd388fd8fee6",
    bot_id="f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b",
    endpoint_id="5ae0b4e1-6f5c-4a49-8a3e-1c4bb0d0a3f1",
    metadata={"tenant": "acme"},
    recording_metadata={"crm_id": 42},
    bot_metadata={"team": "sales"},
)
RECALL_PARTICIPANT = {
    "id": 100,
    "name": "Alice Example",
    "is_host": True,
    "platform": "desktop",
    "extra_data": {"zoom": {"user_uuid": "u-1"}},
    "email": "alice@example.com",
}
PARTICIPANT = Participant(
    id="100", name="Alice Example", email="alice@example.com", is_host=True, platform="desktop",
    extra={"zoom": {"user_uuid": "u-1"}},
)  # fmt: skip
TIMESTAMP = {"absolute": "2025-03-04T10:00:04.500000Z", "relative": 12.5}
ABSOLUTE = datetime(2025, 3, 4, 10, 0, 4, 500000, tzinfo=timezone.utc)


def frame(event: str, data: Any, artifact: str = "participant_events") -> dict[str, Any]:
    return {"event": event, "data": {"data": data, **ENVELOPE, artifact: {"id": "art-1", "metadata": {}}}}


def feed_one(obj: Any, parser: RecallParser | None = None) -> Any:
    parser = parser or RecallParser()
    events = parser.feed(orjson.dumps(obj).decode(), received_at=RECEIVED)
    assert len(events) == 1
    [event] = events
    # What the relay publishes parses back into the very same event.
    assert parse_event(event.model_dump_json()) == event
    assert parser.session == event.session
    return event


def reason(frame_: str | bytes, parser: RecallParser | None = None) -> str:
    with pytest.raises(FrameRejected) as info:
        (parser or RecallParser()).feed(frame_, received_at=RECEIVED)
    assert info.value.reason in REJECT_REASONS
    return info.value.reason


# --- participant events ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    ["join", "leave", "update", "speech_on", "speech_off", "webcam_on", "webcam_off", "screenshare_on",
     "screenshare_off"],
)  # fmt: skip
def test_participant_events(action: str) -> None:
    event = feed_one(frame(f"participant_events.{action}", {"participant": RECALL_PARTICIPANT, "timestamp": TIMESTAMP, "data": None}))
    assert isinstance(event, ParticipantEvent)
    assert event.type == f"participant.{action}"
    assert event.source == "recall"
    assert event.session == SESSION
    assert event.participant == PARTICIPANT
    assert event.payload.action == action
    assert event.time.received == RECEIVED
    assert event.time.relative == 12.5
    assert event.time.absolute == ABSOLUTE


def test_participant_with_nulls_and_no_email() -> None:
    who = {"id": 7, "name": None, "is_host": False, "platform": None, "extra_data": {}, "email": None}
    event = feed_one(frame("participant_events.join", {"participant": who, "timestamp": TIMESTAMP, "data": None}))
    assert event.participant == Participant(id="7", is_host=False)


@pytest.mark.parametrize("extra_data", ["zoom", [1, "a", None], 42, 1.5, True, {"teams": {"id": "x"}}, []])
def test_extra_data_of_any_json_type_is_carried_in_the_event(extra_data: Any) -> None:
    """Recall's sample apps type ``extra_data`` as ``any``: whatever it is, the event is kept and carries it."""
    who = {**RECALL_PARTICIPANT, "extra_data": extra_data}
    for kind, data, artifact in (
        ("participant_events.join", {"participant": who, "timestamp": TIMESTAMP, "data": None}, "participant_events"),
        ("transcript.data", {"words": WORDS, "participant": who}, "transcript"),
        ("audio_separate_raw.data", {"buffer": PCM_B64, "timestamp": TIMESTAMP, "participant": who}, "audio_separate"),
        ("video_separate_png.data", {"buffer": PCM_B64, "timestamp": TIMESTAMP, "type": "webcam", "participant": who}, "video_separate"),
    ):
        parser = RecallParser()
        for _ in range(2):  # the second frame of a kind takes the fast path where there is one
            event = feed_one(frame(kind, data, artifact), parser)
            assert event.participant.extra == extra_data and type(event.participant.extra) is type(extra_data)
            assert orjson.loads(event.model_dump_json())["participant"]["extra"] == extra_data


def test_null_extra_data_is_host_and_bot_keep_the_event() -> None:
    who = {**RECALL_PARTICIPANT, "extra_data": None, "is_host": None}
    obj = frame("participant_events.join", {"participant": who, "timestamp": TIMESTAMP, "data": None})
    obj["data"]["bot"] = None
    event = feed_one(obj)
    assert event.participant.extra == {} and event.participant.is_host is None
    assert (event.session.bot_id, event.session.bot_metadata) == (None, {})
    del who["extra_data"]
    assert feed_one(frame("participant_events.join", {"participant": who, "timestamp": TIMESTAMP, "data": None})).participant.extra == {}


def test_a_participant_that_changes_only_in_json_type_is_built_anew() -> None:
    """The participant cache must not take ``true`` for ``1`` (Python's ``==`` does): each frame
    publishes its own values, and decides its own errors, whatever came before on the connection."""
    parser = RecallParser()
    for extra_data in (1, True, 1.0, {"a": 1}, {"a": True}, [0], [False]):
        who = {**RECALL_PARTICIPANT, "extra_data": extra_data}
        for kind, data, artifact in (
            ("participant_events.join", {"participant": who, "timestamp": TIMESTAMP, "data": None}, "participant_events"),
            ("transcript.data", {"words": WORDS, "participant": who}, "transcript"),
        ):
            extra = feed_one(frame(kind, data, artifact), parser).participant.extra
            assert orjson.dumps(extra) == orjson.dumps(extra_data), (kind, extra_data)
    host_one = {**RECALL_PARTICIPANT, "is_host": 1}
    assert reason(orjson.dumps(frame("participant_events.join", {"participant": host_one, "timestamp": TIMESTAMP})).decode(), parser) == "invalid_field"


def test_a_session_whose_metadata_changes_only_in_json_type_is_built_anew() -> None:
    """Likewise the session: endpoint metadata ``{"asapp": true}`` then ``{"asapp": 1}`` on one
    connection are two sessions' worth of metadata, each published as sent."""
    parser = RecallParser()
    join = {"participant": RECALL_PARTICIPANT, "timestamp": TIMESTAMP, "data": None}
    for value in (True, 1, 1.0, "1", True):
        obj = frame("participant_events.join", join)
        obj["data"]["realtime_endpoint"] = {"id": "re-1", "metadata": {"asapp": value}}
        metadata = feed_one(obj, parser).session.metadata
        assert orjson.dumps(metadata) == orjson.dumps({"asapp": value}), value


def test_chat_message() -> None:
    event = feed_one(frame("participant_events.chat_message", {
        "participant": RECALL_PARTICIPANT, "timestamp": TIMESTAMP, "data": {"text": "see you at 3", "to": "everyone"},
    }))  # fmt: skip
    assert isinstance(event, ChatMessageEvent)
    assert event.type == "chat.message"
    assert event.payload.text == "see you at 3"
    assert event.payload.to == "everyone"
    assert event.participant == PARTICIPANT
    assert (event.time.relative, event.time.absolute) == (12.5, ABSOLUTE)


# --- transcripts -----------------------------------------------------------------------------

WORDS = [
    {"text": "Hello", "start_timestamp": {"relative": 12.5, "absolute": "2025-03-04T10:00:04.500000Z"},
     "end_timestamp": {"relative": 12.9, "absolute": "2025-03-04T10:00:04.900000Z"}},
    {"text": "everyone,", "start_timestamp": {"relative": 12.9}, "end_timestamp": {"relative": 13.4}},
    {"text": "welcome.", "start_timestamp": {"relative": 13.4}, "end_timestamp": None},
]  # fmt: skip


@pytest.mark.parametrize(("event_name", "type_", "final"), [
    ("transcript.data", "transcript.final", True),
    ("transcript.partial_data", "transcript.partial", False),
])  # fmt: skip
def test_transcripts(event_name: str, type_: str, final: bool) -> None:
    event = feed_one(frame(event_name, {"words": WORDS, "participant": RECALL_PARTICIPANT}, "transcript"))
    assert isinstance(event, TranscriptEvent)
    assert event.type == type_
    assert event.payload.is_final is final
    assert event.payload.text == "Hello everyone, welcome."
    assert event.payload.words == [
        Word(text="Hello", start=12.5, end=12.9), Word(text="everyone,", start=12.9, end=13.4),
        Word(text="welcome.", start=13.4, end=None),
    ]  # fmt: skip
    assert (event.payload.start, event.payload.end) == (12.5, None)
    assert event.payload.language is None
    assert event.participant == PARTICIPANT
    assert (event.time.relative, event.time.absolute) == (12.5, ABSOLUTE)
    assert event.session == SESSION


def test_transcript_without_words_or_participant() -> None:
    event = feed_one(frame("transcript.data", {"words": [], "participant": None}, "transcript"))
    assert event.payload.text == "" and event.payload.words == [] and event.participant is None
    assert event.payload.start is None and event.time.relative is None


def test_provider_data_passes_through() -> None:
    raw = {"type": "Results", "channel": {"alternatives": [{"transcript": "hi", "confidence": 0.98}]}, "is_final": True}
    event = feed_one(frame("transcript.provider_data", raw, "transcript"))
    assert isinstance(event, ProviderDataEvent)
    assert event.type == "transcript.provider_data"
    assert event.payload.data == raw
    assert event.session == SESSION
    # Whatever the provider sends, even not an object.
    assert feed_one(frame("transcript.provider_data", ["a", 1], "transcript")).payload.data == ["a", 1]
    assert feed_one(frame("transcript.provider_data", None, "transcript")).payload.data is None


# --- audio and video -------------------------------------------------------------------------

PCM = frames.tone_pcm(20)  # 640 bytes = 20 ms
PCM_B64 = base64.b64encode(PCM).decode()


def test_mixed_audio() -> None:
    event = feed_one(frame("audio_mixed_raw.data", {"buffer": PCM_B64, "timestamp": TIMESTAMP}, "audio_mixed_raw"))
    assert isinstance(event, AudioChunkEvent)
    assert event.participant is None
    p = event.payload
    assert (p.mix, p.encoding, p.sample_rate, p.channels) == ("mixed", "pcm_s16le", 16000, 1)
    assert p.audio == PCM_B64  # the bot's base64, untouched
    assert (p.bytes, p.duration_ms) == (640, 20.0)
    assert (event.time.relative, event.time.absolute) == (12.5, ABSOLUTE)


def test_separate_audio_and_empty_buffer_is_silence() -> None:
    parser = RecallParser()
    data = {"buffer": PCM_B64, "timestamp": TIMESTAMP, "participant": RECALL_PARTICIPANT}
    event = feed_one(frame("audio_separate_raw.data", data, "audio_separate"), parser)
    assert (event.payload.mix, event.payload.bytes, event.participant) == ("separate", 640, PARTICIPANT)
    silent = feed_one(frame("audio_separate_raw.data", {**data, "buffer": ""}, "audio_separate"), parser)
    assert (silent.payload.audio, silent.payload.bytes, silent.payload.duration_ms) == ("", 0, 0.0)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 99])
def test_base64_sizes_are_exact(size: int) -> None:
    buffer = base64.b64encode(bytes(range(size))).decode()
    event = feed_one(frame("audio_mixed_raw.data", {"buffer": buffer, "timestamp": TIMESTAMP}, "audio_mixed"))
    assert event.payload.bytes == size
    assert event.payload.duration_ms == size / 32


@pytest.mark.parametrize(("event_name", "codec"), [("video_separate_png.data", "png"), ("video_separate_h264.data", "h264")])
def test_video(event_name: str, codec: str) -> None:
    png = frames.png_image(32, 18)
    b64 = base64.b64encode(png).decode()
    data = {"buffer": b64, "timestamp": TIMESTAMP, "type": "screenshare", "participant": RECALL_PARTICIPANT}
    event = feed_one(frame(event_name, data, "video_separate"))
    assert isinstance(event, VideoFrameEvent)
    assert (event.payload.codec, event.payload.stream, event.payload.image, event.payload.bytes) == (codec, "screenshare", b64, len(png))
    assert event.participant == PARTICIPANT
    assert event.time.relative == 12.5


# --- envelope, unknown events, binary JSON ---------------------------------------------------


def test_unknown_event_passes_through_as_generic() -> None:
    data = {"participant": RECALL_PARTICIPANT, "timestamp": TIMESTAMP, "data": {"reaction": "thumbs_up"}}
    event = feed_one(frame("participant_events.reaction", data))
    assert isinstance(event, GenericEvent)
    assert event.type == "generic"
    assert event.payload.provider_type == "participant_events.reaction"
    assert event.payload.data == data
    assert event.participant == PARTICIPANT and event.time.relative == 12.5


def test_unknown_event_with_odd_data_still_passes_through() -> None:
    event = feed_one(frame("meeting.something_new", [1, "two", None]))
    assert event.payload.data == [1, "two", None] and event.participant is None and event.time.relative is None
    event = feed_one(frame("meeting.something_new", {"participant": "not an object", "timestamp": 3}))
    assert event.participant is None and event.time.relative is None


def test_minimal_envelope_and_unknown_fields() -> None:
    obj = {"event": "participant_events.leave", "future": 1,
           "data": {"recording": {"id": "rec-1"}, "data": {"participant": None, "timestamp": None, "extra": 2}}}  # fmt: skip
    event = feed_one(obj)
    assert event.session == SessionRef(id="rec-1")
    assert event.participant is None and event.time.relative is None and event.time.absolute is None


def test_binary_frame_holding_json_is_a_json_frame() -> None:
    obj = frame("participant_events.join", {"participant": RECALL_PARTICIPANT, "timestamp": TIMESTAMP, "data": None})
    [event] = RecallParser().feed(b"  \n" + orjson.dumps(obj), received_at=RECEIVED)
    assert event.type == "participant.join" and event.session == SESSION


def test_session_follows_the_frames_and_participants_are_reused() -> None:
    parser = RecallParser()
    assert parser.session is None
    data = {"participant": RECALL_PARTICIPANT, "timestamp": TIMESTAMP, "data": None}
    first = feed_one(frame("participant_events.join", data), parser)
    second = feed_one(frame("participant_events.speech_on", data), parser)
    assert second.session is first.session and second.participant is first.participant
    renamed = {**RECALL_PARTICIPANT, "name": "Alice E."}
    third = feed_one(frame("participant_events.update", {**data, "participant": renamed}), parser)
    assert third.participant.name == "Alice E."
    other = frame("participant_events.join", data)
    other["data"]["recording"] = {"id": "rec-2", "metadata": {}}
    assert feed_one(other, parser).session.id == "rec-2"
    assert parser.session.id == "rec-2"


def test_naive_and_offset_times_become_utc() -> None:
    naive = feed_one(frame("participant_events.join", {"participant": None, "timestamp": {"absolute": "2025-03-04T10:00:04.5", "relative": 1}}))
    assert naive.time.absolute == ABSOLUTE and naive.time.relative == 1.0
    offset = feed_one(frame("participant_events.join", {"participant": None, "timestamp": {"absolute": "2025-03-04T11:00:04.5+01:00"}}))
    assert offset.time.absolute == ABSOLUTE and offset.time.absolute.tzinfo == timezone.utc


# --- legacy protocol -------------------------------------------------------------------------


def test_legacy_mixed_audio() -> None:
    parser = RecallParser()
    assert parser.feed(orjson.dumps(frames.legacy_header("bot-9", "rec-9", offset=2.0)).decode()) == []
    assert parser.legacy and parser.session == SessionRef(id="rec-9", bot_id="bot-9")
    first, second = (parser.feed(frames.legacy_audio(PCM), received_at=RECEIVED)[0] for _ in range(2))
    for event in (first, second):
        assert isinstance(event, AudioChunkEvent) and parse_event(event.model_dump_json()) == event
        assert event.participant is None
        assert (event.payload.mix, event.payload.bytes, event.payload.duration_ms) == ("mixed", 640, 20.0)
        assert base64.b64decode(event.payload.audio) == PCM
        assert event.session == SessionRef(id="rec-9", bot_id="bot-9")
    # No timestamps in legacy frames: offset + audio already received.
    assert (first.time.relative, second.time.relative) == (2.0, 2.02)


def test_legacy_separate_streams_and_video() -> None:
    parser = RecallParser()
    parser.feed(orjson.dumps(frames.legacy_header("bot-9", "rec-9", separate_streams=True)).decode())
    a1 = parser.feed(frames.legacy_audio(PCM, 123))[0]  # 123 = "{": must not be taken for JSON
    b1 = parser.feed(frames.legacy_audio(PCM[:320], 7))[0]
    a2 = parser.feed(frames.legacy_audio(b"", 123))[0]
    b2 = parser.feed(frames.legacy_audio(PCM, 7))[0]
    assert [(e.participant.id, e.payload.mix, e.payload.bytes, e.time.relative) for e in (a1, b1, a2, b2)] == [
        ("123", "separate", 640, 0.0), ("7", "separate", 320, 0.0), ("123", "separate", 0, 0.02), ("7", "separate", 640, 0.01),
    ]  # fmt: skip
    assert base64.b64decode(a1.payload.audio) == PCM
    png = frames.png_image()
    [video] = parser.feed(frames.legacy_video(123, 4500, png), received_at=RECEIVED)
    assert isinstance(video, VideoFrameEvent) and parse_event(video.model_dump_json()) == video
    assert (video.participant.id, video.time.relative, video.payload.codec, video.payload.bytes) == ("123", 4.5, "png", len(png))
    assert base64.b64decode(video.payload.image) == png
    # JSON events still parse on a legacy connection, binary or text.
    obj = frame("participant_events.join", {"participant": None, "timestamp": TIMESTAMP, "data": None})
    assert parser.feed(orjson.dumps(obj))[0].type == "participant.join"


# The legacy headers exactly as Recall's pages print them (docs/protocols/recall.md, section 6).
# Source: https://recallai.readme.io/docs/real-time-audio-protocol (separate and combined streams).
LEGACY_SEPARATE_HEADER = '{"protocol_version": 1, "bot_id": "YOUR-BOT-ID-HERE", "separate_streams": true}'
LEGACY_COMBINED_HEADER = '{"protocol_version": 1, "bot_id": "YOUR-BOT-ID-HERE", "separate_streams": false}'
# Source: https://docs.recall.ai/v1.10/docs/real-time-video
LEGACY_VIDEO_HEADER = '{"protocol_version": 1, "bot_id": "<BOT_ID>"}'


@pytest.mark.parametrize(("header", "separate"), [(LEGACY_SEPARATE_HEADER, True), (LEGACY_COMBINED_HEADER, False)])
def test_legacy_audio_header_without_recording_id_is_keyed_on_the_bot(header: str, separate: bool) -> None:
    parser = RecallParser()
    assert parser.feed(header) == []
    assert parser.legacy and parser.legacy_stream == ("separate" if separate else "mixed")
    assert parser.session == SessionRef(id="YOUR-BOT-ID-HERE", bot_id="YOUR-BOT-ID-HERE")
    [event] = parser.feed(frames.legacy_audio(PCM, 100 if separate else None), received_at=RECEIVED)
    assert isinstance(event, AudioChunkEvent) and parse_event(event.model_dump_json()) == event
    assert event.session == SessionRef(id="YOUR-BOT-ID-HERE", bot_id="YOUR-BOT-ID-HERE")
    assert event.payload.mix == ("separate" if separate else "mixed") and base64.b64decode(event.payload.audio) == PCM
    assert (event.participant.id if event.participant else None) == ("100" if separate else None)
    assert event.time.relative == 0.0  # no offset in this header: the stream starts at 0
    # A null recording id reads as none.
    assert RecallParser().feed('{"protocol_version": 1, "bot_id": "b", "recording_id": null}') == []


def test_legacy_video_connection() -> None:
    """The legacy video protocol: its header, then u32 LE participant id, u32 LE ms, PNG bytes."""
    parser = RecallParser()
    assert parser.feed(LEGACY_VIDEO_HEADER) == []
    assert parser.legacy and parser.legacy_stream == "video"
    assert parser.session == SessionRef(id="<BOT_ID>", bot_id="<BOT_ID>")
    png = frames.png_image(36, 64, (200, 10, 10))
    raw = struct.pack("<I", 16778240) + struct.pack("<I", 1500) + png  # spelled out, not via the builder
    assert raw == frames.legacy_video(16778240, 1500, png)
    events = [parser.feed(f, received_at=RECEIVED)[0] for f in (raw, frames.legacy_video(123, 2000, png))]
    for event, (pid, relative) in zip(events, [("16778240", 1.5), ("123", 2.0)], strict=True):  # 123 = "{"
        assert isinstance(event, VideoFrameEvent) and parse_event(event.model_dump_json()) == event
        assert event.type == "video.frame" and event.session == SessionRef(id="<BOT_ID>", bot_id="<BOT_ID>")
        assert (event.participant.id, event.time.relative, event.time.received) == (pid, relative, RECEIVED)
        assert (event.payload.codec, event.payload.stream, event.payload.bytes) == ("png", None, len(png))
        assert base64.b64decode(event.payload.image) == png
    # The largest millisecond count a u32 holds: about 49.7 days.
    assert parser.feed(frames.legacy_video(1, 2**32 - 1, png))[0].time.relative == (2**32 - 1) / 1000


# --- errors ----------------------------------------------------------------------------------

GOOD = frame("audio_separate_raw.data", {"buffer": PCM_B64, "timestamp": TIMESTAMP, "participant": RECALL_PARTICIPANT}, "audio_separate")


def mutate(path: list[Any], value: Any, base: dict[str, Any] = GOOD) -> str:
    obj = copy.deepcopy(base)
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return orjson.dumps(obj).decode()


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "expected"), [
    (["event"], _DELETE, "missing_field"),
    (["event"], 5, "invalid_field"),
    (["data"], _DELETE, "missing_field"),
    (["data"], "x", "invalid_field"),
    (["data", "recording"], _DELETE, "missing_field"),
    (["data", "recording", "id"], _DELETE, "missing_field"),
    (["data", "recording", "id"], 17, "invalid_field"),
    (["data", "recording", "metadata"], [], "invalid_field"),
    (["data", "bot"], "bot", "invalid_field"),
    (["data", "bot", "id"], 1, "invalid_field"),
    (["data", "realtime_endpoint", "metadata"], "m", "invalid_field"),
    (["data", "data"], _DELETE, "missing_field"),
    (["data", "data"], [], "invalid_field"),
    (["data", "data", "buffer"], _DELETE, "missing_field"),
    (["data", "data", "buffer"], 12, "invalid_field"),
    (["data", "data", "buffer"], "abc", "invalid_base64"),
    (["data", "data", "buffer"], "ab=c", "invalid_base64"),
    (["data", "data", "buffer"], "ab!c", "invalid_base64"),
    (["data", "data", "buffer"], "abcé", "invalid_base64"),
    (["data", "data", "buffer"], "a===", "invalid_base64"),
    (["data", "data", "timestamp"], "now", "invalid_field"),
    (["data", "data", "timestamp", "relative"], "1", "invalid_field"),
    (["data", "data", "timestamp", "relative"], True, "invalid_field"),
    (["data", "data", "timestamp", "absolute"], "yesterday", "invalid_field"),
    (["data", "data", "timestamp", "absolute"], 1700000000, "invalid_field"),
    (["data", "data", "participant"], 100, "invalid_field"),
    (["data", "data", "participant", "id"], 1.5, "invalid_field"),
    (["data", "data", "participant", "id"], True, "invalid_field"),
    (["data", "data", "participant", "name"], 5, "invalid_field"),
    (["data", "data", "participant", "is_host"], "yes", "invalid_field"),
])  # fmt: skip
def test_bad_fields(path: list[Any], value: Any, expected: str) -> None:
    parser = RecallParser()
    assert reason(mutate(path, value), parser) == expected
    assert parser.session is None  # a failed frame changes nothing
    assert parser.feed(orjson.dumps(GOOD).decode())  # and the connection goes on


TRANSCRIPT = frame("transcript.data", {"words": WORDS, "participant": None}, "transcript")
CHAT = frame("participant_events.chat_message", {"participant": None, "timestamp": None, "data": {"text": "x", "to": "everyone"}})


@pytest.mark.parametrize(("base", "path", "value", "expected"), [
    (TRANSCRIPT, ["data", "data", "words"], _DELETE, "missing_field"),
    (TRANSCRIPT, ["data", "data", "words"], {"text": "x"}, "invalid_field"),
    (TRANSCRIPT, ["data", "data", "words", 1], "word", "invalid_field"),
    (TRANSCRIPT, ["data", "data", "words", 1, "text"], _DELETE, "missing_field"),
    (TRANSCRIPT, ["data", "data", "words", 1, "text"], 3, "invalid_field"),
    (TRANSCRIPT, ["data", "data", "words", 1, "start_timestamp"], 12.9, "invalid_field"),
    (TRANSCRIPT, ["data", "data", "words", 1, "start_timestamp", "relative"], "12.9", "invalid_field"),
    (TRANSCRIPT, ["data", "data", "words", 2, "end_timestamp"], [], "invalid_field"),
    (TRANSCRIPT, ["data", "data", "words", 0, "start_timestamp", "absolute"], "soon", "invalid_field"),
    (TRANSCRIPT, ["data", "data", "language"], 5, "invalid_field"),
    (CHAT, ["data", "data", "data"], None, "missing_field"),
    (CHAT, ["data", "data", "data", "text"], _DELETE, "missing_field"),
    (CHAT, ["data", "data", "data", "to"], 1, "invalid_field"),
])  # fmt: skip
def test_bad_transcript_and_chat_fields(base: dict[str, Any], path: list[Any], value: Any, expected: str) -> None:
    assert reason(mutate(path, value, base)) == expected


def test_frame_level_errors() -> None:
    assert reason("{not json") == "invalid_json"
    assert reason("") == "invalid_json"
    assert reason("[1, 2]") == "not_an_object"
    assert reason('"event"') == "not_an_object"
    assert reason("null") == "not_an_object"
    assert reason('{"event": "x", "data": {"recording": {"id": "\ud800"}}}') == "invalid_utf8"
    assert reason(b'{"event": "\xff"}') == "invalid_utf8"
    assert reason(b"{garbage") == "invalid_json"
    assert reason(PCM) == "binary_before_header"
    assert reason(b"") == "binary_before_header"
    assert reason(12) == "invalid_frame_type"  # type: ignore[arg-type]


def test_legacy_errors() -> None:
    assert reason('{"protocol_version": 2, "bot_id": "b", "recording_id": "r"}') == "unsupported_protocol"
    assert reason('{"protocol_version": "1", "bot_id": "b", "recording_id": "r"}') == "invalid_field"
    assert reason('{"protocol_version": 1, "recording_id": "r"}') == "missing_field"
    assert reason('{"protocol_version": 1, "separate_streams": true}') == "missing_field"
    assert reason('{"protocol_version": 1, "bot_id": 7}') == "invalid_field"
    assert reason('{"protocol_version": 1, "bot_id": "b", "recording_id": 5}') == "invalid_field"
    assert reason('{"protocol_version": 1, "bot_id": "b", "recording_id": "r", "separate_streams": 1}') == "invalid_field"
    assert reason('{"protocol_version": 1, "bot_id": "b", "recording_id": "r", "offset": "0"}') == "invalid_field"
    parser = RecallParser()
    parser.feed(orjson.dumps(frames.legacy_header("b", "r", separate_streams=True)).decode())
    assert reason(b"\x01\x02\x03", parser) == "short_binary_frame"
    assert reason(b"{\x00\x00", parser) == "short_binary_frame"
    # A legacy video frame that looks too short for its header is audio of an odd id, not an error.
    assert parser.feed(struct.pack("<I", 5) + b"\x00\x00")[0].payload.bytes == 2
    # On a video connection every binary frame is a video frame: one that cannot be is rejected.
    video = RecallParser()
    video.feed('{"protocol_version": 1, "bot_id": "b"}')
    assert reason(b"\x01\x00\x00\x00\x02\x00\x00", video) == "short_binary_frame"
    assert reason(b"", video) == "short_binary_frame"
    assert reason(struct.pack("<II", 1, 2) + PCM, video) == "invalid_field"
    assert reason(struct.pack("<II", 1, 2), video) == "invalid_field"
    assert video.feed(frames.legacy_video(1, 2, frames.png_image()))[0].type == "video.frame"  # and it goes on


def test_reasons_are_a_small_fixed_set() -> None:
    assert all(r.isidentifier() and r.islower() for r in REJECT_REASONS)
    assert len(REJECT_REASONS) <= 16
