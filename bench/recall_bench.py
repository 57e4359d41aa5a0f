"""Recall ingress → Redis: events/s and end-to-end latency for N simulated bots.

Run from the repository root::

    python bench/recall_bench.py --bots 20 --events 2000          # flood: as fast as they can
    python bench/recall_bench.py --bots 200 --events 20 --rate 2  # paced: 2 events/s per bot

Three kinds of process, so the load generator does not share a core's time slices with the relay
more than the machine forces: the relay (``relay serve``, its own process), the bots (one asyncio
process per ``--bot-procs``), and a Redis subscriber that counts unique events and measures the
latency from the bot's send (the send time rides in the transcript text) to its receipt. A private
``redis-server`` is started on a free port. Prints one JSON object (and writes it under
``bench/results/`` with ``--save``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relay.local_redis import RedisServerProcess, free_port  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
PARTICIPANT = {"id": 7, "name": "Bench", "is_host": False, "platform": "desktop", "extra_data": {}, "email": None}


def transcript_frame(bot: int, n: int) -> bytes:
    stamp = time.time_ns()
    words = [{"text": w, "start_timestamp": {"relative": n * 0.5}, "end_timestamp": {"relative": n * 0.5 + 0.4}}
             for w in (f"t{stamp}", f"b{bot}", f"n{n}", "the", "quick", "brown", "fox")]  # fmt: skip
    return orjson.dumps(
        {
            "event": "transcript.data",
            "data": {
                "data": {"words": words, "participant": PARTICIPANT},
                "realtime_endpoint": {"id": "re-bench", "metadata": {}},
                "recording": {"id": f"rec-{bot}", "metadata": {}},
                "bot": {"id": f"bot-{bot}", "metadata": {}},
            },
        }
    )


async def _bots(url: str, first: int, count: int, events: int, rate: float, start_at: float) -> None:
    from websockets.asyncio.client import connect

    sockets = []
    for i in range(count):
        sockets.append(await connect(url, proxy=None, max_queue=None, open_timeout=60, ping_interval=None))
    await asyncio.sleep(max(0.0, start_at - time.time()))

    async def run(i: int, ws) -> None:  # type: ignore[no-untyped-def]
        bot = first + i
        interval = 1.0 / rate if rate > 0 else 0.0
        # Paced bots start spread over one interval, as independent meetings would.
        next_at = time.monotonic() + (interval * i / max(count, 1))
        for n in range(events):
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_at += interval
            await ws.send(transcript_frame(bot, n).decode())
        await ws.close()

    await asyncio.gather(*(run(i, ws) for i, ws in enumerate(sockets)))


def bot_process(url: str, first: int, count: int, events: int, rate: float, start_at: float) -> None:
    asyncio.run(_bots(url, first, count, events, rate, start_at))


def subscriber_process(redis_url: str, expected: int, timeout: float, ready, out) -> None:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("relay:events:*")
    pubsub.get_message(timeout=5)
    ready.set()
    seen: set[str] = set()
    latencies: list[float] = []
    first = last = None
    deadline = time.monotonic() + timeout
    while len(seen) < expected and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1.0)
        if message is None:
            continue
        now = time.time_ns()
        event = orjson.loads(message["data"])
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        sent_ns = int(event["payload"]["words"][0]["text"][1:])
        latencies.append((now - sent_ns) / 1e6)
        first = first or now
        last = now
    out.put({"received": len(seen), "latencies_ms": latencies, "first_ns": first, "last_ns": last})


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bots", type=int, default=20)
    parser.add_argument("--events", type=int, default=2000, help="events per bot")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s per bot; 0 = as fast as possible")
    parser.add_argument("--bot-procs", type=int, default=1, help="load-generator processes")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--save", action="store_true", help="also write bench/results/recall-<time>.json")
    args = parser.parse_args()

    expected = args.bots * args.events
    with RedisServerProcess() as redis_server:
        port = free_port()
        env = {**os.environ, "RELAY_REDIS_URL": redis_server.url, "RELAY_RECALL_TOKENS": TOKEN,
               "RELAY_SERVER_LOG_LEVEL": "warning", "RELAY_SERVER_ACCESS_LOG": "false",
               "RELAY_RECALL_MAX_CONNECTIONS": str(max(10_000, args.bots + 10))}  # fmt: skip
        relay = subprocess.Popen([sys.executable, "-m", "relay.cli", "serve", "--port", str(port)], env=env, cwd=ROOT)
        try:
            deadline = time.monotonic() + 20
            while not _port_open(port):
                if time.monotonic() > deadline or relay.poll() is not None:
                    raise SystemExit("relay did not start")
                time.sleep(0.05)
            ctx = mp.get_context("spawn")
            ready, out = ctx.Event(), ctx.Queue()
            sub = ctx.Process(target=subscriber_process, args=(redis_server.url, expected, args.timeout, ready, out))
            sub.start()
            ready.wait(10)
            url = f"ws://127.0.0.1:{port}/recall/?token={TOKEN}"
            start_at = time.time() + 1.0 + args.bots / 500
            per = -(-args.bots // args.bot_procs)
            procs = []
            for p in range(args.bot_procs):
                first, count = p * per, min(per, args.bots - p * per)
                if count > 0:
                    procs.append(ctx.Process(target=bot_process, args=(url, first, count, args.events, args.rate, start_at)))
            for proc in procs:
                proc.start()
            result = out.get(timeout=args.timeout + 30)
            for proc in procs:
                proc.join(30)
            sub.join(10)
        finally:
            relay.terminate()
            relay.wait(30)

    lat = result["latencies_ms"]
    duration = ((result["last_ns"] or 0) - start_at * 1e9) / 1e9 if result["last_ns"] else float("nan")
    report = {
        "workload": "flood" if args.rate == 0 else "paced",
        "bots": args.bots,
        "events_per_bot": args.events,
        "rate_per_bot": args.rate,
        "expected": expected,
        "received": result["received"],
        "lost": expected - result["received"],
        "events_per_s": round(result["received"] / duration, 1) if duration > 0 else None,
        "latency_ms": {
            "p50": round(percentile(lat, 0.50), 3),
            "p99": round(percentile(lat, 0.99), 3),
            "max": round(max(lat), 3) if lat else None,
            "mean": round(statistics.fmean(lat), 3) if lat else None,
        },
        "cpus": os.cpu_count(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        results = ROOT / "bench" / "results"
        results.mkdir(parents=True, exist_ok=True)
        (results / f"recall-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(text + "\n")
    return 0 if report["lost"] == 0 else 1


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    raise SystemExit(main())
