"""A VideoDB emulator: the REST and WebSocket surface the relay uses, over real sockets.

For tests (an async context manager), the demo and benchmarks (``python -m
relay.dev.videodb_emulator --port 8765``). It behaves like VideoDB where the relay depends on
it, and is strict where the relay could be sloppy:

* ``GET /collection/{id}/websocket`` checks ``x-access-token`` and returns a **one-time** socket
  URL on the emulator itself: reusing a URL is refused, so a client must fetch a fresh one before
  every connect, as ``docs/protocols/videodb.md`` requires.
* The socket's first frame is ``{"connection_id": "ws-..."}``, fresh for every socket.
* Jobs are started over REST with ``ws_connection_id`` (``POST /rtstream/{id}/transcription``,
  ``/index/scene``, ``/index/audio``, ``/rtstream/event`` then ``/index/{index_id}/alert``) and
  bound to that connection. :meth:`VideoDBEmulator.emit` delivers an event **only** to the live
  socket its job is bound to: after a reconnect, nothing arrives until the client re-binds.

Test controls: :meth:`emit`, :meth:`send_raw` (malformed frames, other channels),
:meth:`drop` (close sockets), :meth:`fail_url` (answer 401/5xx to the URL endpoint),
:meth:`fail_jobs` (the same for job starts),
:meth:`post_webhook` (deliver a webhook, duplicates included), and waits on conditions
(:meth:`wait_bound`, :meth:`wait_connections`). A process is controlled over HTTP with the same
operations under ``/_emulator/`` (see :meth:`_control_routes`).

The audio-index path (``/index/audio``) is wrong: VideoDB's is ``/index/scene`` with ``extraction_type:
"transcript"`` (``docs/protocols/videodb.md``, "Known gaps in the relay"; issue 13). It lives in :data:`relay.providers.videodb.jobs.JOB_PATHS` so the relay and the emulator agree in one place.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from relay.dev.embedded import AppServer
from relay.providers.videodb.jobs import JOB_PATHS

log = logging.getLogger("relay.videodb.emulator")

#: Which job a socket channel belongs to (an event is delivered only if that job is bound).
CHANNEL_JOB: Final[dict[str, str]] = {
    "transcript": "transcript",
    "scene_index": "visual_index",
    "visual_index": "visual_index",
    "audio_index": "audio_index",
    "spoken_index": "audio_index",
    "alert": "alert",
}


@dataclass(slots=True)
class _Socket:
    connection_id: str
    collection: str
    ws: WebSocket
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class Binding:
    """One job start as the emulator received it."""

    rtstream_id: str
    job: str
    connection_id: str
    body: dict[str, Any]


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
        self._bound: dict[tuple[str, str], str] = {}  # (rtstream_id, job) -> connection id
        self.bindings: list[Binding] = []  # every job start, in order
        self.url_requests = 0
        self.connects = 0
        #: The most sockets ever open at once per collection: the relay's "one socket" promise.
        self.peak_connections: dict[str, int] = {}
        self._fail_status: int | None = None
        self._fail_times: int | None = None
        self._job_fail_status: int | None = None
        self._job_fail_times: int | None = None
        self._changed = asyncio.Condition()
        self._server: AppServer | None = None
        routes: list[Any] = [
            Route("/collection/{collection_id}/websocket", self._websocket_url, methods=["GET"]),
            WebSocketRoute("/ws/{collection_id}", self._socket),
            Route(JOB_PATHS["event"], self._create_event, methods=["POST"]),
            Route(JOB_PATHS["transcript"], self._transcription, methods=["POST"]),
            Route(JOB_PATHS["visual_index"], self._index("visual_index"), methods=["POST"]),
            Route(JOB_PATHS["audio_index"], self._index("audio_index"), methods=["POST"]),
            Route(JOB_PATHS["alert"], self._alert, methods=["POST"]),
        ]
        if control:
            routes += self._control_routes()
        self.app = Starlette(routes=routes)

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

    def bound_to(self, rtstream_id: str, job: str) -> str | None:
        return self._bound.get((rtstream_id, job))

    def is_live_bound(self, rtstream_id: str, job: str) -> bool:
        return self._bound.get((rtstream_id, job)) in self._sockets

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
        """Wait until ``job`` on ``rtstream_id`` is bound to a live socket; return its connection id."""
        await self.wait_until(lambda: self.is_live_bound(rtstream_id, job), timeout)
        return self._bound[(rtstream_id, job)]

    # --- test controls -------------------------------------------------------------------------

    def fail_url(self, status: int | None, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` URL requests (``None``: until told otherwise)."""
        self._fail_status, self._fail_times = status, times

    def fail_jobs(self, status: int | None, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` job starts (``None``: until told otherwise)."""
        self._job_fail_status, self._job_fail_times = status, times

    async def emit(self, rtstream_id: str, channel: str, data: dict[str, Any], rtstream_name: str | None = None) -> bool:
        """Send one event frame to the live socket its job is bound to; False if none is."""
        job = CHANNEL_JOB.get(channel)
        conn = self._bound.get((rtstream_id, job)) if job else None
        sock = self._sockets.get(conn) if conn else None
        if sock is None:
            return False
        frame: dict[str, Any] = {"channel": channel, "rtstream_id": rtstream_id, "data": data}
        if rtstream_name is not None:
            frame["rtstream_name"] = rtstream_name
        return await self._send(sock, orjson.dumps(frame).decode())

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
        """POST a webhook ``times`` times (duplicates, as at-least-once delivery does); returns statuses."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"content-type": "application/json"}
        if secret is not None:
            headers[header] = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            return [(await client.post(url, content=raw, headers=headers)).status_code for _ in range(times)]

    # --- REST ----------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        token = request.headers.get("x-access-token", "")
        return hmac.compare_digest(token.encode(), self.api_key.encode())

    @staticmethod
    def _error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"success": False, "message": message}, status_code=status)

    async def _websocket_url(self, request: Request) -> Response:
        self.url_requests += 1
        await self._notify()
        if self._fail_status is not None and self._fail_times != 0:
            if self._fail_times is not None:
                self._fail_times -= 1
            return self._error(self._fail_status, "injected failure")
        if not self._authorized(request):
            return self._error(401, "invalid api key")
        collection = request.path_params["collection_id"]
        if collection not in self.collections:
            return self._error(404, "collection not found")
        token = secrets.token_urlsafe(16)
        self._url_tokens[token] = collection
        base = self.ws_base or f"ws://{self.host}:{self.port}"
        url = f"{base}/ws/{collection}?token={token}"
        return JSONResponse({"success": True, "data": {"websocket_url": url}})

    async def _json_body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None

    async def _bind(self, rtstream_id: str, job: str, body: dict[str, Any]) -> Response | None:
        if self._job_fail_status is not None and self._job_fail_times != 0:
            if self._job_fail_times is not None:
                self._job_fail_times -= 1
            return self._error(self._job_fail_status, "injected failure")
        conn = body.get("ws_connection_id")
        if not isinstance(conn, str) or not conn:
            return self._error(400, "ws_connection_id is required")
        self._bound[(rtstream_id, job)] = conn
        self.bindings.append(Binding(rtstream_id, job, conn, body))
        await self._notify()
        return None

    async def _transcription(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error(401, "invalid api key")
        body = await self._json_body(request)
        if body is None or body.get("action") not in ("start", "stop"):
            return self._error(400, "action must be start or stop")
        rtstream_id = request.path_params["rtstream_id"]
        if body["action"] == "stop":
            self._bound.pop((rtstream_id, "transcript"), None)
            return JSONResponse({"success": True, "data": {}})
        return await self._bind(rtstream_id, "transcript", body) or JSONResponse({"success": True, "data": {}})

    def _index(self, job: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not self._authorized(request):
                return self._error(401, "invalid api key")
            body = await self._json_body(request)
            if body is None:
                return self._error(400, "JSON object expected")
            rtstream_id = request.path_params["rtstream_id"]
            error = await self._bind(rtstream_id, job, body)
            index_id = f"idx-{job}-{rtstream_id}"
            return error or JSONResponse({"success": True, "data": {"rtstream_index_id": index_id, "status": "connected"}})

        return endpoint

    async def _create_event(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error(401, "invalid api key")
        body = await self._json_body(request)
        if body is None or not body.get("event_prompt") or not body.get("label"):
            return self._error(400, "event_prompt and label are required")
        return JSONResponse({"success": True, "data": {"event_id": f"evt-{body['label']}"}})

    async def _alert(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._error(401, "invalid api key")
        body = await self._json_body(request)
        if body is None or not body.get("event_id"):
            return self._error(400, "event_id is required")
        rtstream_id = request.path_params["rtstream_id"]
        error = await self._bind(rtstream_id, "alert", body)
        return error or JSONResponse({"success": True, "data": {"alert_id": f"alr-{body['event_id']}-{rtstream_id}"}})

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
            while True:  # the relay sends nothing we need; reading notices its close
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
        """``POST /_emulator/{emit,raw,drop,fail,webhook}`` with JSON bodies; ``GET /_emulator/state``."""

        async def emit(request: Request) -> Response:
            b = orjson.loads(await request.body())
            ok = await self.emit(b["rtstream_id"], b["channel"], b.get("data", {}), b.get("rtstream_name"))
            return JSONResponse({"delivered": ok})

        async def raw(request: Request) -> Response:
            b = orjson.loads(await request.body())
            return JSONResponse({"sent": await self.send_raw(b["frame"], b.get("collection"))})

        async def drop(request: Request) -> Response:
            b = orjson.loads(await request.body() or b"{}")
            return JSONResponse({"dropped": await self.drop(b.get("collection"))})

        async def fail(request: Request) -> Response:
            b = orjson.loads(await request.body())
            self.fail_url(b.get("status"), b.get("times"))
            return JSONResponse({"ok": True})

        async def webhook(request: Request) -> Response:
            b = orjson.loads(await request.body())
            statuses = await self.post_webhook(b["url"], b["body"], times=b.get("times", 1), secret=b.get("secret"))
            return JSONResponse({"statuses": statuses})

        async def state(request: Request) -> Response:
            return JSONResponse(
                {
                    "connections": self.connection_ids,
                    "bound": [{"rtstream_id": r, "job": j, "connection_id": c} for (r, j), c in self._bound.items()],
                    "url_requests": self.url_requests,
                    "connects": self.connects,
                }
            )

        return [
            Route("/_emulator/emit", emit, methods=["POST"]),
            Route("/_emulator/raw", raw, methods=["POST"]),
            Route("/_emulator/drop", drop, methods=["POST"]),
            Route("/_emulator/fail", fail, methods=["POST"]),
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
