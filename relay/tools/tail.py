"""``relay tail``: watch the normalized event stream, filtered, as lines for people or JSON for scripts.

::

    relay tail                                   # every text event, pretty
    relay tail --source recall --type 'transcript.*'
    relay tail --session <recording-id> --media  # one meeting, audio and video included
    relay tail --json | jq .payload.text         # one event per line, exactly as published

It is a thin shell around :class:`relay.client.RelayClient` (filters, dedupe, resubscribing and
filling gaps from the log) and :func:`render`, the one-line rendering ``relay demo`` reuses. Once
subscribed it says so on stderr (``subscribed to ...``), so a script can start publishing after
that line. ``--session S --from-start`` first shows the meeting so far from its log, then goes on
live: the subscription is made before the log is read, so nothing falls between them, and live
messages already shown from the log are dropped (by id and by log position).

``relay replay SESSION [--from POS] [--json] [--follow]`` (:func:`run_replay`) shows a meeting from
its log (:class:`relay.client.RelayLog`) and exits 0 at the end of the log; with ``--follow`` it
then waits for new entries until ``session.ended``. Exit status 1: Redis did not answer; 2: a bad
position; 3: no log for the session, or its history was trimmed or lost (the message says which;
``--allow-partial`` shows what remains instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from redis.exceptions import RedisError
from rich.console import Console
from rich.text import Text

from relay.schema import (
    AlertEvent,
    AudioChunkEvent,
    ChatMessageEvent,
    EventBase,
    GenericEvent,
    IndexEvent,
    ParticipantEvent,
    ProviderDataEvent,
    SessionStatusEvent,
    StreamErrorEvent,
    StreamSummaryEvent,
    TranscriptEvent,
    VideoFrameEvent,
)

if TYPE_CHECKING:  # imported when used, so `relay --help` does not load redis
    from relay.client import RelayClient

__all__ = ["EventPrinter", "add_arguments", "add_replay_arguments", "render", "run", "run_replay", "summarize", "tail"]

#: ``relay replay``'s exit status for a position that is not one, and for a log that cannot give
#: the whole meeting (no log, history trimmed or lost).
EXIT_BAD_POSITION = 2
EXIT_NO_HISTORY = 3

#: A colour per source, so interleaved providers are told apart at a glance.
SOURCE_STYLES: dict[str, str] = {"recall": "cyan", "videodb": "magenta", "asapp": "green"}


def summarize(event: EventBase) -> str:
    """What an event says, in a few words (the payload's gist, no base64)."""
    if isinstance(event, TranscriptEvent):
        return event.payload.text
    if isinstance(event, ChatMessageEvent):
        return event.payload.text
    if isinstance(event, ParticipantEvent):
        return event.payload.action.replace("_", " ")
    if isinstance(event, AudioChunkEvent):
        p = event.payload
        return f"{p.mix} {p.duration_ms:g} ms, {p.bytes} B" + ("" if p.bytes else " (silent)")
    if isinstance(event, VideoFrameEvent):
        return f"{event.payload.codec} {event.payload.stream or ''} {event.payload.bytes} B".replace("  ", " ")
    if isinstance(event, IndexEvent):
        return event.payload.text
    if isinstance(event, AlertEvent):
        alert = event.payload
        return f"{alert.label}: {'triggered' if alert.triggered else 'cleared'}" + (
            f" ({alert.confidence:.2f})" if alert.confidence is not None else ""
        )
    if isinstance(event, SessionStatusEvent):
        return event.payload.status
    if isinstance(event, StreamSummaryEvent):
        summary = event.payload
        return (f"stream {summary.stream_id or '?'} {summary.status_code or ''}: "
                f"{summary.transcripts or 0} transcripts, {summary.audio_bytes or 0} B")  # fmt: skip
    if isinstance(event, StreamErrorEvent):
        error = event.payload
        return f"{error.code} {error.message}" + (" (permanent)" if error.permanent else "")
    if isinstance(event, ProviderDataEvent):
        return "provider data"
    if isinstance(event, GenericEvent):
        return f"({event.payload.provider_type})"
    return ""


def _short(session_id: str, width: int = 12) -> str:
    return session_id if len(session_id) <= width else session_id[: width - 1] + "…"


def render(event: EventBase) -> Text:
    """One line for a person: time, source, session, type, who, and what."""
    line = Text()
    line.append(event.time.received.strftime("%H:%M:%S.%f")[:-3], style="dim")
    line.append(" ")
    line.append(f"{event.source.value:<7}", style=SOURCE_STYLES.get(event.source.value, "white"))
    line.append(" ")
    line.append(f"{_short(event.session.id):<12}", style="dim")
    line.append(" ")
    type_style = "bold" if event.type == "transcript.final" else ("dim" if event.is_media else "")
    line.append(f"{event.type:<22}", style=type_style)
    who = event.participant.name or event.participant.id if event.participant else None
    if who:
        line.append(" ")
        line.append(f"{who}:", style="yellow")
    text = summarize(event)
    if text:
        line.append(" ")
        line.append(text, style="italic" if event.type == "transcript.partial" else "")
    return line


class EventPrinter:
    """Shows events: rendered lines on a rich console, or ``--json`` lines on a text stream."""

    def __init__(self, *, json: bool = False, console: Console | None = None, out: IO[str] | None = None) -> None:
        self.json = json
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.out = out or sys.stdout
        self.shown = 0

    def __call__(self, event: EventBase) -> None:
        if self.json:
            # Exactly what the relay published (re-serialized from the validated model).
            self.out.write(event.model_dump_json() + "\n")
            self.out.flush()
        else:
            self.console.print(render(event))
        self.shown += 1


async def tail(client: RelayClient, show: Callable[[EventBase], Any], *, count: int | None = None) -> int:
    """Show events from a subscribed client until ``count`` were shown (or forever); returns how many."""
    shown = 0
    if count is not None and count <= 0:
        return 0
    async for event in client:
        show(event)
        shown += 1
        if count is not None and shown >= count:
            break
    return shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``relay tail``."""
    parser.add_argument("--redis-url", help="Redis the relay publishes to (default: RELAY_REDIS_URL or the settings file)")
    parser.add_argument("--config", type=Path, help="TOML settings file to take the Redis URL and channel prefix from")
    parser.add_argument("--source", choices=("recall", "videodb", "asapp"), help="only this provider")
    parser.add_argument("--type", help="only this event type, or a prefix pattern such as 'transcript.*'")
    parser.add_argument("--session", help="only this session (Recall: the recording id)")
    parser.add_argument("--media", action="store_true", help="include audio.chunk and video.frame events")
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout, for scripts")
    parser.add_argument("--count", type=int, help="exit after this many events")
    parser.add_argument("--from-start", action="store_true",
                        help="with --session: show the meeting so far from its log first, then go on live")  # fmt: skip


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``relay replay``."""
    parser.add_argument("session", metavar="SESSION", help="the session id (Recall: the recording id)")
    parser.add_argument("--from", dest="from_", metavar="POS",
                        help="show only what comes after this log position (an event's log_id, <ms>-<seq>)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout, for scripts")
    parser.add_argument("--follow", action="store_true", help="after the log's end, wait for new events until session.ended")
    parser.add_argument("--allow-partial", action="store_true",
                        help="show what the log holds even when history was trimmed or lost (else exit 3)")  # fmt: skip
    parser.add_argument("--redis-url", help="Redis the relay publishes to (default: RELAY_REDIS_URL or the settings file)")
    parser.add_argument("--config", type=Path, help="TOML settings file to take the Redis URL and channel prefix from")


async def run_replay(args: argparse.Namespace, *, redis_url: str, prefix: str = "relay") -> int:
    """``relay replay`` itself; see the module docstring for its exit status."""
    from redis.asyncio import Redis

    from relay.client import RelayLog
    from relay.errors import BadPosition, LogError

    err = Console(stderr=True, highlight=False)
    # Without --follow every call returns at once: a timeout keeps a stuck Redis from hanging it.
    redis = Redis.from_url(redis_url, socket_connect_timeout=2.0, socket_timeout=None if args.follow else 10.0)
    show = EventPrinter(json=args.json)
    partial = args.allow_partial
    loop = asyncio.get_running_loop()

    async def play() -> None:
        async with RelayLog(redis=redis, prefix=prefix, reconnect=args.follow) as log:
            if args.follow:
                events = log.follow(args.session, args.from_, allow_trimmed=partial, allow_lost=partial)
            else:
                events = log.replay(args.session, args.from_, allow_trimmed=partial, allow_lost=partial)
            async for event in events:
                show(event)

    reader = asyncio.create_task(play())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, reader.cancel)
    try:
        await reader
    except asyncio.CancelledError:
        pass
    except BadPosition as exc:
        err.print(f"relay replay: {exc}")
        return EXIT_BAD_POSITION
    except LogError as exc:
        err.print(f"relay replay: {type(exc).__name__}: {exc}")
        return EXIT_NO_HISTORY
    except (RedisError, OSError) as exc:
        err.print(f"relay replay: cannot read the log at {_redact(redis_url)}: {exc}")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await redis.aclose()
    err.print(f"{show.shown} events", style="dim")
    return 0


async def _from_start(client: RelayClient, session: str, show: Callable[[EventBase], Any], err: Console, *,
                      redis_url: str, prefix: str, count: int | None) -> tuple[int, int] | None:  # fmt: skip
    """``--from-start``: the meeting so far from the log, shown, and remembered in the client so
    that live messages it already showed are dropped. Returns (shown, exit status) to stop with,
    or None to go on live."""
    from relay.client import RelayLog
    from relay.errors import LogError, SessionNotFound

    shown = 0
    async with RelayLog(redis_url, prefix=prefix) as log:
        try:
            async for event in log.replay(session):
                if client.remember(event):
                    show(event)
                    shown += 1
                    if count is not None and shown >= count:
                        return shown, 0
        except SessionNotFound:
            err.print(f"no log for session {session!r} yet: showing live events only", style="dim")
        except LogError as exc:
            err.print(f"relay tail: {type(exc).__name__}: {exc}")
            return shown, EXIT_NO_HISTORY
    return None


async def run(args: argparse.Namespace, *, redis_url: str, prefix: str = "relay") -> int:
    """``relay tail`` itself: subscribe, show until ``--count`` or SIGINT/SIGTERM; exit status."""
    from relay.client import RelayClient

    err = Console(stderr=True, highlight=False)
    client = RelayClient(
        redis_url, source=args.source, type=args.type, session=args.session, media=args.media, prefix=prefix
    )
    try:
        await client.subscribe()
    except (RedisError, OSError) as exc:
        await client.aclose()
        err.print(f"relay tail: cannot subscribe at {_redact(redis_url)}: {exc}")
        err.print("relay tail: point --redis-url (or RELAY_REDIS_URL) at the relay's Redis; a private one "
                  "started by `relay serve` logs its URL when it starts")  # fmt: skip
        return 1
    err.print(f"subscribed to {', '.join(client.patterns)} at {_redact(redis_url)}", style="dim")
    show = EventPrinter(json=args.json)
    count = args.count
    if getattr(args, "from_start", False):
        if args.session is None:
            await client.aclose()
            err.print("relay tail: --from-start needs --session (a meeting's log is read from its start)")
            return 2
        try:
            stop = await _from_start(client, args.session, show, err, redis_url=redis_url, prefix=prefix, count=count)
        except (RedisError, OSError) as exc:
            await client.aclose()
            err.print(f"relay tail: cannot read the log at {_redact(redis_url)}: {exc}")
            return 1
        if stop is not None:
            await client.aclose()
            return stop[1]
        count = None if count is None else count - show.shown

    loop = asyncio.get_running_loop()
    reader = asyncio.create_task(tail(client, show, count=count))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, reader.cancel)
    try:
        await reader
    except asyncio.CancelledError:
        pass  # Ctrl-C or SIGTERM: a normal way to stop watching
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await client.aclose()
    return 0


def _redact(url: str) -> str:
    """A Redis URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
