"""Runs one measurement: a target process, load-generator processes and the counting subscriber.

:func:`run_load` is the one measurement every workload is made of::

    with Bench() as bench:                       # a private redis-server for the whole session
        result = bench.run_load("relay", kind="transcript", bots=20, rate=0, duration_s=5)

A *target* is what receives the bots: ``relay`` (``relay serve``, the product), ``relay-w<K>``
(``relay serve --workers K``: K processes sharing the port with ``SO_REUSEPORT``),
``handwritten`` and ``forwarder`` (:mod:`bench.baselines`), or ``discard`` (the load generator's
ceiling). Each run starts its target fresh and stops it after, so runs do not share warm state.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen, subscriber

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789abcdef"
TARGETS = ("relay", "handwritten", "forwarder", "discard")  # plus relay-w<K>
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _listeners(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (one per worker with SO_REUSEPORT)."""
    needle = f":{port:04X} 00000000:0000 0A"
    with open("/proc/net/tcp") as f:
        return sum(needle in line for line in f)


def _free_port() -> int:
    from relay.dev.local_redis import free_port

    return free_port()


def proc_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def _or_zero(read: Any, pid: int) -> Any:
    try:
        return read(pid)
    except OSError:  # the process exited between listing and reading
        return 0


@dataclass
class Target:
    """A running target: its processes and the URL the bots connect to."""

    name: str
    port: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Helpers the target needs (the ASAPP emulator): stopped with it, not measured.
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/recall/?token={TOKEN}"

    @property
    def pids(self) -> list[int]:
        """The target's processes and all their descendants (``relay serve --workers`` forks workers)."""
        out: list[int] = []
        todo = [p.pid for p in self.procs]
        while todo:
            pid = todo.pop()
            out.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo += [int(c) for c in f.read().split()]
            except OSError:
                continue
        return out

    def rss_kb(self) -> int:
        return sum(_or_zero(proc_rss_kb, pid) for pid in self.pids)

    def cpu_s(self) -> tuple[float, float]:
        """(user, system) CPU seconds of all the target's processes (exited children not counted)."""
        times = [_or_zero(proc_cpu_s, pid) or (0.0, 0.0) for pid in self.pids]
        return sum(t[0] for t in times), sum(t[1] for t in times)

    def stop(self) -> None:
        for p in (*self.procs, *self.helpers):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in (*self.procs, *self.helpers):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_target(name: str, redis_url: str, max_connections: int = 20_000, relay_src: Path | None = None) -> Target:
    """Start target ``name`` on a free port and wait until every process listens; then warm it up.

    ``relay_src`` runs the relay from that directory (say, a ``git archive`` of one commit) instead
    of this checkout.
    """
    port = _free_port()
    path = os.pathsep.join(str(p) for p in (relay_src, ROOT) if p is not None)
    env = {**os.environ, "PYTHONPATH": path, "RELAY_REDIS_URL": redis_url, "RELAY_RECALL_TOKENS": TOKEN,
           "RELAY_SERVER_LOG_LEVEL": "warning", "RELAY_SERVER_ACCESS_LOG": "false",
           "RELAY_RECALL_MAX_CONNECTIONS": str(max_connections)}  # fmt: skip
    # -P: the relay is imported from PYTHONPATH (relay_src first), not from the working directory.
    py = [sys.executable, "-P"]
    helpers: list[subprocess.Popen[bytes]] = []
    if name in ("relay-asapp", "relay-bridges"):
        # The relay with the ASAPP bridge on against the ASAPP emulator: relay-asapp bridges every
        # meeting; relay-bridges bridges only meetings whose endpoint metadata asks for it, and the
        # load generator's never do (the cost of having the bridge on for everyone else).
        asapp_port = _free_port()
        helpers.append(subprocess.Popen([*py, "-m", "relay.dev.asapp_emulator", "--port", str(asapp_port)],
                                        env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))  # fmt: skip
        env.update({"RELAY_ASAPP_ENABLED": "true", "RELAY_ASAPP_API_ID": "emulator-id", "RELAY_ASAPP_API_SECRET":
                    "emulator-secret", "RELAY_ASAPP_BASE_URL": f"http://127.0.0.1:{asapp_port}",
                    "RELAY_ASAPP_BRIDGE": "all" if name == "relay-asapp" else "metadata"})  # fmt: skip
        deadline = time.monotonic() + 30
        while _listeners(asapp_port) < 1:
            if time.monotonic() > deadline or helpers[0].poll() is not None:
                helpers[0].kill()
                raise RuntimeError("ASAPP emulator did not start")
            time.sleep(0.05)
        name_cmd = "relay"
    elif name == "relay-nolog":
        # The relay with the durable log off: pub/sub only, as before issue 14.
        env["RELAY_LOG_ENABLED"] = "false"
        name_cmd = "relay"
    elif name == "relay-plainlog":
        # The log written with plain XADD + PUBLISH: no log_id in live messages, no script.
        env["RELAY_LOG_LIVE_LOG_ID"] = "false"
        name_cmd = "relay"
    else:
        name_cmd = name
    if name_cmd == "relay":
        commands = [[*py, "-m", "relay.tools.cli", "serve", "--port", str(port)]]
    elif name_cmd.startswith("relay-w"):
        commands = [[*py, "-m", "relay.tools.cli", "serve", "--port", str(port), "--workers", name[len("relay-w") :]]]
    elif name_cmd in ("handwritten", "forwarder", "forwarder-log", "discard"):
        module = name.replace("-", "_")
        commands = [[*py, "-m", f"bench.baselines.{module}", "--port", str(port), "--redis-url", redis_url, "--token", TOKEN]]
    else:
        raise ValueError(f"unknown target {name!r}")
    listeners = int(name[len("relay-w") :]) if name.startswith("relay-w") else 1
    target = Target(name, port, helpers=helpers)
    for command in commands:
        target.procs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL))
    deadline = time.monotonic() + 30
    while _listeners(port) < listeners:
        if time.monotonic() > deadline or any(p.poll() is not None for p in target.procs):
            target.stop()
            raise RuntimeError(f"target {name} did not start")
        time.sleep(0.05)
    _warm_up(target)
    return target


def _warm_up(target: Target) -> None:
    """One bot, one frame per worker: imports and first-use allocations happen before measuring."""
    import asyncio

    async def one() -> None:
        from relay.dev.recall_simulator import SimulatedBot

        for _ in range(8):  # several connections, so every worker of a multi-process target gets one
            async with SimulatedBot(target.url, open_timeout=30) as bot:
                before, after = loadgen.templates("transcript", 999_999)
                from bench import marker

                await bot.send(before + marker.make(time.time_ns(), 999_999, 0).decode() + after)
        await asyncio.sleep(0.3)

    asyncio.run(one())


class Bench:
    """A benchmark session: one private ``redis-server`` (pub/sub output buffers unbounded, so a
    slow subscriber shows as latency, never as loss)."""

    def __init__(self, loadgen_procs: int = 2, relay_src: Path | None = None) -> None:
        from relay.dev.local_redis import RedisServerProcess

        self.loadgen_procs = loadgen_procs
        self.relay_src = relay_src
        self.redis = RedisServerProcess()
        self.ctx = mp.get_context("spawn")

    def __enter__(self) -> Bench:
        import redis

        self.redis.start()
        client = redis.Redis.from_url(self.redis.url)
        client.config_set("client-output-buffer-limit", "pubsub 0 0 0")
        client.close()
        return self

    def __exit__(self, *exc: object) -> None:
        self.redis.close()

    def redis_cpu_s(self) -> float:
        """CPU seconds the bench's redis-server has used (user + system)."""
        import redis

        client = redis.Redis.from_url(self.redis.url)
        try:
            info = client.info("cpu")
        finally:
            client.close()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def run_load(self, target_name: str, *, kind: loadgen.Kind, bots: int, rate: float, duration_s: float,
                 settle_s: float = 2.0, drain_timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
        """One run against a fresh target; returns the result as a JSON-ready dict."""
        target = start_target(target_name, self.redis.url, max_connections=bots + 100, relay_src=self.relay_src)
        try:
            return self.measure(target, kind=kind, bots=bots, rate=rate, duration_s=duration_s, settle_s=settle_s,
                                drain_timeout_s=drain_timeout_s)  # fmt: skip
        finally:
            target.stop()

    def measure(self, target: Target, *, kind: loadgen.Kind, bots: int, rate: float, duration_s: float,
                settle_s: float = 2.0, drain_timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
        """One run against a running ``target`` (see :meth:`run_load`)."""
        ctx = self.ctx
        load_avg = os.getloadavg()[0]  # the machine is shared: how busy it was when this run began
        counting = target.name != "discard" and kind != "idle"
        rss_before = target.rss_kb()
        sub = None
        if counting:
            sub_ready, sub_stop, count, sub_out = ctx.Event(), ctx.Event(), ctx.Value("q", 0, lock=False), ctx.Queue()
            sub = ctx.Process(target=subscriber.process_main, args=(self.redis.url, sub_ready, sub_stop, count, sub_out))
            sub.start()
            if not sub_ready.wait(15):
                raise RuntimeError("subscriber did not start")
        ready, go, start_at, out = ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0, lock=False), ctx.Queue()
        nprocs = max(1, min(self.loadgen_procs, bots))
        per = -(-bots // nprocs)
        gens = []
        for i in range(nprocs):
            first, n = i * per, min(per, bots - i * per)
            if n <= 0:
                continue
            spec = loadgen.LoadSpec(target.url, kind, first, n, rate, duration_s)
            gens.append(ctx.Process(target=loadgen.process_main, args=(spec, ready, go, start_at, out)))
        for g in gens:
            g.start()
        connected = failed = 0
        t_connect = time.monotonic()
        for _ in gens:
            status, n, err = ready.get(timeout=300)
            if status != "ready":
                raise RuntimeError(f"load generator failed: {err}")
            connected += n
            failed += err
        connect_s = time.monotonic() - t_connect
        rss_connected = None
        if kind == "idle":
            time.sleep(settle_s)
            rss_connected = target.rss_kb()
        cpu_begin = target.cpu_s()
        redis_cpu_begin = self.redis_cpu_s()
        start_at.value = time.time() + 0.5
        go.set()
        results = [out.get(timeout=duration_s + 300) for _ in gens]
        for g in gens:
            g.join(30)
        sent = sum(r.get("sent", 0) for r in results)
        received: dict[str, Any] = {}
        if sub is not None:
            deadline = time.monotonic() + drain_timeout_s
            last, last_change = -1, time.monotonic()
            while count.value < sent and time.monotonic() < deadline:
                if count.value != last:
                    last, last_change = count.value, time.monotonic()
                elif time.monotonic() - last_change > 3.0:
                    break  # stalled: what has not arrived is lost
                time.sleep(0.05)
            sub_stop.set()
            received = sub_out.get(timeout=30)
            sub.join(10)
        cpu_end = target.cpu_s()
        redis_cpu_used = self.redis_cpu_s() - redis_cpu_begin
        user_s, system_s = cpu_end[0] - cpu_begin[0], cpu_end[1] - cpu_begin[1]
        cpu_used = user_s + system_s
        began = start_at.value
        ended = max((r.get("ended", began) for r in results), default=began)
        result: dict[str, Any] = {
            "target": target.name, "kind": kind, "bots": bots, "rate_per_bot": rate, "duration_s": duration_s,
            "loadgen_procs": len(gens), "connected": connected, "connect_failed": failed,
            "connect_s": round(connect_s, 2), "sent": sent,
            "send_errors": sum(r.get("send_errors", 0) for r in results),
            "send_rate": round(sent / (ended - began), 1) if ended > began else None,
            "loadgen_behind_max_s": max((r.get("behind_max_s", 0.0) for r in results), default=0.0),
            "target_cpu_s": round(cpu_used, 2), "target_cpu_user_s": round(user_s, 2), "target_cpu_system_s": round(system_s, 2),
            "target_rss_kb": {"before": rss_before, "connected": rss_connected, "after": target.rss_kb()},
            "errors": [r["error"] for r in results if "error" in r], "load_avg_1m": round(load_avg, 2),
        }  # fmt: skip
        if received:
            got = received["received"]
            result["unmarked"] = received["unmarked"]  # events the bench did not send: ASAPP transcripts
            span = (received["last_ns"] / 1e9 - began) if received["last_ns"] else 0
            result.update({
                "received": got, "lost": sent - got, "duplicates": received["duplicates"],
                "events_per_s": round(got / span, 1) if span > 0 else None,
                "latency_ms": received["latency_ms"], "latency_mean_ms": received["latency_mean_ms"],
                "cpu_us_per_event": round(cpu_used / got * 1e6, 1) if got else None,
                # Redis' own CPU (INFO cpu) per event: the log's cost sits there, on a core the
                # relay and the consumers share on this machine.
                "redis_cpu_us_per_event": round(redis_cpu_used / got * 1e6, 1) if got else None,
            })  # fmt: skip
        if rss_connected is not None and connected:
            result["rss_per_connection_kb"] = round((rss_connected - rss_before) / connected, 2)
        return result
