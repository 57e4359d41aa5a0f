"""An ASAPP AutoTranscribe emulator: the REST URL endpoint and the streaming WebSocket, over real sockets.

Written from ASAPP's public "AutoTranscribe via Direct Websocket" page
(https://docs.asapp.com/autotranscribe/direct-websocket; the project's notes on it:
``docs/protocols/asapp.md``), never from the relay's code: it imports nothing of
``relay.providers``, so a relay bug cannot be mirrored here and pass. It is strict where the real
service is, so the bridge is tested against the rules rather than against a friendly echo:

* ``POST /autotranscribe/v1/streaming-url`` checks ``asapp-api-id``/``asapp-api-secret`` and hands
  out a single-use, pre-signed URL that expires after ``url_ttl_s``; a used or expired token is
  refused at the handshake (HTTP 403: "the requested connection will be rejected");
* every end of a stream is a ``finalResponse`` carrying a status, then the server closes: 1000
  after ``finishStream``, else the code of what went wrong. There is no separate error message;
* ``startStream`` must come first: audio or another message before it is 4056 (wrong message
  order), a second ``startStream`` too; a ``startStream`` without a valid ``sender`` (role
  ``agent``/``customer``, an ``externalId``) or a message that is not JSON is 4040 (message format
  incorrect); an unsupported ``language`` is 4050, ``encoding`` other than ``L16`` 4051,
  ``samplingRate`` other than 8000 4053. A refused ``startStream`` gets no ``startResponse``;
* an odd-length audio frame cannot be 16-bit samples: 4082 (audio decode failure);
* no audio for ``idle_s``: 4083 (idle timeout); a stream older than ``max_stream_s``: 4090.

What ASAPP recommends without giving a status code for it (real-time pace, 20-100 ms frames) is
not refused: a frame that runs more than ``burst_ms`` ahead of real time, or is larger than
``max_chunk_bytes``, is recorded in :attr:`AsappEmulator.violations`, for tests to assert there
are none.

Transcripts are derived deterministically from the audio: every ``transcript_ms`` of a stream's
audio yields one final transcript whose text names the byte range it covers, and ``finishStream``
yields one for the remainder, then ``finalResponse`` with totals. Audio covered by a transcript is
*committed* to the speaker's :class:`SpeakerAccount` (bytes and a running SHA-256 across all of the
speaker's streams, in order). Audio a stream received but never transcribed because the stream
ended otherwise (a drop, a status other than 1000) is discarded, as a real server loses a
half-heard utterance; so a client that sends exactly its unconfirmed audio again after a
reconnect ends with an account equal, byte for byte, to the audio it was given. Each socket's
:class:`StreamRecord` (in :attr:`AsappEmulator.records`) keeps what it received, byte for byte
when ``record_audio`` is on, so a test can check what was sent again on which stream.

Test controls: :meth:`AsappEmulator.fail_url_requests` (401/429 with ``Retry-After``/5xx),
:meth:`~AsappEmulator.refuse_starts` (the next ``startStream`` answered by ``finalResponse`` with a
code), :meth:`~AsappEmulator.end_streams` (``finalResponse`` with a code mid-stream, then close),
:meth:`~AsappEmulator.drop` (close without a status), :meth:`~AsappEmulator.send_malformed`, and
:meth:`~AsappEmulator.wait_until` to synchronize on its state.

Run as a process: ``python -m relay.dev.asapp_emulator --port 8790`` (``--help`` for limits);
``GET /_emulator/accounts`` then shows the accounting as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from relay.dev.embedded import AppServer

BYTES_PER_MS = 16  # 8 kHz, 16-bit, mono
URL_PATH = "/autotranscribe/v1/streaming-url"
STREAM_PATH = "/autotranscribe/v1/stream"


@dataclass
class EmulatorConfig:
    api_id: str = "emulator-id"
    api_secret: str = "emulator-secret"
    url_ttl_s: float = 300.0
    #: Real-time factor the pacing check allows (tests speed time up).
    speed: float = 1.0
    burst_ms: int = 2_000
    idle_s: float = 60.0
    max_stream_s: float = 3 * 3600.0
    transcript_ms: int = 1_000
    max_chunk_bytes: int = 1_600
    #: Keep every byte each stream received (:attr:`StreamRecord.audio`); off for long runs.
    record_audio: bool = False


#: ASAPP's status codes, as its Direct WebSocket page lists them (the descriptions are the emulator's wording).
OK = "1000"
FORMAT_INCORRECT = "4040"
LANGUAGE_NOT_SUPPORTED = "4050"
ENCODING_NOT_SUPPORTED = "4051"
SAMPLE_RATE_NOT_SUPPORTED = "4053"
WRONG_MESSAGE_ORDER = "4056"
AUDIO_DECODE_FAILURE = "4082"
IDLE_TIMEOUT = "4083"
DURATION_OVER_LIMIT = "4090"
LANGUAGES = ("en-US", "es-US")


@dataclass
class SpeakerAccount:
    """What one speaker of one conversation sent, over all of its streams."""

    committed_bytes: int = 0
    received_bytes: int = 0
    discarded_bytes: int = 0
    streams: int = 0
    transcripts: int = 0
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256(self) -> str:
        """SHA-256 of all committed audio, in order."""
        return str(self._hash.hexdigest())

    def as_dict(self) -> dict[str, Any]:
        return {
            "committed_bytes": self.committed_bytes,
            "received_bytes": self.received_bytes,
            "discarded_bytes": self.discarded_bytes,
            "streams": self.streams,
            "transcripts": self.transcripts,
            "sha256": self.sha256,
        }


@dataclass
class StreamRecord:
    """What one socket carried, kept after it closed."""

    conversation: str
    stream_id: str
    #: ``sender.externalId`` of its ``startStream`` (None if it never started).
    speaker: str | None = None
    role: str | None = None
    #: The ``startStream`` message as received (None before one came).
    start_message: dict[str, Any] | None = None
    received_bytes: int = 0
    #: Bytes of this stream covered by transcripts (a prefix of what it received).
    committed_bytes: int = 0
    #: Every byte received, in order, when ``EmulatorConfig.record_audio`` is on.
    audio: bytearray = field(default_factory=bytearray, repr=False)
    #: The status code of its ``finalResponse`` (None: closed without one).
    final_code: str | None = None


@dataclass
class _UrlFailure:
    status: int
    remaining: int
    retry_after: float | None


@dataclass
class _Refusal:
    code: str
    description: str
    remaining: int


@dataclass(eq=False)
class _Stream:
    """Server-side state of one open socket."""

    ws: WebSocket
    conversation: str
    record: StreamRecord
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    speaker: str | None = None
    account: SpeakerAccount | None = None
    started_at: float | None = None
    last_audio_at: float = 0.0
    total_bytes: int = 0
    committed: int = 0  # bytes of this stream already covered by transcripts
    pending: bytearray = field(default_factory=bytearray)
    transcripts: int = 0
    dead: bool = False  # ended (finalResponse sent, or dropped): ignore whatever else arrives


class _Closed(Exception):
    """End the socket handler; the finalResponse was already sent when one is due."""


class AsappEmulator:
    """The emulator's state and app; start it with ``async with AsappEmulator() as emu`` or :meth:`start`."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.accounts: dict[tuple[str, str], SpeakerAccount] = {}
        self.url_requests = 0
        self.url_requests_by_conversation: dict[str, int] = {}
        self.url_request_times: list[float] = []
        self.rejected_connects = 0
        #: Status codes other than 1000 sent in a ``finalResponse``, in order.
        self.errors_sent: list[str] = []
        #: Every socket accepted, in order of acceptance.
        self.records: list[StreamRecord] = []
        #: Breaches of what ASAPP recommends but gives no status code for ("pace", "chunk_size").
        self.violations: list[str] = []
        self._tokens: dict[str, tuple[str, float]] = {}
        self._url_failures: list[_UrlFailure] = []
        self._refusals: list[_Refusal] = []
        self._streams: set[_Stream] = set()
        self._changed: asyncio.Event | None = None
        self._server: AppServer | None = None
        self.base_url = ""
        self.app = Starlette(
            routes=[
                Route(URL_PATH, self._streaming_url, methods=["POST"]),
                WebSocketRoute(STREAM_PATH, self._stream),
                Route("/_emulator/accounts", self._accounts_view, methods=["GET"]),
            ]
        )

    # --- state for tests ---------------------------------------------------------------------

    def account(self, conversation: str, speaker: str) -> SpeakerAccount:
        return self.accounts.setdefault((conversation, speaker), SpeakerAccount())

    def open_streams(self, speaker: str | None = None) -> int:
        return sum(1 for s in self._streams if s.started_at is not None and (speaker is None or s.speaker == speaker))

    def records_of(self, speaker: str) -> list[StreamRecord]:
        """The started streams of ``speaker`` (its ``sender.externalId``), in order."""
        return [r for r in self.records if r.speaker == speaker]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the emulator's state changes."""
        async with asyncio.timeout(timeout):
            while not predicate():
                changed = self._event()
                changed.clear()
                await changed.wait()

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _touch(self) -> None:
        self._event().set()

    # --- controls ----------------------------------------------------------------------------

    def fail_url_requests(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``count`` URL requests with ``status`` (and ``Retry-After`` if given)."""
        self._url_failures.append(_UrlFailure(status, count, retry_after))

    def refuse_starts(self, code: str, count: int = 1, description: str = "emulated refusal") -> None:
        """Answer the next ``count`` ``startStream`` messages with ``finalResponse`` ``code``, then close."""
        self._refusals.append(_Refusal(code, description, count))

    async def drop(self, speaker: str | None = None, code: int = 1011) -> int:
        """Close the open streams (of ``speaker``) with ``code`` and no status message, as a crashed
        server (1011) or a policy enforcer (1008) would; returns how many."""
        return await self._close_streams(speaker, None, code)

    async def end_streams(self, code: str, speaker: str | None = None, description: str = "emulated end") -> int:
        """End the open streams (of ``speaker``) as ASAPP does: ``finalResponse`` with ``code``, then
        close; what they received and did not transcribe is discarded. Returns how many."""
        return await self._close_streams(speaker, (code, description), 1000)

    async def send_malformed(self, speaker: str | None = None, frame: str = '{"message": 42, "oops": [') -> int:
        """Send a frame the client cannot parse; the stream stays open."""
        n = 0
        for stream in list(self._streams):
            if stream.started_at is not None and not stream.dead and speaker in (None, stream.speaker):
                with contextlib.suppress(Exception):
                    await stream.ws.send_text(frame)
                    n += 1
        return n

    async def _close_streams(self, speaker: str | None, error: tuple[str, str] | None, close_code: int) -> int:
        n = 0
        for stream in list(self._streams):
            if stream.started_at is None or stream.dead or speaker not in (None, stream.speaker):
                continue
            stream.dead = True
            self._discard(stream)
            with contextlib.suppress(Exception):
                if error is not None:
                    await self._send_final(stream, *error)
                await stream.ws.close(code=close_code)
            n += 1
        self._touch()
        return n

    # --- REST --------------------------------------------------------------------------------

    async def _streaming_url(self, request: Request) -> Response:
        self.url_requests += 1
        self.url_request_times.append(time.monotonic())
        self._touch()
        if self._url_failures:
            failure = self._url_failures[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._url_failures.pop(0)
            headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else None
            return _error(failure.status, "emulated failure", headers)
        if request.headers.get("asapp-api-id") != self.config.api_id or not secrets.compare_digest(
            request.headers.get("asapp-api-secret", "").encode(), self.config.api_secret.encode()
        ):
            return _error(401, "Unauthorized")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "Bad request")
        external_id = body.get("externalId") if isinstance(body, dict) else None
        if not isinstance(external_id, str) or not external_id:
            return _error(400, "externalId is required")
        self.url_requests_by_conversation[external_id] = self.url_requests_by_conversation.get(external_id, 0) + 1
        token = secrets.token_urlsafe(24)
        self._tokens[token] = (external_id, time.monotonic() + self.config.url_ttl_s)
        ws_base = str(request.base_url).replace("http", "ws", 1).rstrip("/")
        return JSONResponse({"streamingUrl": f"{ws_base}{STREAM_PATH}?token={token}"})

    async def _accounts_view(self, request: Request) -> Response:
        data = {f"{conv}/{speaker}": acc.as_dict() for (conv, speaker), acc in self.accounts.items()}
        return JSONResponse({"url_requests": self.url_requests, "open_streams": self.open_streams(),
                             "errors_sent": self.errors_sent, "violations": self.violations, "accounts": data})  # fmt: skip

    # --- WebSocket ---------------------------------------------------------------------------

    async def _stream(self, ws: WebSocket) -> None:
        entry = self._tokens.pop(ws.query_params.get("token", ""), None)
        if entry is None or entry[1] < time.monotonic():
            self.rejected_connects += 1
            self._touch()
            await ws.close(code=1008)  # before accept: the handshake is refused (HTTP 403)
            return
        await ws.accept()
        stream = _Stream(ws=ws, conversation=entry[0], record=StreamRecord(conversation=entry[0], stream_id=""))
        stream.record.stream_id = stream.id
        self.records.append(stream.record)
        self._streams.add(stream)
        try:
            await self._serve(stream)
        except (_Closed, WebSocketDisconnect):
            pass
        finally:
            self._streams.discard(stream)
            if stream.pending:
                self._discard(stream)
            self._touch()
            if not stream.dead:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _serve(self, stream: _Stream) -> None:
        cfg = self.config
        while True:
            timeout = None
            if stream.started_at is not None:
                now = time.monotonic()
                timeout = min(stream.last_audio_at + cfg.idle_s, stream.started_at + cfg.max_stream_s) - now
            try:
                async with asyncio.timeout(max(timeout, 0.0) if timeout is not None else None):
                    message = await stream.ws.receive()
            except TimeoutError:
                now = time.monotonic()
                if stream.started_at is not None and now >= stream.started_at + cfg.max_stream_s:
                    await self._fail(stream, DURATION_OVER_LIMIT, "streaming duration over the limit")
                await self._fail(stream, IDLE_TIMEOUT, "connection idle timeout")
            if message["type"] == "websocket.disconnect":
                return
            if stream.dead:
                continue
            if message.get("bytes") is not None:
                await self._audio(stream, message["bytes"])
            elif message.get("text") is not None:
                await self._control(stream, message["text"])

    async def _control(self, stream: _Stream, text: str) -> None:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            await self._fail(stream, FORMAT_INCORRECT, "message format incorrect")
        kind = data["message"]
        if stream.started_at is None:
            if kind != "startStream":
                await self._fail(stream, WRONG_MESSAGE_ORDER, "startStream must come first")
            await self._start(stream, data)
        elif kind == "finishStream":
            await self._finish(stream)
        elif kind == "updateVocabulary":
            await stream.ws.send_text(orjson.dumps({"message": "vocabularyResponse", "status": _ok()}).decode())
        elif kind == "startStream":
            await self._fail(stream, WRONG_MESSAGE_ORDER, "stream already started")
        else:
            await self._fail(stream, FORMAT_INCORRECT, "message not understood")

    async def _start(self, stream: _Stream, data: dict[str, Any]) -> None:
        stream.record.start_message = data
        if self._refusals:
            refusal = self._refusals[0]
            refusal.remaining -= 1
            if refusal.remaining <= 0:
                self._refusals.pop(0)
            await self._fail(stream, refusal.code, refusal.description)
        sender = data.get("sender")
        if not isinstance(sender, dict) or sender.get("role") not in ("agent", "customer"):
            await self._fail(stream, FORMAT_INCORRECT, "sender.role must be agent or customer")
        speaker = sender.get("externalId")
        if not isinstance(speaker, str) or not speaker:
            await self._fail(stream, FORMAT_INCORRECT, "sender.externalId is required")
        if data.get("language") not in LANGUAGES:
            await self._fail(stream, LANGUAGE_NOT_SUPPORTED, "language not supported")
        if data.get("encoding") != "L16":
            await self._fail(stream, ENCODING_NOT_SUPPORTED, "encoding not supported")
        if data.get("samplingRate") != 8000:
            await self._fail(stream, SAMPLE_RATE_NOT_SUPPORTED, "sample rate not supported")
        stream.speaker = stream.record.speaker = speaker
        stream.record.role = sender["role"]
        stream.account = self.account(stream.conversation, speaker)
        stream.account.streams += 1
        stream.started_at = stream.last_audio_at = time.monotonic()
        await stream.ws.send_text(
            orjson.dumps({"message": "startResponse", "streamID": stream.id, "status": _ok()}).decode()
        )
        self._touch()

    async def _audio(self, stream: _Stream, audio: bytes) -> None:
        cfg = self.config
        if stream.started_at is None:
            await self._fail(stream, WRONG_MESSAGE_ORDER, "audio before startStream")
        if len(audio) % 2:
            await self._fail(stream, AUDIO_DECODE_FAILURE, "audio is not whole 16-bit samples")
        if len(audio) > cfg.max_chunk_bytes:
            self.violations.append("chunk_size")
        assert stream.account is not None and stream.started_at is not None
        now = time.monotonic()
        stream.total_bytes += len(audio)
        stream.account.received_bytes += len(audio)
        stream.record.received_bytes += len(audio)
        if cfg.record_audio:
            stream.record.audio.extend(audio)
        stream.last_audio_at = now
        allowed_ms = (now - stream.started_at) * 1000 * cfg.speed + cfg.burst_ms
        if stream.total_bytes / BYTES_PER_MS > allowed_ms:
            self.violations.append("pace")
        stream.pending.extend(audio)
        step = cfg.transcript_ms * BYTES_PER_MS
        while len(stream.pending) >= step:
            await self._transcribe(stream, step)
        self._touch()

    async def _transcribe(self, stream: _Stream, n: int) -> None:
        assert stream.account is not None
        chunk = bytes(stream.pending[:n])
        del stream.pending[:n]
        start, end = stream.committed, stream.committed + n
        acc = stream.account
        text = f"{stream.speaker} audio bytes {acc.committed_bytes}-{acc.committed_bytes + n} ({n // BYTES_PER_MS} ms)"
        stream.committed = stream.record.committed_bytes = end
        acc.committed_bytes += n
        acc._hash.update(chunk)
        acc.transcripts += 1
        stream.transcripts += 1
        frame = {"message": "transcript", "start": start // BYTES_PER_MS, "end": end // BYTES_PER_MS,
                 "utterance": [{"text": text}]}  # fmt: skip
        await stream.ws.send_text(orjson.dumps(frame).decode())

    async def _finish(self, stream: _Stream) -> None:
        if stream.pending:
            await self._transcribe(stream, len(stream.pending))
        stream.dead = True
        await self._send_final(stream, OK, "OK")
        self._touch()
        with contextlib.suppress(Exception):
            await stream.ws.close()
        raise _Closed

    async def _fail(self, stream: _Stream, code: str, description: str) -> NoReturn:
        """End the stream with ``finalResponse`` ``code``: discard untranscribed audio, close."""
        self._discard(stream)
        stream.dead = True
        with contextlib.suppress(Exception):
            await self._send_final(stream, code, description)
            await stream.ws.close(code=1000)
        self._touch()
        raise _Closed

    async def _send_final(self, stream: _Stream, code: str, description: str) -> None:
        """The ``finalResponse`` that ends every stream: its status, and a summary once it started."""
        if code != OK:
            self.errors_sent.append(code)
        stream.record.final_code = code
        frame: dict[str, Any] = {"message": "finalResponse", "streamId": stream.id, "status": {"code": code, "description": description}}
        if stream.started_at is not None:
            frame["summary"] = {
                "totalAudioBytes": stream.total_bytes,
                "audioDurationMs": stream.total_bytes // BYTES_PER_MS,
                "streamingSeconds": round(time.monotonic() - stream.started_at, 3),
                "transcripts": stream.transcripts,
            }
        await stream.ws.send_text(orjson.dumps(frame).decode())

    def _discard(self, stream: _Stream) -> None:
        if stream.account is not None:
            stream.account.discarded_bytes += len(stream.pending)
        stream.pending.clear()

    # --- serving -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port) in this event loop; returns the base URL."""
        self._server = AppServer(self.app, host, port, graceful_shutdown_s=2)  # signals stay the program's
        await self._server.start()
        self.base_url = self._server.url
        return self.base_url

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> AsappEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _ok() -> dict[str, str]:
    return {"code": OK, "description": "OK"}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"requestId": str(uuid.uuid4()), "code": f"{status}-01", "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


@contextlib.asynccontextmanager
async def running_emulator(config: EmulatorConfig | None = None) -> AsyncIterator[AsappEmulator]:
    """An emulator serving on a free loopback port for the duration of the block."""
    emulator = AsappEmulator(config)
    async with emulator:
        yield emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ASAPP AutoTranscribe emulator (REST + WebSocket).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--api-id", default=EmulatorConfig.api_id)
    parser.add_argument("--api-secret", default=EmulatorConfig.api_secret)
    parser.add_argument("--url-ttl", type=float, default=EmulatorConfig.url_ttl_s, help="seconds a streaming URL stays valid")
    parser.add_argument("--speed", type=float, default=EmulatorConfig.speed, help="real-time factor the pacing check allows")
    parser.add_argument("--burst-ms", type=int, default=EmulatorConfig.burst_ms)
    parser.add_argument("--idle", type=float, default=EmulatorConfig.idle_s, help="seconds without audio before 4083")
    parser.add_argument("--max-stream", type=float, default=EmulatorConfig.max_stream_s, help="seconds before 4090")
    parser.add_argument("--transcript-ms", type=int, default=EmulatorConfig.transcript_ms)
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        api_id=args.api_id, api_secret=args.api_secret, url_ttl_s=args.url_ttl, speed=args.speed,
        burst_ms=args.burst_ms, idle_s=args.idle, max_stream_s=args.max_stream, transcript_ms=args.transcript_ms,
    )  # fmt: skip
    emulator = AsappEmulator(config)
    print(f"ASAPP emulator on http://{args.host}:{args.port} (api id {args.api_id!r})", flush=True)
    uvicorn.run(emulator.app, host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
