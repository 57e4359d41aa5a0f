"""How many bridged ASAPP streams one core sustains in real time.

    python bench/asapp_streams.py --streams 50 --seconds 20

Starts the ASAPP emulator as a separate process (``python -m relay.dev.asapp_emulator``, so
its CPU is not counted), then runs :class:`~relay.providers.asapp.bridge.AsappBridge` in this
process with ``--streams`` speakers (``--speakers`` per meeting), each fed a 20 ms Recall audio
event every 20 ms of wall time, exactly as the Recall ingress would call ``on_event``. Every
stream does the real work: base64 decode, soxr resampling, pacing, 100 ms frames over its own
WebSocket, transcripts parsed and normalized into events. Events go to a counting publisher
instead of Redis, so the figure is the bridge's own cost.

It reports the process CPU time per stream-second of audio and the implied number of streams one
core keeps in real time (1 / that), and checks that the run really was real time: every stream's
audio was delivered (the emulator's accounting) and the feeder kept its schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from urllib.request import urlopen

import numpy as np

from relay.dev.local_redis import free_port
from relay.core.metrics import RelayMetrics
from relay.providers.asapp.bridge import AsappBridge
from relay.providers.asapp.config import AsappSettings
from relay.schema import AudioChunk, AudioChunkEvent, EventBase, EventTime, Participant, SessionRef, Source

CHUNK_MS = 20


class CountingPublisher:
    """Stands in for :class:`~relay.core.publisher.EventPublisher`: counts events by type."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    async def publish(self, event: EventBase, received_ns: int | None = None) -> None:
        self.counts[event.type] = self.counts.get(event.type, 0) + 1


def one_second(seed: int, session: SessionRef, participant: Participant) -> list[AudioChunkEvent]:
    """A second of a speaker's audio as 50 Recall events (reused in a loop: building events is the ingress's cost)."""
    rng = np.random.default_rng(seed)
    t = np.arange(16_000) / 16_000
    pcm = (6000 * np.sin(2 * np.pi * (200 + 10 * seed) * t) + rng.normal(0, 1500, 16_000)).astype("<i2").tobytes()
    step = 32 * CHUNK_MS
    now = datetime.now(timezone.utc)
    return [
        AudioChunkEvent(
            source=Source.RECALL, session=session, participant=participant,
            time=EventTime(received=now, relative=i / 1000),
            payload=AudioChunk(mix="separate", audio=base64.b64encode(pcm[i * 32 : i * 32 + step]).decode(),
                               bytes=step, duration_ms=CHUNK_MS),
        )  # fmt: skip
        for i in range(0, 1000, CHUNK_MS)
    ]


async def run(streams: int, speakers: int, seconds: float, base_url: str) -> dict[str, object]:
    settings = AsappSettings(enabled=True, api_id="bench-id", api_secret="bench-secret", base_url=base_url, bridge="all")
    metrics = RelayMetrics()
    publisher = CountingPublisher()
    bridge = AsappBridge(settings, publisher, metrics)  # type: ignore[arg-type]
    await bridge.start()
    feeds = []
    for n in range(streams):
        meeting, speaker = divmod(n, speakers)
        session = SessionRef(id=f"bench-meeting-{meeting}")
        feeds.append(one_second(n, session, Participant(id=str(n), name=f"speaker {n}", is_host=speaker == 0)))

    ticks = int(seconds * 1000 / CHUNK_MS)
    late_ticks = 0
    loop = asyncio.get_running_loop()
    cpu0, wall0 = time.process_time(), loop.time()
    for tick in range(ticks):
        due = wall0 + tick * CHUNK_MS / 1000
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -CHUNK_MS / 1000:
            late_ticks += 1
        for events in feeds:
            bridge.on_event(events[tick % len(events)])
    feed_wall = loop.time() - wall0
    await bridge.aclose(timeout=30)
    cpu = time.process_time() - cpu0
    wall = loop.time() - wall0
    sent = metrics.registry.get_sample_value("relay_asapp_audio_sent_seconds_total") or 0.0
    return {
        "streams": streams,
        "audio_seconds_per_stream": seconds,
        "wall_seconds": round(wall, 2),
        "feed_wall_seconds": round(feed_wall, 2),
        "late_ticks": late_ticks,
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_stream_second": round(1000 * cpu / (streams * seconds), 3),
        "streams_per_core": int(streams * seconds / cpu) if cpu else None,
        "audio_seconds_sent": round(sent, 2),
        "events": publisher.counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--speakers", type=int, default=2, help="speakers per meeting")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "relay.dev.asapp_emulator", "--port", str(port),
         "--api-id", "bench-id", "--api-secret", "bench-secret"],
        stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urlopen(base_url + "/_emulator/accounts", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or emulator.poll() is not None:
                    raise SystemExit("the ASAPP emulator did not start") from None
                time.sleep(0.1)
        result = asyncio.run(run(args.streams, args.speakers, args.seconds, base_url))
        accounts = json.loads(urlopen(base_url + "/_emulator/accounts", timeout=5).read())["accounts"]
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)

    delivered = [a["committed_bytes"] for a in accounts.values()]
    expected = int(args.seconds * 16_000)  # bytes of 8 kHz audio per stream
    result["streams_fully_delivered"] = sum(1 for d in delivered if abs(d - expected) <= 64)
    result["real_time"] = result["late_ticks"] == 0 and result["streams_fully_delivered"] == args.streams
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
