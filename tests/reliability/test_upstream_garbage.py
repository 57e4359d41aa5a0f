"""VideoDB and ASAPP answering garbage where a URL should be: the relay retries, counts, recovers.

The provider suites cover their sockets dropping, 401/403 (stop), 429 (Retry-After), 5xx
(retry), malformed socket messages and dead sockets (``tests/providers/videodb/test_service.py``,
``tests/providers/asapp/test_bridge.py``). What they do not cover is a REST answer that is 200 and
still wrong: not JSON, JSON without the URL, or a URL where no WebSocket answers. Here a scripted
front stands between the real relay and each emulator: it misbehaves on the first URL requests,
then forwards to the emulator, and the test checks that the bridge counted each failure by reason
and that events flow once the front behaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from relay.dev.asapp_emulator import AsappEmulator
from relay.dev import recall_frames as frames
from relay.dev.recall_simulator import SimulatedBot
from relay.dev.embedded import AppServer
from relay.dev.videodb_emulator import VideoDBEmulator
from tests.providers.videodb.helpers import ACTIVE, API_KEY

#: What the front answers to the first URL requests, in order; then it forwards.
SCRIPT = ("not json", "no url", "not a websocket")


class ScriptedFront:
    """A reverse proxy to ``upstream`` whose answers on ``url_path`` follow :data:`SCRIPT` first.

    ``url_field`` names the JSON field holding the socket URL in a good answer, and ``wrap`` nests
    a body the way the provider does (VideoDB: ``{"data": {...}}``, ASAPP: flat).
    """

    def __init__(self, upstream: str, url_path: str, url_field: str, wrap: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.upstream = upstream
        self.url_field = url_field
        self.wrap = wrap
        self.url_requests = 0
        self.server = AppServer(Starlette(routes=[
            Route("/plain-http", lambda request: PlainTextResponse("not a websocket")),
            Route(url_path, self._url, methods=["GET", "POST"]),
            Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]))  # fmt: skip

    async def _url(self, request: Request) -> Response:
        self.url_requests += 1
        step = SCRIPT[self.url_requests - 1] if self.url_requests <= len(SCRIPT) else "forward"
        if step == "not json":
            return PlainTextResponse("<html><body>502 upstream went away</body></html>", status_code=200)
        if step == "no url":
            return JSONResponse(self.wrap({"status": "ok"}))
        if step == "not a websocket":
            return JSONResponse(self.wrap({self.url_field: f"ws://127.0.0.1:{self.server.port}/plain-http"}))
        return await self._forward(request)

    async def _forward(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            answer = await client.request(request.method, self.upstream + request.url.path,
                                          params=request.query_params, headers=headers, content=await request.body())  # fmt: skip
        return Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"))

    async def __aenter__(self) -> ScriptedFront:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url


async def test_videodb_url_garbage_is_retried_and_counted_then_events_flow(start_relay, collect, redis_client) -> None:  # type: ignore[no-untyped-def]
    # (redis_client flushes Redis: an earlier test's webhook would be deduplicated away.)
    async with (
        VideoDBEmulator(api_key=API_KEY, collections=("default",)) as emu,
        ScriptedFront(emu.base_url, "/collection/{collection_id}/websocket", "websocket_url",
                      lambda body: {"success": True, "data": body}) as front,  # fmt: skip
    ):
        events = collect("relay:events:videodb:*")
        relay = await start_relay(
            videodb={"enabled": True, "base_url": front.url, "api_key": API_KEY, "collections": ["default"],
                     "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "sync_interval_s": 0.1, "lease_ttl_s": 2.0},
        )  # fmt: skip
        await emu.wait_connections(1)
        assert front.url_requests == len(SCRIPT) + 1
        assert relay.metric("relay_upstream_errors_total", provider="videodb", reason="http_body") == 2
        assert relay.metric("relay_upstream_errors_total", provider="videodb", reason="ws_handshake") == 1
        assert await emu.post_webhook(relay.http_url + "/videodb/webhook", ACTIVE) == [200]
        await emu.wait_bound("rts-1", "transcript")
        assert await emu.emit("rts-1", "transcript", {"text": "through at last", "is_final": True}, "mic:default")
        got = await events.wait_for(2)
        assert got[-1].payload.text == "through at last"
        await relay.stop()


async def test_asapp_url_garbage_is_retried_and_counted_then_transcripts_flow(start_relay, collect, asapp_emulator: AsappEmulator) -> None:  # type: ignore[no-untyped-def]
    config = asapp_emulator.config
    async with ScriptedFront(asapp_emulator.base_url, "/autotranscribe/v1/streaming-url", "streamingUrl", lambda body: body) as front:
        relay = await start_relay(
            asapp={"enabled": True, "api_id": config.api_id, "api_secret": config.api_secret, "base_url": front.url,
                   "bridge": "all", "pace_speed": 20.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.2},
        )  # fmt: skip
        transcripts = collect("relay:events:asapp:*:transcript.*")
        async with SimulatedBot(relay.recall_url()) as bot:
            alice = frames.participant(100, "Alice", is_host=True)
            await bot.join(alice)
            for i in range(50):  # 1 s of speech
                await bot.audio_separate(alice, frames.tone_pcm(20, start_sample=i * 320))
            await transcripts.wait_for(1, timeout=20)
            await bot.leave(alice)
        assert front.url_requests == len(SCRIPT) + 1
        assert relay.metric("relay_upstream_errors_total", provider="asapp", reason="url_malformed") == 2
        assert relay.metric("relay_upstream_errors_total", provider="asapp", reason="connect") == 1
        await relay.stop()
