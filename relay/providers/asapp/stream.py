"""One speaker's ASAPP AutoTranscribe stream: Recall audio in, transcripts out, across reconnects.

Audio path::

    feed(16 kHz) ─▶ Downsampler ─▶ buffer (global byte offsets) ─▶ paced frames ─▶ socket n
                                      ▲                                          │
                                      └──── confirmed offset ◀── transcripts ◀───┘

The stream's audio is one sequence of 8 kHz bytes with *global* offsets that never restart. A
socket (:class:`_Conn`) carries a contiguous part of it; ASAPP's transcripts say (in ms of that
socket's audio) how far it has transcribed, which *confirms* the audio up to there. Audio is kept
until confirmed, so when a socket fails the next one (new URL, new ``startStream``) starts from the
confirmed offset: nothing is lost and nothing already transcribed is sent twice. The buffer is
bounded by ``buffer_max_ms``; beyond it the oldest audio goes, counted by reason. The books (offsets,
confirmation, rewind, the bounded window) are kept by :mod:`relay.providers.asapp.ledger`; this module
does the I/O around them.

Every socket starts with ``POST /autotranscribe/v1/streaming-url`` (URLs are single-use and expire),
then ``startStream`` and waits for ``startResponse`` 1000. ASAPP ends a stream, at start or later,
with a ``finalResponse`` whose status says why; anything but 1000 is a failure, handled by its
kind (:func:`~relay.providers.asapp.parse.classify`):

* permanent (a refused request, bad settings, an audio format): this stream stops, without a
  retry, and a ``stream.error`` event names the code; its unconfirmed audio is counted dropped;
* transient (5000-5002, 2002, a dropped socket): a new URL after :class:`~relay.core.backoff.Backoff`
  (``Retry-After`` honoured), sending again what no transcript confirmed;
* 1008 (token): a fresh URL at once, at most ``MAX_TOKEN_RETRIES`` times without a transcript in
  between, then permanent;
* 4090 (duration limit): a new stream at once; 4083 (idle): a new stream (at once if audio is
  waiting); both send the unconfirmed audio again;
* 4080 (audio ASAPP cannot transcribe): that audio is counted dropped (``untranscribable``), not
  sent again; a new stream opens when new audio comes.

After ``idle_finish_s`` without audio the socket is finished cleanly (ASAPP would end it with
4083) and a new one opens when audio returns; after ``rollover_after_s`` a new socket is opened
first and the old one finished, so the 3 h limit never cuts a speaker off.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Literal

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from relay.core.backoff import Backoff
from relay.core.metrics import RelayMetrics
from relay.errors import FrameRejected
from relay.providers.asapp.config import AsappSettings
from relay.providers.asapp.parse import (
    ErrorKind,
    FinalResponse,
    StartResponse,
    TranscriptMessage,
    classify,
    error_event,
    parse_message,
    summary_event,
    transcript_event,
)
from relay.providers.asapp.ledger import AudioLedger, SocketLedger
from relay.providers.asapp.resample import OUT_BYTES_PER_MS, Downsampler, frame_length
from relay.providers.asapp.timeline import AudioTimeline
from relay.core.publisher import EventPublisher
from relay.schema import EventBase, Participant, SessionRef

log = logging.getLogger("relay.asapp")

PROVIDER = "asapp"
URL_PATH = "/autotranscribe/v1/streaming-url"
#: ASAPP's shortest frame: 20 ms of 8 kHz audio.
MIN_FRAME_BYTES = 20 * OUT_BYTES_PER_MS
#: The ``target`` label of ``relay_upstream_connected`` for ASAPP sockets (a bounded value).
TARGET = "autotranscribe"
#: Fresh URLs after an invalid or expired token (1008), without a transcript in between, before giving up.
MAX_TOKEN_RETRIES = 3
#: ``relay_asapp_streams_finished_total{reason}`` for a socket ended by a failure of each kind.
_FINISHED_REASON = {
    ErrorKind.TRANSIENT: "transient",
    ErrorKind.TOKEN: "token",
    ErrorKind.IDLE: "idle",
    ErrorKind.TOO_LONG: "limit",
    ErrorKind.UNTRANSCRIBABLE: "untranscribable",
    ErrorKind.PERMANENT: "permanent",
}


class StreamState(StrEnum):
    WAITING = "waiting"  # no socket: no audio yet, or idle
    CONNECTING = "connecting"
    STREAMING = "streaming"
    STOPPED = "stopped"  # a permanent error: this speaker is not transcribed any more
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SpeakerStream:
    """Who a stream transcribes: the Recall meeting, the participant and their ASAPP role."""

    conversation_id: str
    #: The bridge's key for the speaker within the meeting (logs, task names).
    speaker_id: str
    #: ASAPP's ``sender.externalId``: the person, the same across meetings (``AsappSettings.external_id_of``).
    external_id: str
    role: Literal["agent", "customer"]
    session: SessionRef
    participant: Participant


class _Failure(Exception):
    """Getting or keeping a socket failed; ``reason`` is a bounded metric label, ``kind`` what to do."""

    def __init__(
        self, reason: str, code: str, message: str, *, kind: ErrorKind, retry_after: float | None = None, status: bool = False
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.reason = reason
        self.code = code
        self.message = message
        self.kind = kind
        self.retry_after = retry_after
        #: Whether ASAPP said so with a status code (a ``finalResponse``), not by closing or timing out.
        self.status = status

    @property
    def permanent(self) -> bool:
        return self.kind is ErrorKind.PERMANENT


def _status_failure(code: str, description: str) -> _Failure:
    """The failure a non-1000 status code means."""
    kind = classify(code)
    if kind is ErrorKind.OK:  # a 1000 where a refusal or an end was not expected: the socket is done
        kind = ErrorKind.TRANSIENT
    return _Failure(f"status_{kind.value}", code, description or f"status {code}", kind=kind, status=True)


@dataclass(eq=False)
class _Conn:
    """One started socket and what it has carried."""

    ws: ClientConnection
    stream_id: str | None
    started_at: float
    last_send: float
    audio: SocketLedger = field(default_factory=SocketLedger)
    failure: _Failure | None = None
    final: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None


class AsappStream:
    """One speaker's transcription; create, :meth:`start`, :meth:`feed` audio, :meth:`finish` or :meth:`aclose`.

    :meth:`feed` and :meth:`finish` are synchronous and never block or raise, so the bridge can call
    them from the Recall connection's ``data_received`` (no task there); the work happens on the
    stream's own task.
    """

    def __init__(
        self,
        speaker: SpeakerStream,
        *,
        settings: AsappSettings,
        client: httpx.AsyncClient,
        publisher: EventPublisher,
        metrics: RelayMetrics,
    ) -> None:
        self.speaker = speaker
        self._settings = settings
        self._client = client
        self._publisher = publisher
        self._metrics = metrics
        self._participant = speaker.participant.model_copy(update={"role": speaker.role})
        self._session = speaker.session
        self._resampler = Downsampler(byte_order=settings.byte_order)
        self._timeline = AudioTimeline()
        self._backoff = Backoff(settings.backoff_initial_s, max(settings.backoff_max_s, settings.backoff_initial_s))
        self._ledger = AudioLedger(settings.buffer_max_ms * OUT_BYTES_PER_MS)
        self._in_offset = 0  # global offset of the next input sample (input time, not resampler output)
        self._reported_buffer = 0
        self._last_feed = time.monotonic()
        self._wake = asyncio.Event()
        self._finish_requested = False
        self._flushed = False
        self._down_since: float | None = None
        self._token_failures = 0  # 1008s since the last transcript
        self._conns: set[_Conn] = set()
        self._task: asyncio.Task[None] | None = None
        self.state = StreamState.WAITING
        self.bytes_fed = 0  # 16 kHz bytes given to feed()
        self.bytes_dropped = 0  # 8 kHz bytes never transcribed
        self.sockets_opened = 0

    # --- the ingress side (synchronous, never raises) ------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"asapp-stream {self.speaker.speaker_id}")

    @property
    def closed(self) -> bool:
        return self.state in (StreamState.STOPPED, StreamState.CLOSED) or self._finish_requested

    def feed(self, pcm16k: bytes, relative: float | None = None) -> None:
        """Queue Recall audio (16 kHz S16LE) recorded at ``relative`` seconds into the meeting."""
        if not pcm16k:
            return
        if self.closed:
            self._drop(len(pcm16k) // 2, "stream_stopped")
            return
        self.bytes_fed += len(pcm16k)
        if relative is not None:
            self._timeline.add(self._in_offset, relative)
        self._in_offset += len(pcm16k) // 2
        self._append(self._resampler.process(pcm16k))
        self._last_feed = time.monotonic()

    def finish(self) -> None:
        """Send what is buffered, then ``finishStream`` and wait for ``finalResponse``; then the task ends."""
        self._finish_requested = True
        self._wake.set()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the stream's task has ended (at once if it never started)."""
        if self._task is None:
            callback()
        else:
            self._task.add_done_callback(lambda _task: callback())

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def aclose(self, timeout: float) -> None:
        """:meth:`finish`, wait up to ``timeout`` seconds, then cut the stream off."""
        self.finish()
        if self._task is None:
            self.state = StreamState.CLOSED
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- buffer ----------------------------------------------------------------------------

    def _append(self, audio: bytes) -> None:
        if not audio:
            return
        self._drop(self._ledger.append(audio), "buffer_full")
        self._report_buffer()
        self._wake.set()

    def _confirm(self, offset: int) -> None:
        """Audio before ``offset`` is transcribed: forget it."""
        start = self._ledger.confirm(offset)
        if start is not None:
            self._timeline.forget_before(start)
            self._report_buffer()

    def _drop(self, n: int, reason: str) -> None:
        if n > 0:
            self.bytes_dropped += n
            self._metrics.asapp_audio_dropped_bytes.labels(reason).inc(n)

    def _report_buffer(self) -> None:
        self._metrics.asapp_audio_buffered_bytes.inc(self._ledger.buffered - self._reported_buffer)
        self._reported_buffer = self._ledger.buffered

    def _flush_resampler(self) -> None:
        if not self._flushed:
            self._flushed = True
            self._append(self._resampler.flush())

    # --- the stream's task -------------------------------------------------------------------

    async def _run(self) -> None:
        conn: _Conn | None = None
        try:
            while True:
                if conn is None:
                    if not await self._wait_for_audio():
                        return
                    conn = await self._connect()
                    if conn is None:
                        return
                outcome = await self._pump(conn)
                if outcome == "rollover":
                    new = await self._connect()
                    if not await self._finish_conn(conn, "rollover"):
                        if new is not None:
                            await self._close_conn(new)
                        return
                    conn = new
                    if conn is None:
                        return
                elif outcome in ("finish", "idle"):
                    finished, conn = conn, None
                    if not await self._finish_conn(finished, outcome):
                        return
                else:
                    failed, conn = conn, None
                    if not await self._on_failure(failed):
                        return
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not take the relay down; this speaker stops
            log.exception("asapp stream %s failed unexpectedly", self.speaker.speaker_id)
            self._metrics.upstream_errors.labels(PROVIDER, "internal").inc()
        finally:
            for c in list(self._conns):
                await self._close_conn(c)
            self._drop(self._ledger.discard(), "stream_stopped")
            self._report_buffer()
            if self.state != StreamState.STOPPED:
                self.state = StreamState.CLOSED

    async def _wait_for_audio(self) -> bool:
        """Wait until there is audio to send (True) or the stream is finished with nothing left (False)."""
        self.state = StreamState.WAITING
        while True:
            self._wake.clear()
            if self._finish_requested:
                self._flush_resampler()
            unsent = self._ledger.unsent
            # A tail under one minimum frame (20 ms) waits for more speech rather than opening a socket.
            if unsent >= MIN_FRAME_BYTES or (self._finish_requested and unsent > 0):
                return True
            if self._finish_requested:
                return False
            await self._wake.wait()

    async def _pump(self, conn: _Conn) -> Literal["finish", "idle", "rollover", "failed"]:
        """Send audio on ``conn``, paced, until it fails, idles, must roll over, or all is sent at finish."""
        s = self._settings
        speed = s.pace_speed
        max_bytes = s.chunk_ms * OUT_BYTES_PER_MS
        gather_s = s.chunk_ms / 1000 / speed
        rollover_at = conn.started_at + s.rollover_after_s
        self.state = StreamState.STREAMING
        while True:
            self._wake.clear()
            if conn.failure is not None:
                return "failed"
            now = time.monotonic()
            if now >= rollover_at:
                return "rollover"
            if self._finish_requested:
                self._flush_resampler()
            available = self._ledger.unsent
            # Full frames while audio flows; a short one once the speaker paused (lower latency).
            stale = now - self._last_feed >= gather_s
            min_bytes = MIN_FRAME_BYTES if stale or self._finish_requested else max_bytes
            n = frame_length(available, max_bytes=max_bytes, min_bytes=min_bytes, final=self._finish_requested)
            if n == 0:
                if self._finish_requested and available == 0:
                    return "finish"
                idle_at = conn.last_send + s.idle_finish_s
                if now >= idle_at:
                    return "idle"
                wait = min(idle_at, rollover_at) - now
                if available and not stale:
                    wait = min(wait, self._last_feed + gather_s - now)
                await self._sleep_or_wake(wait)
                continue
            # Pacing: the socket's audio may lead real time by at most pace_lead_ms.
            ahead_ms = (conn.audio.bytes_sent + n) / OUT_BYTES_PER_MS - (now - conn.started_at) * 1000 * speed
            if ahead_ms > s.pace_lead_ms:
                await self._sleep_or_wake((ahead_ms - s.pace_lead_ms) / 1000 / speed)
                continue
            frame = self._ledger.peek(n)
            conn.audio.record(self._ledger.sent, n)
            try:
                await conn.ws.send(frame)
            except ConnectionClosed:
                conn.failure = conn.failure or _Failure("closed", "closed", "socket closed while sending", kind=ErrorKind.TRANSIENT)
                return "failed"
            self._ledger.advance(n)
            conn.last_send = time.monotonic()
            self._metrics.asapp_audio_sent_seconds.inc(n / (OUT_BYTES_PER_MS * 1000))

    async def _sleep_or_wake(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    # --- sockets ---------------------------------------------------------------------------------

    async def _connect(self) -> _Conn | None:
        """A started socket, retrying transient failures; None when the stream stopped."""
        self.state = StreamState.CONNECTING
        if self._down_since is None:
            self._down_since = time.monotonic()
        while True:
            try:
                conn = await self._open()
            except _Failure as failure:
                self._metrics.upstream_errors.labels(PROVIDER, failure.reason).inc()
                if failure.kind is ErrorKind.TOKEN and not self._token_retry_allowed():
                    failure.kind = ErrorKind.PERMANENT
                if failure.permanent:
                    await self._stop(failure)
                    return None
                delay = self._backoff.next_delay()
                if failure.retry_after is not None:
                    delay = max(delay, min(failure.retry_after, self._settings.retry_after_max_s))
                log.warning("asapp stream %s: %s (%s); retrying in %.2f s",
                            self.speaker.speaker_id, failure.reason, failure.code, delay)  # fmt: skip
                self._metrics.upstream_reconnects.labels(PROVIDER).inc()
                await asyncio.sleep(delay)
                continue
            self._metrics.upstream_connects.labels(PROVIDER).inc()
            self._metrics.upstream_gap_seconds.labels(PROVIDER).observe(time.monotonic() - self._down_since)
            self._down_since = None
            return conn

    async def _open(self) -> _Conn:
        s = self._settings
        assert s.api_id is not None and s.api_secret is not None, "checked by AsappSettings when enabled"
        headers = {"asapp-api-id": s.api_id.get_secret_value(), "asapp-api-secret": s.api_secret.get_secret_value()}
        try:
            response = await self._client.post(
                s.base_url + URL_PATH, json={"externalId": self.speaker.conversation_id}, headers=headers
            )
        except httpx.HTTPError as exc:
            raise _Failure("url_network", "network", type(exc).__name__, kind=ErrorKind.TRANSIENT) from None
        if response.status_code != 200:
            raise _url_failure(response)
        try:
            url = orjson.loads(response.content)["streamingUrl"]
            if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
                raise ValueError
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise _Failure("url_malformed", "malformed", "streaming-url answer has no streamingUrl", kind=ErrorKind.TRANSIENT) from None
        try:
            ws = await connect(url, proxy=None, open_timeout=s.connect_timeout_s, max_size=1 << 20)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise _Failure("connect", "connect", type(exc).__name__, kind=ErrorKind.TRANSIENT) from None
        self.sockets_opened += 1
        try:
            start_response = await self._start(ws)
        except BaseException:
            await ws.close()
            raise
        now = time.monotonic()
        conn = _Conn(ws=ws, stream_id=start_response.stream_id, started_at=now, last_send=now)
        self._session = self.speaker.session.model_copy(
            update={"stream_id": start_response.stream_id, "stream_name": f"asapp:{self.speaker.speaker_id}"}
        )
        self._conns.add(conn)
        self._metrics.upstream_connected.labels(PROVIDER, TARGET).inc()
        self._metrics.asapp_streams_open.inc()
        conn.reader = asyncio.create_task(self._read(conn), name=f"asapp-read {self.speaker.speaker_id}")
        return conn

    async def _start(self, ws: ClientConnection) -> StartResponse:
        s = self._settings
        start = {
            "message": "startStream",
            "sender": {"role": self.speaker.role, "externalId": self.speaker.external_id},
            "language": s.language,
            "samplingRate": 8000,
            "encoding": "L16",
            "smartFormatting": s.smart_formatting,
            "detailedToken": False,
            "audioRecordingAllowed": False,
            "redactionOutput": s.redaction_output,
        }
        try:
            await ws.send(orjson.dumps(start).decode())
            async with asyncio.timeout(s.start_timeout_s):
                while True:
                    frame = await ws.recv()
                    try:
                        msg = parse_message(frame)
                    except FrameRejected as exc:
                        self._count_malformed(exc)
                        continue
                    if isinstance(msg, StartResponse) and msg.ok:
                        return msg
                    if isinstance(msg, (StartResponse, FinalResponse)):
                        # A refused startStream is a finalResponse carrying the reason; then ASAPP closes.
                        raise _status_failure(msg.code, msg.description)
        except TimeoutError:
            raise _Failure("start_timeout", "timeout", "no startResponse", kind=ErrorKind.TRANSIENT) from None
        except ConnectionClosed:
            raise _closed(ws, "before startResponse") from None

    async def _read(self, conn: _Conn) -> None:
        """The socket's receive loop: transcripts, the final response, errors."""
        try:
            async for frame in conn.ws:
                try:
                    msg = parse_message(frame)
                except FrameRejected as exc:
                    self._count_malformed(exc)
                    continue
                if isinstance(msg, TranscriptMessage):
                    await self._on_transcript(conn, msg)
                elif isinstance(msg, FinalResponse):
                    self._metrics.asapp_summary_transcripts.inc(msg.transcripts or 0)
                    self._metrics.asapp_summary_audio_seconds.inc((msg.audio_duration_ms or 0) / 1000)
                    await self._publish(summary_event(msg, session=self._session, participant=self._participant, received=_now()))
                    if msg.ok:
                        conn.audio.confirm_all()  # 1000: ASAPP transcribed everything it was sent
                        conn.final.set()  # after publishing: the finishing side may close this reader next
                    elif conn.failure is None:
                        # Any other code ends the stream: what no transcript covered was not transcribed.
                        conn.failure = _status_failure(msg.code, msg.description)
                    self._wake.set()
                elif isinstance(msg, StartResponse) and not msg.ok and conn.failure is None:
                    conn.failure = _status_failure(msg.code, msg.description)
                    self._wake.set()
        except ConnectionClosed:
            pass
        finally:
            if conn.failure is None and not conn.final.is_set():
                conn.failure = _closed(conn.ws, "mid-stream")
            conn.done.set()
            self._wake.set()

    async def _on_transcript(self, conn: _Conn, msg: TranscriptMessage) -> None:
        start_at = conn.audio.to_global(msg.start_ms * OUT_BYTES_PER_MS)
        end_at = conn.audio.to_global(msg.end_ms * OUT_BYTES_PER_MS)
        if end_at is not None:
            conn.audio.confirm(end_at)
            self._confirm(conn.audio.confirmed)
            self._backoff.reset()  # the socket works: a later failure retries fast again
            self._token_failures = 0
        self._metrics.asapp_transcripts.inc()
        event = transcript_event(
            msg,
            session=self._session,
            participant=self._participant,
            start=self._timeline.at(start_at) if start_at is not None else None,
            end=self._timeline.at(end_at) if end_at is not None else None,
            language=self._settings.language,
            received=_now(),
        )
        await self._publish(event)

    async def _finish_conn(self, conn: _Conn, reason: str) -> bool:
        """Finish a socket cleanly; whatever it did not confirm is sent again on the next one.

        Returns False when the stream must stop (ASAPP ended the socket with a permanent code).
        """
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send('{"message": "finishStream"}')
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.final_timeout_s):
                while not (conn.final.is_set() or conn.done.is_set()):
                    self._wake.clear()
                    await self._wake.wait()
        if conn.final.is_set():
            self._metrics.asapp_streams_finished.labels(reason).inc()
            self._confirm(conn.audio.sent_end)
        elif conn.failure is not None and conn.failure.status:
            return await self._on_failure(conn)  # ASAPP ended it with a status other than 1000
        else:
            self._metrics.upstream_errors.labels(PROVIDER, "final_timeout" if not conn.done.is_set() else "final_missing").inc()
            self._rewind(conn)
        await self._close_conn(conn)
        return True

    async def _on_failure(self, conn: _Conn) -> bool:
        """A socket failed; returns False when the stream must stop (permanent)."""
        failure = conn.failure or _Failure("closed", "closed", "socket closed", kind=ErrorKind.TRANSIENT)
        await self._close_conn(conn)
        self._metrics.upstream_errors.labels(PROVIDER, failure.reason).inc()
        if failure.kind is ErrorKind.TOKEN and not self._token_retry_allowed():
            failure.kind = ErrorKind.PERMANENT
        kind = failure.kind
        self._metrics.asapp_streams_finished.labels(_FINISHED_REASON.get(kind, "transient")).inc()
        if kind is ErrorKind.PERMANENT:
            # Back to the first unconfirmed byte, so that stopping counts it with the unsent audio.
            self._drop(self._ledger.rewind(conn.audio).lost, "replay_window")
            await self._stop(failure)
            return False
        if kind is ErrorKind.UNTRANSCRIBABLE:
            self._drop(self._ledger.abandon(conn.audio), "untranscribable")
            self._report_buffer()
            log.warning("asapp stream %s: ASAPP could not transcribe the audio (%s %s); waiting for new audio",
                        self.speaker.speaker_id, failure.code, failure.message[:100])  # fmt: skip
        else:
            self._rewind(conn)
            log.warning("asapp stream %s: socket ended (%s %s); reconnecting from offset %d",
                        self.speaker.speaker_id, failure.code, failure.message[:100], self._ledger.sent)  # fmt: skip
        await self._publish(error_event(failure.code, failure.message, permanent=False,
                                        session=self._session, participant=self._participant, received=_now()))  # fmt: skip
        if kind in (ErrorKind.TRANSIENT, ErrorKind.TOKEN, ErrorKind.TOO_LONG):
            self._metrics.upstream_reconnects.labels(PROVIDER).inc()
        if kind is ErrorKind.TRANSIENT:
            await asyncio.sleep(self._backoff.next_delay())
        return True

    def _token_retry_allowed(self) -> bool:
        """Count one more 1008; whether a fresh URL may still be tried."""
        self._token_failures += 1
        return self._token_failures <= MAX_TOKEN_RETRIES

    def _rewind(self, conn: _Conn) -> None:
        """Send again, on the next socket, what ``conn`` carried but ASAPP did not confirm."""
        lost, replayed = self._ledger.rewind(conn.audio)
        self._drop(lost, "replay_window")
        if replayed:
            self._metrics.asapp_audio_replayed_bytes.inc(replayed)

    async def _close_conn(self, conn: _Conn) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        self._metrics.upstream_connected.labels(PROVIDER, TARGET).dec()
        self._metrics.asapp_streams_open.dec()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(), 2.0)
        if conn.reader is not None and not conn.reader.done():
            conn.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.reader

    async def _stop(self, failure: _Failure) -> None:
        self.state = StreamState.STOPPED
        log.error("asapp stream %s stopped: %s %s (permanent)", self.speaker.speaker_id, failure.code, failure.message[:200])
        await self._publish(error_event(failure.code, failure.message, permanent=True,
                                        session=self._session, participant=self._participant, received=_now()))  # fmt: skip

    # --- helpers -------------------------------------------------------------------------------

    async def _publish(self, event: EventBase) -> None:
        await self._publisher.publish(event)

    def _count_malformed(self, exc: FrameRejected) -> None:
        self._metrics.frames_rejected.labels(PROVIDER, exc.reason).inc()
        log.warning("asapp stream %s: malformed server message (%s)", self.speaker.speaker_id, exc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _closed(ws: ClientConnection, when: str) -> _Failure:
    """A socket closed without an ASAPP status: 1008 (policy: an invalid or expired token, as ASAPP's
    status 1008) needs a fresh URL (bounded), anything else is transient."""
    code = ws.close_code
    if code == 1008:
        return _Failure("closed_policy", "ws_1008", f"socket closed {when} with 1008 (policy)", kind=ErrorKind.TOKEN)
    return _Failure("closed", "closed", f"socket closed {when} ({code})", kind=ErrorKind.TRANSIENT)


def _url_failure(response: httpx.Response) -> _Failure:
    status = response.status_code
    message = f"streaming-url answered {status}"
    try:
        error = orjson.loads(response.content).get("error", {})
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = f"{message}: {error['message'][:200]}"
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if status == 429 or status >= 500:
        reason = "url_http_429" if status == 429 else "url_http_5xx"
        return _Failure(reason, f"http_{status}", message, kind=ErrorKind.TRANSIENT, retry_after=_retry_after(response))
    return _Failure("url_http_4xx", f"http_{status}", message, kind=ErrorKind.PERMANENT)


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds (either form: delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - _now()).total_seconds())
