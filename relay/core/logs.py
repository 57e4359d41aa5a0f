"""Logging set-up: one format for the relay and uvicorn, with secrets kept out of every line.

Recall's token travels in the query string, and uvicorn logs request paths with their query
(``"WebSocket /recall?token=..." [accepted]``, the HTTP access log). :class:`RedactingFilter`
sits on the handler, so it sees every record whatever logger emitted it, and replaces any query
string with ``?<redacted>`` and any configured secret with ``<redacted>``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Final

_QUERY: Final = re.compile(r"\?[^\s\"']+")


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with query strings and known secrets removed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is removed whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        text = _QUERY.sub("?<redacted>", text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "<redacted>")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        if redacted is not message:
            record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure_logging(level: str = "info", secrets: Iterable[str] = (), stream=None) -> logging.Handler:  # type: ignore[no-untyped-def]
    """Send the relay's and uvicorn's logs through one redacting handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level.upper())
    # websockets logs every connection open/close at INFO: thousands of bots make that noise; the
    # relay logs its own lines for them.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))
    return handler
