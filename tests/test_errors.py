"""One error vocabulary: every parser (Recall, VideoDB, ASAPP) rejects with a reason of REJECT_REASONS.

The reason is the ``reason`` label of ``relay_frames_rejected_total`` and docs/operations.md lists
each one, so a parser that invents its own name would add an undocumented, unbounded label. The same
fault gets the same name everywhere: JSON that does not parse is ``invalid_json`` whoever sent it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relay.providers.asapp.parse as asapp_parse
import relay.providers.videodb.parse as videodb_parse
from relay.errors import REJECT_REASONS, FrameRejected, RejectReason, RelayError
from relay.providers.asapp.parse import parse_message
from relay.providers.recall.parse import RecallParser
from relay.providers.videodb.parse import parse_frame, parse_hello, parse_webhook

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SECRET = "SECRET-payload-42"  # a value that must never reach a reason or a detail (both are logged)

Parse = Callable[[Any], object]
PARSERS: dict[str, Parse] = {
    "recall": lambda frame: RecallParser().feed_records(frame, NOW),
    "videodb.frame": lambda frame: parse_frame(frame, received=NOW),
    "videodb.hello": parse_hello,
    "videodb.webhook": lambda frame: parse_webhook(frame, received=NOW),
    "asapp": parse_message,
}

# Malformed input for each parser: wrong types, missing fields, impossible values.
MALFORMED: dict[str, list[Any]] = {
    "recall": [
        "{}",
        '{"event": 5}',
        '{"event": "transcript.data"}',
        '{"event": "audio_mixed_raw.data", "data": {"data": {"buffer": "a==="}}}',
        b"\x00\x01",
        b"\x01\x00\x00\x00\x00\x00\x00\x00" * 3,
        12345,
    ],
    "videodb.frame": [
        "{}",
        '{"channel": 5}',
        '{"channel": "transcript"}',
        '{"channel": "transcript", "rtstream_id": "r", "data": 7}',
        '{"channel": "transcript", "rtstream_id": "r", "data": {"text": 1}}',
        '{"channel": "alert", "rtstream_id": "r", "data": {"label": "l", "confidence": "high"}}',
        '{"channel": "scene_index", "rtstream_id": "r", "data": {"text": "x", "start": 1e300}}',
        '{"channel": "capture_session"}',
        12345,
    ],
    "videodb.hello": ["{}", '{"connection_id": {}}', '{"data": {"connection_id": true}}'],
    "videodb.webhook": [
        "{}",
        '{"event": "capture_session.active"}',
        '{"event": "capture_session.active", "capture_session_id": "c", "data": {"rtstreams": 1}}',
        '{"event": "capture_session.active", "capture_session_id": "c", "data": {"rtstreams": [{}]}}',
    ],
    "asapp": [
        "{}",
        '{"message": 5}',
        '{"message": "startResponse"}',
        '{"message": "startResponse", "status": {"code": []}}',
        '{"message": "transcript", "start": 2, "end": 1, "utterance": []}',
        '{"message": "transcript", "start": 0, "end": 1, "utterance": [{}]}',
        '{"message": "finalResponse", "summary": 3}',
        12345,
    ],
}
NOT_JSON = ["not json", "{", '{"message": 42, "oops": [', "", "   ", "{'single': 'quotes'}", b"not json"]
NOT_AN_OBJECT = ["[1, 2]", "5", '"text"', "null", "true"]
NOT_UTF8 = ["\ud800", b'"\xff\xfe"']


def rejection(parse: Parse, frame: Any) -> FrameRejected:
    with pytest.raises(FrameRejected) as info:
        parse(frame)
    return info.value


def test_the_hierarchy() -> None:
    assert issubclass(FrameRejected, RelayError)
    exc = FrameRejected("missing_field", "data.text")
    assert (exc.reason, exc.detail, str(exc)) == ("missing_field", "data.text", "missing_field (data.text)")
    assert "internal_error" in REJECT_REASONS and len(REJECT_REASONS) == 11


def test_no_parser_keeps_an_exception_class_of_its_own() -> None:
    assert not hasattr(videodb_parse, "FrameError")
    assert not hasattr(asapp_parse, "AsappMessageError")
    assert not hasattr(asapp_parse, "MalformedReason")


@pytest.mark.parametrize("name", list(MALFORMED))
def test_every_parser_rejects_with_a_shared_reason(name: str) -> None:
    for frame in MALFORMED[name]:
        exc = rejection(PARSERS[name], frame)
        assert exc.reason in REJECT_REASONS, (name, frame, exc.reason)


@pytest.mark.parametrize("name", list(PARSERS))
@pytest.mark.parametrize(
    ("frames", "reason"), [(NOT_JSON, "invalid_json"), (NOT_AN_OBJECT, "not_an_object"), (NOT_UTF8, "invalid_utf8")]
)
def test_the_same_fault_has_the_same_name_everywhere(name: str, frames: list[Any], reason: RejectReason) -> None:
    for frame in frames:
        if name == "recall" and isinstance(frame, bytes):
            continue  # a Recall binary frame is the legacy audio protocol, not JSON
        assert rejection(PARSERS[name], frame).reason == reason, (name, frame)


def test_a_missing_field_and_a_wrong_one_are_told_apart_with_the_field_named() -> None:
    cases: list[tuple[Parse, str, RejectReason, str]] = [
        (PARSERS["videodb.frame"], '{"rtstream_id": "r"}', "missing_field", "channel"),
        (PARSERS["videodb.frame"], '{"channel": "transcript", "rtstream_id": "r", "data": {"start": "x"}}', "invalid_field", "data.start"),
        (PARSERS["videodb.hello"], "{}", "missing_field", "connection_id"),
        (PARSERS["videodb.webhook"], '{"capture_session_id": "c"}', "missing_field", "event"),
        (PARSERS["asapp"], "{}", "missing_field", "message"),
        (PARSERS["asapp"], '{"message": 5}', "invalid_field", "message"),
        (PARSERS["asapp"], '{"message": "startResponse", "status": {}}', "missing_field", "status.code"),
    ]  # fmt: skip
    for parse, frame, reason, detail in cases:
        exc = rejection(parse, frame)
        assert (exc.reason, exc.detail) == (reason, detail), frame


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("recall", {"event": "transcript.data", "data": {"bot": SECRET}}),
        ("recall", {"event": SECRET}),
        ("videodb.frame", {"channel": "transcript", "rtstream_id": "r", "data": {"text": "x", "start": SECRET}}),
        ("videodb.frame", {"channel": "alert", "rtstream_id": "r", "data": {"label": "l", "confidence": SECRET}}),
        ("videodb.frame", {"channel": "transcript", "rtstream_id": "r", "data": {"text": "x", "is_final": SECRET}}),
        ("videodb.hello", {"connection_id": [SECRET]}),
        ("videodb.webhook", {"event": "e", "capture_session_id": "c", "data": {"rtstreams": [{"rtstream_id": SECRET, "media_types": SECRET}]}}),
        ("asapp", {"message": "transcript", "start": SECRET, "end": 1, "utterance": []}),
        ("asapp", {"message": "startResponse", "status": {"code": [SECRET]}}),
    ],
)  # fmt: skip
def test_a_rejection_never_carries_payload_content(name: str, frame: dict[str, Any]) -> None:
    exc = rejection(PARSERS[name], orjson.dumps(frame).decode())
    assert SECRET not in str(exc) and SECRET not in exc.detail
    assert exc.reason in REJECT_REASONS


@settings(max_examples=150, deadline=None)
@given(frame=st.text(max_size=40) | st.binary(max_size=40))
def test_arbitrary_input_is_parsed_or_rejected_with_a_shared_reason(frame: str | bytes) -> None:
    for parse in PARSERS.values():
        try:
            parse(frame)
        except FrameRejected as exc:
            assert exc.reason in REJECT_REASONS


def test_the_operations_guide_lists_every_reason() -> None:
    guide = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    section = guide.split("### Rejection reasons", 1)[1].split("\n### ", 1)[0]
    listed = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert listed == set(REJECT_REASONS)
