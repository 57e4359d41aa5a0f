"""RecallIngress: the WebSocket endpoint Recall bots connect to.

A Recall bot holds one socket for a whole meeting, and a relay holds thousands of them, so the
endpoint is not an ASGI app: each bot is a :class:`RecallConnection`, an :class:`asyncio.Protocol`
driving websockets' sans-I/O :class:`~websockets.server.ServerProtocol`. A frame goes from
``data_received`` through :class:`~relay.providers.recall.parse.RecallParser` into the publisher's
queue without a task switch, a per-connection queue or a suspended coroutine; an idle connection
costs a few objects. After the handshake, complete data frames are cut out of each read by
:class:`~relay.core.wsframes.DataFrameSplitter`; websockets handles the handshake, pings, the close
and anything unusual (fragments, protocol errors, oversize), as the splitter hands them over.
uvicorn still owns the listening socket, HTTP and TLS, and hands WebSocket upgrades to
:meth:`RecallIngress.protocol_factory` (its documented ``ws`` protocol-class option).

* **Before accept**: the path, the token (and, when configured, the signature) and the connection
  cap are checked; a refused handshake gets an HTTP 403 (404 for another path, 503 when full or
  draining) and is counted by reason. The query string never reaches a log line.
* **Per frame**: a frame that does not parse is counted (``relay_frames_rejected_total``), logged
  once per connection with its reason, and skipped; the connection and everything it sent before
  stay good. That includes a text frame that is not valid UTF-8, where RFC 6455 (section 8.1)
  has the endpoint fail the connection (close code 1007): here it costs that frame, not the
  meeting's connection and the frames behind it (reason ``invalid_utf8``). This is deliberate,
  and the one place the relay departs from the RFC. Frames over ``max_frame_bytes`` close the connection with 1009, after the frames that
  arrived before it have been published.
* **Backpressure**: when the publish queue is full the connection stops reading its socket (TCP
  then slows the bot) and resumes when the publisher has room again.
* **Meeting lifecycle**: with a :class:`~relay.core.sessions.SessionTracker`, a connection tells
  it when it learns its session (the first frame that names one: a per-frame identity check, no
  Redis call) and when it closes. A session new to this process is claimed in Redis first: the
  connection holds the events it parsed meanwhile and stops reading (at most the tracker's
  ``claim_timeout_s``), so ``session.started`` is accepted before the meeting's first event.
* **Keepalive**: one timer pings every connection quiet for ``ping_interval`` and closes (1011)
  those that do not answer within ``ping_timeout``.
* **Shutdown**: uvicorn calls :meth:`RecallConnection.shutdown`, which sends a 1012 close (service
  restart) so Recall's retries land on another replica, then keeps reading until the bot's close
  reply: every frame the bot sent before it saw the close is still published, before the bot's
  retry can reach another replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from relay.core.internals import clear_parser_failure, parser_failure, server_connections
from relay.core.metrics import RelayMetrics
from relay.core.observers import ObserverRoutes, RecallObserver
from relay.providers.recall.auth import SignatureVerifier, TokenVerifier
from relay.errors import FrameRejected
from relay.providers.recall.parse import RecallParser
from relay.core.publisher import EventPublisher
from relay.core.sessions import SessionTracker
from relay.schema import EventRecord, SessionRef, Source
from relay.core.wsframes import CONTROL, REST, TEXT, DataFrameSplitter

log = logging.getLogger("relay.recall")

SOURCE = "recall"
_UTC = timezone.utc
_DATA_OPCODES = frozenset((Opcode.TEXT, Opcode.BINARY, Opcode.CONT))


class RecallIngress:
    """State shared by every Recall connection, and the factory uvicorn builds them with."""

    def __init__(
        self,
        *,
        publisher: EventPublisher,
        metrics: RelayMetrics,
        tokens: TokenVerifier,
        signatures: SignatureVerifier | None = None,
        observers: Sequence[RecallObserver] = (),
        paths: Iterable[str] = ("/recall", "/recall/"),
        max_connections: int = 10_000,
        max_frame_bytes: int = 4 * 1024 * 1024,
        ping_interval_s: float = 20.0,
        ping_timeout_s: float = 20.0,
        drain_timeout_s: float = 5.0,
        sessions: SessionTracker | None = None,
    ) -> None:
        self.publisher = publisher
        #: Told when connections learn their session and close (None: no lifecycle events).
        self.sessions = sessions
        self.metrics = metrics
        self.routes = ObserverRoutes(observers)
        self.observers = self.routes.observers
        self._tokens = tokens
        self._signatures = signatures
        self._paths = frozenset(paths)
        self.max_connections = max_connections
        self.max_frame_bytes = max_frame_bytes
        self.ping_interval = ping_interval_s
        self.ping_timeout = ping_timeout_s
        self.drain_timeout = drain_timeout_s
        self.connections: set[RecallConnection] = set()
        self.closing = False
        self._keepalive: asyncio.Task[None] | None = None
        self._draining: set[asyncio.Task[None]] = set()
        # Label children bound once: the per-frame path must not look them up.
        self.frames = metrics.frames_received.labels(SOURCE)
        self.bytes = metrics.bytes_received.labels(SOURCE)
        self.open_gauge = metrics.connections_open.labels(SOURCE)
        self.accepted = metrics.connections_accepted.labels(SOURCE)

    @property
    def open_connections(self) -> int:
        return len(self.connections)

    def protocol_factory(self, config: Any = None, server_state: Any = None, app_state: Any = None, **_: Any) -> RecallConnection:
        """What uvicorn calls for each WebSocket upgrade (``uvicorn.Config(ws=...)``)."""
        return RecallConnection(self, server_connections(server_state))

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(self._ping_loop(), name="recall-keepalive")

    def begin_shutdown(self) -> None:
        """Refuse new connections from now on (503), so a draining replica takes no new bots."""
        self.closing = True

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop pinging; wait for draining connections to close once their events are published."""
        self.begin_shutdown()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._draining:
            await asyncio.wait(self._draining, timeout=timeout)

    def track(self, task: asyncio.Task[None]) -> None:
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    # --- handshake -----------------------------------------------------------------------------

    def refusal(self, request: Request) -> tuple[int, str] | None:
        """None to accept the upgrade, else (HTTP status, reason)."""
        path, _, query = request.path.partition("?")
        if path not in self._paths:
            return 404, "unknown_path"
        if self.closing:
            return 503, "shutting_down"
        if len(self.connections) >= self.max_connections:
            return 503, "over_capacity"
        token = None
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key == "token":
                token = value
                break
        reason = self._tokens.check(token)
        if reason is None and self._signatures is not None:
            reason = self._signatures.check(request.headers)
        return None if reason is None else (403, reason)

    # --- keepalive -----------------------------------------------------------------------------

    async def _ping_loop(self) -> None:
        """Ping quiet connections; close those whose ping went unanswered."""
        tick = min(self.ping_interval, self.ping_timeout) / 2
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.keepalive(now, self.ping_interval, self.ping_timeout)


class RecallConnection(asyncio.Protocol):
    """One Recall bot's socket: handshake, frames → parser → publisher, close."""

    __slots__ = (
        "_ingress", "_uvicorn_connections", "_transport", "_ws", "_parser", "_client", "_open",
        "_last_seen", "_ping_sent_at", "_fragments", "_text", "_paused", "_rejected", "_close_code",
        "_drain_deadline", "_drain_timer", "_frames", "_bytes", "_splitter", "_head",
        "_routes_session", "_routes", "_tracked", "_held",
    )  # fmt: skip

    def __init__(self, ingress: RecallIngress, uvicorn_connections: set[Any]) -> None:
        self._ingress = ingress
        self._uvicorn_connections = uvicorn_connections
        self._transport: asyncio.Transport | None = None
        self._ws = ServerProtocol(max_size=ingress.max_frame_bytes)
        # After the handshake, data frames skip websockets' parser (relay/core/wsframes.py); None
        # before that and once websockets took the stream over.
        self._splitter: DataFrameSplitter | None = None
        self._head: bytes | None = b""  # the bytes of the opening handshake, until it completes
        self._parser: RecallParser | None = None
        self._client = "?"
        self._open = False
        self._last_seen = 0.0
        self._ping_sent_at: float | None = None
        self._fragments: list[bytes] | None = None
        self._text = False
        self._paused = False  # stopped reading because the publish queue is full
        # Frames and bytes of the current read, added to the metrics once per read.
        self._frames = 0
        self._bytes = 0
        self._rejected = 0
        self._close_code: int | None = None
        # Set while draining at shutdown: when to give up on the bot's close reply, and the timer.
        self._drain_deadline: float | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        # The observers per event type for the session they were worked out for (see _observe).
        self._routes_session: SessionRef | None = None
        self._routes: dict[str, tuple[RecallObserver, ...]] = {}
        # The session the tracker was told of, and the events held until its claim is answered.
        self._tracked: SessionRef | None = None
        self._held: list[tuple[EventRecord, int]] | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self._client = f"{peer[0]}:{peer[1]}"
        # uvicorn closes what is in this set on shutdown (calling shutdown()) and waits for it.
        self._uvicorn_connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._last_seen = time.monotonic()
        splitter = self._splitter
        if splitter is None:
            self._receive(data)
        else:
            for kind, payload in splitter.feed(data):
                if kind == CONTROL or kind == REST:  # a ping, a pong, or all the rest: websockets'
                    self._receive(payload)
                    if parser_failure(self._ws) is not None:
                        break  # websockets failed the connection: it discards what follows, so do we
                else:
                    self._message(payload, kind == TEXT)
            if splitter.handed_over or parser_failure(self._ws) is not None:
                self._splitter = None
        if self._frames:
            ingress = self._ingress
            ingress.frames.inc(self._frames)
            ingress.bytes.inc(self._bytes)
            self._frames = self._bytes = 0

    def _receive(self, data: bytes) -> None:
        """Bytes for websockets: the handshake, control frames, or all of them once it took over."""
        ws = self._ws
        if self._head is not None:
            # uvicorn hands over the request head in one call; a head this long gets refused anyway.
            self._head = self._head + data if len(self._head) < 65_536 else None
        ws.receive_data(data)
        # Data frames make ServerProtocol send nothing; anything else (a handshake, a ping, a close,
        # an error) may have queued output. Most reads carry only data frames: skip the flush.
        output = self._drain_timer is not None
        for event in ws.events_received():
            if type(event) is Frame:
                if event.opcode not in _DATA_OPCODES:
                    output = True
                self._frame(event)
            elif isinstance(event, Request):
                output = True
                self._handshake(event)
        exc = parser_failure(ws)
        if exc is not None:
            output = True
            if self._close_code is None:
                self._protocol_error(exc)
        if output:
            self._flush()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._uvicorn_connections.discard(self)
        # Frees the connection by refcounting alone, not by the cyclic GC, whose full collections
        # stop the loop (relay/core/gc_policy.py): end websockets' parser coroutine (idempotent), and drop the
        # traceback of the EOFError it keeps when the socket was cut mid-read, which refers back
        # to the protocol through the coroutine's frame.
        self._ws.receive_eof()
        clear_parser_failure(self._ws)
        if not self._open:
            return
        self._open = False
        ingress = self._ingress
        ingress.connections.discard(self)
        ingress.open_gauge.dec()
        ws = self._ws
        code = self._close_code or (ws.close_rcvd.code if ws.close_rcvd is not None else 1006)
        ingress.metrics.connections_closed.labels(SOURCE, str(code)).inc()
        session = self._parser.session if self._parser is not None else None
        if self._tracked is not None and ingress.sessions is not None:
            ingress.sessions.connection_closed(self._tracked.id)
        if self._rejected:
            log.warning("Recall connection %s (session %s) closed (%d) with %d rejected frames",
                        self._client, _session_id(self._parser), code, self._rejected)  # fmt: skip
        else:
            log.info("Recall connection %s (session %s) closed (%d)", self._client, _session_id(self._parser), code)
        if session is not None:
            for observer in ingress.observers:
                try:
                    observer.on_disconnect(session)
                except Exception:
                    ingress.metrics.bridge_errors.labels(observer.name).inc()
                    log.exception("observer %s failed on disconnect", observer.name)

    # --- uvicorn's connection interface --------------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: close with 1012 (service restart) so Recall retries elsewhere.

        Without losing what is in flight: frames the bot sent before it read our close frame are
        still on the wire, so the connection keeps reading and publishing until the bot's close
        reply, which comes after its last frame. It then waits until what it accepted is
        published, so the bot's retry, landing on another replica, cannot overtake it. A bot that
        never replies is cut off after the ingress' ``drain_timeout``.
        """
        if not self._open:
            if self._transport is not None:
                self._transport.close()
            return
        if self._close_code is not None:
            return
        self._close_code = 1012
        self._to_websockets()  # it owns the closing handshake
        loop = asyncio.get_running_loop()
        self._drain_deadline = loop.time() + self._ingress.drain_timeout
        self._drain_timer = loop.call_at(self._drain_deadline, self._abort_drain)
        self._ws.send_close(1012, "service restart")
        self._flush()

    def _to_websockets(self) -> None:
        """From now on websockets parses every frame, starting with the one the splitter holds."""
        splitter, self._splitter = self._splitter, None
        if splitter is not None and (rest := splitter.take_rest()):
            self._ws.receive_data(rest)  # the start of a frame: no event until the rest arrives

    def _abort_drain(self) -> None:
        self._drain_timer = None
        log.warning("Recall connection %s (session %s) did not answer the 1012 close in %.0f s",
                    self._client, _session_id(self._parser), self._ingress.drain_timeout)  # fmt: skip
        if self._transport is not None:
            self._transport.close()

    async def _close_when_published(self) -> None:
        """The bot's last frame is in: close TCP once its events are published (bounded)."""
        assert self._drain_deadline is not None
        publisher = self._ingress.publisher
        try:
            async with asyncio.timeout_at(self._drain_deadline):
                await publisher.wait_done(publisher.accepted)
        except TimeoutError:
            pass
        finally:
            if self._transport is not None:
                self._transport.close()

    # --- handshake -----------------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        ingress = self._ingress
        ws = self._ws
        refused = ingress.refusal(request)
        if refused is None:
            response = ws.accept(request)
            if response.status_code != 101:
                refused = (response.status_code, "bad_handshake")
        else:
            status, reason = refused
            text = {403: "forbidden\n", 404: "not found\n"}.get(status, "relay is full or restarting, retry later\n")
            response = ws.reject(status, text)
        ws.send_response(response)
        head, self._head = self._head, None
        if refused is not None:
            status, reason = refused
            ingress.metrics.connections_rejected.labels(SOURCE, reason).inc()
            log.warning("refused Recall connection from %s: %s (HTTP %d)", self._client, reason, status)
            return
        self._open = True
        self._parser = RecallParser()
        if head is not None and head.find(b"\r\n\r\n") + 4 == len(head):
            # Nothing after the head: websockets' parser waits for the first frame, so the
            # splitter can start there. (Else websockets parses this connection's every frame.)
            self._splitter = DataFrameSplitter(ingress.max_frame_bytes)
        ingress.connections.add(self)
        ingress.open_gauge.inc()
        ingress.accepted.inc()
        log.info("Recall connection %s accepted", self._client)

    # --- frames --------------------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        # websockets' parser gives bytes; its type says any bytes-like
        data = frame.data if type(frame.data) is bytes else bytes(frame.data)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments = [data]
                self._text = opcode is Opcode.TEXT
                return
            self._message(data, opcode is Opcode.TEXT)
        elif opcode is Opcode.CONT:
            if self._fragments is None:
                return
            self._fragments.append(data)
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), None
                self._message(data, self._text)
        elif opcode is Opcode.PONG:
            self._ping_sent_at = None
        elif opcode is Opcode.CLOSE:
            pass  # ServerProtocol answers the close; connection_lost follows
        # PING: ServerProtocol queues the PONG.

    def _message(self, data: bytes, text: bool) -> None:
        ingress = self._ingress
        received_ns = time.monotonic_ns()
        self._frames += 1
        self._bytes += len(data)
        parser = self._parser
        assert parser is not None
        try:
            payload: str | bytes = data.decode() if text else data
        except UnicodeDecodeError:
            self._reject(FrameRejected("invalid_utf8", "text frame is not UTF-8"))
            return
        try:
            events = parser.feed_records(payload, datetime.now(_UTC))
        except FrameRejected as exc:
            self._reject(exc)
            return
        if ingress.sessions is not None:
            if parser.session is not self._tracked:  # the parser keeps one SessionRef per session
                self._track()
            if self._held is not None:
                self._held.extend((event, received_ns) for event in events)
                return
        accept = ingress.publisher.accept
        observed = ingress.routes.types
        room = True
        for event in events:
            room = accept(event, received_ns) and room
            if observed and event.type in observed:
                self._observe(event)
        if not room:
            self._backpressure()

    def _backpressure(self) -> None:
        ingress = self._ingress
        if not self._paused:
            # The queue is full: stop reading this socket (TCP slows the bot) until there is room.
            # The rest of this read is still parsed and accepted: it is already in memory.
            self._paused = True
            assert self._transport is not None
            self._transport.pause_reading()
            ingress.metrics.backpressure_pauses.labels(SOURCE).inc()
            ingress.publisher.call_when_room(self._resume)

    def _resume(self) -> None:
        self._paused = False
        if self._held is None and self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _track(self) -> None:
        """The parser names a session the tracker was not told of (the first frame, or another
        session): tell it, and hold this connection's events if it must claim the session first."""
        sessions = self._ingress.sessions
        assert sessions is not None and self._parser is not None
        session, old = self._parser.session, self._tracked
        self._tracked = session
        if session is None or (old is not None and old.id == session.id):
            return  # not yet, or the same session with new metadata
        if old is not None:
            sessions.connection_closed(old.id)
        waiter = sessions.connection_opened(session, Source.RECALL)
        if waiter is not None and self._held is None:
            self._held = []
            if self._transport is not None:
                self._transport.pause_reading()
            waiter.add_done_callback(self._release)

    def _release(self, _: object = None) -> None:
        """The claim is answered (or timed out): accept the held events, in order, and read on."""
        held, self._held = self._held, None
        if held:
            ingress = self._ingress
            accept = ingress.publisher.accept
            observed = ingress.routes.types
            room = True
            for event, received_ns in held:
                room = accept(event, received_ns) and room
                if observed and event.type in observed:
                    self._observe(event)
            if not room:
                self._backpressure()
                return
        if not self._paused and self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _observe(self, record: EventRecord) -> None:
        """Hand ``record`` to the observers that want it, as a model built only if one does."""
        session = record.session
        if session is not self._routes_session:  # the parser keeps one SessionRef per session
            self._routes_session = session
            self._routes = self._ingress.routes.for_session(session)
        takers = self._routes.get(record.type)
        if not takers:
            return
        # A failure here is the relay's bug (the parser checked the frame), not the provider's:
        # counted per bridge, not as a rejected frame.
        bridge_errors = self._ingress.metrics.bridge_errors
        try:
            event = record.model()
        except Exception:
            for observer in takers:
                bridge_errors.labels(observer.name).inc()
            log.exception("could not build a %s event for the observers", record.type)
            return
        for observer in takers:
            try:
                observer.on_event(event)
            except Exception:  # a bridge's bug must not cost the bot its connection
                bridge_errors.labels(observer.name).inc()
                log.exception("observer %s failed on a %s event", observer.name, event.type)

    def _reject(self, exc: FrameRejected) -> None:
        self._rejected += 1
        self._ingress.metrics.frames_rejected.labels(SOURCE, exc.reason).inc()
        if self._rejected == 1:  # once per connection; the metric counts the rest
            log.warning("rejected a Recall frame (%s) on session %s: %s", exc.reason, _session_id(self._parser), exc)

    def _protocol_error(self, exc: Exception) -> None:
        ws = self._ws
        self._close_code = ws.close_sent.code if ws.close_sent is not None else 1002
        if isinstance(exc, PayloadTooBig):
            reason = "oversize"
        elif isinstance(exc, EOFError):
            return  # the peer vanished mid-frame; connection_lost counts it
        else:
            reason = "protocol_error"
        self._ingress.metrics.frames_rejected.labels(SOURCE, reason).inc()
        log.warning("closing Recall connection %s (session %s): %s (%d)",
                    self._client, _session_id(self._parser), reason, self._close_code)  # fmt: skip

    # --- output --------------------------------------------------------------------------------

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        ws = self._ws
        eof = False
        for chunk in ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:  # ServerProtocol's signal to close the TCP connection
                eof = True
        if self._drain_timer is not None:
            # Draining at shutdown: keep the socket until the bot's close reply has come.
            if eof or ws.close_rcvd is not None:
                self._drain_timer.cancel()
                self._drain_timer = None
                self._ingress.track(asyncio.create_task(self._close_when_published()))
        elif self._drain_deadline is None and (eof or ws.close_expected()):
            # A server closes TCP first: after the closing handshake, or once it sent a close.
            transport.close()

    def _close(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code = code
            self._ws.send_close(code, reason)
            self._flush()
        if self._transport is not None:
            self._transport.close()

    def keepalive(self, now: float, interval: float, timeout: float) -> None:
        if not self._open:
            return
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at > timeout:
                log.warning("Recall connection %s (session %s) did not answer a ping in %.0f s",
                            self._client, _session_id(self._parser), timeout)  # fmt: skip
                self._close(1011, "keepalive ping timeout")
        elif now - self._last_seen >= interval:
            self._ping_sent_at = now
            self._ws.send_ping(b"")
            self._flush()


def _session_id(parser: RecallParser | None) -> str:
    return parser.session.id if parser is not None and parser.session is not None else "(unknown)"
