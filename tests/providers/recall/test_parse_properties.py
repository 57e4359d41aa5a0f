"""RecallParser on arbitrary input: it raises FrameRejected or returns events that survive publishing.

"Survive publishing" means each event's record serializes (``EventRecord.to_json``, what the relay
publishes) to the same JSON as its validated model, and that JSON parses back
(``relay.schema.parse_event``) into an equal event, which is exactly what a consumer does.
"""

from __future__ import annotations

import base64
import binascii
import random
from datetime import datetime, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.dev import recall_frames as frames
from relay.errors import REJECT_REASONS, FrameRejected
from relay.providers.recall.parse import RecallParser
from relay.schema import parse_event

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RECEIVED = datetime(2025, 1, 1, tzinfo=timezone.utc)

BOT = frames.BotIdentity.create(random.Random(7), started_at=RECEIVED)
ALICE = frames.participant(100, "Alice", is_host=True, email="alice@example.com")
VALID_FRAMES: list[dict[str, Any]] = [
    frames.participant_event(BOT, "join", ALICE, 0.5),
    frames.participant_event(BOT, "screenshare_off", ALICE, 9.0),
    frames.chat_message(BOT, ALICE, "hello", 1.0),
    frames.transcript(BOT, ALICE, frames.words_at("good morning all", 2.0), absolute=True),
    frames.transcript(BOT, None, [("hm", 3.0, None)], partial=True),
    frames.provider_data(BOT, {"raw": [1, {"x": None}]}),
    frames.audio_mixed(BOT, frames.tone_pcm(20), 1.0),
    frames.audio_separate(BOT, ALICE, b"", 1.0),
    frames.video_png(BOT, ALICE, frames.png_image(8, 8), 1.0),
    frames.video_h264(BOT, ALICE, b"\x00\x00\x00\x01\x67", 1.0, stream="screenshare"),
    {"event": "bot.new_kind", "data": {**BOT.envelope("x", "y"), "data": {"any": "thing"}}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)  # fmt: skip


def check(parser: RecallParser, frame: str | bytes) -> None:
    """A frame gives FrameRejected, or records whose JSON (what the relay publishes) is exactly the
    JSON of their validated models, and parses back into them."""
    try:
        records = parser.feed_records(frame, received_at=RECEIVED)
    except FrameRejected as exc:
        assert exc.reason in REJECT_REASONS
        return
    for record in records:
        event = record.model()  # a ValidationError here: the hand-written checks let a bad value by
        published = record.to_json()
        assert orjson.loads(published) == orjson.loads(event.to_json())
        assert parse_event(published) == event


def legacy_parser(separate: bool) -> RecallParser:
    parser = RecallParser()
    parser.feed(orjson.dumps(frames.legacy_header("bot", "rec", separate_streams=separate)).decode())
    return parser


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(["fresh", "legacy_mixed", "legacy_separate"]))
def test_arbitrary_bytes(data: bytes, state: str) -> None:
    parser = RecallParser() if state == "fresh" else legacy_parser(state == "legacy_separate")
    check(parser, data)


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    check(RecallParser(), text)


@SETTINGS
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    check(RecallParser(), orjson.dumps(value).decode())


@SETTINGS
@given(st.sampled_from(sorted({f["event"] for f in VALID_FRAMES})), json_values, json_values)
def test_arbitrary_event_data(event: str, inner: Any, recording: Any) -> None:
    envelope = BOT.envelope("participant_events", "pe-1")
    for data in (
        {**envelope, "data": inner},
        {**envelope, "data": inner, "recording": recording},
        {**envelope, "data": {"participant": inner, "timestamp": recording, "buffer": "", "words": [], "data": inner}},
    ):
        check(RecallParser(), orjson.dumps({"event": event, "data": data}).decode())


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated_frames(draw: st.DrawFn) -> str:
    """A valid documented frame with a few leaves replaced or removed."""
    frame = orjson.loads(orjson.dumps(draw(st.sampled_from(VALID_FRAMES))))  # a deep copy
    paths = _paths(frame)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        target = frame
        try:
            for key in path[:-1]:
                target = target[key]
            if draw(st.booleans()) and isinstance(target, dict):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = draw(json_values | st.sampled_from(["", "=", "AA==", "2025-01-01T00:00:00Z", -1, 1e300]))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path's parent
    return orjson.dumps(frame).decode()


@SETTINGS
@given(mutated_frames(), st.booleans())
def test_mutated_valid_frames(frame: str, as_binary: bool) -> None:
    check(RecallParser(), frame.encode() if as_binary else frame)


@SETTINGS
@given(st.lists(st.sampled_from(range(len(VALID_FRAMES))), min_size=1, max_size=8))
def test_valid_frames_always_parse(order: list[int]) -> None:
    parser = RecallParser()
    for i in order:
        [event] = parser.feed(frames.encode(VALID_FRAMES[i]), received_at=RECEIVED)
        assert parse_event(event.model_dump_json()) == event


@SETTINGS
@given(st.binary(max_size=300))
def test_base64_check_agrees_with_strict_decoding(data: bytes) -> None:
    buffer = base64.b64encode(data).decode()
    [event] = RecallParser().feed(frames.encode(frames.audio_mixed(BOT, data, 1.0)), received_at=RECEIVED)
    assert event.payload.bytes == len(data) and event.payload.audio == buffer


@SETTINGS
@given(st.text(alphabet="ABCDab01+/=-_ \né", max_size=16))
def test_base64_check_accepts_exactly_what_strict_decoding_accepts(buffer: str) -> None:
    # binascii's strict mode still tolerates surplus "=" after a full quantum ("0000="); RFC 4648
    # (and the parser) want a length that is a multiple of 4.
    try:
        decoded = binascii.a2b_base64(buffer.encode(), strict_mode=True)
        expected: int | None = len(decoded) if len(buffer) % 4 == 0 else None
    except (binascii.Error, UnicodeError):
        expected = None
    frame = frames.audio_mixed(BOT, b"", 1.0)
    frame["data"]["data"]["buffer"] = buffer
    try:
        [event] = RecallParser().feed(frames.encode(frame), received_at=RECEIVED)
    except FrameRejected as exc:
        assert exc.reason == "invalid_base64" and expected is None
    else:
        assert event.payload.bytes == expected
