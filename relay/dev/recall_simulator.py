"""A Recall.ai bot, simulated: it connects to a real-time WebSocket endpoint and sends what a bot sends.

It is a real WebSocket client (``websockets``), so the relay sees exactly what production sees:
the endpoint URL with its token, the documented JSON frames (:mod:`relay.dev.recall_frames`),
or the legacy header and binary frames. It serves the demo, the benchmarks and the tests::

    async with SimulatedBot(url, retry=RetryPolicy(interval_s=0.05)) as bot:
        alice = frames.participant(100, "Alice")
        await bot.join(alice)
        await bot.transcript(alice, "hello everyone")
        await bot.audio_separate(alice, frames.tone_pcm(20))

    await run_meeting(SimulatedBot(url), duration_s=30, audio="mixed", video=True)

**Retry policy** (Recall's, optional): on a failed handshake, a network error or any server-side
close, the bot retries up to :attr:`RetryPolicy.attempts` times, :attr:`RetryPolicy.interval_s`
apart, per incident; after that the endpoint is *failed* (:class:`EndpointFailed`) and gets nothing
more. A frame whose send failed because the socket dropped is sent again after the reconnect, as a
real bot may resend: consumers deduplicate.

``relay simulate-bot`` is :func:`add_arguments` + :func:`run`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from relay.dev import recall_frames as frames
from relay.providers.recall.auth import sign
from relay.dev.recall_frames import BotIdentity, Frame, ParticipantAction

__all__ = ["RetryPolicy", "RECALL_RETRY", "EndpointFailed", "SimulatedBot", "MeetingOptions", "run_meeting",
           "add_arguments", "run"]  # fmt: skip

AudioMode = Literal["none", "mixed", "separate"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a bot retries its endpoint: ``attempts`` retries per incident, ``interval_s`` apart."""

    attempts: int = 30
    interval_s: float = 3.0


#: What Recall documents: 30 retries, 3 s apart, per incident.
RECALL_RETRY: Final = RetryPolicy()


class EndpointFailed(Exception):
    """Every retry of an incident failed: Recall marks the endpoint ``failed`` and stops sending."""

    def __init__(self, attempts: int, last_error: BaseException | None) -> None:
        super().__init__(f"endpoint failed after {attempts} retries (last error: {last_error!r})")
        self.attempts = attempts
        self.last_error = last_error


_HANDSHAKE_ERRORS: Final = (OSError, TimeoutError, WebSocketException)


def redact(url: str) -> str:
    """The URL without its query string (which holds the endpoint token): safe to print."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "…" if parts.query else "", ""))


class SimulatedBot:
    """One bot's connection to one real-time endpoint.

    Counters: :attr:`frames_sent`, :attr:`bytes_sent`, :attr:`sent` (frames by event name, or
    ``legacy.header/audio/video``), :attr:`attempts` (handshakes tried), :attr:`connects`
    (handshakes that succeeded), :attr:`drops` (server-side closes and network losses).
    After the server closes the socket, :attr:`close_code` and :attr:`close_reason` say how; after
    a handshake refused with an HTTP status, :attr:`rejected_status` says which.
    With ``signing_secret`` (``whsec_...``) every handshake carries Recall's svix-style signature
    headers (:func:`relay.providers.recall.auth.sign`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        identity: BotIdentity | None = None,
        retry: RetryPolicy | None = None,
        open_timeout: float = 5.0,
        compression: Literal["deflate"] | None = None,
        signing_secret: str | None = None,
    ) -> None:
        self.url = url
        self.signing_secret = signing_secret
        self.identity = identity or BotIdentity.create()
        self.retry = retry
        self.open_timeout = open_timeout
        self.compression = compression
        self.frames_sent = 0
        self.bytes_sent = 0
        self.sent: Counter[str] = Counter()
        self.attempts = 0
        self.connects = 0
        self.drops = 0
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.rejected_status: int | None = None
        #: The legacy video connections :func:`run_meeting` opened for this bot's meeting.
        self.video_streams: list[SimulatedBot] = []
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # set while connected, or once there is no going on
        self._done = asyncio.Event()  # set once the connection is over for good
        self._failure: EndpointFailed | None = None
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._started = time.monotonic()

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> SimulatedBot:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self, url: str | None = None) -> None:
        """Open the socket (with the retry policy, if any); raise :class:`EndpointFailed` or the handshake error."""
        if url is not None:
            self.url = url
        if self.url is None:
            raise ValueError("SimulatedBot needs a url")
        self._started = time.monotonic()
        try:
            self._ws = await self._open()
        except _HANDSHAKE_ERRORS as exc:
            if self.retry is None:
                self._done.set()
                raise
            self._ws = await self._retry(exc)  # raises EndpointFailed
        self._ready.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="recall-bot-supervisor")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End the meeting: close the socket from the bot's side and stop retrying."""
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if self._ws is not None:
            await self._ws.close(code, reason)
        self._ready.set()
        self._done.set()

    async def wait_closed(self) -> None:
        """Wait until the connection is over for good (server closed without retry, retries exhausted, or closed)."""
        await self._done.wait()

    @property
    def opened(self) -> bool:
        """Whether :meth:`connect` has succeeded once (the bot may have dropped or closed since)."""
        return self.connects > 0

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._ready.is_set() and self._failure is None and not self._done.is_set()

    @property
    def failed(self) -> bool:
        """Whether the retry policy gave up (the endpoint is ``failed``)."""
        return self._failure is not None

    def elapsed(self) -> float:
        """Seconds since the bot first connected: the recording's ``relative`` clock."""
        return round(time.monotonic() - self._started, 3)

    async def _open(self) -> ClientConnection:
        assert self.url is not None
        self.attempts += 1
        headers: dict[str, str] | None = None
        if self.signing_secret is not None:
            # Each handshake is a new signed request: fresh id and timestamp, empty body.
            headers = sign(self.signing_secret, f"msg_{uuid.uuid4().hex}", int(time.time()))
        try:
            ws = await connect(
                self.url, proxy=None, open_timeout=self.open_timeout, compression=self.compression,
                additional_headers=headers, max_size=None,
                ping_interval=None,  # the server pings; the client answers automatically
            )  # fmt: skip
        except InvalidStatus as exc:
            self.rejected_status = exc.response.status_code
            raise
        self.connects += 1
        return ws

    async def _retry(self, error: BaseException | None) -> ClientConnection:
        """One incident: up to ``retry.attempts`` retries, ``retry.interval_s`` apart."""
        assert self.retry is not None
        for _ in range(self.retry.attempts):
            await asyncio.sleep(self.retry.interval_s)
            try:
                return await self._open()
            except _HANDSHAKE_ERRORS as exc:
                error = exc
        self._failure = EndpointFailed(self.retry.attempts, error)
        self._ready.set()
        self._done.set()
        raise self._failure

    async def _supervise(self) -> None:
        """Notice server-side closes (even while the bot is quiet) and reconnect per the policy."""
        while True:
            ws = self._ws
            assert ws is not None
            await ws.wait_closed()
            if self._closing:
                return
            self.drops += 1
            self.close_code, self.close_reason = ws.close_code, ws.close_reason
            if self.retry is None:
                self._done.set()
                return
            self._ready.clear()
            try:
                self._ws = await self._retry(ws.close_exc)
            except EndpointFailed:
                return
            self._ready.set()

    # --- sending ---------------------------------------------------------------------------------

    async def send(self, frame: Frame | str | bytes, kind: str | None = None) -> None:
        """Send one frame (a dict is JSON-encoded); with a retry policy, survive drops by resending.

        Raises :class:`EndpointFailed` once retries are exhausted, and
        :class:`websockets.exceptions.ConnectionClosed` when the socket closed and there is no
        retry policy.
        """
        if isinstance(frame, dict):
            kind = kind or frame.get("event") or "legacy.header"
            data: str | bytes = frames.encode(frame)
        else:
            data = frame
        while True:
            await self._ready.wait()
            if self._failure is not None:
                raise self._failure
            ws = self._ws
            if ws is None:
                raise RuntimeError("SimulatedBot.send() before connect()")
            try:
                await ws.send(data)
            except ConnectionClosed:
                if self.retry is None or self._closing:
                    raise
                if self._ws is ws:  # the supervisor has not replaced it yet: wait for it to
                    self._ready.clear()
                continue
            break
        self.frames_sent += 1
        self.bytes_sent += len(data)
        self.sent[kind or ("binary" if isinstance(data, bytes) else "text")] += 1

    def _at(self, at: float | None) -> float:
        return self.elapsed() if at is None else at

    async def participant_event(self, action: ParticipantAction, who: Frame, at: float | None = None) -> None:
        await self.send(frames.participant_event(self.identity, action, who, self._at(at)))

    async def join(self, who: Frame, at: float | None = None) -> None:
        await self.participant_event("join", who, at)

    async def leave(self, who: Frame, at: float | None = None) -> None:
        await self.participant_event("leave", who, at)

    async def speech_on(self, who: Frame, at: float | None = None) -> None:
        await self.participant_event("speech_on", who, at)

    async def speech_off(self, who: Frame, at: float | None = None) -> None:
        await self.participant_event("speech_off", who, at)

    async def chat(self, who: Frame, text: str, at: float | None = None, to: Literal["everyone", "only_bot"] = "everyone") -> None:
        await self.send(frames.chat_message(self.identity, who, text, self._at(at), to))

    async def transcript(self, who: Frame | None, text: str, at: float | None = None, *, partial: bool = False) -> None:
        """A transcript of ``text``, its words spoken back to back from ``at``."""
        await self.send(frames.transcript(self.identity, who, frames.words_at(text, self._at(at)), partial=partial))

    async def provider_data(self, payload: Any) -> None:
        await self.send(frames.provider_data(self.identity, payload))

    async def audio_mixed(self, pcm: bytes, at: float | None = None) -> None:
        await self.send(frames.audio_mixed(self.identity, pcm, self._at(at)))

    async def audio_separate(self, who: Frame, pcm: bytes, at: float | None = None) -> None:
        await self.send(frames.audio_separate(self.identity, who, pcm, self._at(at)))

    async def video_png(self, who: Frame, png: bytes, at: float | None = None, stream: Literal["webcam", "screenshare"] = "webcam") -> None:
        await self.send(frames.video_png(self.identity, who, png, self._at(at), stream))

    async def video_h264(self, who: Frame, h264: bytes, at: float | None = None, stream: Literal["webcam", "screenshare"] = "webcam") -> None:
        await self.send(frames.video_h264(self.identity, who, h264, self._at(at), stream))

    async def legacy_header(
        self, *, separate_streams: bool = False, offset: float | None = 0.0, recording_id: bool | None = None
    ) -> None:
        """The header of a legacy audio connection. ``recording_id``: whether it names the recording;
        by default as Recall's pages show it (the combined-streams header does, the separate-streams
        one does not)."""
        with_recording = not separate_streams if recording_id is None else recording_id
        header = frames.legacy_header(self.identity.bot_id, self.identity.recording_id if with_recording else None,
                                      separate_streams=separate_streams, offset=offset)  # fmt: skip
        await self.send(header, kind="legacy.header")

    async def legacy_video_header(self) -> None:
        """The header of a legacy video connection (one connection per video stream)."""
        await self.send(frames.legacy_video_header(self.identity.bot_id), kind="legacy.header")

    async def legacy_audio(self, pcm: bytes, participant_id: int | None = None) -> None:
        await self.send(frames.legacy_audio(pcm, participant_id), kind="legacy.audio")

    async def legacy_video(self, participant_id: int, timestamp_ms: int, png: bytes) -> None:
        await self.send(frames.legacy_video(participant_id, timestamp_ms, png), kind="legacy.video")


# ---------------------------------------------------------------------------------------------
# A scripted meeting
# ---------------------------------------------------------------------------------------------

_NAMES: Final = ("Alice Moreau", "Bilal Khan", "Chen Wei", "Dana Okafor", "Emil Novak", "Fatima Zahra",
                 "Goran Petrov", "Hana Sato")  # fmt: skip
_LINES: Final = (
    "thanks everyone for joining let's get started",
    "the relay handled the load test without dropping a single event",
    "can we look at the latency numbers for the audio path",
    "I think we should ship it to staging this week",
    "the customer asked about the retention policy for transcripts",
    "let's follow up on that after the call",
)  # fmt: skip
_CHATS: Final = ("link to the doc is in the calendar invite", "+1", "can everyone see my screen?")


@dataclass(frozen=True, slots=True)
class MeetingOptions:
    """What :func:`run_meeting` plays. ``rate`` is text events (speech, transcripts, chat) per second."""

    duration_s: float = 10.0
    participants: int = 2
    audio: AudioMode = "separate"
    video: bool = False
    rate: float = 2.0
    chunk_ms: int = 20
    realtime: bool = True
    legacy: bool = False
    seed: int | None = None


@dataclass
class _Script:
    """The text side of the meeting: turns of speech_on, two growing partials, final, speech_off,
    and a chat message after every third turn."""

    people: Sequence[Frame]
    rng: random.Random
    turns: int = 0
    step: int = 0
    line: str = ""
    speaking: int | None = None

    def next_frame(self, bot: BotIdentity, at: float) -> Frame:
        speaker = self.turns % len(self.people)
        who = self.people[speaker]
        step, steps = self.step, 6 if self.turns % 3 == 2 else 5
        self.step += 1
        if self.step == steps:
            self.step, self.turns = 0, self.turns + 1
        if step == 0:
            self.line, self.speaking = self.rng.choice(_LINES), speaker
            return frames.participant_event(bot, "speech_on", who, at)
        words = self.line.split()
        if step in (1, 2):  # interim results grow, as streaming transcription does
            part = words[: max(1, len(words) * step // 3)]
            return frames.transcript(bot, who, [(w, at, None) for w in part], partial=True)
        if step == 3:
            return frames.transcript(bot, who, frames.words_at(self.line, max(0.0, round(at - 0.35 * len(words), 3))))
        if step == 4:
            self.speaking = None
            return frames.participant_event(bot, "speech_off", who, at)
        return frames.chat_message(bot, who, self.rng.choice(_CHATS), at)


async def run_meeting(bot: SimulatedBot, options: MeetingOptions | None = None) -> SimulatedBot:
    """Play a meeting on a connected (or not yet connected) bot, then close it; returns the bot.

    Everyone joins at 0 s; speakers take turns (``speech_on``, partial and final transcripts,
    ``speech_off``; a chat message every third turn) at ``rate`` text events per second; audio goes
    out every ``chunk_ms`` (the speaker's tone, others' empty "silent" buffers in separate mode), and
    PNG frames at 2 fps per participant with ``video``; everyone leaves at the end. Times in frames
    are the meeting clock; with ``realtime`` the sends are paced to the wall clock, else sent as
    fast as the socket takes them. ``legacy`` plays the old binary protocols: the audio header and
    PCM frames on ``bot``, and, with ``video``, one more connection per participant's video stream
    (as Recall opens them: the video header, then participant id + millisecond timestamp + PNG
    frames), listed in ``bot.video_streams`` and closed with it.
    """
    o = options or MeetingOptions()
    rng = random.Random(o.seed)
    people = [frames.participant(100 + i, _NAMES[i % len(_NAMES)], is_host=i == 0) for i in range(o.participants)]
    script = _Script(people, rng)
    png = frames.png_image(64, 36, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    ticks = max(1, round(o.duration_s * 1000 / o.chunk_ms))
    per_tick = o.rate * o.chunk_ms / 1000
    video_every = max(1, 500 // o.chunk_ms)
    if not bot.opened:
        await bot.connect()
    loop = asyncio.get_running_loop()
    start = loop.time()
    ident = bot.identity
    video_streams: list[SimulatedBot] = []
    try:
        if o.legacy:
            if o.audio != "none":
                await bot.legacy_header(separate_streams=o.audio == "separate")
            if o.video:
                video_streams = await _open_video_streams(bot, len(people))
        else:
            for who in people:
                await bot.send(frames.participant_event(ident, "join", who, 0.0))
        budget = 0.0
        for tick in range(ticks):
            at = round(tick * o.chunk_ms / 1000, 3)
            if o.realtime:
                delay = start + at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            budget += per_tick
            while budget >= 1 and not o.legacy:
                budget -= 1
                await bot.send(script.next_frame(ident, at))
            await _send_audio(bot, o, people, script.speaking if not o.legacy else tick // 250 % len(people), tick, at)
            if o.video and tick % video_every == 0:
                for i, who in enumerate(people):
                    if o.legacy:
                        await video_streams[i].legacy_video(who["id"], round(at * 1000), png)
                    else:
                        await bot.send(frames.video_png(ident, who, png, at))
        if not o.legacy:
            end = round(ticks * o.chunk_ms / 1000, 3)
            if script.speaking is not None:
                await bot.send(frames.participant_event(ident, "speech_off", people[script.speaking], end))
            for who in people:
                await bot.send(frames.participant_event(ident, "leave", who, end))
    finally:
        for stream in bot.video_streams:
            await stream.close()
        await bot.close()
    return bot


async def _open_video_streams(bot: SimulatedBot, count: int) -> list[SimulatedBot]:
    """``count`` legacy video connections of ``bot``'s meeting, each with its header sent."""
    for _ in range(count):
        stream = SimulatedBot(bot.url, identity=bot.identity, retry=bot.retry, open_timeout=bot.open_timeout,
                              compression=bot.compression, signing_secret=bot.signing_secret)  # fmt: skip
        bot.video_streams.append(stream)  # before connecting: closed with the meeting even if this fails
        await stream.connect()
        await stream.legacy_video_header()
    return bot.video_streams


async def _send_audio(bot: SimulatedBot, o: MeetingOptions, people: Sequence[Frame], speaking: int | None, tick: int, at: float) -> None:
    if o.audio == "none":
        return
    samples = 16 * o.chunk_ms
    tone = frames.tone_pcm(o.chunk_ms, 180 + 40 * (speaking or 0), start_sample=tick * samples) if speaking is not None else None
    if o.audio == "mixed":
        pcm = tone if tone is not None else frames.silence_pcm(o.chunk_ms)
        if o.legacy:
            await bot.legacy_audio(pcm)
        else:
            await bot.send(frames.audio_mixed(bot.identity, pcm, at))
        return
    for i, who in enumerate(people):
        pcm = tone if i == speaking and tone is not None else b""
        if o.legacy:
            if pcm:  # legacy bots send nothing for silent participants
                await bot.legacy_audio(pcm, who["id"])
        else:
            await bot.send(frames.audio_separate(bot.identity, who, pcm, at))


# ---------------------------------------------------------------------------------------------
# CLI: relay simulate-bot
# ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``relay simulate-bot``."""
    parser.add_argument("--url", required=True, help="endpoint URL, token included (ws://host:port/recall/?token=...)")
    parser.add_argument("--bots", type=int, default=1, help="concurrent bots, one connection each (default 1)")
    parser.add_argument("--duration", type=float, default=10.0, help="meeting length in seconds (default 10)")
    parser.add_argument("--participants", type=int, default=2, help="participants per meeting (default 2)")
    parser.add_argument("--audio", choices=("none", "mixed", "separate"), default="separate", help="audio buffers to send (default separate)")
    parser.add_argument("--video", action="store_true", help="send PNG frames, 2 fps per participant")
    parser.add_argument("--rate", type=float, default=2.0, help="text events (speech, transcripts, chat) per second per bot (default 2)")
    parser.add_argument("--legacy", action="store_true", help="speak the legacy binary protocols (header + PCM; with --video, one more connection per video stream)")
    parser.add_argument("--retry-interval", type=float, default=RECALL_RETRY.interval_s, help="seconds between retries (Recall: 3)")
    parser.add_argument("--fast", action="store_true", help="do not pace to the wall clock: send as fast as the socket takes it")
    parser.add_argument("--signing-secret-file", type=Path, help="file holding a whsec_ secret: sign each handshake as Recall does")


async def run(args: argparse.Namespace) -> int:
    """Run ``args.bots`` meetings concurrently, print a summary; exit status 0 when every bot finished."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    retry = RetryPolicy(attempts=RECALL_RETRY.attempts, interval_s=args.retry_interval)
    secret = args.signing_secret_file.read_text().strip() if getattr(args, "signing_secret_file", None) else None
    bots = [SimulatedBot(args.url, retry=retry, signing_secret=secret) for _ in range(args.bots)]
    options = [
        MeetingOptions(duration_s=args.duration, participants=args.participants, audio=args.audio, video=args.video,
                       rate=args.rate, legacy=args.legacy, realtime=not args.fast, seed=i)
        for i in range(args.bots)
    ]  # fmt: skip
    console.print(f"[bold]simulate-bot[/]: {args.bots} bot(s) -> {redact(args.url)}, {args.duration:g} s, "
                  f"audio={args.audio}{' +video' if args.video else ''}{' legacy' if args.legacy else ''}")  # fmt: skip
    began = time.monotonic()
    results = await asyncio.gather(*(run_meeting(b, o) for b, o in zip(bots, options, strict=True)), return_exceptions=True)
    took = time.monotonic() - began

    table = Table(title=f"{args.bots} bot(s) in {took:.1f} s")
    for column in ("bot", "result", "frames", "MB", "connects", "drops", "last close"):
        table.add_column(column, justify="right" if column not in ("bot", "result") else "left")
    failures = 0
    for bot, result in zip(bots, results, strict=True):
        ok = not isinstance(result, BaseException)
        failures += not ok
        close = f"{bot.close_code} {bot.close_reason or ''}".strip() if bot.close_code is not None else "-"
        table.add_row(
            bot.identity.bot_id[:8], "ok" if ok else f"[red]{type(result).__name__}[/]", str(bot.frames_sent),
            f"{bot.bytes_sent / 1e6:.2f}", str(bot.connects), str(bot.drops), close,
        )  # fmt: skip
    console.print(table)
    every = [c for b in bots for c in (b, *b.video_streams)]  # legacy video streams are connections of their own
    total = sum(c.frames_sent for c in every)
    console.print(f"{total} frames, {total / took:.0f} frames/s; by kind: "
                  + ", ".join(f"{k}={v}" for k, v in sorted(sum((c.sent for c in every), Counter()).items())))  # fmt: skip
    return 1 if failures else 0
