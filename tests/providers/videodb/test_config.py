"""The [videodb] settings: collections as ids or tables, secrets from files, env forms, checks."""

from __future__ import annotations

import pytest

from relay.errors import ConfigError
from relay.server.settings import load_settings


def test_collections_from_env_share_the_section_key(monkeypatch) -> None:
    monkeypatch.setenv("RELAY_VIDEODB_ENABLED", "true")
    monkeypatch.setenv("RELAY_VIDEODB_API_KEY", "sk-section")
    monkeypatch.setenv("RELAY_VIDEODB_COLLECTIONS", "default, team-b")
    monkeypatch.setenv("RELAY_VIDEODB_ALERTS", '[{"label": "pii", "prompt": "A password is visible"}]')
    v = load_settings().videodb
    assert [(c.id, c.api_key.get_secret_value(), c.base_url) for c in v.resolved()] == [
        ("default", "sk-section", "https://api.videodb.io"),
        ("team-b", "sk-section", "https://api.videodb.io"),
    ]
    assert v.alerts[0].label == "pii"
    assert "sk-section" not in repr(v)


def test_tables_override_key_and_url_and_read_files(tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("# the team's key\nsk-from-file\n")
    secret_file = tmp_path / "hook"
    secret_file.write_text("hook-secret\n")
    config = tmp_path / "relay.toml"
    config.write_text(f"""
[videodb]
enabled = true
api_key = "sk-section"
webhook_secret_file = "{secret_file}"
collections = ["default", {{ id = "team-b", api_key_file = "{key_file}", base_url = "http://127.0.0.1:9/" }}]
[[videodb.alerts]]
label = "pii"
prompt = "A password is visible"
""")
    v = load_settings(config).videodb
    default, team_b = v.resolved()
    assert default.api_key.get_secret_value() == "sk-section"
    assert team_b.api_key.get_secret_value() == "sk-from-file" and team_b.base_url == "http://127.0.0.1:9"
    assert v.webhook_secret.get_secret_value() == "hook-secret"


@pytest.mark.parametrize(
    "values,message",
    [
        ({"enabled": True, "collections": []}, "at least one collection"),
        ({"enabled": True}, "has no api_key"),
        ({"enabled": True, "collections": ["a"]}, "has no api_key"),
        ({"collections": ["a", "a"]}, "unique"),
        ({"collections": ["bad id"]}, "pattern"),
        ({"backoff_initial_s": 5, "backoff_max_s": 1}, "backoff_max_s"),
        ({"alerts": "not json"}, "JSON list"),
        ({"api_key_file": "/nonexistent/key"}, "cannot read"),
    ],
)
def test_invalid_settings_are_named(values, message) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(None, videodb=values)
    assert "RELAY_VIDEODB" in str(err.value)
