"""ObserverRoutes: which observers want which events, decided from types and sessions alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.core.observers import Interest, ObserverRoutes
from relay.schema import EventBase, SessionRef

SALES = SessionRef(id="rec-1", metadata={"team": "sales"})
SUPPORT = SessionRef(id="rec-2", metadata={"team": "support"})


@dataclass(eq=False)
class Watcher:
    name: str
    interest: Interest
    asked: list[str] = field(default_factory=list)

    def on_event(self, event: EventBase) -> None: ...

    def on_disconnect(self, session: SessionRef) -> None: ...


def team(name: str, asked: list[str]):  # type: ignore[no-untyped-def]
    def wants(session: SessionRef) -> bool:
        asked.append(session.id)
        return session.metadata.get("team") == name

    return wants


def test_without_observers_no_type_is_wanted() -> None:
    routes = ObserverRoutes([])
    assert not routes.types
    assert routes.for_session(SALES) == {}


def test_types_are_the_union_and_each_type_goes_to_the_observers_that_want_it() -> None:
    audio = Watcher("audio", Interest(frozenset({"audio.chunk", "participant.leave"})))
    words = Watcher("words", Interest(frozenset({"transcript.data"})))
    routes = ObserverRoutes([audio, words])
    assert routes.types == {"audio.chunk", "participant.leave", "transcript.data"}
    assert routes.for_session(SALES) == {
        "audio.chunk": (audio,), "participant.leave": (audio,), "transcript.data": (words,),
    }  # fmt: skip


def test_sessions_select_observers_and_are_asked_once_per_call() -> None:
    asked: list[str] = []
    sales = Watcher("sales", Interest(frozenset({"audio.chunk"}), team("sales", asked)))
    everyone = Watcher("all", Interest(frozenset({"audio.chunk", "transcript.data"})))
    routes = ObserverRoutes([sales, everyone])
    assert routes.for_session(SALES) == {"audio.chunk": (sales, everyone), "transcript.data": (everyone,)}
    assert routes.for_session(SUPPORT) == {"audio.chunk": (everyone,), "transcript.data": (everyone,)}
    assert asked == ["rec-1", "rec-2"]


def test_a_session_nobody_wants_routes_nothing() -> None:
    sales = Watcher("sales", Interest(frozenset({"audio.chunk"}), team("sales", [])))
    assert ObserverRoutes([sales]).for_session(SUPPORT) == {}
