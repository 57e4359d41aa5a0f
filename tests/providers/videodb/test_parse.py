"""VideoDB parser: VideoDB's published payloads (``docs/protocols/videodb.md``), tolerated variants,
malformed input, a property test."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import REJECT_REASONS, FrameRejected
from relay.providers.videodb.parse import (
    epoch_to_datetime,
    parse_callback,
    parse_capture_session,
    parse_frame,
    parse_hello,
    parse_transcript_record,
    parse_webhook,
)
from relay.schema import AlertEvent, GenericEvent, IndexEvent, SessionStatusEvent, TranscriptEvent, parse_event

NOW = datetime(2026, 1, 20, 12, 0, tzinfo=timezone.utc)

# --- VideoDB's published examples, verbatim (docs/protocols/videodb.md, Sources) -----------------
TRANSCRIPT = {
    "channel": "transcript",
    "rtstream_id": "rts-xxx",
    "rtstream_name": "mic:default",
    "data": {"text": "Let's schedule the meeting for Thursday", "is_final": True, "start": 1710000001234, "end": 1710000002345},
}
VISUAL = {
    "channel": "visual_index",
    "rtstream_id": "rts-xxx",
    "rtstream_name": "display:1",
    "data": {"text": "User is viewing a Slack conversation with 3 unread messages", "start": 1710000012340, "end": 1710000018900},
}
AUDIO = {
    "channel": "audio_index",
    "rtstream_id": "rts-xxx",
    "rtstream_name": "mic:default",
    "data": {"text": "Discussion about scheduling a team meeting", "start": 1710000021500, "end": 1710000029200},
}
ALERT = {
    "channel": "alert",
    "rtstream_id": "rts-xxx",
    "data": {"label": "sensitive_content", "triggered": True, "confidence": 0.92, "start": 1710000045100, "end": 1710000047800},
}
ACTIVE = {
    "event": "capture_session.active",
    "capture_session_id": "cap-xxx",
    "status": "active",
    "timestamp": "2026-01-20T12:34:56Z",
    "data": {
        "rtstreams": [
            {"rtstream_id": "rts-1", "name": "mic:default", "media_types": ["audio"]},
            {"rtstream_id": "rts-2", "name": "system_audio:default", "media_types": ["audio"]},
            {"rtstream_id": "rts-3", "name": "display:1", "media_types": ["video"]},
        ]
    },
}


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def roundtrip(event):
    """What a consumer sees: the event through JSON and back into the schema."""
    again = parse_event(event.model_dump_json())
    assert again == event
    return again


def test_transcript_final_from_the_docs() -> None:
    event = roundtrip(parse_frame(orjson.dumps(TRANSCRIPT), received=NOW))
    assert isinstance(event, TranscriptEvent)
    assert event.type == "transcript.final" and event.source == "videodb"
    assert event.payload.text == "Let's schedule the meeting for Thursday" and event.payload.is_final
    assert event.session.id == "rts-xxx" and event.session.stream_id == "rts-xxx"
    assert event.session.stream_name == "mic:default"
    assert event.time.absolute == ms(1710000001234) and event.time.received == NOW
    assert event.payload.start_time == ms(1710000001234) and event.payload.end_time == ms(1710000002345)


@pytest.mark.parametrize("flag,type_", [(False, "transcript.partial"), ("false", "transcript.partial"), ("true", "transcript.final"), ("TRUE", "transcript.final")])
def test_is_final_as_bool_or_string(flag, type_) -> None:
    frame = {**TRANSCRIPT, "data": {**TRANSCRIPT["data"], "is_final": flag}}
    assert parse_frame(frame, received=NOW).type == type_


def test_capture_session_known_keys_socket_events_by_it() -> None:
    event = parse_frame(TRANSCRIPT, received=NOW, sessions={"rts-xxx": "cap-9"})
    assert event.session.id == "cap-9" and event.session.stream_id == "rts-xxx"


@pytest.mark.parametrize("frame,type_", [(VISUAL, "index.visual"), ({**VISUAL, "channel": "scene_index"}, "index.visual"), (AUDIO, "index.audio"), ({**AUDIO, "channel": "spoken_index"}, "index.audio")])
def test_index_channels(frame, type_) -> None:
    event = roundtrip(parse_frame(frame, received=NOW))
    assert isinstance(event, IndexEvent) and event.type == type_
    assert event.payload.text == frame["data"]["text"]
    assert event.payload.start == ms(frame["data"]["start"]) and event.payload.end == ms(frame["data"]["end"])


def test_alert_without_rtstream_name() -> None:
    event = roundtrip(parse_frame(ALERT, received=NOW))
    assert isinstance(event, AlertEvent)
    assert event.payload.label == "sensitive_content" and event.payload.triggered
    assert event.payload.confidence == pytest.approx(0.92)
    assert event.session.stream_name is None
    assert event.payload.end == ms(1710000047800)


def test_unknown_channel_passes_through_as_generic() -> None:
    frame = {"channel": "upload_progress", "rtstream_id": "rts-1", "data": {"percent": 40}}
    event = roundtrip(parse_frame(frame, received=NOW))
    assert isinstance(event, GenericEvent) and event.type == "generic"
    assert event.payload.provider_type == "upload_progress" and event.payload.data == {"percent": 40}


def test_capture_session_channel() -> None:
    frame = {"channel": "capture_session", "capture_session_id": "cap-1", "event": "capture_session.stopping", "data": {}}
    event = roundtrip(parse_frame(frame, received=NOW))
    assert isinstance(event, SessionStatusEvent)
    assert event.session.id == "cap-1" and event.payload.status == "stopping"
    nested = {"channel": "capture_session", "data": {"capture_session_id": "cap-2", "status": "active"}}
    assert parse_frame(nested, received=NOW).session.id == "cap-2"


def test_times_in_seconds_or_milliseconds() -> None:
    assert epoch_to_datetime(1710000001.234) == epoch_to_datetime(1710000001234)
    assert epoch_to_datetime("1710000001234") == ms(1710000001234)
    assert epoch_to_datetime(None) is None
    for bad in (-1, float("nan"), float("inf"), True, "soon", [1], 1e30):
        with pytest.raises(FrameRejected) as err:
            epoch_to_datetime(bad, "data.start")
        assert (err.value.reason, err.value.detail) == ("invalid_field", "data.start")


def test_hello() -> None:
    assert parse_hello(b'{"connection_id": "c-1"}') == "c-1"
    assert parse_hello({"data": {"connection_id": "c-2"}}) == "c-2"
    for raw, reason in (("{}", "missing_field"), ('{"data": {"connection_id": []}}', "invalid_field")):
        with pytest.raises(FrameRejected) as err:
            parse_hello(raw)
        assert (err.value.reason, err.value.detail) == (reason, "connection_id")


@pytest.mark.parametrize(
    "raw,reason,detail",
    [
        (b"not json", "invalid_json", ""),
        (b"\xff\xfe", "invalid_utf8", ""),
        (b"[1, 2]", "not_an_object", ""),
        (b'{"rtstream_id": "r"}', "missing_field", "channel"),
        (b'{"channel": "", "rtstream_id": "r"}', "invalid_field", "channel"),
        (b'{"channel": "transcript", "data": {"text": "x"}}', "missing_field", "rtstream_id"),
        (b'{"channel": "transcript", "rtstream_id": [], "data": {"text": "x"}}', "invalid_field", "rtstream_id"),
        (b'{"channel": "transcript", "rtstream_id": "r", "data": "x"}', "invalid_field", "data"),
        (b'{"channel": "transcript", "rtstream_id": "r", "data": {"is_final": true}}', "missing_field", "data.text"),
        (b'{"channel": "transcript", "rtstream_id": "r", "data": {"text": 5}}', "invalid_field", "data.text"),
        (b'{"channel": "transcript", "rtstream_id": "r", "data": {"text": "x", "is_final": "maybe"}}', "invalid_field", "data.is_final"),
        (b'{"channel": "scene_index", "rtstream_id": "r", "data": {"text": "x", "start": "noon"}}', "invalid_field", "data.start"),
        (b'{"channel": "transcript", "rtstream_id": "r", "data": {"text": "x", "end": -5}}', "invalid_field", "data.end"),
        (b'{"channel": "alert", "rtstream_id": "r", "data": {"triggered": true}}', "missing_field", "data.label"),
        (b'{"channel": "alert", "rtstream_id": "r", "data": {"label": "l", "confidence": "high"}}', "invalid_field", "data.confidence"),
        (b'{"channel": "alert", "rtstream_id": "r", "data": {"label": "l", "triggered": "maybe"}}', "invalid_field", "data.triggered"),
        (b'{"channel": "alert", "rtstream_id": "r", "data": {"event_label": "l", "text": ["x"]}}', "invalid_field", "data.text"),
        (b'{"channel": "capture_session", "data": {}}', "missing_field", "status"),
        (b'{"channel": "capture_session", "data": {"status": "active"}}', "missing_field", "capture_session_id"),
    ],
)
def test_malformed_frames_name_their_reason(raw, reason, detail) -> None:
    with pytest.raises(FrameRejected) as err:
        parse_frame(raw, received=NOW)
    assert (err.value.reason, err.value.detail) == (reason, detail)


def test_webhook_active_lists_rtstreams_and_dedupe_key() -> None:
    hook = parse_webhook(orjson.dumps({"version": "2", "end_user_id": "user_abc", **ACTIVE}), received=NOW)
    assert hook.status == "active" and hook.capture_session_id == "cap-xxx"
    assert [(r.rtstream_id, r.has_audio, r.has_video) for r in hook.rtstreams] == [
        ("rts-1", True, False), ("rts-2", True, False), ("rts-3", False, True)
    ]  # fmt: skip
    assert hook.dedupe_key == "cap-xxx|capture_session.active|2026-01-20T12:34:56Z"
    event = roundtrip(hook.published)
    assert event.type == "session.status" and event.session.id == "cap-xxx"
    assert event.payload.detail["end_user_id"] == "user_abc"
    assert event.payload.detail["data"]["rtstreams"][2]["name"] == "display:1"
    assert event.time.absolute == datetime(2026, 1, 20, 12, 34, 56, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "body,status,detail",
    [
        ({"event": "capture_session.exported", "capture_session_id": "c", "data": {"exported_video_id": "m-1"}}, "exported", "exported_video_id"),
        ({"event": "capture_session.failed", "capture_session_id": "c", "status": "failed", "data": {"error": {"code": "x"}}}, "failed", "error"),
        ({"event": "capture_session.stopped", "capture_session_id": "c"}, "stopped", None),
    ],
)
def test_webhook_lifecycle_statuses(body, status, detail) -> None:
    hook = parse_webhook(body, received=NOW)
    assert hook.status == status and hook.rtstreams == ()
    if detail:
        assert detail in hook.published.payload.detail["data"]


@pytest.mark.parametrize(
    "body,reason,detail",
    [
        (b"{", "invalid_json", ""),
        (b'"capture_session.active"', "not_an_object", ""),
        (b'{"capture_session_id": "c"}', "missing_field", "event"),
        (b'{"event": {}, "capture_session_id": "c"}', "invalid_field", "event"),
        (b'{"event": "capture_session.active"}', "missing_field", "capture_session_id"),
        (b'{"event": "capture_session.active", "capture_session_id": "c", "data": []}', "invalid_field", "data"),
        (b'{"event": "capture_session.active", "capture_session_id": "c", "data": {"rtstreams": {}}}', "invalid_field", "data.rtstreams"),
        (b'{"event": "capture_session.active", "capture_session_id": "c", "data": {"rtstreams": [1]}}', "invalid_field", "data.rtstreams[]"),
        (b'{"event": "capture_session.active", "capture_session_id": "c", "data": {"rtstreams": [{"name": "x"}]}}', "missing_field", "data.rtstreams[].rtstream_id"),
        (b'{"event": "capture_session.active", "capture_session_id": "c", "data": {"rtstreams": [{"rtstream_id": "r", "media_types": "audio"}]}}', "invalid_field", "data.rtstreams[].media_types"),
    ],
)
def test_malformed_webhooks(body, reason, detail) -> None:
    with pytest.raises(FrameRejected) as err:
        parse_webhook(body, received=NOW)
    assert (err.value.reason, err.value.detail) == (reason, detail)


# --- property: any input gives an event or FrameRejected (a shared reason), nothing else ------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
channels = st.sampled_from(["transcript", "scene_index", "visual_index", "audio_index", "spoken_index", "alert", "capture_session", "other"])
data_keys = st.sampled_from(["text", "is_final", "start", "end", "label", "triggered", "confidence", "status", "event", "capture_session_id"])
frames = st.fixed_dictionaries(
    {"channel": channels | json_values, "data": st.dictionaries(data_keys, json_values, max_size=6) | json_values},
    optional={"rtstream_id": st.text(max_size=6) | json_values, "rtstream_name": json_values, "status": json_values},
)


@settings(max_examples=400, deadline=None)
@given(frame=frames | json_values)
def test_parse_frame_raises_only_frame_error(frame) -> None:
    try:
        raw = orjson.dumps(frame)
    except (TypeError, orjson.JSONEncodeError):
        return
    parsers = (lambda: parse_frame(raw, received=NOW), lambda: parse_webhook(raw, received=NOW), lambda: parse_hello(raw),
               lambda: parse_callback(raw, received=NOW, collection="default"))  # fmt: skip
    for parse in parsers:
        try:
            result = parse()
        except FrameRejected as exc:
            assert exc.reason in REJECT_REASONS
            continue
        if not isinstance(result, str):  # an event or a webhook: it must serialize
            (result.published if hasattr(result, "published") else result).model_dump_json()


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=64))
def test_parse_frame_on_arbitrary_bytes(raw) -> None:
    try:
        parse_frame(raw, received=NOW)
    except FrameRejected as exc:
        assert exc.reason in REJECT_REASONS


# --- shapes VideoDB's own apps send (docs/protocols/videodb.md, section 5) -----------------------
# The listener of VideoDB's capture guide (video-db/claude-code, plugins/skills/videodb/skills/python/
# CAPTURE.md, "Setting Up a WebSocket Listener") reads msg["channel"] and msg["data"]["text"];
# the second alert shape ({event_label, timestamp, text}) is the one VideoDB's real-time context page
# publishes beside {label, triggered, confidence, start, end} (docs.videodb.io/pages/ingest/
# capture-sdks/realtime-context).
ALERT_LABELLED = {"channel": "alert", "rtstream_id": "rts-xxx",
                  "data": {"event_label": "sensitive_content", "timestamp": 1710000045100, "text": "A password is visible"}}  # fmt: skip


def test_alert_with_event_label_and_timestamp() -> None:
    event = roundtrip(parse_frame(ALERT_LABELLED, received=NOW))
    assert isinstance(event, AlertEvent)
    assert event.payload.label == "sensitive_content" and event.payload.triggered
    assert event.payload.start == ms(1710000045100) and event.time.absolute == ms(1710000045100)
    assert event.payload.text == "A password is visible"


def test_alert_text_at_the_top_level_and_none_without_one() -> None:
    """VideoDB's apps may send the data fields at the top level; the other shape has no text."""
    top = {"channel": "alert", "rtstream_id": "rts-xxx", **ALERT_LABELLED["data"]}
    assert roundtrip(parse_frame(top, received=NOW)).payload.text == "A password is visible"
    assert roundtrip(parse_frame(ALERT, received=NOW)).payload.text is None


@pytest.mark.parametrize("key", ["type", "event_type"])
def test_channel_under_type_or_event_type(key) -> None:
    frame = {key: "transcript", "rtstream_id": "rts-xxx", "data": TRANSCRIPT["data"]}
    event = parse_frame(frame, received=NOW)
    assert event.type == "transcript.final" and event.payload.text == TRANSCRIPT["data"]["text"]


def test_text_at_the_top_level() -> None:
    frame = {"channel": "visual_index", "rtstream_id": "rts-xxx", "text": "A code editor", "start": 1710000012340}
    event = parse_frame(frame, received=NOW)
    assert isinstance(event, IndexEvent) and event.payload.text == "A code editor"
    assert event.payload.start == ms(1710000012340)
    both = {**TRANSCRIPT, "text": "ignored: data wins"}
    assert parse_frame(both, received=NOW).payload.text == TRANSCRIPT["data"]["text"]


def test_no_rtstream_id_is_attributed_to_the_collection() -> None:
    frame = {"channel": "audio_index", "data": AUDIO["data"]}
    event = roundtrip(parse_frame(frame, received=NOW, collection="team-b"))
    assert event.session.id == "team-b" and event.session.stream_id is None
    with pytest.raises(FrameRejected) as err:  # without a collection to attribute it to: refused
        parse_frame(frame, received=NOW)
    assert (err.value.reason, err.value.detail) == ("missing_field", "rtstream_id")


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "capture_session.stopping", "capture_session_id": "cap-1", "status": "stopping", "data": {}},
        {"type": "capture_session.stopping", "capture_session_id": "cap-1"},
        {"capture_session_id": "cap-1", "status": "stopping"},
    ],
)
def test_lifecycle_frames_without_a_channel(frame) -> None:
    event = roundtrip(parse_frame(frame, received=NOW))
    assert isinstance(event, SessionStatusEvent)
    assert event.session.id == "cap-1" and event.payload.status == "stopping"


# --- GET /rtstream/{id}/transcription records (VideoDB API reference, "Get RTStream Transcription":
# {"success": true, "data": {"transcription_records": [{"start": 1700000000, "end": 1700000005,
# "text": "transcribed text", "word_timestamps": [{}]}], "next_page": false, ...}}) ---------------
def test_transcription_record_from_the_api_reference() -> None:
    record = {"start": 1700000000, "end": 1700000005, "text": "transcribed text", "word_timestamps": [{}]}
    event = roundtrip(parse_transcript_record(record, "rts-12345", received=NOW, sessions={"rts-12345": "cap-1"}))
    assert isinstance(event, TranscriptEvent) and event.type == "transcript.final"
    assert event.session.id == "cap-1" and event.session.stream_id == "rts-12345"
    assert event.payload.start_time == datetime.fromtimestamp(1700000000, tz=timezone.utc)
    assert event.payload.end_time == datetime.fromtimestamp(1700000005, tz=timezone.utc)


@pytest.mark.parametrize(
    "record,reason,detail",
    [
        ([], "invalid_field", "transcription_records[]"),
        ({"start": 1700000000}, "missing_field", "transcription_records[].text"),
        ({"text": "x", "start": "noon"}, "invalid_field", "transcription_records[].start"),
    ],
)
def test_malformed_transcription_records(record, reason, detail) -> None:
    with pytest.raises(FrameRejected) as err:
        parse_transcript_record(record, "rts-1", received=NOW)
    assert (err.value.reason, err.value.detail) == (reason, detail)


# --- the capture session as GET /collection/{c}/capture/session/{id} answers it (the SDK's
# get_capture_session reads data.rtstreams[] with rtstream_id or id, name, channel_id) ------------
def test_capture_session_rtstreams_with_or_without_media_types() -> None:
    data = {"id": "cap-1", "status": "active", "rtstreams": [
        {"rtstream_id": "rts-1", "name": "mic:default", "media_types": ["audio"]},
        {"id": "rts-2", "name": "system_audio:default", "channel_id": "system_audio"},
        {"rtstream_id": "rts-3", "name": "display:1", "channel_id": "screen"},
        {"name": "no id"}, "junk"]}  # fmt: skip
    status, streams = parse_capture_session(data, "cap-1")
    assert status == "active"
    assert [(s.rtstream_id, s.has_audio, s.has_video, s.capture_session_id) for s in streams] == [
        ("rts-1", True, False, "cap-1"), ("rts-2", True, False, "cap-1"), ("rts-3", False, True, "cap-1")]  # fmt: skip


# An alert callback as docs/protocols/videodb.md, section 6 lists its fields (values of their types).
ALERT_CALLBACK = {
    "event_id": "event-5c1e", "label": "sensitive_content", "confidence": 0.87,
    "explanation": "A password manager window is open on screen", "timestamp": 1710000045100,
    "start_time": 1710000045100, "end_time": 1710000047800,
    "stream_url": "https://stream.example/rts-xxx.m3u8", "player_url": "https://player.example/rts-xxx",
}  # fmt: skip


def test_alert_callback_explanation_is_the_alert_text() -> None:
    callback = parse_callback(orjson.dumps(ALERT_CALLBACK), received=NOW, collection="default")
    event = roundtrip(callback.published)
    assert isinstance(event, AlertEvent)
    assert event.payload.label == "sensitive_content" and event.payload.confidence == pytest.approx(0.87)
    assert event.payload.text == "A password manager window is open on screen"
    assert (event.payload.start, event.payload.end) == (ms(1710000045100), ms(1710000047800))


def test_alert_callback_text_wins_and_odd_text_is_no_text() -> None:
    """A callback in the socket's shape ({event_label, timestamp, text}) keeps its text; callbacks are
    read leniently, so a text that is not a string is dropped, never a refusal."""
    labelled = parse_callback({**ALERT_LABELLED["data"], "explanation": "other words"}, received=NOW, collection="c")
    assert labelled.published.payload.text == "A password is visible"
    odd = parse_callback({**ALERT_CALLBACK, "explanation": 7}, received=NOW, collection="c")
    assert odd.published.type == "alert" and odd.published.payload.text is None


def test_transcripts_have_no_utterance_id() -> None:
    """VideoDB's transcript frames and records name no segment, so partials cannot be paired by id
    (docs/events.md, "Transcripts: partials and finals"): the relay leaves it null, never invents one."""
    partial = {**TRANSCRIPT, "data": {**TRANSCRIPT["data"], "is_final": False}}
    record = {"start": 1700000000, "end": 1700000005, "text": "transcribed text"}
    events = [parse_frame(TRANSCRIPT, received=NOW), parse_frame(partial, received=NOW),
              parse_transcript_record(record, "rts-1", received=NOW)]  # fmt: skip
    assert [e.payload.utterance_id for e in events] == [None, None, None]


def test_callbacks_are_classified_and_lifecycle_webhooks_still_checked() -> None:
    hook = parse_callback(ACTIVE, received=NOW, collection="default")
    assert hook.dedupe_key == "cap-xxx|capture_session.active|2026-01-20T12:34:56Z"
    alert = parse_callback(b'{"event_id": "e-1", "label": "pii", "timestamp": "soon"}', received=NOW, collection="c")
    assert alert.published.type == "alert" and alert.published.payload.start is None  # an unreadable time: no time
    again = parse_callback(b'{"event_id": "e-1", "label": "pii", "timestamp": "soon"}', received=NOW, collection="c")
    assert again.dedupe_key == alert.dedupe_key
    unreadable = parse_callback({"type": "transcript", "data": {"text": 5}}, received=NOW, collection="c")
    assert unreadable.published.type == "generic" and unreadable.published.payload.provider_type == "callback.transcript"
    with pytest.raises(FrameRejected):
        parse_callback(b'{"event": "capture_session.active"}', received=NOW, collection="c")
