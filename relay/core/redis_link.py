"""RedisPublishLink: one Redis connection that carries the publisher's pipelined ``PUBLISH`` batches.

Why not redis-py here: the publisher sends one kind of command, thousands of times a second, in
batches it has already formed. redis-py's pipeline builds a command stack, checks a connection out
of a pool, arms a timeout and parses each reply in Python per batch; at paced rates (one event per
wake-up) that machinery was 25-30 % of the relay's CPU (bench/NOTES.md). This link is an
:class:`asyncio.Protocol` like the Recall connections: the publisher hands it bytes it packed
itself, replies are counted by hiredis' C reader (the parser redis-py uses), and completion is a
callback, not a task wake-up. Everything else that talks to Redis (readiness, leases, webhook
dedupe) keeps using redis-py.

* **Connecting** reads the same ``redis://``, ``rediss://`` and ``unix://`` URLs as redis-py
  (its own ``parse_url``): password and user (``AUTH``), database (``SELECT``), TLS.
* **Setup** commands given to :meth:`RedisPublishLink.open` (the log script's ``SCRIPT LOAD``)
  run after authenticating, before the link is handed over.
* **Batches** complete in order; :attr:`on_batch` is called once per completed batch. A status
  reply starting ``log:`` (the log script could not append, relay/core/event_log.py) is passed
  to :attr:`on_log_error` and counted as answered.
* **Failure** of any kind (connection lost, an error reply, a batch unanswered for ``timeout_s``)
  closes the link and calls :attr:`on_lost` once; the owner re-sends what was in flight.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url


class RedisLinkError(ConnectionError):
    """The link failed: an error reply, a refused handshake, or no answer in time."""


def pack_command(*parts: bytes) -> bytes:
    """One command in RESP (the Redis protocol), e.g. ``pack_command(b"SELECT", b"2")``."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def publish_head(channel: str) -> bytes:
    """The start of ``PUBLISH channel <message>`` in RESP, up to the message's length prefix.

    The publisher caches it per channel; a command is then ``head + b"$%d\\r\\n" % len(body) +
    body + b"\\r\\n"``.
    """
    name = channel.encode()
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(name), name)


class RedisPublishLink(asyncio.Protocol):
    """A connection carrying batches of commands whose replies only need counting."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        #: Called once per completed batch, in the order the batches were sent.
        self.on_batch: Callable[[], None] = _nothing
        #: Called once when the link fails or is closed, with the cause (None for :meth:`close`).
        self.on_lost: Callable[[BaseException | None], None] = _nothing_exc
        #: Called with each ``log:`` status reply (a log append that failed; the event went out live).
        self.on_log_error: Callable[[bytes], None] = _nothing_reply
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader()
        # Per batch in flight: [replies still expected, loop time it was sent].
        self._inflight: deque[list[Any]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._lost = False

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, timeout_s: float, setup: list[bytes] | None = None) -> RedisPublishLink:
        """Connect, authenticate, select the database of ``url`` and run the packed ``setup``
        commands; raises OSError on failure (an error reply included)."""
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        loop = asyncio.get_running_loop()
        link = cls(timeout_s)
        async with asyncio.timeout(timeout_s):
            if options.get("connection_class") is UnixDomainSocketConnection:
                await loop.create_unix_connection(lambda: link, options["path"])
            else:
                tls = _tls_context(options) if options.get("connection_class") is SSLConnection else None
                host = options.get("host", "localhost")
                await loop.create_connection(
                    lambda: link, host, options.get("port", 6379), ssl=tls, server_hostname=host if tls else None
                )
            hello = []
            if options.get("password") is not None:
                user = options.get("username")
                creds = (user.encode(), options["password"].encode()) if user else (options["password"].encode(),)
                hello.append(pack_command(b"AUTH", *creds))
            if options.get("db"):
                hello.append(pack_command(b"SELECT", str(options["db"]).encode()))
            hello.extend(setup or ())
            if hello:
                link._handshake = loop.create_future()
                link.send(b"".join(hello), len(hello))
                try:
                    await link._handshake
                except BaseException:
                    link.close()
                    raise
        return link

    # --- sending -------------------------------------------------------------------------------

    def send(self, payload: bytes, commands: int) -> None:
        """Write one batch of ``commands`` packed commands; :attr:`on_batch` fires when all are answered."""
        transport = self._transport
        if transport is None or self._lost:
            raise RedisLinkError("the Redis link is closed")
        loop = asyncio.get_running_loop()
        self._inflight.append([commands, loop.time()])
        transport.write(payload)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout_s, self._check_timeout)

    @property
    def batches_in_flight(self) -> int:
        return len(self._inflight)

    def close(self) -> None:
        """Close the link; batches in flight are reported lost (``on_lost(None)``)."""
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        inflight = self._inflight
        while (reply := reader.gets()) is not False:
            if type(reply) is hiredis.ReplyError:
                self._fail(RedisLinkError(f"Redis answered an error: {str(reply)[:200]}"))
                return
            if not inflight:
                self._fail(RedisLinkError("Redis sent a reply nobody asked for"))
                return
            if type(reply) is bytes and reply.startswith(b"log:"):
                self.on_log_error(reply)
            head = inflight[0]
            head[0] -= 1
            if head[0] == 0:
                inflight.popleft()
                if self._handshake is not None:
                    self._handshake.set_result(None)
                    self._handshake = None
                else:
                    self.on_batch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        cause = self._failure or exc or (RedisLinkError("Redis closed the connection") if self._inflight else None)
        self._inflight.clear()
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(cause or RedisLinkError("Redis closed the connection"))
            self._handshake = None
        self.on_lost(cause)

    # --- failure -------------------------------------------------------------------------------

    def _check_timeout(self) -> None:
        """One timer per link, not one per batch: re-armed for the oldest batch still unanswered."""
        self._watchdog = None
        if not self._inflight or self._lost:
            return
        loop = asyncio.get_running_loop()
        due = self._inflight[0][1] + self.timeout_s
        if loop.time() >= due:
            self._fail(RedisLinkError(f"Redis did not answer within {self.timeout_s:g} s"))
        else:
            self._watchdog = loop.call_at(due, self._check_timeout)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        if self._transport is not None:
            self._transport.abort()


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """TLS as redis-py sets it up from ``rediss://`` query options (``ssl_cert_reqs``, ``ssl_ca_certs``...)."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    reqs = str(options.get("ssl_cert_reqs", "required")).lower()
    if reqs == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif reqs == "optional":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_OPTIONAL
    elif options.get("ssl_check_hostname") is False:
        context.check_hostname = False
    return context


def _nothing() -> None:
    pass


def _nothing_exc(exc: BaseException | None) -> None:
    pass


def _nothing_reply(reply: bytes) -> None:
    pass
