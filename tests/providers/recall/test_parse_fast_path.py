"""The msgspec fast path of RecallParser against its checked path: same bytes, same errors.

For the fast kinds (transcripts, audio, video), a frame goes through one parser as it always does
(fast path when it fits) and through another that is forced onto the checked path (orjson and the
hand checks); both must publish the same bytes or raise the same FrameRejected reason and detail. The
frames are valid ones (``test_parse_equivalence.valid_frames`` of the fast kinds) and those with a
few fields replaced (wrong types, nulls, numbers out of range), removed, or added. The same frame is
fed twice so the second goes the fast way once the first has taught it the envelope.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relay.providers.recall.parse as parse
from relay.errors import FrameRejected
from relay.providers.recall.parse import RecallParser

from .test_parse_equivalence import RECEIVED, envelopes, inner_data, json_values
from .test_parse_properties import _paths

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST_EVENTS = sorted(parse._FAST_EVENTS)
ODD_VALUES = st.sampled_from(["", "=", "AA==", "2025-01-01T00:00:00Z", "not a time", -1, -0, 1e300, True, None, [], {}])


class CheckedParser(RecallParser):
    """A parser that never takes the fast path."""

    __slots__ = ()

    def _text(self, frame: str, received: Any) -> Any:
        return self._json(parse._loads(frame), received)


def outcome(parser: RecallParser, frame: str) -> Any:
    try:
        return [r.to_json() for r in parser.feed_records(frame, RECEIVED)]
    except FrameRejected as exc:
        return ("error", exc.reason, exc.detail)


@st.composite
def fast_frames(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from(FAST_EVENTS))
    return {"event": event, "data": {**draw(envelopes()), "transcript": {"id": "t", "metadata": {}}, "data": draw(inner_data(event))}}


@st.composite
def mutated(draw: st.DrawFn) -> str:
    frame = draw(fast_frames())
    paths = _paths(frame)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths))
        target: Any = frame
        try:
            for key in path[:-1]:
                target = target[key]
            if isinstance(target, dict) != isinstance(path[-1], str):
                continue  # an earlier mutation changed this container's kind (a list became a dict)
            action = draw(st.sampled_from(["replace", "remove", "add"]))
            if action == "remove" and isinstance(target, dict):
                target.pop(path[-1], None)
            elif action == "add" and isinstance(target, dict):
                target[draw(st.sampled_from(["extra", "confidence", "x"]))] = draw(json_values | ODD_VALUES)
            else:
                target[path[-1]] = draw(json_values | ODD_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    text = orjson.dumps(frame).decode()
    if draw(st.booleans()):  # a number orjson refuses and msgspec skips unless told otherwise
        text = text.replace('"metadata":{}', '"metadata":{"n":1e400}', 1)
    return text


class StepIds:
    """Event ids that are the same for both parsers at each step and differ between steps, so an
    utterance id (the id of the event that opened the utterance) shows which step opened it: the
    two paths must open and close the same utterances, not only publish the same shape."""

    def __init__(self) -> None:
        self.step = self.n = 0

    def at(self, step: int) -> None:
        self.step, self.n = step, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.step:08x}-0000-7000-8000-{self.n:012x}"


@SETTINGS
@given(st.lists(mutated(), min_size=1, max_size=4))
def test_fast_path_agrees_with_checked_path(frames: list[str]) -> None:
    original = parse.new_event_id
    ids = StepIds()
    parse.new_event_id = ids  # type: ignore[assignment]
    try:
        fast, checked = RecallParser(), CheckedParser()
        for step, frame in enumerate(f for f in frames for _ in range(2)):
            ids.at(step)
            fast_out = outcome(fast, frame)
            ids.at(step)
            assert fast_out == outcome(checked, frame), frame
    finally:
        parse.new_event_id = original  # type: ignore[assignment]


def test_the_benchmark_frames_take_the_fast_path(monkeypatch: Any) -> None:
    """Guards the point of the fast path: the flood's frames must not all fall back."""
    from bench.parse_micro import sample_frames

    taken: list[bool] = []
    real = RecallParser._fast

    def spy(self: RecallParser, msg: Any, received: Any) -> Any:
        out = real(self, msg, received)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(RecallParser, "_fast", spy)
    samples = sample_frames()
    for name in ("transcript", "audio"):
        parser = RecallParser()
        parser.feed_records(samples[name], RECEIVED)
        parser.feed_records(samples[name], RECEIVED)
    assert taken == [False, True, False, True]
