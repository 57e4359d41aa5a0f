"""The schema's forward compatibility: consumers ignore fields a newer relay adds."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from relay.schema import EventTime, SessionRef, Transcript, TranscriptEvent, parse_event, utc_now


def _event() -> TranscriptEvent:
    return TranscriptEvent(
        source="recall", type="transcript.final", session=SessionRef(id="s-1"), time=EventTime(received=utc_now()),
        payload=Transcript(text="hello", is_final=True),
    )


def test_unknown_fields_anywhere_are_ignored() -> None:
    event = _event()
    body = orjson.loads(event.to_json())
    body["added_later"] = {"x": 1}
    body["payload"]["also_new"] = [1, 2]
    body["session"]["shard"] = 3
    assert parse_event(orjson.dumps(body)) == event


def test_an_unknown_field_does_not_hide_a_real_error() -> None:
    body = orjson.loads(_event().to_json())
    body["added_later"] = 1
    del body["payload"]["is_final"]
    with pytest.raises(ValidationError):
        parse_event(orjson.dumps(body))


def test_the_models_still_refuse_unknown_fields() -> None:
    # Producers validate strictly, so a parser's typo fails its tests rather than shipping.
    with pytest.raises(ValidationError):
        Transcript(text="x", is_final=True, typo=1)  # type: ignore[call-arg]


def test_log_id_is_not_in_the_published_body_but_parses_when_redis_adds_it() -> None:
    event = _event()
    published = event.to_json()
    assert b"log_id" not in published
    spliced = published[:-1] + b',"log_id":"1733130000000-0"}'  # what relay/core/event_log.py's script sends live
    assert parse_event(spliced) == event.model_copy(update={"log_id": "1733130000000-0"})
