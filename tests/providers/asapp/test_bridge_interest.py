"""The ASAPP bridge asks the Recall ingress for audio chunks and leaves of bridged meetings only."""

from __future__ import annotations

import pytest

from relay.core.metrics import RelayMetrics
from relay.core.observers import ObserverRoutes
from relay.providers.asapp.bridge import AsappBridge
from relay.providers.asapp.config import AsappSettings
from relay.schema import SessionRef

BRIDGED = SessionRef(id="rec-1", metadata={"asapp": "yes"})
NOT_BRIDGED = SessionRef(id="rec-2", metadata={"team": "sales"})


def bridge(**settings: object) -> AsappBridge:
    config = AsappSettings(enabled=True, api_id="id", api_secret="secret", **settings)  # type: ignore[arg-type]
    return AsappBridge(config, publisher=None, metrics=RelayMetrics())  # type: ignore[arg-type]


def test_the_bridge_wants_audio_and_leaves_only() -> None:
    assert bridge().interest.types == {"audio.chunk", "participant.leave"}


@pytest.mark.parametrize(
    ("rule", "session", "routed"),
    [("metadata", BRIDGED, True), ("metadata", NOT_BRIDGED, False), ("all", NOT_BRIDGED, True)],
)
def test_the_bridging_rule_decides_which_sessions_reach_it(rule: str, session: SessionRef, routed: bool) -> None:
    asapp = bridge(bridge=rule)
    routes = ObserverRoutes([asapp]).for_session(session)
    assert routes == ({"audio.chunk": (asapp,), "participant.leave": (asapp,)} if routed else {})
