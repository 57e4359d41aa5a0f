"""Log redaction: no query string and no configured secret reaches a log line."""

from __future__ import annotations

import io
import logging

from relay.core.logs import RedactingFilter, configure_logging


def test_query_strings_and_secrets_are_redacted() -> None:
    f = RedactingFilter(["s3cret-token-value", "s3cret"])
    assert f.redact('127.0.0.1:5 - "WebSocket /recall/?token=abc&x=1" [accepted]') == (
        '127.0.0.1:5 - "WebSocket /recall/?<redacted>" [accepted]'
    )
    assert f.redact("key s3cret-token-value and s3cret") == "key <redacted> and <redacted>"


def test_every_logger_goes_through_the_filter() -> None:
    stream = io.StringIO()
    handler = configure_logging("info", ["very-secret-token-1"], stream=stream)
    try:
        logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "1.2.3.4:5", "/recall?token=very-secret-token-1")
        logging.getLogger("uvicorn.access").info('"GET %s HTTP/1.1" 200', "/metrics?token=abc")
        try:
            raise RuntimeError("failed with very-secret-token-1")
        except RuntimeError:
            logging.getLogger("relay").exception("boom")
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert "very-secret-token-1" not in out
    assert "token=abc" not in out
    assert out.count("<redacted>") == 4
