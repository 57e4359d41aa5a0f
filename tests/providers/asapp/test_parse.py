"""ASAPP server messages, as ``docs/protocols/asapp.md`` shows them, into typed messages and schema events."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.errors import REJECT_REASONS, FrameRejected
from relay.providers.asapp.parse import (
    ErrorKind,
    FinalResponse,
    OtherMessage,
    StartResponse,
    TranscriptMessage,
    classify,
    error_event,
    parse_message,
    summary_event,
    transcript_event,
)
from relay.providers.asapp.timeline import AudioTimeline
from relay.schema import Participant, SessionRef, parse_event

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SESSION = SessionRef(id="rec_1", bot_id="bot_1", stream_id="s-1")
SPEAKER = Participant(id="100", name="Alice", role="agent")


def test_start_response() -> None:
    msg = parse_message('{"message": "startResponse", "streamID": "abc", "status": {"code": "1000", "description": "OK"}}')
    assert msg == StartResponse("abc", "1000", "OK") and msg.ok
    bad = parse_message(b'{"message": "startResponse", "status": {"code": "4051", "description": "bad rate"}}')
    assert isinstance(bad, StartResponse) and not bad.ok and bad.code == "4051"


def test_transcript_to_event() -> None:
    frame = {"message": "transcript", "start": 0, "end": 1000, "utterance": [{"text": "Hi, "}, {"text": "how can I help"}]}
    msg = parse_message(orjson.dumps(frame))
    assert isinstance(msg, TranscriptMessage)
    assert (msg.start_ms, msg.end_ms, msg.text) == (0, 1000, "Hi, how can I help")
    event = transcript_event(msg, session=SESSION, participant=SPEAKER, start=12.5, end=13.5, language="en-US", received=NOW)
    assert event.type == "transcript.final" and event.source == "asapp"
    assert event.payload.text == "Hi, how can I help" and event.payload.is_final
    assert (event.payload.start, event.payload.end, event.time.relative) == (12.5, 13.5, 12.5)
    # ASAPP sends finals only and names no utterance (docs/protocols/asapp.md): nothing to pair.
    assert event.payload.utterance_id is None
    assert parse_event(event.model_dump_json()) == event


def test_final_response_to_event() -> None:
    frame = {"message": "finalResponse", "streamId": "abc", "status": {"code": "1000", "description": "OK"},
             "summary": {"totalAudioBytes": 16000, "audioDurationMs": 1000, "streamingSeconds": 1.2, "transcripts": 1}}  # fmt: skip
    msg = parse_message(orjson.dumps(frame))
    assert msg == FinalResponse("abc", "1000", "OK", 16000, 1000, 1.2, 1) and msg.ok
    event = summary_event(msg, session=SESSION, participant=SPEAKER, received=NOW)
    assert event.payload.audio_bytes == 16000 and event.payload.transcripts == 1
    assert parse_event(event.model_dump_json()) == event


def test_a_failed_final_response_is_not_ok() -> None:
    # ASAPP ends a stream it refuses or cuts off with finalResponse and the reason's code (a
    # number in some of its examples); without a summary when the stream never started.
    msg = parse_message('{"message": "finalResponse", "status": {"code": 4053, "description": "rate"}}')
    assert msg == FinalResponse(None, "4053", "rate", None, None, None, None) and not msg.ok


def test_other_messages() -> None:
    # "error" is not a message ASAPP documents: whatever it carries, the relay does not act on it.
    assert parse_message('{"message": "error", "status": {"code": 5001}}') == OtherMessage("error")
    assert parse_message('{"message": "vocabularyResponse"}') == OtherMessage("vocabularyResponse")
    event = error_event("4051", "bad rate", permanent=True, session=SESSION, participant=SPEAKER, received=NOW)
    assert event.payload.permanent and parse_event(event.model_dump_json()) == event


@pytest.mark.parametrize(
    ("code", "kind"),
    [("1000", ErrorKind.OK), ("1008", ErrorKind.TOKEN), ("2002", ErrorKind.TRANSIENT),
     ("4040", ErrorKind.PERMANENT), ("4050", ErrorKind.PERMANENT), ("4051", ErrorKind.PERMANENT),
     ("4053", ErrorKind.PERMANENT), ("4056", ErrorKind.PERMANENT), ("4080", ErrorKind.UNTRANSCRIBABLE),
     ("4082", ErrorKind.PERMANENT), ("4083", ErrorKind.IDLE), ("4084", ErrorKind.PERMANENT),
     ("4090", ErrorKind.TOO_LONG), ("4091", ErrorKind.PERMANENT), ("4092", ErrorKind.PERMANENT),
     ("4093", ErrorKind.PERMANENT), ("4094", ErrorKind.PERMANENT),
     ("5000", ErrorKind.TRANSIENT), ("5001", ErrorKind.TRANSIENT), ("5002", ErrorKind.TRANSIENT),
     ("5999", ErrorKind.TRANSIENT), ("9999", ErrorKind.PERMANENT), ("abc", ErrorKind.PERMANENT)],
)  # fmt: skip
def test_classify(code: str, kind: ErrorKind) -> None:
    assert classify(code) is kind


@pytest.mark.parametrize(
    ("frame", "reason", "detail"),
    [('{"message": 42, "oops": [', "invalid_json", ""), (b"\xff\xfe", "invalid_utf8", ""),
     ("[1, 2]", "not_an_object", ""), ("{}", "missing_field", "message"),
     ('{"message": 5}', "invalid_field", "message"), ('{"message": ""}', "invalid_field", "message"),
     ('{"message": "startResponse"}', "missing_field", "status"),
     ('{"message": "startResponse", "status": []}', "invalid_field", "status"),
     ('{"message": "startResponse", "status": {}}', "missing_field", "status.code"),
     ('{"message": "startResponse", "status": {"code": ""}}', "invalid_field", "status.code"),
     ('{"message": "transcript", "end": 1, "utterance": []}', "missing_field", "start"),
     ('{"message": "transcript", "start": 5, "end": 1, "utterance": []}', "invalid_field", "end"),
     ('{"message": "transcript", "start": -1, "end": 1, "utterance": []}', "invalid_field", "start"),
     ('{"message": "transcript", "start": 0, "end": 1}', "missing_field", "utterance"),
     ('{"message": "transcript", "start": 0, "end": 1, "utterance": {}}', "invalid_field", "utterance"),
     ('{"message": "transcript", "start": 0, "end": 1, "utterance": ["x"]}', "invalid_field", "utterance[]"),
     ('{"message": "transcript", "start": 0, "end": 1, "utterance": [{"txt": "x"}]}', "missing_field", "utterance[].text"),
     ('{"message": "transcript", "start": 0, "end": 1, "utterance": [{"text": 1}]}', "invalid_field", "utterance[].text"),
     ('{"message": "transcript", "start": true, "end": 1, "utterance": []}', "invalid_field", "start"),
     ('{"message": "finalResponse", "status": {"code": "1000"}, "summary": []}', "invalid_field", "summary"),
     ('{"message": "finalResponse", "summary": {}}', "missing_field", "status")],  # a status is never implied
)  # fmt: skip
def test_malformed(frame: str | bytes, reason: str, detail: str) -> None:
    with pytest.raises(FrameRejected) as info:
        parse_message(frame)
    assert (info.value.reason, info.value.detail) == (reason, detail)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
field_values = st.sampled_from(["startResponse", "transcript", "finalResponse", "error", "x"]) | json_values


@given(
    st.dictionaries(
        st.sampled_from(["message", "status", "start", "end", "utterance", "summary", "streamID", "other"]),
        field_values,
    )
)
def test_any_object_parses_or_fails_with_a_known_reason(frame: dict[str, object]) -> None:
    try:
        raw = orjson.dumps(frame)
    except (TypeError, orjson.JSONEncodeError):
        return
    try:
        msg = parse_message(raw)
    except FrameRejected as exc:
        assert exc.reason in REJECT_REASONS
        return
    if isinstance(msg, TranscriptMessage):
        assert 0 <= msg.start_ms <= msg.end_ms
        transcript_event(msg, session=SESSION, participant=SPEAKER, start=None, end=None, language="en-US", received=NOW)


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_fail_with_a_known_reason(frame: bytes) -> None:
    try:
        parse_message(frame)
    except FrameRejected as exc:
        assert exc.reason in REJECT_REASONS


def test_timeline_maps_offsets_across_gaps() -> None:
    tl = AudioTimeline()
    assert tl.at(0) is None
    tl.add(0, 10.0)
    tl.add(1600, 10.1)  # contiguous: no new anchor needed
    assert len(tl) == 1
    tl.add(3200, 15.0)  # a 4.8 s gap (muted)
    assert tl.at(1600) == 10.1
    assert tl.at(4800) == 15.1
    tl.forget_before(4000)
    assert len(tl) == 1 and tl.at(4800) == 15.1
