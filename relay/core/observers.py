"""Observers: components that act on the Recall event stream besides publishing it.

The ASAPP bridge is one: it takes a meeting's audio events and streams them to ASAPP. The Recall
ingress calls every observer for every event it has accepted, in order, on the socket's task, so an
observer must be quick and must not raise: it queues work for its own tasks and returns.
"""

from __future__ import annotations

from typing import Protocol

from relay.schema import EventBase, SessionRef


class RecallObserver(Protocol):
    def on_event(self, event: EventBase) -> None:
        """One event of a Recall connection, after the publisher accepted it."""

    def on_disconnect(self, session: SessionRef) -> None:
        """The bot's connection for ``session`` closed (it may come back: Recall retries)."""
