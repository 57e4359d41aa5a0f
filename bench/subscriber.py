"""The counting subscriber: a Redis pub/sub client in its own process.

It ``PSUBSCRIBE``\\ s to every channel a target publishes on, finds the :mod:`bench.marker` in each
message, counts unique (bot, sequence) pairs (a relay may deliver twice: at-least-once) and the
latency from the bot's send to here. It speaks RESP through ``hiredis.Reader`` on a plain socket, so
that parsing the replies costs about a microsecond each and the subscriber is not what is measured.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import hiredis

from bench import marker

PATTERNS = ("relay:*",)


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def percentiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)) -> dict[str, float | None]:
    if not values:
        return {f"p{q * 100:g}": None for q in qs} | {"max": None}
    ordered = sorted(values)
    out: dict[str, float | None] = {f"p{q * 100:g}": round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) for q in qs}
    out["max"] = round(ordered[-1], 3)
    return out


def process_main(redis_url: str, ready: Any, stop: Any, count: Any, out: Any) -> None:
    """Subscribe, set ``ready``, count until ``stop`` is set; put a summary on ``out``.

    ``count`` (a shared integer) is updated as events arrive, so the parent can tell when
    everything sent has arrived, or when arrivals have stalled.
    """
    parts = urlsplit(redis_url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    reader = hiredis.Reader()
    sock.sendall(b"".join(_command(b"PSUBSCRIBE", p.encode()) for p in PATTERNS))
    subscribed = 0
    while subscribed < len(PATTERNS):
        reader.feed(sock.recv(65536))
        while (reply := reader.gets()) is not False:
            subscribed += reply[0] == b"psubscribe"
    ready.set()
    sock.settimeout(0.2)
    seen: set[int] = set()
    latencies: list[float] = []
    duplicates = unmarked = 0
    first_ns = last_ns = 0
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        if not data:
            break
        now = time.time_ns()
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if reply[0] != b"pmessage":
                continue
            found = marker.find(reply[3])
            if found is None:
                unmarked += 1
                continue
            key, sent_ns = found
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            latencies.append((now - sent_ns) / 1e6)
            first_ns = first_ns or now
            last_ns = now
        count.value = len(seen)
    sock.close()
    out.put({"received": len(seen), "duplicates": duplicates, "unmarked": unmarked, "first_ns": first_ns,
             "last_ns": last_ns, "latency_ms": percentiles(latencies),
             "latency_mean_ms": round(sum(latencies) / len(latencies), 3) if latencies else None})  # fmt: skip
