"""Utterance ids of Recall transcripts: partials and their final share one (RecallParser's docstring).

Recall names no utterance; the parser pairs a participant's ``transcript.partial_data`` frames with
the ``transcript.data`` that ends them. Every scenario runs as text frames (the fast path, once the
first frame has taught it the envelope) and as binary frames holding JSON (the checked path only),
so both paths are held to the same rule; ``test_parse_fast_path.py`` holds them to the same bytes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

import relay.providers.recall.parse as parse
from relay.errors import FrameRejected
from relay.providers.recall.parse import RecallParser
from relay.schema import TranscriptEvent

RECEIVED = datetime(2025, 3, 4, 10, 0, 5, tzinfo=timezone.utc)
ENVELOPE: dict[str, Any] = {
    "realtime_endpoint": {"id": "re-1", "metadata": {}},
    "recording": {"id": "rec-1", "metadata": {}},
    "bot": {"id": "bot-1", "metadata": {}},
    "transcript": {"id": "tr-1", "metadata": {}},
}
ALICE = {"id": 100, "name": "Alice", "is_host": True, "platform": "desktop", "extra_data": {}}
BOB = {"id": 200, "name": "Bob", "is_host": False, "platform": "desktop", "extra_data": {}}


def words(*texts: str, start: float = 1.0) -> list[dict[str, Any]]:
    return [
        {"text": t, "start_timestamp": {"relative": start + i}, "end_timestamp": {"relative": start + i + 0.5}}
        for i, t in enumerate(texts)
    ]


def transcript(final: bool, who: dict[str, Any] | None, *texts: str, recording: str = "rec-1") -> dict[str, Any]:
    envelope = {**ENVELOPE, "recording": {"id": recording, "metadata": {}}}
    event = "transcript.data" if final else "transcript.partial_data"
    return {"event": event, "data": {**envelope, "data": {"words": words(*texts), "participant": who}}}


def partial(who: dict[str, Any] | None, *texts: str, **kw: Any) -> dict[str, Any]:
    return transcript(False, who, *texts, **kw)


def final(who: dict[str, Any] | None, *texts: str, **kw: Any) -> dict[str, Any]:
    return transcript(True, who, *texts, **kw)


class Connection:
    """One Recall connection: a parser fed frames as text (fast path) or as binary JSON (checked path)."""

    def __init__(self, binary: bool) -> None:
        self.parser = RecallParser()
        self.binary = binary

    def send(self, obj: dict[str, Any]) -> TranscriptEvent:
        text = orjson.dumps(obj).decode()
        [event] = self.parser.feed(text.encode() if self.binary else text, received_at=RECEIVED)
        assert isinstance(event, TranscriptEvent)
        return event

    def ids(self, *objs: dict[str, Any]) -> list[str | None]:
        return [self.send(obj).payload.utterance_id for obj in objs]


@pytest.fixture(params=[False, True], ids=["text", "binary"])
def conn(request: pytest.FixtureRequest) -> Connection:
    return Connection(request.param)


def test_partials_then_their_final_share_one_id(conn: Connection) -> None:
    first = conn.send(partial(ALICE, "hello"))
    ids = conn.ids(partial(ALICE, "hello", "there"), partial(ALICE, "hello", "there", "all"), final(ALICE, "Hello", "there,", "all."))
    # The id is the id of the event that opened the utterance: a UUID, made by the relay.
    assert first.payload.utterance_id == first.id
    assert uuid.UUID(first.id).version == 7
    assert ids == [first.id] * 3


def test_the_next_utterance_gets_a_new_id(conn: Connection) -> None:
    one = conn.ids(partial(ALICE, "one"), final(ALICE, "one."))
    two = conn.ids(partial(ALICE, "two"), partial(ALICE, "two", "more"), final(ALICE, "two", "more."))
    assert one[0] == one[1] and two[0] == two[1] == two[2]
    assert one[0] != two[0]


def test_two_participants_interleaved_keep_their_own_utterances(conn: Connection) -> None:
    a1, b1, a2, b_final, a_final = conn.ids(
        partial(ALICE, "so"), partial(BOB, "well"), partial(ALICE, "so", "then"), final(BOB, "Well."), final(ALICE, "So", "then."),
    )  # fmt: skip
    assert a1 == a2 == a_final
    assert b1 == b_final
    assert a1 != b1


def test_a_transcript_without_a_participant_is_paired_too(conn: Connection) -> None:
    none1, alice, none2 = conn.ids(partial(None, "who"), partial(ALICE, "me"), final(None, "Who?"))
    assert none1 == none2 != alice


def test_a_final_alone_gets_a_fresh_id(conn: Connection) -> None:
    lone = conn.send(final(ALICE, "Yes."))
    again = conn.send(final(ALICE, "Yes."))
    assert lone.payload.utterance_id == lone.id
    assert again.payload.utterance_id == again.id != lone.id


def test_partials_of_a_next_utterance_before_the_previous_final_join_it(conn: Connection) -> None:
    """What the docstring decides: nothing in a frame tells an early partial of the next utterance
    from one of the open utterance, so it joins the open one (and is replaced by its final); the
    next partial after that final opens the new utterance, repeating the words so far."""
    first, early, first_final, later, second_final = conn.ids(
        partial(ALICE, "one"), partial(ALICE, "two"), final(ALICE, "one."), partial(ALICE, "two", "three"),
        final(ALICE, "two", "three."),
    )  # fmt: skip
    assert first == early == first_final
    assert later == second_final != first


def test_the_same_participant_in_another_session_is_another_utterance(conn: Connection) -> None:
    here, there, here_final = conn.ids(partial(ALICE, "a"), partial(ALICE, "b", recording="rec-2"), final(ALICE, "a."))
    assert here == here_final != there


def test_a_reconnect_cannot_pair_a_final_with_the_partials_of_the_previous_connection(conn: Connection) -> None:
    """A new connection is a new parser: the final gets a fresh id, the earlier partials keep theirs."""
    [before] = conn.ids(partial(ALICE, "cut"))
    after = Connection(conn.binary)
    [final_id] = after.ids(final(ALICE, "cut", "off."))
    assert final_id is not None and final_id != before


def test_ids_differ_between_connections_fed_the_same_frames() -> None:
    frames = [partial(ALICE, "hi"), final(ALICE, "hi.")]
    one, two = Connection(False).ids(*frames), Connection(False).ids(*frames)
    assert one[0] == one[1] and two[0] == two[1] and one[0] != two[0]


def test_a_rejected_frame_opens_and_closes_nothing(conn: Connection) -> None:
    bad_final = final(ALICE, "no")
    bad_final["data"]["data"]["words"][0]["start_timestamp"]["absolute"] = "not a time"
    bad_partial = partial(BOB, "no")
    bad_partial["data"]["data"]["language"] = 7
    opened = conn.send(partial(ALICE, "yes")).payload.utterance_id
    for bad in (bad_final, bad_partial):
        with pytest.raises(FrameRejected):
            conn.send(bad)
    assert conn.ids(final(ALICE, "yes.")) == [opened]
    bob = conn.send(partial(BOB, "fresh"))
    assert bob.payload.utterance_id == bob.id


def test_open_utterances_are_bounded_and_the_oldest_is_forgotten(conn: Connection) -> None:
    """Participants who leave mid-utterance must not pile up: past the cap the oldest opened goes."""
    cap = parse._MAX_OPEN_UTTERANCES
    people = [{**ALICE, "id": n} for n in range(cap + 1)]
    opened = [conn.send(partial(p, "hm")).payload.utterance_id for p in people]
    assert len(conn.parser._utterances) == cap
    oldest, newest = conn.send(final(people[0], "hm.")), conn.send(final(people[-1], "hm."))
    assert oldest.payload.utterance_id == oldest.id != opened[0]
    assert newest.payload.utterance_id == opened[-1]
    assert len(conn.parser._utterances) == cap - 1
