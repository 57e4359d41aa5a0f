"""relay.schema's hot-path pieces: event ids and EventRecord (what the relay publishes per event)."""

from __future__ import annotations

import os
import random
import uuid
from datetime import datetime, timezone

import pytest

import orjson
from hypothesis import given
from hypothesis import strategies as st

import relay.schema as schema
from relay.schema import (
    AudioChunkEvent,
    GenericEvent,
    Participant,
    SessionRef,
    Source,
    EventRecord,
    new_event_id,
)

RECEIVED = datetime(2025, 1, 1, tzinfo=timezone.utc)


@given(st.integers(0, 2**63), st.integers(0, 2**32))
def test_event_id_is_a_uuid7_of_its_time(now_ns: int, seed: int) -> None:
    schema._ID_RANDOM.seed(seed)
    text = new_event_id(now_ns)
    value = uuid.UUID(text)
    assert str(value) == text  # lowercase, 8-4-4-4-12
    assert value.version == 7 and value.variant == uuid.RFC_4122
    ms, rem = divmod(now_ns, 1_000_000)
    assert value.int >> 80 == ms & (2**48 - 1)
    assert value.int >> 64 & 0xFFF == rem * 4096 // 1_000_000
    schema._ID_RANDOM.seed(seed)
    assert value.int & (2**62 - 1) == schema._ID_RANDOM.getrandbits(62)
    schema._ID_RANDOM.seed()  # back to os.urandom, as the module left it


def test_event_ids_sort_by_time_and_differ() -> None:
    ids = [new_event_id(1_700_000_000_000_000_000 + i * 250) for i in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert new_event_id() != new_event_id()


def test_seeding_the_random_module_does_not_repeat_event_ids() -> None:
    """Ids draw from their own generator: a ``random.seed()`` elsewhere (a library, a test) must not
    replay them. Same time, same global seed: with the shared generator these two ids were equal."""
    now_ns = 1_700_000_000_000_000_000
    ids = set()
    for _ in range(100):
        random.seed(42)
        ids.add(new_event_id(now_ns))
    assert len(ids) == 100
    random.seed()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_draws_other_event_ids_than_its_parent() -> None:
    """A forked child copies the generator's state; without the reseed at fork, its first id (at the
    same time) would be the parent's next one."""
    now_ns = 1_700_000_000_000_000_000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write one id and leave, whatever happens (never back into pytest)
        try:
            os.close(read)
            os.write(write, new_event_id(now_ns).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        parent_next = new_event_id(now_ns)
        with os.fdopen(read, "rb") as pipe:
            child_first = pipe.read().decode()
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert uuid.UUID(child_first).version == 7
    assert child_first != parent_next


SESSION = SessionRef(id="rec", bot_id="bot")
ALICE = Participant(id="1", name="Alice")


def _audio_record() -> EventRecord:
    body = {
        "schema_version": 1, "id": new_event_id(), "source": Source.RECALL, "type": "audio.chunk",
        "session": SESSION.model_dump(mode="json"), "participant": ALICE.model_dump(mode="json"),
        "time": {"relative": 1.5, "absolute": None, "received": RECEIVED},
        "payload": {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1, "mix": "separate",
                    "audio": "AAAA", "bytes": 3, "duration_ms": 3 / 32},
    }  # fmt: skip
    return EventRecord(AudioChunkEvent, SESSION, ALICE, body)


def test_record_publishes_its_body_and_validates_into_its_model() -> None:
    record = _audio_record()
    assert record.to_json() == orjson.dumps(record.body, option=orjson.OPT_UTC_Z)
    event = record.model()
    assert isinstance(event, AudioChunkEvent)
    assert event.session is SESSION and event.participant is ALICE
    assert orjson.loads(record.to_json()) == orjson.loads(event.to_json())
    assert record.model() is event  # built once


def test_record_answers_what_the_publisher_asks() -> None:
    record = _audio_record()
    assert record.source is Source.RECALL and record.type == "audio.chunk"
    assert record.session is SESSION and record.is_media and record.metric_type == "audio.chunk"
    assert record.fields["session"] is SESSION and record.fields["payload"] is record.body["payload"]
    generic = EventRecord(GenericEvent, SESSION, None, {
        "schema_version": 1, "id": new_event_id(), "source": Source.RECALL, "type": "generic",
        "session": SESSION.model_dump(mode="json"), "participant": None,
        "time": {"relative": None, "absolute": None, "received": RECEIVED},
        "payload": {"data": None, "provider_type": "bot.new"},
    })  # fmt: skip
    assert generic.metric_type == "generic" and not generic.is_media
    assert generic.model().payload.provider_type == "bot.new"
