"""Fault figures that take longer than a test: Redis killed for 10 s under a steady load.

``python -m bench.faults [--bots 10] [--rate 100] [--outage 10]`` starts a private ``redis-server``
and ``relay serve`` (the product, in its own process), connects ``--bots`` simulated Recall bots
that each send ``--rate`` transcripts per second, kills Redis (SIGKILL) for ``--outage`` seconds,
restarts it on the same port, and measures:

* events lost (sent by a bot, never seen by the subscriber) and duplicates (at-least-once);
* per-bot order on Redis;
* recovery: from the restart until every event sent before it has arrived (this includes the
  publisher's reconnect backoff, at most 2 s);
* memory: the relay's RSS before the outage and at its peak (the outage buffer holds the backlog),
  and the largest ``relay_outage_buffer_events`` seen.

The result is printed and written to ``bench/results/faults.json``; ``docs/reliability.md`` quotes
it. The fault tests themselves are ``tests/reliability/`` (and ``tests/server/test_app.py`` for the
10-second kill as a pass/fail test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from relay.dev.local_redis import RedisServerProcess, free_port
from relay.dev import recall_frames as frames
from relay.dev.recall_simulator import RetryPolicy, SimulatedBot

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "faults-token-0123456789abcdef"


class Subscriber:
    """Counts transcripts per bot from ``relay:events:*`` on a thread; re-subscribes on demand."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[str, list[int]] = {}  # bot label -> sequence numbers in arrival order
        self.messages = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pubsub: Any = None
        self._client: Any = None
        self._thread: threading.Thread | None = None

    def subscribe(self) -> None:
        """(Re)subscribe now; returns once Redis confirmed, so every later publish is seen."""
        self.close()
        self._stop = threading.Event()
        self._client = redis.Redis.from_url(self.url)  # kept: dropping it closes the pubsub's connection
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe("relay:events:*")
        pubsub.get_message(timeout=5)
        self._pubsub = pubsub
        self._thread = threading.Thread(target=self._read, args=(pubsub, self._stop), daemon=True)
        self._thread.start()

    def _read(self, pubsub: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                message = pubsub.get_message(timeout=0.1)
            except Exception:  # Redis went away; the caller re-subscribes after the restart
                return
            if message is None or message["type"] != "pmessage":
                continue
            event = json.loads(message["data"])
            if event.get("type") != "transcript.final":
                continue
            bot, number = event["payload"]["text"].split()
            with self._lock:
                self.messages += 1
                self.seen.setdefault(bot, []).append(int(number))

    def unique(self) -> int:
        with self._lock:
            return sum(len(set(numbers)) for numbers in self.seen.values())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def metric(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2, trust_env=False).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))


async def redis_outage(bots: int, rate: float, outage_s: float, before_s: float = 3.0, after_s: float = 5.0) -> dict[str, Any]:
    with RedisServerProcess() as server:
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RELAY_")},
               "RELAY_REDIS_URL": server.url, "RELAY_RECALL_TOKENS": TOKEN, "RELAY_SERVER_ACCESS_LOG": "false",
               "RELAY_SERVER_LOG_LEVEL": "warning"}  # fmt: skip
        relay = subprocess.Popen([sys.executable, "-m", "relay.tools.cli", "serve", "--port", str(port)], cwd=ROOT, env=env)
        try:
            return await _measure(server, relay, port, bots, rate, outage_s, before_s, after_s)
        finally:
            relay.terminate()
            relay.wait(20)


async def _measure(server: RedisServerProcess, relay: subprocess.Popen[bytes], port: int, n_bots: int, rate: float,
                   outage_s: float, before_s: float, after_s: float) -> dict[str, Any]:  # fmt: skip
    url = f"ws://127.0.0.1:{port}/recall/?token={TOKEN}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1, trust_env=False)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    sub = Subscriber(server.url)
    sub.subscribe()
    bots = [SimulatedBot(url, retry=RetryPolicy(interval_s=0.5)) for _ in range(n_bots)]
    for bot in bots:
        await bot.connect()
    sent = [0] * n_bots
    stop = asyncio.Event()

    async def stream(i: int) -> None:
        who = frames.participant(100, f"Speaker {i}")
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not stop.is_set():
            await bots[i].transcript(who, f"b{i} {sent[i]}")
            sent[i] += 1
            await asyncio.sleep(max(0.0, start + sent[i] / rate - loop.time()))

    tasks = [asyncio.create_task(stream(i)) for i in range(n_bots)]
    await asyncio.sleep(before_s)
    rss_before = rss_mib(relay.pid)
    server.stop()
    killed_at = time.monotonic()
    rss_peak, buffer_peak = rss_before, 0.0
    while time.monotonic() - killed_at < outage_s:
        await asyncio.sleep(0.25)
        rss_peak = max(rss_peak, rss_mib(relay.pid))
        buffer_peak = max(buffer_peak, await asyncio.to_thread(metric, port, "relay_outage_buffer_events"))
    sent_before_restart = sum(sent)
    server.start()
    restarted_at = time.monotonic()
    sub.subscribe()  # before the relay's next retry can publish
    caught_up_s = None
    while time.monotonic() - restarted_at < after_s or caught_up_s is None:
        await asyncio.sleep(0.05)
        rss_peak = max(rss_peak, rss_mib(relay.pid))
        if caught_up_s is None and sub.unique() >= sent_before_restart:
            caught_up_s = time.monotonic() - restarted_at
        if time.monotonic() - restarted_at > 60:
            break
    stop.set()
    await asyncio.gather(*tasks)
    for bot in bots:
        await bot.close()
    total = sum(sent)
    settle = time.monotonic() + 20
    while sub.unique() < total and time.monotonic() < settle:
        await asyncio.sleep(0.1)
    sub.close()
    ordered = all(
        list(dict.fromkeys(numbers)) == sorted(set(numbers)) for numbers in sub.seen.values()
    )  # fmt: skip
    return {
        "scenario": "redis killed under load, restarted after the outage",
        "bots": n_bots, "rate_per_bot": rate, "outage_s": outage_s,
        "events_sent": total, "events_sent_during_outage": sent_before_restart - round(before_s * rate * n_bots),
        "events_lost": total - sub.unique(), "duplicates": sub.messages - sub.unique(), "per_bot_order_kept": ordered,
        "restart_to_all_earlier_events_delivered_s": None if caught_up_s is None else round(caught_up_s, 2),
        "relay_rss_before_mib": round(rss_before, 1), "relay_rss_peak_mib": round(rss_peak, 1),
        "outage_buffer_events_peak": buffer_peak,
        "bot_drops": sum(b.drops for b in bots),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0, help="transcripts per second per bot")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis stays down")
    args = parser.parse_args(argv)
    result = asyncio.run(redis_outage(args.bots, args.rate, args.outage))
    out = ROOT / "bench" / "results" / "faults.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:>45}: {value}")
    return 0 if result["events_lost"] == 0 and result["per_bot_order_kept"] else 1


if __name__ == "__main__":
    sys.exit(main())
