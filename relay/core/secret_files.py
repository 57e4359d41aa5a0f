"""Secrets read from files (``*_file`` settings): one place for every provider's settings.

Kubernetes and Docker mount secrets as files; reading them here keeps their values out of the
environment and out of error messages, which name the file, never its content.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import SecretStr


def _lines(path: Path) -> Iterator[str]:
    """The file's non-blank lines that are not ``#`` comments, stripped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def read_secret_lines(path: Path) -> list[str]:
    """Several secrets (tokens): one per line, or comma-separated."""
    return [part.strip() for line in _lines(path) for part in line.split(",") if part.strip()]


def read_secret(path: Path) -> SecretStr:
    """The one secret a file holds (an API key): its first line, whole."""
    for line in _lines(path):
        return SecretStr(line)
    raise ValueError(f"{path} holds no secret")
