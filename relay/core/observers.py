"""Observers: components that act on the Recall event stream besides publishing it.

The ASAPP bridge is one: it takes a bridged meeting's audio and leave events and streams the audio
to ASAPP. The Recall ingress hands an observer the events it accepted, in order, from the
connection's ``data_received`` (there is no task per socket), so an observer must be quick and
must not raise: it queues work for its own tasks and returns.

An event reaches an observer as a validated pydantic model, which costs more to build than the
relay spends on everything else for that event. So each observer declares its :class:`Interest`
up front, event types and sessions, and :class:`ObserverRoutes` decides from the parser's record
(no model built) whether anyone wants an event; a meeting nobody bridges costs a set lookup per
event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from relay.schema import EventBase, SessionRef

__all__ = ["Interest", "ObserverRoutes", "RecallObserver"]


@dataclass(frozen=True, slots=True)
class Interest:
    """What an observer wants to see, decided before any event model is built for it.

    ``types``: the event types it wants, exactly (``"audio.chunk"``, ``"participant.leave"``).
    ``sessions``: whether it wants a session's events, or None for every session. It is asked once
    per session of a connection, so it must depend on the session alone (its id and metadata).
    """

    types: frozenset[str]
    sessions: Callable[[SessionRef], bool] | None = None


class RecallObserver(Protocol):
    #: A short fixed name (``"asapp"``): the ``bridge`` label of ``relay_bridge_errors_total``.
    name: str

    @property
    def interest(self) -> Interest:
        """What this observer wants; read once, when the ingress is built."""

    def on_event(self, event: EventBase) -> None:
        """One wanted event of a Recall connection, after the publisher accepted it."""

    def on_disconnect(self, session: SessionRef) -> None:
        """The bot's connection for ``session`` closed (it may come back: Recall retries)."""


class ObserverRoutes:
    """Which observers want which events: pure, shared by every connection of an ingress.

    :attr:`types` is every type some observer wants (empty without observers: one falsy check on
    the hot path). :meth:`for_session` gives, per event type, the observers that want that
    session's events of that type; a connection keeps the answer for its current session.
    """

    __slots__ = ("observers", "types", "_interests")

    def __init__(self, observers: Sequence[RecallObserver]) -> None:
        self.observers = tuple(observers)
        self._interests = tuple((observer, observer.interest) for observer in self.observers)
        self.types: frozenset[str] = frozenset().union(*(interest.types for _, interest in self._interests))

    def for_session(self, session: SessionRef) -> dict[str, tuple[RecallObserver, ...]]:
        """Event type → the observers that want it for ``session`` (types nobody wants are absent)."""
        wanted = [(obs, interest) for obs, interest in self._interests if interest.sessions is None or interest.sessions(session)]
        routes: dict[str, tuple[RecallObserver, ...]] = {}
        for type_ in self.types:
            takers = tuple(obs for obs, interest in wanted if type_ in interest.types)
            if takers:
                routes[type_] = takers
        return routes
