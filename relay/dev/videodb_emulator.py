"""A VideoDB emulator: VideoDB's public REST and WebSocket surface, over real sockets.

For tests (an async context manager), the demo and benchmarks (``python -m
relay.dev.videodb_emulator --port 8765``). It is written from VideoDB's public API, **not** from
the relay: its paths and bodies are those the official Python SDK (``videodb`` on PyPI,
``videodb/_constants.py`` ``ApiPath``, ``rtstream.py``, ``client.py``, ``_utils/_http_client.py``)
sends, and ``tests/dev/test_videodb_emulator.py`` drives it with that SDK. Nothing here imports
``relay.providers``. Where VideoDB is strict, so is the emulator:

* Every answer is an envelope ``{"success": true, "data": {...}}``. A refused call is
  ``{"success": false, "message": "..."}`` with **HTTP 200** (a body the SDK turns into
  ``InvalidRequestError``); a missing or wrong ``x-access-token`` is HTTP 401; an unknown path
  HTTP 404 (also enveloped); an unknown collection in a path HTTP 404.
* ``GET /collection/{id}/websocket`` returns a **one-time** socket URL on the emulator: reusing it
  is refused, so a client must fetch a fresh one before every connect. The socket's first frame
  is ``{"connection_id": "ws-..."}``, fresh for every socket.
* Real-time jobs on an rtstream (any rtstream id is accepted; :meth:`add_capture_session` makes
  them known to ``GET .../capture/session/{id}``):

  =====================================================  ==========================================
  ``POST /rtstream/{id}/transcription``                  ``{"action": "start"|"stop", "engine"?,
                                                         "ws_connection_id"?}``; one transcription
                                                         per rtstream; a start while running
                                                         re-targets it (the emulator's assumption:
                                                         VideoDB does not document it)
  ``GET /rtstream/{id}/transcription``                   ``page``, ``page_size`` (<= 1000),
                                                         ``start``, ``end``, ``since`` (epoch
                                                         seconds; ``since``: segments starting
                                                         later) -> ``transcription_records``
  ``POST /rtstream/{id}/index/scene``                    a **new** index every call:
                                                         ``extraction_type`` ``transcript`` (audio:
                                                         ``{segmenter, segmentation_value}``) or
                                                         ``time``/``shot`` (visual: ``{time,
                                                         frame_count}``), ``prompt``, ``name``,
                                                         ``ws_connection_id``?
  ``GET /rtstream/{id}/index/scene``                     ``scene_indexes``
  ``PATCH /rtstream/{id}/index/scene/{index}/status``    ``{"action": "start"|"stop"}``
  ``POST /rtstream/event``, ``GET /rtstream/event``      ``{event_prompt, label}`` -> ``event_id``
  ``POST /rtstream/{id}/index/{index}/alert``            ``{event_id, callback_url, ws_connection_id?}``
  ``PATCH .../alert/{alert}/status``                     ``{"action": "enable"|"disable"}``
  ``GET /collection/{c}/capture/session/{id}``           the session with its ``rtstreams``
  =====================================================  ==========================================

* A job's events go **only** to the live socket its ``ws_connection_id`` names, and one frame per
  running job: two running audio indexes on one rtstream deliver every audio-index event twice,
  as VideoDB would bill them twice. After a reconnect nothing arrives until the client re-binds.

Test controls: :meth:`emit` (an event of a channel, to every job of that kind), :meth:`speak`
(final transcript segments on a virtual clock: recorded for ``GET .../transcription`` and sent to
the socket if one is bound, so a socket gap can be played without sleeping), :meth:`send_raw`
(malformed frames, other channels), :meth:`drop` (close sockets), :meth:`fail_url` and
:meth:`fail_jobs` (answer a status to the URL endpoint or to job calls: 200 means ``success:
false``), :meth:`add_capture_session`, :meth:`post_webhook` (deliver a webhook, duplicates
included), :meth:`live_indexes`, and waits on conditions (:meth:`wait_until`, :meth:`wait_bound`,
:meth:`wait_connections`). A process is controlled over HTTP with the same operations under
``/_emulator/`` (see :meth:`_control_routes`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import secrets
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from relay.dev.embedded import AppServer

log = logging.getLogger("relay.videodb.emulator")

#: Socket channel -> the job kind that produces it (an event goes to the running jobs of that kind).
CHANNEL_JOB: Final[dict[str, str]] = {
    "transcript": "transcript",
    "scene_index": "visual_index",
    "visual_index": "visual_index",
    "audio_index": "audio_index",
    "spoken_index": "audio_index",
    "alert": "alert",
}
#: Scene-index extraction types (the SDK's ``SceneExtractionType``) -> the job kind they are.
EXTRACTION_JOB: Final[dict[str, str]] = {"transcript": "audio_index", "time": "visual_index", "shot": "visual_index"}
_SEGMENTERS: Final = frozenset({"word", "sentence", "time"})
#: Where the virtual transcript clock of :meth:`VideoDBEmulator.speak` starts (epoch ms).
CLOCK_START_MS: Final = 1_768_910_400_000


@dataclass(slots=True)
class _Socket:
    connection_id: str
    collection: str
    ws: WebSocket
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Binding:
    """One job start as the emulator received it (``job``: transcript, audio_index, visual_index, alert)."""

    rtstream_id: str
    job: str
    connection_id: str | None
    body: dict[str, Any]


@dataclass(slots=True)
class SceneIndex:
    """One scene index; ``status`` is ``connected`` while it runs (and bills), else ``stopped``."""

    rtstream_index_id: str
    rtstream_id: str
    extraction_type: str
    extraction_config: dict[str, Any] | None
    prompt: str | None
    name: str | None
    ws_connection_id: str | None
    status: str = "connected"

    @property
    def job(self) -> str:
        return EXTRACTION_JOB[self.extraction_type]

    def public(self) -> dict[str, Any]:
        return {
            "rtstream_index_id": self.rtstream_index_id,
            "rtstream_id": self.rtstream_id,
            "extraction_type": self.extraction_type,
            "extraction_config": self.extraction_config,
            "prompt": self.prompt,
            "name": self.name,
            "status": self.status,
        }


@dataclass(slots=True)
class AlertJob:
    alert_id: str
    rtstream_id: str
    index_id: str
    event_id: str
    callback_url: str | None
    ws_connection_id: str | None
    enabled: bool = True


@dataclass(slots=True)
class _Transcription:
    running: bool = False
    engine: str | None = None
    ws_connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """A final transcript segment: epoch milliseconds on the socket, seconds over REST."""

    start_ms: int
    end_ms: int
    text: str


class VideoDBEmulator:
    """See the module docstring. ``async with VideoDBEmulator(api_key=...) as emu: emu.base_url``."""

    def __init__(
        self,
        *,
        api_key: str = "sk-emulator",
        collections: Iterable[str] = ("default",),
        host: str = "127.0.0.1",
        port: int = 0,
        control: bool = True,
        ws_base: str | None = None,
    ) -> None:
        self.api_key = api_key
        #: Where clients reach the socket (``ws://host:port``) when not directly (a proxy in front).
        self.ws_base = ws_base
        self.collections = set(collections)
        self.host = host
        self.port = port
        self._sockets: dict[str, _Socket] = {}
        self._url_tokens: dict[str, str] = {}  # one-time socket token -> collection
        self._ids = itertools.count(1)
        self._transcriptions: dict[str, _Transcription] = {}
        self._segments: dict[str, list[Segment]] = {}  # rtstream -> final segments, by start
        self._clock_ms: dict[str, int] = {}  # rtstream -> the virtual clock of speak()
        self.indexes: dict[str, SceneIndex] = {}
        self.alerts: dict[str, AlertJob] = {}
        self.events: dict[str, dict[str, Any]] = {}  # event id -> {event_id, event_prompt, label}
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}  # (collection, session id) -> session
        self.bindings: list[Binding] = []  # every job start, in order
        self.requests: list[tuple[str, str]] = []  # (method, path) of every REST call
        self.url_requests = 0
        self.connects = 0
        #: The most sockets ever open at once per collection: the relay's "one socket" promise.
        self.peak_connections: dict[str, int] = {}
        #: The most indexes of one kind (audio_index, visual_index) ever running at once per rtstream.
        self.peak_live_indexes: dict[tuple[str, str], int] = {}
        self._fail_status: int | None = None
        self._fail_times: int | None = None
        self._job_fail_status: int | None = None
        self._job_fail_times: int | None = None
        self._changed = asyncio.Condition()
        self._server: AppServer | None = None
        rts = "/rtstream/{rtstream_id}"
        routes: list[Any] = [
            Route("/collection/{collection_id}", self._collection, methods=["GET"]),
            Route("/collection/{collection_id}/websocket", self._websocket_url, methods=["GET"]),
            Route("/collection/{collection_id}/capture/session/{session_id}", self._capture_session, methods=["GET"]),
            WebSocketRoute("/ws/{collection_id}", self._socket),
            Route("/rtstream/event", self._create_event, methods=["POST"]),
            Route("/rtstream/event", self._list_events, methods=["GET"]),
            Route(rts + "/transcription", self._transcription, methods=["POST"]),
            Route(rts + "/transcription", self._get_transcription, methods=["GET"]),
            Route(rts + "/index/scene", self._create_index, methods=["POST"]),
            Route(rts + "/index/scene", self._list_indexes, methods=["GET"]),
            Route(rts + "/index/scene/{index_id}", self._get_scenes, methods=["GET"]),
            Route(rts + "/index/scene/{index_id}/status", self._index_status, methods=["PATCH"]),
            Route(rts + "/index/{index_id}/alert", self._create_alert, methods=["POST"]),
            Route(rts + "/index/{index_id}/alert", self._list_alerts, methods=["GET"]),
            Route(rts + "/index/{index_id}/alert/{alert_id}/status", self._alert_status, methods=["PATCH"]),
        ]
        if control:
            routes += self._control_routes()
        self.app = Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = AppServer(self.app, self.host, self.port)
        await self._server.start()
        self.port = self._server.port

    async def stop(self) -> None:
        await self.drop()
        if self._server is not None:
            await self._server.stop()
        self._server = None

    async def __aenter__(self) -> VideoDBEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- state and waiting ---------------------------------------------------------------------

    @property
    def connection_ids(self) -> list[str]:
        """Live sockets' connection ids, oldest first."""
        return list(self._sockets)

    def _jobs(self, rtstream_id: str, job: str) -> list[str | None]:
        """The connection ids of the running jobs of one kind on an rtstream, oldest first."""
        if job == "transcript":
            t = self._transcriptions.get(rtstream_id)
            return [t.ws_connection_id] if t is not None and t.running else []
        if job == "alert":
            return [a.ws_connection_id for a in self.alerts.values() if a.rtstream_id == rtstream_id and self._alert_live(a)]
        return [i.ws_connection_id for i in self.live_indexes(rtstream_id) if i.job == job]

    def _alert_live(self, alert: AlertJob) -> bool:
        index = self.indexes.get(alert.index_id)
        return alert.enabled and index is not None and index.status == "connected"

    def live_indexes(self, rtstream_id: str | None = None) -> list[SceneIndex]:
        """Running scene indexes (of one rtstream, or all), oldest first."""
        return [i for i in self.indexes.values() if i.status == "connected" and rtstream_id in (None, i.rtstream_id)]

    def live_alerts(self, rtstream_id: str | None = None) -> list[AlertJob]:
        return [a for a in self.alerts.values() if self._alert_live(a) and rtstream_id in (None, a.rtstream_id)]

    def bound_to(self, rtstream_id: str, job: str) -> str | None:
        """The connection the newest running ``job`` on ``rtstream_id`` delivers to."""
        conns = self._jobs(rtstream_id, job)
        return conns[-1] if conns else None

    def is_live_bound(self, rtstream_id: str, job: str) -> bool:
        return any(c in self._sockets for c in self._jobs(rtstream_id, job))

    def segments(self, rtstream_id: str) -> list[Segment]:
        return list(self._segments.get(rtstream_id, []))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; it is re-checked whenever the emulator's state changes."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)

    async def wait_connections(self, count: int, timeout: float = 10.0) -> None:
        await self.wait_until(lambda: len(self._sockets) >= count, timeout)

    async def wait_bound(self, rtstream_id: str, job: str, timeout: float = 10.0) -> str:
        """Wait until ``job`` on ``rtstream_id`` delivers to a live socket; return its connection id."""
        await self.wait_until(lambda: self.is_live_bound(rtstream_id, job), timeout)
        return next(c for c in reversed(self._jobs(rtstream_id, job)) if c is not None and c in self._sockets)

    # --- test controls -------------------------------------------------------------------------

    def fail_url(self, status: int | None, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` URL requests (``None``: until told otherwise)."""
        self._fail_status, self._fail_times = status, times

    def fail_jobs(self, status: int | None, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` job calls (creates, stops, transcription starts);
        200 answers ``{"success": false}`` with HTTP 200, as VideoDB refuses a call."""
        self._job_fail_status, self._job_fail_times = status, times

    def add_capture_session(
        self,
        session_id: str,
        rtstreams: list[dict[str, Any]],
        *,
        collection: str = "default",
        status: str = "active",
        end_user_id: str | None = None,
        timestamp: str = "2026-01-20T12:34:56Z",
    ) -> dict[str, Any]:
        """Make a capture session known (``rtstreams``: ``{rtstream_id, name, media_types}``) and
        return the ``capture_session.<status>`` webhook VideoDB would deliver for it."""
        self.sessions[(collection, session_id)] = {
            "id": session_id,
            "collection_id": collection,
            "end_user_id": end_user_id,
            "status": status,
            "rtstreams": [dict(r) for r in rtstreams],
        }
        return {
            "version": "2",
            "event": f"capture_session.{status}",
            "timestamp": timestamp,
            "capture_session_id": session_id,
            "end_user_id": end_user_id,
            "status": status,
            "data": {"rtstreams": [dict(r) for r in rtstreams]} if status == "active" else {},
        }

    async def emit(self, rtstream_id: str, channel: str, data: dict[str, Any], rtstream_name: str | None = None) -> bool:
        """Send one event frame to every live socket a running job of this channel is bound to
        (one frame per job); False if none is. A final transcript is also recorded for REST."""
        job = CHANNEL_JOB.get(channel)
        if job == "transcript" and self._transcribing(rtstream_id):
            self._record(rtstream_id, data)
        frame: dict[str, Any] = {"channel": channel, "rtstream_id": rtstream_id, "data": data}
        if rtstream_name is not None:
            frame["rtstream_name"] = rtstream_name
        text = orjson.dumps(frame).decode()
        delivered = False
        for conn in self._jobs(rtstream_id, job) if job else []:
            sock = self._sockets.get(conn) if conn else None
            if sock is not None:
                delivered |= await self._send(sock, text)
        return delivered

    def _transcribing(self, rtstream_id: str) -> bool:
        t = self._transcriptions.get(rtstream_id)
        return t is not None and t.running

    def _record(self, rtstream_id: str, data: dict[str, Any]) -> None:
        final = data.get("is_final") in (True, "true")
        start, end, text = data.get("start"), data.get("end"), data.get("text")
        if final and isinstance(start, int) and isinstance(end, int) and isinstance(text, str):
            self._segments.setdefault(rtstream_id, []).append(Segment(start, end, text))
            self._segments[rtstream_id].sort(key=lambda s: s.start_ms)

    async def speak(self, rtstream_id: str, seconds: float, *, every_ms: int = 250, prefix: str = "segment",
                    rtstream_name: str | None = None) -> list[Segment]:  # fmt: skip
        """Transcribe ``seconds`` of speech on a virtual clock: one final segment per ``every_ms``,
        recorded (while the transcription runs) and sent to its socket if one is live. Returns them."""
        if not self._transcribing(rtstream_id):
            return []
        out = []
        recorded = self._segments.get(rtstream_id)
        clock = max(self._clock_ms.get(rtstream_id, CLOCK_START_MS), recorded[-1].end_ms + 10 if recorded else 0)
        for _ in range(max(1, round(seconds * 1000 / every_ms))):
            n = len(self._segments.get(rtstream_id, []))
            segment = Segment(clock, clock + every_ms - 10, f"{prefix} {n}")
            clock += every_ms
            data = {"text": segment.text, "is_final": True, "start": segment.start_ms, "end": segment.end_ms}
            await self.emit(rtstream_id, "transcript", data, rtstream_name)
            out.append(segment)
        self._clock_ms[rtstream_id] = clock
        return out

    async def send_raw(self, frame: str | bytes | dict[str, Any], collection: str | None = None) -> int:
        """Send ``frame`` as-is (malformed or any channel) to every live socket; returns how many."""
        text = orjson.dumps(frame).decode() if isinstance(frame, dict) else frame
        sent = 0
        for sock in list(self._sockets.values()):
            if collection is None or sock.collection == collection:
                sent += await self._send(sock, text)
        return sent

    async def drop(self, collection: str | None = None, code: int = 1011) -> int:
        """Close live sockets (like a VideoDB restart); returns how many were closed."""
        targets = [s for s in self._sockets.values() if collection is None or s.collection == collection]
        for sock in targets:
            self._sockets.pop(sock.connection_id, None)
            with contextlib.suppress(Exception):
                await sock.ws.close(code)
            sock.closed.set()
        await self._notify()
        return len(targets)

    async def post_webhook(
        self,
        url: str,
        body: dict[str, Any] | bytes,
        *,
        times: int = 1,
        secret: str | None = None,
        header: str = "X-VideoDB-Signature",
    ) -> list[int]:
        """POST a webhook ``times`` times (duplicates, as at-least-once delivery does); returns statuses.

        VideoDB signs nothing; ``secret`` adds the HMAC header a signing proxy in front would.
        """
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"content-type": "application/json"}
        if secret is not None:
            headers[header] = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            return [(await client.post(url, content=raw, headers=headers)).status_code for _ in range(times)]

    # --- REST helpers --------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        token = request.headers.get("x-access-token", "")
        return hmac.compare_digest(token.encode(), self.api_key.encode())

    @staticmethod
    def _ok(data: dict[str, Any] | None = None) -> JSONResponse:
        return JSONResponse({"success": True, "data": data or {}})

    @staticmethod
    def _refuse(message: str, status: int = 200) -> JSONResponse:
        """A refused call: ``success: false`` (HTTP 200 unless told otherwise, as VideoDB answers)."""
        return JSONResponse({"success": False, "message": message}, status_code=status)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return self._refuse("not found" if status == 404 else "method not allowed" if status == 405 else "error", status)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}{secrets.token_hex(2)}"

    async def _body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None

    def _injected(self) -> Response | None:
        if self._job_fail_status is None or self._job_fail_times == 0:
            return None
        if self._job_fail_times is not None:
            self._job_fail_times -= 1
        return self._refuse("injected failure", self._job_fail_status)

    async def _guard(self, request: Request, job_call: bool = False) -> tuple[Response | None, dict[str, Any]]:
        """Auth, then (for calls with a body) the JSON object body, then injected failures."""
        self.requests.append((request.method, request.url.path))
        if not self._authorized(request):
            return self._refuse("invalid api key", 401), {}
        body: dict[str, Any] = {}
        if request.method in ("POST", "PATCH"):
            parsed = await self._body(request)
            if parsed is None:
                return self._refuse("a JSON object body is required"), {}
            body = parsed
        if job_call and (failure := self._injected()) is not None:
            return failure, body
        return None, body

    @staticmethod
    def _opt_str(body: dict[str, Any], key: str) -> tuple[bool, str | None]:
        value = body.get(key)
        return (value is None or isinstance(value, str)), value if isinstance(value, str) else None

    # --- REST: collections and sessions --------------------------------------------------------

    async def _collection(self, request: Request) -> Response:
        error, _ = await self._guard(request)
        if error is not None:
            return error
        cid = request.path_params["collection_id"]
        if cid not in self.collections:
            return self._refuse("collection not found", 404)
        return self._ok({"id": cid, "name": cid, "description": None, "is_public": False})

    async def _websocket_url(self, request: Request) -> Response:
        self.url_requests += 1
        await self._notify()
        self.requests.append((request.method, request.url.path))
        if self._fail_status is not None and self._fail_times != 0:
            if self._fail_times is not None:
                self._fail_times -= 1
            return self._refuse("injected failure", self._fail_status)
        if not self._authorized(request):
            return self._refuse("invalid api key", 401)
        collection = request.path_params["collection_id"]
        if collection not in self.collections:
            return self._refuse("collection not found", 404)
        token = secrets.token_urlsafe(16)
        self._url_tokens[token] = collection
        base = self.ws_base or f"ws://{self.host}:{self.port}"
        return self._ok({"websocket_url": f"{base}/ws/{collection}?token={token}"})

    async def _capture_session(self, request: Request) -> Response:
        error, _ = await self._guard(request)
        if error is not None:
            return error
        cid, sid = request.path_params["collection_id"], request.path_params["session_id"]
        if cid not in self.collections:
            return self._refuse("collection not found", 404)
        session = self.sessions.get((cid, sid))
        if session is None:
            return self._refuse("capture session not found")
        return self._ok(orjson.loads(orjson.dumps(session)))  # a copy: the SDK mutates what it gets

    # --- REST: transcription -------------------------------------------------------------------

    async def _transcription(self, request: Request) -> Response:
        error, body = await self._guard(request, job_call=True)
        if error is not None:
            return error
        rtstream_id = request.path_params["rtstream_id"]
        action = body.get("action")
        ok_engine, engine = self._opt_str(body, "engine")
        ok_conn, conn = self._opt_str(body, "ws_connection_id")
        if action not in ("start", "stop") or not ok_engine or not ok_conn:
            return self._refuse("action must be start or stop; engine and ws_connection_id strings")
        t = self._transcriptions.setdefault(rtstream_id, _Transcription())
        if action == "stop":
            t.running, t.ws_connection_id = False, None
        else:
            t.running, t.engine, t.ws_connection_id = True, engine, conn
            self.bindings.append(Binding(rtstream_id, "transcript", conn, body))
        await self._notify()
        return self._ok({"rtstream_id": rtstream_id, "status": "running" if t.running else "stopped", "engine": t.engine})

    async def _get_transcription(self, request: Request) -> Response:
        error, _ = await self._guard(request)
        if error is not None:
            return error
        q = request.query_params
        try:
            page = int(q.get("page", "1"))
            page_size = int(q.get("page_size", "100"))
            start = float(q["start"]) if "start" in q else None
            end = float(q["end"]) if "end" in q else None
            since = float(q["since"]) if "since" in q else None
        except ValueError:
            return self._refuse("page, page_size, start, end and since must be numbers")
        if page < 1 or not 1 <= page_size <= 1000:
            return self._refuse("page must be >= 1 and page_size in 1..1000")
        records = [
            {"start": s.start_ms / 1000, "end": s.end_ms / 1000, "text": s.text, "word_timestamps": []}
            for s in self._segments.get(request.path_params["rtstream_id"], [])
            if (since is None or s.start_ms / 1000 > since)
            and (start is None or s.start_ms / 1000 >= start)
            and (end is None or s.end_ms / 1000 <= end)
        ]
        chunk = records[(page - 1) * page_size : page * page_size]
        return self._ok({"transcription_records": chunk, "next_page": page * page_size < len(records),
                         "total_count": len(records), "page": page, "page_size": page_size})  # fmt: skip

    # --- REST: scene indexes -------------------------------------------------------------------

    @staticmethod
    def _extraction_error(kind: Any, config: Any) -> str | None:
        if kind not in EXTRACTION_JOB:
            return "extraction_type must be one of transcript, time, shot"
        if config is None:
            return None
        if not isinstance(config, dict):
            return "extraction_config must be an object or null"
        if kind == "transcript":
            value = config.get("segmentation_value")
            if config.get("segmenter") not in _SEGMENTERS or not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                return "extraction_config needs segmenter (word, sentence, time) and a positive segmentation_value"
            return None
        window, frames = config.get("time"), config.get("frame_count")
        if not isinstance(window, (int, float)) or isinstance(window, bool) or window <= 0:
            return "extraction_config.time must be a positive number of seconds"
        if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool) or frames <= 0):
            return "extraction_config.frame_count must be a positive integer"
        return None

    async def _create_index(self, request: Request) -> Response:
        error, body = await self._guard(request, job_call=True)
        if error is not None:
            return error
        rtstream_id = request.path_params["rtstream_id"]
        kind, config = body.get("extraction_type"), body.get("extraction_config")
        problem = self._extraction_error(kind, config)
        ok_prompt, prompt = self._opt_str(body, "prompt")
        ok_name, name = self._opt_str(body, "name")
        ok_conn, conn = self._opt_str(body, "ws_connection_id")
        if problem is None and not (ok_prompt and ok_name and ok_conn):
            problem = "prompt, name and ws_connection_id must be strings"
        if problem is not None:
            return self._refuse(problem)
        index = SceneIndex(self._new_id("rtx"), rtstream_id, str(kind), config, prompt, name, conn)
        self.indexes[index.rtstream_index_id] = index
        live = sum(1 for i in self.live_indexes(rtstream_id) if i.job == index.job)
        self.peak_live_indexes[(rtstream_id, index.job)] = max(self.peak_live_indexes.get((rtstream_id, index.job), 0), live)
        self.bindings.append(Binding(rtstream_id, index.job, conn, body))
        await self._notify()
        return self._ok(index.public())

    async def _list_indexes(self, request: Request) -> Response:
        error, _ = await self._guard(request)
        if error is not None:
            return error
        rtstream_id = request.path_params["rtstream_id"]
        return self._ok({"scene_indexes": [i.public() for i in self.indexes.values() if i.rtstream_id == rtstream_id]})

    def _index_of(self, request: Request) -> SceneIndex | None:
        index = self.indexes.get(request.path_params["index_id"])
        return index if index is not None and index.rtstream_id == request.path_params["rtstream_id"] else None

    async def _get_scenes(self, request: Request) -> Response:
        error, _ = await self._guard(request)
        if error is not None:
            return error
        if self._index_of(request) is None:
            return self._refuse("scene index not found")
        return self._ok({"scene_index_records": [], "next_page": False})

    async def _index_status(self, request: Request) -> Response:
        error, body = await self._guard(request, job_call=True)
        if error is not None:
            return error
        index = self._index_of(request)
        if index is None:
            return self._refuse("scene index not found")
        if body.get("action") not in ("start", "stop"):
            return self._refuse("action must be start or stop")
        index.status = "connected" if body["action"] == "start" else "stopped"
        await self._notify()
        return self._ok({"rtstream_index_id": index.rtstream_index_id, "status": index.status})

    # --- REST: events and alerts ---------------------------------------------------------------

    async def _create_event(self, request: Request) -> Response:
        error, body = await self._guard(request, job_call=True)
        if error is not None:
            return error
        prompt, label = body.get("event_prompt"), body.get("label")
        if not isinstance(prompt, str) or not prompt or not isinstance(label, str) or not label:
            return self._refuse("event_prompt and label are required")
        event_id = self._new_id("event")
        self.events[event_id] = {"event_id": event_id, "event_prompt": prompt, "label": label}
        return self._ok({"event_id": event_id})

    async def _list_events(self, request: Request) -> Response:
        error, _ = await self._guard(request)
        return error or self._ok({"events": list(self.events.values())})

    async def _create_alert(self, request: Request) -> Response:
        error, body = await self._guard(request, job_call=True)
        if error is not None:
            return error
        index = self._index_of(request)
        if index is None:
            return self._refuse("scene index not found")
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or event_id not in self.events:
            return self._refuse("event not found")
        ok_url, url = self._opt_str(body, "callback_url")
        ok_conn, conn = self._opt_str(body, "ws_connection_id")
        if "callback_url" not in body or not ok_url or not ok_conn:
            return self._refuse("callback_url is required; callback_url and ws_connection_id must be strings")
        alert = AlertJob(self._new_id("alert"), index.rtstream_id, index.rtstream_index_id, event_id, url, conn)
        self.alerts[alert.alert_id] = alert
        self.bindings.append(Binding(index.rtstream_id, "alert", conn, body))
        await self._notify()
        return self._ok({"alert_id": alert.alert_id})

    async def _list_alerts(self, request: Request) -> Response:
        error, _ = await self._guard(request)
        if error is not None:
            return error
        index = self._index_of(request)
        if index is None:
            return self._refuse("scene index not found")
        alerts = [a for a in self.alerts.values() if a.index_id == index.rtstream_index_id]
        return self._ok({"alerts": [{"alert_id": a.alert_id, "event_id": a.event_id, "callback_url": a.callback_url,
                                     "status": "enabled" if a.enabled else "disabled"} for a in alerts]})  # fmt: skip

    async def _alert_status(self, request: Request) -> Response:
        error, body = await self._guard(request, job_call=True)
        if error is not None:
            return error
        alert = self.alerts.get(request.path_params["alert_id"])
        if alert is None or alert.index_id != request.path_params["index_id"]:
            return self._refuse("alert not found")
        if body.get("action") not in ("enable", "disable"):
            return self._refuse("action must be enable or disable")
        alert.enabled = body["action"] == "enable"
        await self._notify()
        return self._ok({"alert_id": alert.alert_id, "status": "enabled" if alert.enabled else "disabled"})

    # --- the socket ----------------------------------------------------------------------------

    async def _socket(self, ws: WebSocket) -> None:
        collection = ws.path_params["collection_id"]
        token = ws.query_params.get("token", "")
        if self._url_tokens.pop(token, None) != collection:  # one-time URLs
            await ws.close(code=4001)
            return
        await ws.accept()
        sock = _Socket(connection_id=f"ws-{secrets.token_hex(8)}", collection=collection, ws=ws)
        if not await self._send(sock, orjson.dumps({"connection_id": sock.connection_id}).decode()):
            return  # the client left right after the handshake: nothing to serve
        self._sockets[sock.connection_id] = sock
        self.connects += 1
        open_now = sum(1 for s in self._sockets.values() if s.collection == collection)
        self.peak_connections[collection] = max(self.peak_connections.get(collection, 0), open_now)
        await self._notify()
        try:
            while True:  # clients send nothing we need; reading notices their close
                await ws.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if self._sockets.pop(sock.connection_id, None) is not None:
                await self._notify()
            sock.closed.set()

    async def _send(self, sock: _Socket, text: str | bytes) -> bool:
        try:
            if isinstance(text, bytes):
                await sock.ws.send_bytes(text)
            else:
                await sock.ws.send_text(text)
        except Exception:  # the socket went away meanwhile: not delivered
            return False
        return True

    # --- control over HTTP (process mode) ------------------------------------------------------

    def _control_routes(self) -> list[Route]:
        """``POST /_emulator/{emit,speak,raw,drop,fail,session,webhook}`` with JSON bodies;
        ``GET /_emulator/state``."""

        async def emit(request: Request) -> Response:
            b = orjson.loads(await request.body())
            ok = await self.emit(b["rtstream_id"], b["channel"], b.get("data", {}), b.get("rtstream_name"))
            return JSONResponse({"delivered": ok})

        async def speak(request: Request) -> Response:
            b = orjson.loads(await request.body())
            said = await self.speak(b["rtstream_id"], float(b.get("seconds", 1.0)), every_ms=int(b.get("every_ms", 250)))
            return JSONResponse({"segments": len(said)})

        async def raw(request: Request) -> Response:
            b = orjson.loads(await request.body())
            return JSONResponse({"sent": await self.send_raw(b["frame"], b.get("collection"))})

        async def drop(request: Request) -> Response:
            b = orjson.loads(await request.body() or b"{}")
            return JSONResponse({"dropped": await self.drop(b.get("collection"))})

        async def fail(request: Request) -> Response:
            b = orjson.loads(await request.body())
            target = self.fail_jobs if b.get("target") == "jobs" else self.fail_url
            target(b.get("status"), b.get("times"))
            return JSONResponse({"ok": True})

        async def session(request: Request) -> Response:
            b = orjson.loads(await request.body())
            hook = self.add_capture_session(b["session_id"], b.get("rtstreams", []), collection=b.get("collection", "default"),
                                            status=b.get("status", "active"))  # fmt: skip
            return JSONResponse({"webhook": hook})

        async def webhook(request: Request) -> Response:
            b = orjson.loads(await request.body())
            statuses = await self.post_webhook(b["url"], b["body"], times=b.get("times", 1), secret=b.get("secret"))
            return JSONResponse({"statuses": statuses})

        async def state(request: Request) -> Response:
            bound = [{"rtstream_id": r, "job": "transcript", "connection_id": t.ws_connection_id}
                     for r, t in self._transcriptions.items() if t.running]  # fmt: skip
            return JSONResponse(
                {
                    "connections": self.connection_ids,
                    "bound": bound
                    + [{"rtstream_id": i.rtstream_id, "job": i.job, "connection_id": i.ws_connection_id} for i in self.live_indexes()]
                    + [{"rtstream_id": a.rtstream_id, "job": "alert", "connection_id": a.ws_connection_id} for a in self.live_alerts()],
                    "indexes": [i.public() for i in self.indexes.values()],
                    "url_requests": self.url_requests,
                    "connects": self.connects,
                }
            )

        return [
            Route("/_emulator/emit", emit, methods=["POST"]),
            Route("/_emulator/speak", speak, methods=["POST"]),
            Route("/_emulator/raw", raw, methods=["POST"]),
            Route("/_emulator/drop", drop, methods=["POST"]),
            Route("/_emulator/fail", fail, methods=["POST"]),
            Route("/_emulator/session", session, methods=["POST"]),
            Route("/_emulator/webhook", webhook, methods=["POST"]),
            Route("/_emulator/state", state, methods=["GET"]),
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="VideoDB emulator (REST + WebSocket) for relay demos and tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="sk-emulator")
    parser.add_argument("--collection", action="append", default=None, help="collection id (repeatable)")
    args = parser.parse_args(argv)

    async def run() -> None:
        emulator = VideoDBEmulator(api_key=args.api_key, collections=args.collection or ["default"], host=args.host, port=args.port)
        await emulator.start()
        print(f"VideoDB emulator on {emulator.base_url} (collections: {', '.join(sorted(emulator.collections))})", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await emulator.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
