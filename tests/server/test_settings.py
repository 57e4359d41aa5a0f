"""Settings: file, environment (wins), secret files, and errors that name the setting, not the secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relay.errors import ConfigError
from relay.channels import DEFAULT_REDIS_URL
from relay.server.settings import load_settings

TOKEN_A = "token-aaaaaaaaaaaaaaaa"
TOKEN_B = "token-bbbbbbbbbbbbbbbb"
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "relay.example.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)


def test_defaults_give_a_local_relay() -> None:
    settings = load_settings()
    assert settings.redis.url == DEFAULT_REDIS_URL
    assert settings.server.port == 8080
    assert settings.recall.tokens == []


def test_the_example_file_is_valid_and_matches_the_defaults() -> None:
    assert load_settings(EXAMPLE).model_dump() == load_settings().model_dump()


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('[redis]\nurl = "redis://file:1/0"\nbatch_max_events = 7\n[recall]\ntokens = ["%s"]\n' % TOKEN_A)
    monkeypatch.setenv("RELAY_REDIS_URL", "redis://env:2/0")
    monkeypatch.setenv("RELAY_RECALL_TOKENS", f"{TOKEN_A}, {TOKEN_B}")
    settings = load_settings(config)
    assert settings.redis.url == "redis://env:2/0"
    assert settings.redis.batch_max_events == 7
    assert [t.get_secret_value() for t in settings.recall.tokens] == [TOKEN_A, TOKEN_B]


def test_tokens_from_a_file_add_to_the_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "tokens"
    secrets.write_text(f"# rotated 2026-11\n{TOKEN_B}\n\n")
    monkeypatch.setenv("RELAY_RECALL_TOKENS", TOKEN_A)
    monkeypatch.setenv("RELAY_RECALL_TOKENS_FILE", str(secrets))
    settings = load_settings()
    assert [t.get_secret_value() for t in settings.recall.tokens] == [TOKEN_A, TOKEN_B]


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("RELAY_SERVER_PORT", "http", "RELAY_SERVER_PORT"),
        ("RELAY_REDIS_URL", "http://nope", "RELAY_REDIS_URL"),
        ("RELAY_RECALL_TOKENS", "short-secret", "tokens must be at least 16"),
        ("RELAY_RECALL_TOKENS_FILE", "/nonexistent/tokens", "cannot read /nonexistent/tokens"),
    ],
)
def test_a_bad_setting_names_itself_and_not_its_value(monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert named in str(info.value)
    if "TOKENS" in name and "FILE" not in name:
        assert value not in str(info.value)


def test_serve_exits_non_zero_on_a_bad_setting_without_printing_secrets() -> None:
    secret = "leaky-but-too-short"[:12]
    result = subprocess.run(
        [sys.executable, "-m", "relay.tools.cli", "serve"],
        env={"RELAY_RECALL_TOKENS": f"{TOKEN_A},{secret}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "tokens must be at least 16 characters" in result.stderr
    assert secret not in result.stderr + result.stdout
    assert TOKEN_A not in result.stderr + result.stdout
