"""RecallIngress: the WebSocket endpoint Recall bots connect to.

The I/O shell around :class:`~relay.providers.recall.parse.RecallParser`: it authorizes the
upgrade, reads frames, hands each frame to the parser and each resulting event to the publisher
and the observers, and accounts for everything in metrics.

* **Before accept**: the token (and, when configured, the signature) is checked and the connection
  cap enforced; a refused handshake gets an HTTP 403 (or 503 when full / shutting down) and is
  counted by reason. The query string never reaches a log line.
* **Per frame**: a frame that does not parse is counted (``relay_frames_rejected_total``), logged
  once per connection with its reason, and skipped; the bot's connection and everything it sent
  before stay good. Oversize frames are refused by the WebSocket layer with close code 1009.
* **Backpressure**: the handler awaits the publisher, so when the publish queue is full it stops
  reading and the bot's socket is flow-controlled by TCP instead of memory growing.
* **Shutdown**: uvicorn closes open sockets with 1012 (service restart), so Recall's retries land
  on another replica; frames already read are still published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone

from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from relay.metrics import RelayMetrics
from relay.observe import RecallObserver
from relay.providers.recall.auth import SignatureVerifier, TokenVerifier
from relay.providers.recall.parse import FrameError, RecallParser
from relay.publish import EventPublisher

log = logging.getLogger("relay.recall")

SOURCE = "recall"


class RecallIngress:
    """ASGI WebSocket endpoint for Recall bots (mount it at ``/recall`` and ``/recall/``)."""

    def __init__(
        self,
        *,
        publisher: EventPublisher,
        metrics: RelayMetrics,
        tokens: TokenVerifier,
        signatures: SignatureVerifier | None = None,
        observers: Sequence[RecallObserver] = (),
        max_connections: int = 10_000,
    ) -> None:
        self._publisher = publisher
        self._metrics = metrics
        self._tokens = tokens
        self._signatures = signatures
        self._observers = tuple(observers)
        self._max_connections = max_connections
        self._open = 0
        self._closing = False
        # Label children bound once: the per-frame path must not look them up.
        self._frames = metrics.frames_received.labels(SOURCE)
        self._bytes = metrics.bytes_received.labels(SOURCE)
        self._open_gauge = metrics.connections_open.labels(SOURCE)
        self._accepted = metrics.connections_accepted.labels(SOURCE)

    @property
    def open_connections(self) -> int:
        return self._open

    def begin_shutdown(self) -> None:
        """Refuse new connections from now on (503), so a draining replica takes no new bots."""
        self._closing = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        reason = self._refusal(websocket)
        if reason is not None:
            await self._refuse(websocket, reason)
            return
        await websocket.accept()
        self._open += 1
        self._open_gauge.inc()
        self._accepted.inc()
        code = 1006
        try:
            code = await self._serve(receive)
        finally:
            self._open -= 1
            self._open_gauge.dec()
            self._metrics.connections_closed.labels(SOURCE, str(code)).inc()

    # --- handshake -----------------------------------------------------------------------------

    def _refusal(self, websocket: WebSocket) -> str | None:
        if self._closing:
            return "shutting_down"
        if self._open >= self._max_connections:
            return "over_capacity"
        reason = self._tokens.check(websocket.query_params.get("token"))
        if reason is None and self._signatures is not None:
            reason = self._signatures.check(websocket.headers)
        return reason

    async def _refuse(self, websocket: WebSocket, reason: str) -> None:
        self._metrics.connections_rejected.labels(SOURCE, reason).inc()
        client = websocket.client.host if websocket.client else "?"
        log.warning("refused Recall connection from %s: %s", client, reason)
        status = 503 if reason in ("over_capacity", "shutting_down") else 403
        body = "relay is full, retry later\n" if status == 503 else "forbidden\n"
        await websocket.send_denial_response(PlainTextResponse(body, status_code=status))

    # --- frames --------------------------------------------------------------------------------

    async def _serve(self, receive: Receive) -> int:
        """Read frames until the socket closes; returns the close code."""
        parser = RecallParser()
        publish = self._publisher.publish
        observers = self._observers
        frames = self._frames
        nbytes = self._bytes
        rejected = 0
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                break
            received_ns = time.monotonic_ns()
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            frames.inc()
            nbytes.inc(len(data))
            try:
                events = parser.feed(data, datetime.now(timezone.utc))
            except FrameError as exc:
                rejected += 1
                self._metrics.frames_rejected.labels(SOURCE, exc.reason).inc()
                if rejected == 1:  # once per connection; the metric counts the rest
                    log.warning("rejected a Recall frame (%s) on session %s: %s", exc.reason, _session(parser), exc)
                continue
            for event in events:
                await publish(event, received_ns)
                for observer in observers:
                    try:
                        observer.on_event(event)
                    except Exception:  # a bridge's bug must not cost the bot its connection
                        self._metrics.frames_rejected.labels(SOURCE, "observer_error").inc()
                        log.exception("observer %s failed on a %s event", type(observer).__name__, event.type)
        code = int(message.get("code", 1005))
        if code == 1009:
            self._metrics.frames_rejected.labels(SOURCE, "oversize").inc()
            log.warning("closed Recall session %s: frame over the size limit (1009)", _session(parser))
        session = parser.session
        if session is not None:
            for observer in observers:
                observer.on_disconnect(session)
        if rejected:
            log.warning("Recall session %s closed (%d) with %d rejected frames", _session(parser), code, rejected)
        return code


def _session(parser: RecallParser) -> str:
    return parser.session.id if parser.session is not None else "(unknown)"
