"""``POST /videodb/webhook``: everything VideoDB POSTs to the callback URL (at least once).

Capture-session lifecycle webhooks, transcript callbacks and alert callbacks
(``docs/protocols/videodb.md``, section 6). The endpoint does only the cheap, synchronous part and
answers at once:

1. body size limit (413); the **token** (401); the optional signature of a signing proxy (401);
   parse (:func:`~relay.providers.videodb.parse.parse_callback`: 400 only for a lifecycle webhook
   that cannot be read; callbacks are never refused);
2. hand the delivery to a bounded queue and answer **200**; a full queue answers 503 so VideoDB
   delivers again later instead of the relay buffering without bound.

A worker task then, per delivery:

3. **deduplicates** across replicas with ``SET <prefix>:videodb:webhook:<sha256(key)> 1 NX EX
   <ttl>``, key = ``capture_session_id | event | timestamp`` for lifecycle webhooks, the body's
   SHA-256 for callbacks: only the first replica to see a delivery processes it (if Redis cannot
   answer, the delivery is processed anyway: a duplicate beats a loss);
4. on ``capture_session.active`` **fetches the session** from VideoDB (``GET
   /collection/{c}/capture/session/{id}``; the webhook's ``data.rtstreams`` if that fails), records
   its rtstreams in the registry and calls ``on_active`` (the lease holder binds the jobs); on
   ``stopped``/``exported``/``failed`` forgets them;
5. publishes the ``session.status`` event (or the callback's transcript, alert or generic event;
   a final transcript segment only if no replica's socket, backfill or callback published it yet:
   :class:`~relay.providers.videodb.store.SegmentMarks`).

**Authentication.** VideoDB does not sign callbacks. With ``webhook_token`` set, the callback URL
given to VideoDB carries ``?token=<it>`` and every delivery must too (compared in constant time;
the URL is never logged). ``webhook_secret`` is only for a signing proxy in front of the relay:
the header named by ``webhook_signature_header`` (default ``X-VideoDB-Signature``) must then carry
the hex HMAC-SHA256 of the raw body, optionally prefixed ``sha256=``.

A relay serving several collections routes by path: ``POST /videodb/webhook/<collection id>``;
the bare path means the first configured collection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from relay.core.metrics import RelayMetrics
from relay.errors import FrameRejected
from relay.providers.videodb.config import VideoDBSettings
from relay.errors import UpstreamError
from relay.providers.videodb.parse import Callback, RtStreamInfo, Webhook, parse_callback
from relay.providers.videodb.dedupe import SegmentKey, segment_key
from relay.providers.videodb.registry import RtStreamRegistry
from relay.providers.videodb.store import SegmentMarks
from relay.core.publisher import EventPublisher
from relay.schema import TranscriptEvent

__all__ = ["WebhookReceiver", "sign"]

log = logging.getLogger("relay.videodb.webhooks")

#: ``(collection id, capture session id) -> (status, rtstreams)`` from VideoDB.
SessionFetcher = Callable[[str, str], Awaitable[tuple[str | None, tuple[RtStreamInfo, ...]]]]

#: Statuses after which a capture session's rtstreams carry no more real-time work.
_ENDED = frozenset({"stopped", "exported", "failed"})


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookReceiver:
    """The webhook endpoint and its worker (see the module docstring)."""

    def __init__(
        self,
        settings: VideoDBSettings,
        publisher: EventPublisher,
        metrics: RelayMetrics,
        redis: Redis,
        registries: Mapping[str, RtStreamRegistry],
        on_active: Callable[[str], Awaitable[None] | None],
        key_prefix: str = "relay",
        fetch_session: SessionFetcher | None = None,
        segment_marks: Mapping[str, SegmentMarks] | None = None,
    ) -> None:
        self._fetch_session = fetch_session
        self._segment_marks = segment_marks or {}
        self._settings = settings
        self._publisher = publisher
        self._metrics = metrics
        self._redis = redis
        self._registries = registries
        self._on_active = on_active
        self._key_prefix = key_prefix
        self._default = next(iter(registries), None)
        self._queue: asyncio.Queue[tuple[str, Webhook | Callback]] = asyncio.Queue(maxsize=settings.webhook_queue_max)
        self._task: asyncio.Task[None] | None = None
        secret = settings.webhook_secret
        self._secret = secret.get_secret_value().encode() if secret is not None else None
        token = settings.webhook_token
        self._token = token.get_secret_value().encode() if token is not None else None

    @property
    def routes(self) -> list[BaseRoute]:
        path = self._settings.webhook_path.rstrip("/") or "/"
        return [
            Route(path, self.endpoint, methods=["POST"]),
            Route(f"{path.rstrip('/')}/{{collection}}", self.endpoint, methods=["POST"]),
        ]

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._work(), name="videodb-webhooks")

    async def aclose(self, timeout: float = 5.0) -> None:
        """Process what is queued for up to ``timeout`` seconds, then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("videodb webhooks: %d deliveries left unprocessed at shutdown", self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    # --- the endpoint --------------------------------------------------------------------------

    def _reject(self, outcome: str, status: int) -> Response:
        self._metrics.videodb_webhooks.labels(outcome).inc()
        return JSONResponse({"ok": False, "error": outcome}, status_code=status)

    async def endpoint(self, request: Request) -> Response:
        collection: str | None = request.path_params.get("collection", self._default)
        if collection is None or collection not in self._registries:
            return self._reject("unknown_collection", 404)
        limit = self._settings.webhook_max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return self._reject("too_large", 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return self._reject("too_large", 413)
        if self._token is not None and not hmac.compare_digest(request.query_params.get("token", "").encode(), self._token):
            # The URL (with its query) is never logged: it carries the token.
            log.warning("videodb webhook: bad or missing token from %s", request.client.host if request.client else "?")
            return self._reject("bad_token", 401)
        if self._secret is not None and not self._signature_ok(request, body):
            log.warning("videodb webhook: bad or missing signature from %s", request.client.host if request.client else "?")
            return self._reject("bad_signature", 401)
        try:
            hook = parse_callback(body, received=datetime.now(timezone.utc), collection=collection)
        except FrameRejected as exc:
            log.warning("videodb webhook: malformed body (%s)", exc)
            self._metrics.frames_rejected.labels("videodb", exc.reason).inc()
            return self._reject("malformed", 400)
        try:
            self._queue.put_nowait((collection, hook))
        except asyncio.QueueFull:
            return self._reject("queue_full", 503)
        self._metrics.videodb_webhooks.labels("accepted").inc()
        return JSONResponse({"ok": True})

    def _signature_ok(self, request: Request, body: bytes) -> bool:
        assert self._secret is not None
        given = request.headers.get(self._settings.webhook_signature_header, "").strip()
        given = given.removeprefix("sha256=")
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.encode(), expected.encode())

    # --- the worker ----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            collection, hook = await self._queue.get()
            try:
                await self._process(collection, hook)
            except Exception:  # one bad delivery must not stop the worker
                log.exception("videodb webhook: processing %s failed", hook.event if isinstance(hook, Webhook) else "a callback")
            finally:
                self._queue.task_done()

    def _dedupe_key(self, hook: Webhook | Callback) -> str:
        digest = hashlib.sha256(hook.dedupe_key.encode()).hexdigest()
        return f"{self._key_prefix}:videodb:webhook:{digest}"

    async def _rtstreams(self, collection: str, hook: Webhook) -> tuple[RtStreamInfo, ...]:
        """An active session's rtstreams: fetched from VideoDB (``GET .../capture/session/{id}``, as
        VideoDB's quickstarts do), else (the fetch failed or listed none) the webhook's own."""
        if self._fetch_session is None:
            return hook.rtstreams
        try:
            async with asyncio.timeout(self._settings.http_timeout_s):
                _, fetched = await self._fetch_session(collection, hook.capture_session_id)
        except (UpstreamError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, UpstreamError) else "http_timeout"
            self._metrics.upstream_errors.labels("videodb", f"session_{reason}").inc()
            log.warning("videodb webhook: cannot fetch capture session %s (%s); using the webhook's rtstreams",
                        hook.capture_session_id, reason)  # fmt: skip
            return hook.rtstreams
        if not fetched:
            return hook.rtstreams
        known = {s.rtstream_id for s in fetched}
        return fetched + tuple(s for s in hook.rtstreams if s.rtstream_id not in known)

    def _segment(self, collection: str, hook: Callback) -> tuple[SegmentMarks, SegmentKey] | None:
        """The marks and key of a final transcript segment (None for any other callback)."""
        event, marks = hook.published, self._segment_marks.get(collection)
        if marks is None or not isinstance(event, TranscriptEvent) or not event.payload.is_final or event.session.stream_id is None:
            return None
        p = event.payload
        return marks, segment_key(event.session.stream_id, p.start_time, p.end_time, p.text)

    async def _process(self, collection: str, hook: Webhook | Callback) -> None:
        key = self._dedupe_key(hook)
        timeout = self._settings.http_timeout_s  # a partitioned Redis must not stall the queue
        try:
            async with asyncio.timeout(timeout):
                first = await self._redis.set(key, b"1", nx=True, ex=self._settings.webhook_dedupe_ttl_s)
        except (RedisError, TimeoutError):
            self._metrics.redis_errors.labels("videodb_webhook_dedupe").inc()
            what = hook.event if isinstance(hook, Webhook) else "a callback"
            log.warning("videodb webhook: cannot dedupe %s (Redis); processing it anyway", what)
            first = True
        if not first:
            self._metrics.videodb_webhooks.labels("duplicate").inc()
            return
        if isinstance(hook, Callback):
            segment = self._segment(collection, hook)
            if segment is not None and not await segment[0].first(segment[1]):
                self._metrics.videodb_webhooks.labels("duplicate").inc()
                return
            await self._publisher.publish(hook.published)
            if segment is not None:
                # The claim lasts once the segment is on Redis (relay/providers/videodb/store.py).
                await self._publisher.wait_done(self._publisher.accepted)
                await segment[0].confirm(segment[1])
            return
        registry = self._registries[collection]
        streams = await self._rtstreams(collection, hook) if hook.status == "active" else ()
        try:
            async with asyncio.timeout(timeout):
                if streams:
                    await registry.add(streams)
                elif hook.status in _ENDED:
                    await registry.remove_session(hook.capture_session_id)
        except (RedisError, TimeoutError):
            # Let a redelivery try again rather than be dropped as a duplicate.
            self._metrics.redis_errors.labels("videodb_registry").inc()
            log.warning("videodb webhook: cannot record %s for %s (Redis)", hook.event, hook.capture_session_id)
            try:
                async with asyncio.timeout(timeout):
                    await self._redis.delete(key)
            except (RedisError, TimeoutError):
                pass
        else:
            if streams:
                result = self._on_active(collection)
                if result is not None:
                    await result
        await self._publisher.publish(hook.published)
