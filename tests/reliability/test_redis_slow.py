"""Redis slow, paused, or with a subscriber that does not read: the relay stays bounded and whole.

* ``CLIENT PAUSE`` under many bots: the relay process' memory stays bounded (its publish queue is
  bounded, and a connection whose events do not fit stops reading its socket, so TCP holds the rest
  and the bots' sends block), backpressure is counted, nothing crashes, and every event is
  delivered once Redis answers again.
* A subscriber that never reads: Redis buffers its messages up to ``client-output-buffer-limit
  pubsub`` and then drops that client; the relay's PUBLISH never waits on a subscriber, so it goes
  on publishing and other subscribers go on receiving.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import redis.asyncio as aioredis

from relay.dev import recall_frames as frames
from relay.dev.recall_simulator import SimulatedBot
from tests.conftest import RECALL_TOKEN
from tests.reliability.processes import metric_value

BOTS = 20
FRAMES_PER_BOT = 1_000  # half transcripts, half 20 ms audio buffers
QUEUE_MAX = 2_000  # the relay's publish queue (events)
PAUSE_MS = 3_000  # under the relay's Redis socket timeout (5 s): Redis slow, not down


class RssSampler:
    """Samples a process' resident memory every 50 ms on a thread; keeps the peak."""

    def __init__(self, read) -> None:  # type: ignore[no-untyped-def]
        self._read = read
        self.peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self._read())
            except OSError:  # the process is gone: the test will say so
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def published(metrics_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "relay_events_published_total"
    )


async def stream(bot: SimulatedBot, n: int, sent: list[int], index: int) -> None:
    who = frames.participant(100 + index, f"Speaker {index}")
    pcm = frames.tone_pcm(20)
    for i in range(n):
        if i % 2:
            await bot.audio_separate(who, pcm)
        else:
            await bot.transcript(who, f"bot {index} line {i}")
        sent[index] += 1
        if i % 50 == 49:
            await asyncio.sleep(0)


async def test_redis_paused_under_many_bots_keeps_memory_bounded_and_loses_nothing(
    relay_processes, collect, recall_bot, redis_client, figures
) -> None:  # type: ignore[no-untyped-def]
    relay = await asyncio.to_thread(relay_processes, RELAY_REDIS_QUEUE_MAX_EVENTS=str(QUEUE_MAX))
    url = f"ws://127.0.0.1:{relay.port}/recall/?token={RECALL_TOKEN}"
    everything = collect("relay:*")
    bots = [await recall_bot(url) for _ in range(BOTS)]
    # Warm up (imports, pools, first allocations) before the baseline.
    await asyncio.gather(*(bot.transcript(None, "warm up") for bot in bots))
    await everything.wait_for(BOTS)
    baseline = relay.rss_bytes()
    received_before = metric_value(await asyncio.to_thread(relay.metrics), "relay_frames_received_total", source="recall")

    await redis_client.execute_command("CLIENT", "PAUSE", str(PAUSE_MS), "WRITE")
    paused_at = time.monotonic()
    sent = [0] * BOTS
    with RssSampler(relay.rss_bytes) as rss:
        streams = asyncio.gather(*(stream(bot, FRAMES_PER_BOT, sent, i) for i, bot in enumerate(bots)))
        await asyncio.sleep(PAUSE_MS / 1000 / 2)
        # Mid-pause: the queue is full and the relay has stopped reading; what the bots sent since
        # waits in TCP buffers (and, past those, in the bots' blocked sends), not in relay memory.
        mid = await asyncio.to_thread(relay.metrics)
        during = sum(sent)
        read = metric_value(mid, "relay_frames_received_total", source="recall") - received_before
        # At least the bound: what each socket had read when the queue filled is accepted too.
        assert metric_value(mid, "relay_queue_depth") >= QUEUE_MAX
        assert metric_value(mid, "relay_backpressure_pauses_total", source="recall") > 0
        assert read < during, "the relay stopped reading: backpressure went back into the bots' sockets"
        await streams
        unpaused_s = time.monotonic() - paused_at
        total = BOTS * (FRAMES_PER_BOT + 1) + BOTS  # and each meeting's session.started
        async with asyncio.timeout(30):
            while published(await asyncio.to_thread(relay.metrics)) < total:
                await asyncio.sleep(0.1)
        published_s = time.monotonic() - paused_at
        await everything.wait_for(total, timeout=30)
        delivered_s = time.monotonic() - paused_at
    assert relay.returncode is None, relay.stderr
    text = await asyncio.to_thread(relay.metrics)
    assert metric_value(text, "relay_backpressure_pauses_total", source="recall") > 0
    assert metric_value(text, "relay_events_dropped_total") == 0
    assert len({e.id for e in everything.events}) == total
    growth = rss.peak - baseline
    assert growth < 150 * 2**20, f"RSS grew {growth / 2**20:.0f} MiB while Redis was paused"
    figures.record("bots", BOTS)
    figures.record("events", total)
    figures.record("frames sent by mid-pause", during)
    figures.record("frames read by the relay by mid-pause", read)
    figures.record("RSS before pause", round(baseline / 2**20, 1), "MiB")
    figures.record("RSS peak", round(rss.peak / 2**20, 1), "MiB")
    figures.record("backpressure pauses", metric_value(text, "relay_backpressure_pauses_total", source="recall"))
    figures.record("pause start to all sent", round(unpaused_s, 2), "s")
    figures.record("pause start to all published by the relay", round(published_s, 2), "s")
    figures.record("pause start to all parsed by the test's subscriber", round(delivered_s, 2), "s")
    figures.record("events lost", total - len({e.id for e in everything.events}))


@pytest.fixture
async def small_pubsub_buffers(redis_client: aioredis.Redis):  # type: ignore[no-untyped-def]
    """``client-output-buffer-limit pubsub 1mb 512kb 5`` on the test Redis, restored afterwards."""
    before = (await redis_client.config_get("client-output-buffer-limit"))["client-output-buffer-limit"]
    await redis_client.config_set("client-output-buffer-limit", "pubsub 1mb 512kb 5")
    yield
    await redis_client.config_set("client-output-buffer-limit", before)


def silent_subscriber(redis_port: int) -> socket.socket:
    """A Redis client that subscribes to everything and then never reads: the slow consumer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small, so Redis' buffer fills first
    sock.connect(("127.0.0.1", redis_port))
    sock.sendall(b"CLIENT SETNAME silent-subscriber\r\nPSUBSCRIBE relay:*\r\n")
    reply = b""
    while b"psubscribe" not in reply:
        reply += sock.recv(4096)
    return sock


def read_to_eof(sock: socket.socket) -> int:
    """Read what the server sent until it closed the connection; fail if it did not within 10 s."""
    sock.settimeout(10)
    total = 0
    while chunk := sock.recv(65536):
        total += len(chunk)
    return total


async def test_a_subscriber_that_never_reads_is_dropped_by_redis_and_the_relay_goes_on(
    start_relay, collect, redis_client, redis_server, small_pubsub_buffers, figures
) -> None:  # type: ignore[no-untyped-def]
    relay = await start_relay()
    reader = collect("relay:*")
    silent = silent_subscriber(redis_server.port)
    try:
        async with SimulatedBot(relay.recall_url()) as bot:
            who = frames.participant(100, "Alice")
            pcm = frames.tone_pcm(100)  # 100 ms: about 4.5 kB of JSON per event
            for i in range(1_000):
                await bot.audio_separate(who, pcm)
                if i % 100 == 0:
                    await bot.transcript(who, f"line {i}")
        total = 1_000 + 10 + 1  # and the meeting's session.started
        await reader.wait_for(total, timeout=30)
        names = [c.get("name") for c in await redis_client.client_list()]
        unread = await asyncio.to_thread(read_to_eof, silent)
    finally:
        silent.close()
    assert "silent-subscriber" not in names, "Redis dropped the subscriber that did not read"
    assert len(reader.events) == total, "the reading subscriber got everything"
    assert relay.metric("relay_redis_errors_total", operation="publish") == 0
    assert relay.relay.publisher.stats["dropped"] == 0
    figures.record("events published while a subscriber did not read", total)
    figures.record("bytes the dropped subscriber got before Redis closed it", unread)
    figures.record("relay Redis errors", relay.metric("relay_redis_errors_total", operation="publish"))
