"""No secret leaks: one relay with every provider enabled, every path walked, errors included.

The relay runs against the VideoDB and ASAPP emulators with fresh random secrets: Recall tokens
and signing secret, the VideoDB API key (one collection with a key VideoDB refuses) and webhook
secret, the ASAPP id and secret, and a Redis password. Good and bad handshakes, bad frames,
signed and forged webhooks, emulator 401s, 5xx and dropped sockets all happen at debug log level.
Every log line, every HTTP answer and error message, ``/metrics``, the settings' repr and every
event published are then scanned for each secret, and for any 12-character piece of one.

Logging keeps only the redaction every deployment gets whatever its configuration (query strings),
not the list of known secrets ``relay serve`` adds: the test shows no code path logs a secret in the
first place, rather than that the last-resort filter catches it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from relay.core.logs import configure_logging
from relay.dev.asapp_emulator import AsappEmulator, EmulatorConfig
from relay.dev import recall_frames as frames
from relay.providers.recall.auth import sign
from relay.dev.recall_simulator import RetryPolicy, SimulatedBot
from relay.dev.videodb_emulator import VideoDBEmulator
from tests.providers.videodb.helpers import ACTIVE

SECRETS: dict[str, str] = {
    "recall token": "rt" + secrets.token_hex(16),
    "recall token (second, for rotation)": "rt" + secrets.token_hex(16),
    "recall signing secret": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "videodb api key": "sk-" + secrets.token_hex(16),
    "videodb api key refused by videodb": "sk-" + secrets.token_hex(16),
    "videodb webhook secret": "wh" + secrets.token_hex(16),
    "asapp api id": "id" + secrets.token_hex(16),
    "asapp api secret": "as" + secrets.token_hex(16),
    "redis password": "pw" + secrets.token_hex(16),
}


CLIENT_LOG = logging.getLogger("tests.reliability.client")


def pieces(secret: str, size: int = 12) -> set[str]:
    """Every ``size``-character window of the secret's random part (its last 32 characters: the
    prefixes like ``whsec_`` or ``sk-`` are not secret), so a truncated secret is found too."""
    body = secret[-32:]
    return {body[i : i + size] for i in range(len(body) - size + 1)}


def leaks(text: str) -> dict[str, str]:
    found = {}
    for name, secret in SECRETS.items():
        for piece in pieces(secret):
            if piece in text:
                found[name] = text[max(0, text.index(piece) - 200) : text.index(piece) + 200]
                break
    return found


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log record of every logger, at debug, into a string; logging restored afterwards."""
    stream = io.StringIO()
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "websockets")
    levels = {name: logging.getLogger(name).level for name in names}
    handler = configure_logging("debug", [], stream=stream)
    # The test's own clients send the secrets (one even puts the token in the path): their lines
    # are not the relay's, so they go to a logger of their own that is left out.
    handler.addFilter(lambda record: not record.name.startswith(CLIENT_LOG.name))
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def http_get(port: int, path: str) -> str:
    """A plain HTTP GET over a raw socket (no client library logging the secret-bearing path);
    returns the whole answer, status line and headers included."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".encode())
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    return answer.decode(errors="replace")


@pytest.fixture
async def redis_user(redis_url: str) -> AsyncIterator[str]:
    """A Redis URL with a password: an ACL user on the test Redis, removed afterwards. Redis is
    flushed first (an earlier test's VideoDB webhook would be deduplicated away)."""
    admin = aioredis.Redis.from_url(redis_url)
    await admin.flushdb()
    password = SECRETS["redis password"]
    await admin.execute_command("ACL", "SETUSER", "relay-secret-test", "on", f">{password}", "~*", "&*", "+@all")
    yield redis_url.replace("redis://", f"redis://relay-secret-test:{password}@")
    await admin.execute_command("ACL", "DELUSER", "relay-secret-test")
    await admin.aclose()


async def test_no_secret_in_any_log_line_answer_metric_or_event(start_relay, collect, redis_user) -> None:  # type: ignore[no-untyped-def]
    said: list[str] = []  # every answer and error message a client saw
    s = SECRETS
    asapp_config = EmulatorConfig(api_id=s["asapp api id"], api_secret=s["asapp api secret"], speed=20.0,
                                  burst_ms=2_000, idle_s=10.0, transcript_ms=200)  # fmt: skip
    with captured_logs() as logs:
        async with (
            VideoDBEmulator(api_key=s["videodb api key"], collections=("default", "other")) as videodb,
            AsappEmulator(asapp_config) as asapp,
        ):
            videodb.fail_url(500, times=1)  # a 5xx before the first socket: retried
            asapp.fail_url_requests(401, 1)  # the first speaker's stream is refused for good
            relay = await start_relay(
                redis={"url": redis_user},
                recall={"tokens": [s["recall token"], s["recall token (second, for rotation)"]],
                        "signing_secrets": [s["recall signing secret"]], "require_signature": True},
                videodb={"enabled": True, "base_url": videodb.base_url, "api_key": s["videodb api key"],
                         "collections": ["default", {"id": "other", "api_key": s["videodb api key refused by videodb"]}],
                         "webhook_secret": s["videodb webhook secret"], "backoff_initial_s": 0.05,
                         "backoff_max_s": 0.2, "sync_interval_s": 0.1, "lease_ttl_s": 2.0},
                asapp={"enabled": True, "api_id": s["asapp api id"], "api_secret": s["asapp api secret"],
                       "base_url": asapp.base_url, "bridge": "all", "pace_speed": 20.0},
            )  # fmt: skip
            events = collect("relay:*")
            settings = relay.relay.settings
            said.append(repr(settings.recall) + repr(settings.videodb) + repr(settings.asapp))

            # Recall: refused handshakes of every kind, each answer kept.
            token = s["recall token"]
            now = int(time.time())
            good_headers = sign(s["recall signing secret"], "msg_ok", now)
            refused = [
                (relay.recall_url(token=None), good_headers),
                (relay.recall_url(token=token[:-1]), good_headers),  # all but the last character
                (relay.recall_url(token=token + "x"), good_headers),
                (relay.recall_url(token=None, path=f"/recall/{token}"), good_headers),
                (relay.recall_url(token=token), None),  # signature missing
                (relay.recall_url(token=token), sign("whsec_" + base64.b64encode(b"forged" * 6).decode(), "msg_x", now)),
                (relay.recall_url(token=token), sign(s["recall signing secret"], "msg_old", now - 3600)),  # replayed
            ]
            for url, headers in refused:
                with pytest.raises(InvalidStatus) as info:
                    await connect(url, proxy=None, additional_headers=headers, open_timeout=5, logger=CLIENT_LOG)
                said.append(str(info.value) + info.value.response.body.decode(errors="replace"))
            for path in (f"/recall/{token}", f"/recall/?token={token}", f"/metrics?token={token}", "/readyz"):
                said.append(await http_get(relay.port, path))

            # Recall: a signed bot streams a meeting with audio (bridged to ASAPP) and bad frames.
            async with SimulatedBot(relay.recall_url(token=token), signing_secret=s["recall signing secret"],
                                    retry=RetryPolicy(attempts=3, interval_s=0.05)) as bot:  # fmt: skip
                alice, bob = frames.participant(100, "Alice", is_host=True), frames.participant(200, "Bob")
                await bot.join(alice)
                await bot.join(bob)
                for i in range(50):
                    await bot.audio_separate(alice if i < 25 else bob, frames.tone_pcm(20, start_sample=i * 320))
                await bot.transcript(alice, "the quarterly numbers look fine")
                await bot.send("{not json")
                await bot.send(b"\x00\x01garbage")
                await bot.leave(alice)
                await bot.leave(bob)

            # VideoDB: the refused collection, webhooks signed, forged and unsigned, a dropped socket.
            await videodb.wait_connections(1)
            hook = relay.http_url + "/videodb/webhook"
            statuses = await videodb.post_webhook(hook, ACTIVE, secret=s["videodb webhook secret"])
            statuses += await videodb.post_webhook(hook, ACTIVE, secret="not-the-secret")
            statuses += await videodb.post_webhook(hook, ACTIVE)
            statuses += await videodb.post_webhook(hook, b"{garbage", secret=s["videodb webhook secret"])
            said.append(str(statuses))
            assert statuses == [200, 401, 401, 400]
            await videodb.wait_bound("rts-1", "transcript")
            await videodb.drop()
            await videodb.wait_connections(1)
            await videodb.wait_bound("rts-1", "transcript")
            await videodb.emit("rts-1", "transcript", {"text": "after the drop", "is_final": True}, "mic:default")
            await videodb.send_raw("{garbage")

            metrics = await http_get(relay.port, "/metrics")
            await asapp.wait_until(lambda: asapp.url_requests >= 2)
            await relay.stop()

        published = "\n".join(e.model_dump_json() for e in events.events)

    log = logs.getvalue()
    # The run did walk the error paths it claims to (so the scan below means something).
    for expected in ("invalid_token", "missing_token", "missing_signature", "invalid_signature", "stale_signature",
                     "rejected a Recall frame", "bad or missing signature"):  # fmt: skip
        assert expected in log, expected
    assert 'relay_upstream_errors_total{provider="videodb",reason="auth"}' in metrics
    assert 'relay_upstream_errors_total{provider="videodb",reason="http_5xx"}' in metrics
    assert "http_401" in published  # ASAPP's refusal, as a stream.error event
    assert "after the drop" in published

    for what, text in {"logs": log, "client answers and errors": "\n".join(said), "/metrics": metrics,
                       "published events": published}.items():  # fmt: skip
        assert leaks(text) == {}, f"a secret in the {what}"


def test_settings_never_show_the_redis_password() -> None:
    from relay.tools.cli import secret_values
    from relay.server.settings import load_settings

    password = SECRETS["redis password"]
    settings = load_settings(None, redis={"url": f"redis://relay:{password}@127.0.0.1:6379/0"})
    assert password not in repr(settings) + str(settings.model_dump())
    assert password in list(secret_values(settings)), "the log redactor knows it"
