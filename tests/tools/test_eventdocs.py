"""docs/events.md is what relay.tools.eventdocs renders, and it covers every event type of the schema."""

from __future__ import annotations

from pathlib import Path

from relay.tools import eventdocs
from relay.schema import TYPE_TO_CLASS, parse_event

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_docs_events_md_is_up_to_date() -> None:
    assert DOC.read_text() == eventdocs.render(), "docs/events.md is stale: run `python -m relay.tools.eventdocs > docs/events.md`"


def test_every_schema_type_is_documented() -> None:
    assert set(TYPE_TO_CLASS) | {"generic"} == eventdocs.documented_types()
    assert set(eventdocs.examples()) == set(eventdocs.MEANINGS)
    rendered = eventdocs.render()
    for type_ in eventdocs.documented_types():
        assert f"`{type_}`" in rendered


def test_examples_are_valid_events_of_their_type() -> None:
    for key, example in eventdocs.examples().items():
        event = example.build()
        assert parse_event(event.model_dump_json()) == event
        if key == "participant.*":
            assert event.type.startswith("participant.")
        elif key == "generic":
            assert event.type == "generic" and event.payload.provider_type == "participant_events.reaction"
        else:
            assert event.type == key
        # Recall events come from the parser; the relay's own lifecycle events (session.*) are not parsed from anything.
        assert (example.produced_by == "RecallParser") == (event.source == "recall" and not event.type.startswith("session."))
