"""The ``[asapp]`` section: secrets from env or files, lists from env, the bridging and role rules."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from relay.providers.asapp.config import AsappSettings
from relay.errors import ConfigError
from relay.server.settings import load_settings


def test_env_and_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("# asapp\ns3cr3t-value\n")
    monkeypatch.setenv("RELAY_ASAPP_ENABLED", "true")
    monkeypatch.setenv("RELAY_ASAPP_API_ID", "my-id")
    monkeypatch.setenv("RELAY_ASAPP_API_SECRET_FILE", str(secret))
    monkeypatch.setenv("RELAY_ASAPP_AGENT_NAMES", "Alice Agent, Bob")
    monkeypatch.setenv("RELAY_ASAPP_BASE_URL", "http://127.0.0.1:9/")
    settings = load_settings().asapp
    assert settings.api_secret is not None and settings.api_secret.get_secret_value() == "s3cr3t-value"
    assert settings.api_id is not None and settings.api_id.get_secret_value() == "my-id"
    assert settings.agent_names == ["Alice Agent", "Bob"]
    assert settings.base_url == "http://127.0.0.1:9"
    assert "s3cr3t" not in repr(settings)


def test_enabled_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_ASAPP_ENABLED", "true")
    with pytest.raises(ConfigError, match="api_id"):
        load_settings()


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="idle"):
        AsappSettings(idle_finish_s=61)
    with pytest.raises(ValueError, match="3 h"):
        AsappSettings(rollover_after_s=3 * 3600)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [({}, False), ({"asapp": "true"}, True), ({"asapp": "False"}, False), ({"asapp": "0"}, False),
     ({"asapp": ""}, False), ({"asapp": True}, True), ({"asapp": "yes"}, True), ({"other": "1"}, False)],
)  # fmt: skip
def test_bridges_by_metadata(metadata: dict[str, object], expected: bool) -> None:
    assert AsappSettings().bridges(metadata) is expected
    assert AsappSettings(bridge="all").bridges(metadata) is True


def test_roles() -> None:
    s = AsappSettings(agent_names=["Alice"], agent_emails=["agent@example.com"])
    assert s.role_of(name="x", email=None, is_host=True) == "agent"
    assert s.role_of(name="alice", email=None, is_host=False) == "agent"
    assert s.role_of(name=None, email="AGENT@example.com", is_host=None) == "agent"
    assert s.role_of(name="Carol", email=None, is_host=False) == "customer"
    assert AsappSettings(agent_is_host=False).role_of(name="x", email=None, is_host=True) == "customer"


def test_external_id_is_stable_per_person() -> None:
    s = AsappSettings(external_ids={" Ada@Example.com ": " crm-4711 "})
    grace = "email-" + hashlib.sha256(b"grace@example.com").hexdigest()[:32]
    # The mapping first (any case), then the e-mail, whatever the meeting or Recall's per-meeting id.
    assert s.external_id_of(session_id="rec_1", participant_id="1", name="Ada", email="ADA@example.com") == "crm-4711"
    assert s.external_id_of(session_id="rec_1", participant_id="1", name="G", email="grace@example.com") == grace
    assert s.external_id_of(session_id="rec_2", participant_id="9", name="Grace H.", email=" Grace@Example.COM") == grace
    # Last resort: Recall's id (else the name), scoped by the meeting so two meetings never collide.
    assert s.external_id_of(session_id="rec_1", participant_id="100", name="Bob", email=None) == "recall-rec_1-100"
    assert s.external_id_of(session_id="rec_2", participant_id="100", name="Bob", email="") == "recall-rec_2-100"
    assert s.external_id_of(session_id="rec_2", participant_id=None, name="Bob", email=None) == "recall-rec_2-Bob"
    with pytest.raises(ValueError, match="empty"):
        AsappSettings(external_ids={"ada@example.com": " "})


def test_byte_order_and_external_ids_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AsappSettings().byte_order == "little"
    monkeypatch.setenv("RELAY_ASAPP_BYTE_ORDER", "big")
    monkeypatch.setenv("RELAY_ASAPP_EXTERNAL_IDS", '{"Ada@example.com": "crm-4711"}')
    settings = load_settings().asapp
    assert settings.byte_order == "big" and settings.external_ids == {"ada@example.com": "crm-4711"}
    with pytest.raises(ValueError):
        AsappSettings(byte_order="middle")  # type: ignore[arg-type]
