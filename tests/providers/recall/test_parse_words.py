"""The three transcript word readers of RecallParser against each other.

``_checked_words`` (dicts, every field checked) decides; ``_plain_words`` (dicts of the common
shape) is held to it in ``test_parse_equivalence.py``; this holds the fast path's reader (the loop
of ``_fast_transcript``, on msgspec Structs) to it directly: the same record as the checked words
give :func:`_transcript_record`, so a reader that drifts fails here by name rather than only as
different published bytes in ``test_parse_fast_path.py``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relay.providers.recall.parse as parse
from relay.errors import FrameRejected
from relay.schema import Participant, SessionRef

from .test_parse_equivalence import json_values, words

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RECEIVED = datetime(2025, 1, 1, tzinfo=timezone.utc)
SESSION = parse._known(SessionRef(id="rec"))
ALICE = parse._known(Participant(id="1", name="Alice"))
decode_transcript = msgspec.json.Decoder(parse._TranscriptData).decode
odd_times = st.sampled_from([{"relative": 1}, {"relative": True}, {"absolute": "soon"}, {"absolute": 5}, {"x": 1.0}, 1.5, "t"])
word_lists = st.lists(words() | st.fixed_dictionaries({"text": st.text(max_size=5), "start_timestamp": odd_times}) | json_values, max_size=8)


def _body(record: Any) -> Any:
    """The record without its random ids: each reader gets no open utterances (``{}``), so each
    transcript opens its own, whose id is the event's."""
    body = record.body
    assert body["payload"]["utterance_id"] == body["id"]
    return {**body, "id": None, "payload": {**body["payload"], "utterance_id": None}}


def fast_outcome(raw_words: list[Any], is_final: bool, language: str | None) -> Any:
    """The fast path's record of these words, an error, or ``None`` when the decoder refuses them."""
    try:
        inner = decode_transcript(orjson.dumps({"words": raw_words, "language": language}))
    except msgspec.ValidationError:
        return None  # not the fast path's shape: the checked path reads the frame
    try:
        return _body(parse._fast_transcript({}, SESSION, ALICE, RECEIVED, is_final, inner))
    except FrameRejected as exc:
        return ("error", exc.reason, exc.detail)


def checked_outcome(raw_words: list[Any], is_final: bool, language: str | None) -> Any:
    try:
        read = parse._checked_words(orjson.loads(orjson.dumps(raw_words)))
    except FrameRejected as exc:
        return ("error", exc.reason, exc.detail)
    return _body(parse._transcript_record({}, SESSION, ALICE, RECEIVED, is_final, *read, language))


@SETTINGS
@given(word_lists, st.booleans(), st.sampled_from([None, "en"]))
def test_fast_words_agree_with_checked_words(raw_words: list[Any], is_final: bool, language: str | None) -> None:
    """Words the decoder takes, the fast reader reads as the checked reader does (the first word's
    absolute time, which becomes the event's, included), or fails on the same field."""
    fast = fast_outcome(raw_words, is_final, language)
    if fast is not None:
        assert fast == checked_outcome(raw_words, is_final, language)


def test_the_benchmark_transcript_reads_the_same_every_way() -> None:
    from bench.parse_micro import sample_frames

    raw_words = orjson.loads(sample_frames()["transcript"])["data"]["data"]["words"]
    checked = checked_outcome(raw_words, True, None)
    assert fast_outcome(raw_words, True, None) == checked
    plain = parse._plain_words(raw_words)
    assert plain is not None
    assert _body(parse._transcript_record({}, SESSION, ALICE, RECEIVED, True, *plain, None, None)) == checked
