"""``relay demo``: the whole flow on one machine, in one command, with the normalized stream on screen.

It starts what is missing and stops everything it started::

    private redis-server ◀── (only if nothing answers at RELAY_REDIS_URL)
    VideoDB emulator  ◀──ws + REST──┐
    ASAPP emulator    ◀──ws + REST──┤
                                    relay (in this process, on 127.0.0.1:<port>) ──▶ Redis ──▶ this screen
    simulated Recall bots ──ws─────▶┘                                                    (relay tail's renderer)

* **Redis**: the configured URL (``RELAY_REDIS_URL`` or ``--config``) when something answers
  there, else a private ``redis-server`` on a free port that keeps nothing on disk.
* **Emulators** (:mod:`relay.dev.videodb_emulator`, :mod:`relay.dev.asapp_emulator`)
  run in this process, and the relay's settings point at them: ASAPP bridges every meeting, VideoDB
  watches a collection of its own. The VideoDB emulator only speaks when driven, so the demo plays a
  desktop capture session: it posts the ``capture_session.active`` webhook to the relay, and once
  the relay has bound its jobs, emits transcripts, index descriptions and an alert. A relay built
  without a bridge simply shows no events from that provider (the demo says so).
* **Recall bots** (:mod:`relay.dev.recall_simulator`): ``--bots`` meetings with speakers
  taking turns, transcripts, chat and per-speaker audio, over real WebSockets to the relay.
* **Display**: a :class:`~relay.client.RelayClient` subscribed before anything is sent, rendering
  with :func:`relay.tools.tail.render` on stdout (``--json`` for JSON lines); status goes to stderr.

It runs until ``--duration`` seconds of meeting have played, or until Ctrl-C (SIGINT) / SIGTERM,
then stops bots, relay, emulators and Redis, in that order, and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console

from relay.client import RelayClient
from relay.dev.local_redis import INSTALL_HINT, RedisServerProcess, redis_answers
from relay.dev.asapp_emulator import AsappEmulator, EmulatorConfig
from relay.dev.recall_simulator import MeetingOptions, RetryPolicy, SimulatedBot, run_meeting
from relay.dev.videodb_emulator import VideoDBEmulator
from relay.errors import ConfigError
from relay.server.settings import Settings, load_settings
from relay.tools.tail import EventPrinter

__all__ = ["DemoOptions", "demo", "relay_settings", "run"]

#: The demo's Recall token: the relay only listens on loopback and lives as long as the demo.
DEMO_TOKEN = "demo-token-not-a-secret-0123456789"
#: How long one meeting lasts when no ``--duration`` is given (then meetings repeat until Ctrl-C).
ENDLESS_MEETING_S = 60.0
#: The desktop capture session the demo plays on the VideoDB emulator.
CAPTURE_SESSION = "demo-capture-1"
MIC, DISPLAY = "rts-demo-mic", "rts-demo-display"
#: Its own collection id, so a demo against a shared Redis never contends for a real relay's lease.
COLLECTION = "relay-demo"
_VIDEODB_LINES = (
    "let's walk through the quarterly numbers",
    "revenue is up eleven percent over last quarter",
    "the churn dashboard is on the next slide",
)
_VIDEODB_SCENES = ("A slide deck titled Q3 Review is on screen", "A spreadsheet with a revenue chart", "A browser showing a dashboard")


@dataclass(frozen=True)
class DemoOptions:
    """What ``relay demo`` plays; ``duration_s=None`` plays meetings until SIGINT/SIGTERM."""

    duration_s: float | None = None
    bots: int = 2
    participants: int = 2
    media: bool = False
    json: bool = False
    port: int = 0
    config: Path | None = None


@dataclass
class _Status:
    """Where the demo says what it started and stopped (stderr, apart from the events on stdout)."""

    console: Console

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)


# ---------------------------------------------------------------------------------------------
# Pieces, each an async context manager that stops what it started
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _redis(url: str, status: _Status) -> Any:
    """The configured Redis when it answers, else a private one; yields the URL to use."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or redis_answers(parts.hostname or "127.0.0.1", parts.port or 6379):
        status.say(f"Redis: {url.split('@')[-1]}")
        yield url
        return
    try:
        server = RedisServerProcess()
        server.start()
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        raise SystemExit(f"relay demo: nothing answers at {url.split('@')[-1]} and no private Redis could be started ({exc}): {INSTALL_HINT}") from None
    status.say(f"Redis: nothing answered at {url.split('@')[-1]}; started a private redis-server at {server.url}")
    try:
        yield server.url
    finally:
        server.close()


@contextlib.asynccontextmanager
async def _asapp_emulator(status: _Status) -> AsyncIterator[AsappEmulator]:
    emulator = AsappEmulator(EmulatorConfig())
    base_url = await emulator.start()
    status.say(f"ASAPP emulator: {base_url}")
    try:
        yield emulator
    finally:
        await emulator.stop()


@contextlib.asynccontextmanager
async def _videodb_emulator(status: _Status) -> AsyncIterator[VideoDBEmulator]:
    emulator = VideoDBEmulator(api_key="sk-demo-videodb", collections=(COLLECTION,))
    await emulator.start()
    status.say(f"VideoDB emulator: {emulator.base_url}")
    try:
        yield emulator
    finally:
        await emulator.stop()


def relay_settings(config: Path | None, redis_url: str, port: int, asapp: AsappEmulator, videodb: VideoDBEmulator) -> Settings:
    """The relay's settings for the demo: the user's (environment, ``--config``), pointed at this
    Redis and these emulators, listening on loopback only with the demo's token."""
    overrides: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warning", "access_log": False,
                   "shutdown_grace_s": 3.0, "tls_certfile": None, "tls_keyfile": None},
        "redis": {"url": redis_url, "start_local": False},
        "recall": {"tokens": [DEMO_TOKEN], "tokens_file": None, "signing_secrets": [], "signing_secrets_file": None,
                   "require_signature": False},
    }  # fmt: skip
    overrides["asapp"] = {
        "enabled": True, "base_url": asapp.base_url, "api_id": asapp.config.api_id, "api_id_file": None,
        "api_secret": asapp.config.api_secret, "api_secret_file": None, "bridge": "all",
    }  # fmt: skip
    overrides["videodb"] = {
        "enabled": True, "base_url": videodb.base_url, "api_key": videodb.api_key, "api_key_file": None,
        "collections": [COLLECTION], "webhook_secret": None, "webhook_secret_file": None,
        "alerts": [{"label": "revenue_chart", "prompt": "A revenue chart is on screen"}],
    }  # fmt: skip
    # Environment and file values are merged under these, key by key (pydantic-settings deep-merges).
    return load_settings(config, **overrides)


@contextlib.asynccontextmanager
async def _relay(settings: Settings, status: _Status) -> AsyncIterator[Any]:
    """The relay served by uvicorn in this event loop (the same server ``relay serve`` runs)."""
    from relay.server.app import create_app
    from relay.core.logs import configure_logging
    from relay.server.serve import RelayServer, uvicorn_config

    configure_logging(settings.server.log_level, [DEMO_TOKEN])
    app = create_app(settings)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.server.host, settings.server.port))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, settings)
    config.loop = "none"  # this event loop
    server = RelayServer(config, app.state.relay, embedded=True)  # the demo handles signals
    task = asyncio.create_task(server.serve(sockets=[sock]), name="relay")
    try:
        while not server.started:  # uvicorn offers no awaitable for "listening"
            if task.done():
                await task
                raise RuntimeError("the relay stopped before it started")
            await asyncio.sleep(0.01)
        # The demo's token is no secret (loopback only): printed whole so `relay simulate-bot --url` can join in.
        path = settings.recall.path.rstrip("/")
        status.say(f"relay: ws://127.0.0.1:{port}{path}/?token={DEMO_TOKEN} (metrics: http://127.0.0.1:{port}/metrics)")
        yield app, port
    finally:
        server.should_exit = True
        await task
        sock.close()


# ---------------------------------------------------------------------------------------------
# What plays
# ---------------------------------------------------------------------------------------------


async def _bots(url: str, options: DemoOptions, status: _Status) -> None:
    """``options.bots`` meetings at once; repeated until cancelled when there is no duration.

    A bot that cannot reach the relay is reported, not raised: the demo keeps showing the rest.
    """
    duration = options.duration_s if options.duration_s is not None else ENDLESS_MEETING_S
    retry = RetryPolicy(attempts=5, interval_s=0.5)
    round_ = 0
    while True:
        meetings = [
            run_meeting(
                SimulatedBot(url, retry=retry),
                MeetingOptions(duration_s=duration, participants=options.participants, audio="separate",
                               video=options.media, rate=2.0, seed=round_ * options.bots + i),
            )  # fmt: skip
            for i in range(options.bots)
        ]
        results = await asyncio.gather(*meetings, return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]
        for failure in failures:
            status.say(f"[red]a simulated bot failed[/]: {type(failure).__name__}: {failure}")
        if options.duration_s is not None:
            return
        if len(failures) == len(results):
            await asyncio.sleep(ENDLESS_MEETING_S / 10)  # every bot failed: do not spin
        round_ += 1


async def _drive_videodb(emulator: VideoDBEmulator, webhook_url: str, status: _Status, stop: asyncio.Event) -> None:
    """Play a desktop capture session on the VideoDB emulator, through the relay's own bridge."""
    now = time.time()
    body = {
        "version": "2", "event": "capture_session.active", "capture_session_id": CAPTURE_SESSION,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "end_user_id": "demo-user",
        "status": "active",
        "data": {"rtstreams": [
            {"rtstream_id": MIC, "name": "mic:default", "media_types": ["audio"]},
            {"rtstream_id": DISPLAY, "name": "display:1", "media_types": ["video"]},
        ]},
    }  # fmt: skip
    try:
        statuses = await emulator.post_webhook(webhook_url, body)
    except OSError as exc:
        status.say(f"VideoDB: could not deliver the demo webhook ({type(exc).__name__}); no VideoDB events")
        return
    if statuses != [200]:
        status.say(f"VideoDB: the relay answered {statuses[0]} to the webhook; no VideoDB events")
        return
    try:
        await emulator.wait_bound(MIC, "transcript", timeout=15)
    except TimeoutError:
        status.say("VideoDB: the relay did not start its jobs within 15 s; no VideoDB events")
        return
    n = 0
    while not stop.is_set():
        ms = int(time.time() * 1000)
        span = {"start": ms - 2000, "end": ms}
        await emulator.emit(MIC, "transcript", {"text": _VIDEODB_LINES[n % 3], "is_final": True, **span}, "mic:default")
        if n % 2 == 0:
            await emulator.emit(DISPLAY, "visual_index", {"text": _VIDEODB_SCENES[n // 2 % 3], **span}, "display:1")
        if n % 3 == 1:
            await emulator.emit(DISPLAY, "alert", {"label": "revenue_chart", "triggered": True, "confidence": 0.9, **span})
        n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)


async def _show(client: RelayClient, printer: EventPrinter, tally: Counter[str]) -> None:
    async for event in client:
        printer(event)
        tally[event.source.value] += 1


async def _until(stop: asyncio.Event, work: Awaitable[Any]) -> None:
    """Run ``work`` until it finishes or ``stop`` is set, whichever comes first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raise what went wrong
    finally:
        for t in (task, stopper):
            t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def demo(options: DemoOptions, stop: asyncio.Event, status: _Status) -> int:
    """Start, play, show, stop. ``stop`` ends it early (the signal handlers set it)."""
    try:
        base = load_settings(options.config)
    except ConfigError as exc:
        status.say(f"relay: {exc}")
        return 2
    printer = EventPrinter(json=options.json)
    tally: Counter[str] = Counter()
    began = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        redis_url = stack.enter_context(_redis(base.redis.url, status))
        asapp = await stack.enter_async_context(_asapp_emulator(status))
        videodb = await stack.enter_async_context(_videodb_emulator(status))
        try:
            settings = relay_settings(options.config, redis_url, options.port, asapp, videodb)
        except ConfigError as exc:
            status.say(f"relay: {exc}")
            return 2
        client = await stack.enter_async_context(
            RelayClient(redis_url, media=options.media, prefix=settings.redis.channel_prefix)
        )
        # Exits run last in, first out: the display, started before the relay, stops after it, so
        # what the relay flushes at shutdown (ASAPP's final transcripts, say) is still shown.
        shower = asyncio.create_task(_show(client, printer, tally), name="demo-display")
        stack.push_async_callback(_cancelled, shower)
        stack.push_async_callback(_quiet, printer)
        _app, port = await stack.enter_async_context(_relay(settings, status))

        url = f"ws://127.0.0.1:{port}{settings.recall.path.rstrip('/')}/?token={DEMO_TOKEN}"
        # VideoDB is a side show: it plays until the meetings end.
        webhook = f"http://127.0.0.1:{port}{settings.videodb.webhook_path.rstrip('/')}/{COLLECTION}"
        driver = asyncio.create_task(_drive_videodb(videodb, webhook, status, stop), name="demo-videodb")
        stack.push_async_callback(_cancelled, driver)
        length = f"{options.duration_s:g} s" if options.duration_s is not None else "until Ctrl-C"
        status.say(f"{options.bots} simulated Recall bot(s), {options.participants} speakers each, {length}\n")
        await _until(stop, _bots(url, options, status))
        status.say("\nstopping: bots, relay, emulators, Redis…")
    took = time.monotonic() - began
    summary = ", ".join(f"{source} {n}" for source, n in sorted(tally.items())) or "none"
    status.say(f"relay demo: {printer.shown} events shown in {took:.1f} s ({summary})")
    return 0


async def _quiet(printer: EventPrinter, settle_s: float = 0.3, limit_s: float = 3.0) -> None:
    """After the relay stopped, let the display show what it flushed: until nothing new arrived for
    ``settle_s`` (a shared Redis may carry other publishers' events, hence ``limit_s``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    shown = -1
    while shown != printer.shown and loop.time() < deadline:
        shown = printer.shown
        await asyncio.sleep(settle_s)


async def run(args: argparse.Namespace) -> int:
    """``relay demo`` itself (options parsed in :mod:`relay.tools.cli`); SIGINT and SIGTERM stop it cleanly."""
    options = DemoOptions(
        duration_s=args.duration, bots=args.bots, participants=args.participants, media=args.media,
        json=args.json, port=args.port, config=args.config,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = _Status(Console(stderr=True, highlight=False, soft_wrap=True))
    status.say("[bold]relay demo[/]: Ctrl-C to stop")
    try:
        return await demo(options, stop, status)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

