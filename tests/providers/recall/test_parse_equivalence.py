"""The bytes the relay publishes for valid Recall frames, pinned down exactly.

``test_parse_properties.py`` holds a record's JSON to its model's JSON *as values*; this module
holds it to the same *bytes*, key order included, so the hot path can be rewritten for speed without
consumers seeing any change. The expected bytes are built from the validated model by one rule (the
one :meth:`relay.schema.EventRecord.to_json` has always followed): the envelope's keys in a fixed
order; ``session`` and ``participant`` in model field order; ``time`` and ``payload`` with the fields
that have defaults first, then the required ones, each group in model field order.

The frames are generated: every documented event kind (and an unknown one), with optional fields
present, null or absent, integer or float times, words with and without absolute times, several
participants and sessions through one parser (its caches), and so on.
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from relay.errors import FrameRejected
from relay.providers.recall.parse import PNG_MAGIC, RecallParser, _checked_words, _plain_words
from relay.schema import EventBase

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RECEIVED = datetime(2025, 1, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
EVENT_ID = "01900000-0000-7000-8000-000000000000"

# --- the expected bytes ------------------------------------------------------------------------


def _defaults_first(model: BaseModel) -> dict[str, Any]:
    fields = type(model).model_fields
    values = model.model_dump()
    order = [k for k, f in fields.items() if not f.is_required()] + [k for k, f in fields.items() if f.is_required()]
    return {k: values[k] for k in order}


def expected_json(event: EventBase) -> bytes:
    """What the relay publishes for ``event``, built from the model by the rule above."""
    return orjson.dumps(
        {
            "schema_version": event.schema_version,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "session": event.session.model_dump(mode="json"),
            "participant": event.participant.model_dump(mode="json") if event.participant is not None else None,
            "time": _defaults_first(event.time),
            "payload": _defaults_first(event.payload),  # type: ignore[attr-defined]
        },
        option=orjson.OPT_UTC_Z,
    )


# --- valid frames ------------------------------------------------------------------------------

texts = st.text(max_size=12)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | texts
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
metadata = st.dictionaries(texts, json_values, max_size=3)
seconds = st.floats(0, 1e6, allow_nan=False) | st.integers(0, 10**6)
absolute_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-5))])
).map(lambda d: d.isoformat().replace("+00:00", "Z"))


def _maybe(draw: st.DrawFn, key: str, values: st.SearchStrategy[Any], out: dict[str, Any]) -> None:
    """Set ``out[key]`` to a drawn value, to null, or leave it out."""
    choice = draw(st.sampled_from(["value", "value", "null", "absent"]))
    if choice == "value":
        out[key] = draw(values)
    elif choice == "null":
        out[key] = None


@st.composite
def timestamps(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _maybe(draw, "relative", seconds, out)
    _maybe(draw, "absolute", absolute_times, out)
    return out


@st.composite
def participants(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _maybe(draw, "id", st.integers(0, 2**40) | st.sampled_from(["100", "p-2"]), out)
    _maybe(draw, "name", texts, out)
    _maybe(draw, "is_host", st.booleans(), out)
    _maybe(draw, "platform", st.sampled_from(["desktop", "mobile_app"]), out)
    # Any JSON value (Recall's sample apps type it `any`): an object mostly, anything else too.
    _maybe(draw, "extra_data", metadata | json_values, out)
    _maybe(draw, "email", texts, out)
    return out


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    recording: dict[str, Any] = {"id": draw(st.sampled_from(["rec-1", "rec-2"]))}
    _maybe(draw, "metadata", metadata, recording)
    out: dict[str, Any] = {"recording": recording}
    for key in ("bot", "realtime_endpoint"):
        obj: dict[str, Any] = {}
        _maybe(draw, "id", st.sampled_from(["a", "b"]), obj)
        _maybe(draw, "metadata", metadata, obj)
        _maybe(draw, key, st.just(obj), out)
    return out


@st.composite
def words(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {"text": draw(texts)}
    _maybe(draw, "start_timestamp", timestamps() | st.builds(lambda r: {"relative": r}, st.floats(0, 1e4)), out)
    _maybe(draw, "end_timestamp", timestamps() | st.builds(lambda r: {"relative": r}, st.floats(0, 1e4)), out)
    return out


buffers = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
PARTICIPANT_EVENTS = [f"participant_events.{a}" for a in (
    "join", "leave", "update", "speech_on", "speech_off", "webcam_on", "webcam_off", "screenshare_on", "screenshare_off")]  # fmt: skip


@st.composite
def inner_data(draw: st.DrawFn, event: str) -> Any:
    """``data.data`` of a valid frame of kind ``event``."""
    out: dict[str, Any] = {}
    if event == "transcript.provider_data" or event == "bot.something_new":
        return draw(json_values)
    if event.startswith("transcript."):
        out["words"] = draw(st.lists(words(), max_size=8))
        _maybe(draw, "language", st.sampled_from(["en", "de"]), out)
        _maybe(draw, "participant", participants(), out)
        return out
    _maybe(draw, "timestamp", timestamps(), out)
    if event == "participant_events.chat_message":
        message: dict[str, Any] = {"text": draw(texts)}
        _maybe(draw, "to", st.sampled_from(["everyone", "only_bot"]), message)
        out["data"] = message
        _maybe(draw, "participant", participants(), out)
    elif event.startswith("participant_events."):
        _maybe(draw, "participant", participants(), out)
    elif event.startswith("audio_"):
        out["buffer"] = draw(buffers)
        _maybe(draw, "participant", participants(), out)
    elif event.startswith("video_"):
        out["buffer"] = draw(buffers)
        _maybe(draw, "type", st.sampled_from(["webcam", "screenshare"]), out)
        _maybe(draw, "participant", participants(), out)
    return out


EVENTS = [
    *PARTICIPANT_EVENTS, "participant_events.chat_message", "transcript.data", "transcript.partial_data",
    "transcript.provider_data", "audio_mixed_raw.data", "audio_separate_raw.data", "video_separate_png.data",
    "video_separate_h264.data", "bot.something_new",
]  # fmt: skip


@st.composite
def valid_frames(draw: st.DrawFn) -> str:
    event = draw(st.sampled_from(EVENTS))
    data = {**draw(envelopes()), "data": draw(inner_data(event))}
    return orjson.dumps({"event": event, "data": data}).decode()


# --- tests -------------------------------------------------------------------------------------


def _fixed_ids(monkeypatch: Any) -> None:
    import relay.providers.recall.parse as parse

    monkeypatch.setattr(parse, "new_event_id", lambda: EVENT_ID)


@SETTINGS
@given(st.lists(valid_frames(), min_size=1, max_size=6), st.booleans())
def test_published_bytes_of_valid_frames(frame_list: list[str], as_binary: bool) -> None:
    import relay.providers.recall.parse as parse

    original = parse.new_event_id
    parse.new_event_id = lambda: EVENT_ID  # type: ignore[assignment]
    try:
        parser = RecallParser()
        for frame in frame_list:
            [record] = parser.feed_records(frame.encode() if as_binary else frame, RECEIVED)
            assert record.to_json() == expected_json(record.model())
    finally:
        parse.new_event_id = original  # type: ignore[assignment]


plain_words = st.builds(
    lambda text, start, end: {"text": text, "start_timestamp": {"relative": start},
                              "end_timestamp": None if end is None else {"relative": end}},
    texts, st.floats(0, 1e4), st.none() | st.floats(0, 1e4),
)  # fmt: skip


@SETTINGS
@given(st.lists(plain_words, max_size=8))
def test_plain_words_take_the_fast_path(raw_words: list[Any]) -> None:
    assert _plain_words(raw_words) is not None


@SETTINGS
@given(st.lists(plain_words | words() | json_values, max_size=8))
def test_plain_words_fast_path_agrees_with_the_checked_path(raw_words: list[Any]) -> None:
    """Whatever the fast path accepts, the checked path gives the same words (and no absolute time);
    a list the checked path refuses, the fast path declines (so the error is the checked path's)."""
    plain = _plain_words(raw_words)
    try:
        checked = _checked_words(raw_words)
    except FrameRejected:
        assert plain is None
        return
    if plain is not None:
        assert checked == (*plain, None)


@SETTINGS
@given(
    st.sampled_from(["mixed", "separate", "video"]), st.floats(0, 1e5) | st.integers(0, 10**5),
    st.sampled_from(["rec", None, "absent"]),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=64), st.booleans()), min_size=1, max_size=6),
)
def test_published_bytes_of_legacy_frames(
    stream: str, offset: float, recording_id: str | None, media: list[tuple[int, bytes, bool]]
) -> None:
    import relay.providers.recall.parse as parse

    original = parse.new_event_id
    parse.new_event_id = lambda: EVENT_ID  # type: ignore[assignment]
    try:
        parser = RecallParser()
        separate = stream == "separate"
        header: dict[str, Any] = {"protocol_version": 1, "bot_id": "bot"}
        if recording_id != "absent":
            header["recording_id"] = recording_id
        if stream != "video":  # the video header is protocol_version and bot_id alone
            header["separate_streams"] = separate
            header["offset"] = offset
        assert parser.feed_records(orjson.dumps(header).decode(), RECEIVED) == []
        assert parser.session is not None and parser.session.id == ("rec" if recording_id == "rec" else "bot")
        for pid, data, video in media:
            if video or stream == "video":
                frame = struct.pack("<II", pid, len(data)) + PNG_MAGIC + data
            else:
                frame = (struct.pack("<I", pid) if separate else b"") + b"\x00\x01" + data
            [record] = parser.feed_records(frame, RECEIVED)
            assert record.to_json() == expected_json(record.model())
    finally:
        parse.new_event_id = original  # type: ignore[assignment]


def test_published_bytes_of_the_benchmark_transcript(monkeypatch: Any) -> None:
    """One frame written out in full: the flood's transcript, as bytes (a readable anchor)."""
    _fixed_ids(monkeypatch)
    frame = {
        "event": "transcript.data",
        "data": {
            "data": {
                "words": [
                    {"text": "hello", "start_timestamp": {"relative": 1.0}, "end_timestamp": {"relative": 1.35}},
                    {"text": "there", "start_timestamp": {"relative": 1.35}, "end_timestamp": None},
                ],
                "participant": {"id": 100, "name": "Speaker 0", "is_host": False, "platform": "desktop",
                                "extra_data": {}, "email": None},
            },
            "realtime_endpoint": {"id": "ep", "metadata": {"tenant": "acme"}},
            "transcript": {"id": "tr", "metadata": {}},
            "recording": {"id": "rec", "metadata": {}},
            "bot": {"id": "bot", "metadata": {"team": "sales"}},
        },
    }  # fmt: skip
    [record] = RecallParser().feed_records(orjson.dumps(frame).decode(), RECEIVED)
    assert record.to_json() == (
        b'{"schema_version":1,"id":"' + EVENT_ID.encode() + b'","source":"recall","type":"transcript.final",'
        b'"session":{"id":"rec","bot_id":"bot","endpoint_id":"ep","stream_id":null,"stream_name":null,'
        b'"metadata":{"tenant":"acme"},"recording_metadata":{},"bot_metadata":{"team":"sales"}},'
        b'"participant":{"id":"100","name":"Speaker 0","email":null,"is_host":false,"platform":"desktop",'
        b'"role":null,"extra":{}},'
        b'"time":{"relative":1.0,"absolute":null,"received":"2025-01-01T12:30:15.123456Z"},'
        b'"payload":{"utterance_id":"' + EVENT_ID.encode() + b'",'
        b'"words":[{"text":"hello","start":1.0,"end":1.35},{"text":"there","start":1.35,"end":null}],'
        b'"start":1.0,"end":null,"language":null,"start_time":null,"end_time":null,'
        b'"text":"hello there","is_final":true}}'
    )
