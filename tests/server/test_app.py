"""The relay as a whole: TLS, redacted logs, a Redis outage mid-stream, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.client import connect

from relay.dev.local_redis import free_port
from relay.core.logs import configure_logging
from tests.conftest import RECALL_TOKEN
from tests.providers.recall.test_ingress import open_bot, transcript


async def test_wss_with_a_self_signed_certificate(tmp_path: Path, start_relay, collect) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    relay = await start_relay(server={"tls_certfile": str(cert_file), "tls_keyfile": str(key_file)})
    assert relay.recall_url().startswith("wss://")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    events = collect("relay:events:*:transcript.*")
    async with await open_bot(relay.recall_url(), ssl=client_ctx) as bot:
        await bot.send(transcript("over tls"))
    (event,) = await events.wait_for(1)
    assert event.payload.text == "over tls"


async def test_no_log_line_carries_the_token(start_relay, collect) -> None:
    stream = io.StringIO()
    level = logging.getLogger().level
    handler = configure_logging("debug", [RECALL_TOKEN], stream=stream)
    try:
        relay = await start_relay()
        events = collect("relay:events:*")
        async with await open_bot(relay.recall_url()) as bot:
            await bot.send(transcript("logged"))
            await bot.send("{bad json")
        await events.wait_for(1)
        with pytest.raises(Exception):
            await open_bot(relay.recall_url(token="wrong-token-but-long-enough"))
        await relay.stop()
    finally:
        logging.getLogger().removeHandler(handler)
        for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).setLevel(level)
    out = stream.getvalue()
    assert re.search(r"Recall connection 127.0.0.1:\d+ accepted", out)
    assert "invalid_token (HTTP 403)" in out
    assert "rejected a Recall frame (invalid_json)" in out
    assert RECALL_TOKEN not in out
    assert "wrong-token-but-long-enough" not in out
    assert "token=" not in out


async def test_redis_down_for_10_s_mid_stream_loses_nothing(start_relay, collect, redis_server) -> None:
    """A bot streams transcripts while Redis is killed for 10 s; every one arrives, in order."""
    relay = await start_relay()
    before = collect("relay:events:*:transcript.*")
    sent = 0

    async with await open_bot(relay.recall_url()) as bot:

        async def send_for(seconds: float) -> None:
            nonlocal sent
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                await bot.send(transcript(f"utterance {sent}"))
                sent += 1
                await asyncio.sleep(0.01)

        await send_for(1.0)
        redis_server.stop()
        await send_for(10.0)
        assert relay.metric("relay_redis_up") == 0
        await bot.send(transcript("last before restart"))
        sent += 1
        redis_server.start()
        after = collect("relay:events:*:transcript.*")  # subscribed before the relay can reconnect
        await send_for(1.0)

    def unique() -> dict[str, str]:  # at least once: a batch cut by the kill may come twice
        return {event.id: event.payload.text for event in before.events + after.events}

    async with asyncio.timeout(20):
        while len(unique()) < sent:
            await after.wait_for(len(after.events) + 1)
    texts = list(unique().values())
    assert len(texts) == sent
    assert texts[-1] == f"utterance {sent - 2}" or "last before restart" in texts
    numbers = [int(t.split()[1]) for t in texts if t.startswith("utterance")]
    assert numbers == sorted(numbers), "order kept across the outage"
    assert relay.metric("relay_events_dropped_total", source="recall", reason="outage_buffer_full_text") == 0
    assert relay.relay.publisher.stats["dropped"] == 0


def test_sigterm_closes_bots_with_1012_and_publishes_everything_accepted(redis_url: str) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")},
        "RELAY_REDIS_URL": redis_url,
        "RELAY_RECALL_TOKENS": RECALL_TOKEN,
        "RELAY_SERVER_SHUTDOWN_GRACE_S": "5",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay.tools.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        result = asyncio.run(_stream_until_sigterm(proc, port, redis_url))
        _, stderr = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    close_code, received = result
    assert close_code == 1012
    stopped = re.search(r"relay stopped: (\d+) events accepted, (\d+) published, (\d+) dropped", stderr)
    assert stopped, stderr
    accepted, published, dropped = map(int, stopped.groups())
    assert accepted > 0 and published == accepted and dropped == 0
    assert received == accepted, "a subscriber saw every event the relay accepted"


async def _stream_until_sigterm(proc: subprocess.Popen[str], port: int, redis_url: str) -> tuple[int, int]:
    import redis

    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("relay:events:*")
    pubsub.get_message(timeout=5)
    url = f"ws://127.0.0.1:{port}/recall/?token={RECALL_TOKEN}"
    async with asyncio.timeout(20):
        while True:
            try:
                bot = await connect(url, proxy=None)
                break
            except OSError:
                await asyncio.sleep(0.05)
    n = 0
    while n < 200:
        await bot.send(transcript(f"utterance {n}"))
        n += 1
    proc.send_signal(signal.SIGTERM)
    try:
        while True:
            await bot.send(transcript(f"utterance {n}"))
            n += 1
            await asyncio.sleep(0.001)
    except Exception:
        pass
    await bot.wait_closed()
    code = bot.close_code or 0
    received = 0
    await asyncio.to_thread(proc.wait, 15)
    while pubsub.get_message(timeout=0.5) is not None:
        received += 1
    pubsub.close()
    client.close()
    return code, received


def test_several_worker_processes_share_the_port(redis_url: str, collect) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")},
        "RELAY_REDIS_URL": redis_url,
        "RELAY_RECALL_TOKENS": RECALL_TOKEN,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay.tools.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    both_ready = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if sum("relay ready" in seen for seen in lines) == 2:
                both_ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert both_ready.wait(60), "".join(lines)
        received = asyncio.run(_bots_through_workers(port, redis_url, collect))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        reader.join(timeout=5)
    finally:
        proc.kill()
    stderr = "".join(lines)
    assert received == 20
    assert proc.returncode == 0, stderr
    accepted = [int(n) for n in re.findall(r"relay stopped: (\d+) events accepted", stderr)]
    assert len(accepted) == 2 and sum(accepted) == 20
    assert all(n > 0 for n in accepted), "the kernel spread the bots over both workers"


async def _bots_through_workers(port: int, redis_url: str, collect) -> int:  # type: ignore[no-untyped-def]
    events = collect("relay:events:*")
    url = f"ws://127.0.0.1:{port}/recall/?token={RECALL_TOKEN}"
    async with asyncio.timeout(30):
        for n in range(20):
            async with await open_bot(url) as bot:
                await bot.send(transcript(f"bot {n}"))
    return len(await events.wait_for(20))


async def test_connections_that_send_no_handshake_are_closed(start_relay) -> None:
    relay = await start_relay(server={"handshake_timeout_s": 0.3})
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", relay.port)
    trickle_reader, trickle = await asyncio.open_connection("127.0.0.1", relay.port)
    trickle.write(b"GET /recall/?token=x HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    async with asyncio.timeout(5):
        assert await silent_reader.read() == b""
        assert await trickle_reader.read() == b""
    silent.close()
    trickle.close()
    async with await open_bot(relay.recall_url()) as bot:  # a prompt client is unaffected
        await bot.send(transcript("still fine"))


async def test_startup_objects_are_frozen_out_of_the_cyclic_gc(start_relay) -> None:
    gc.unfreeze()
    await start_relay()
    # Full collections then scan only what connections create (relay/server/app.py, lifespan).
    assert gc.get_freeze_count() > 10_000


def test_the_log_settings_reach_the_publisher() -> None:
    from relay.core.event_log import LogConfig
    from relay.server.app import log_config
    from relay.server.settings import load_settings

    assert log_config(load_settings(None)) == LogConfig()
    assert log_config(load_settings(None, log={"enabled": False})) is None
    tuned = log_config(load_settings(None, log={"partials": False, "media": True, "max_entries": 500, "live_log_id": False}))
    assert tuned == LogConfig(max_entries=500, media=True, live_log_id=False, partials=False)
