"""The Recall endpoint over real sockets: auth before accept, every frame to Redis, bad input met.

Each test serves a relay on a free port (``start_relay``), connects as a Recall bot would, and
asserts on what a Redis subscriber receives, on close codes and on the relay's metrics.
"""

from __future__ import annotations

import asyncio
from typing import Any
import gc
import base64

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.server import ServerProtocol

from relay.core.observers import Interest, ObserverRoutes
from relay.providers.recall.auth import sign
from relay.schema import EventRecord
from tests.conftest import RECALL_TOKEN

RECORDING = "rec-2f1c"
PARTICIPANT = {"id": 100, "name": "Ada Lovelace", "is_host": True, "platform": "desktop", "extra_data": {}, "email": None}
TS = {"relative": 12.5, "absolute": "2026-11-25T20:00:12.500Z"}


def frame(event: str, data: dict) -> str:
    return orjson.dumps(
        {
            "event": event,
            "data": {
                "data": data,
                "realtime_endpoint": {"id": "re-1", "metadata": {"team": "sales"}},
                "recording": {"id": RECORDING, "metadata": {}},
                "bot": {"id": "bot-1", "metadata": {}},
            },
        }
    ).decode()


def transcript(text: str) -> str:
    words = [{"text": w, "start_timestamp": {"relative": 1.0}, "end_timestamp": {"relative": 1.2}} for w in text.split()]
    return frame("transcript.data", {"words": words, "participant": PARTICIPANT})


def audio(n_ms: int = 20) -> str:
    pcm = bytes(32 * n_ms)
    return frame("audio_mixed_raw.data", {"buffer": base64.b64encode(pcm).decode(), "timestamp": TS})


async def open_bot(url: str, **kwargs: object):  # type: ignore[no-untyped-def]
    return await connect(url, proxy=None, open_timeout=5, **kwargs)


async def test_events_reach_redis_in_the_schema_on_their_channels(start_relay, collect) -> None:
    relay = await start_relay()
    text = collect("relay:events:recall:*")
    media = collect("relay:media:recall:*")
    async with await open_bot(relay.recall_url()) as bot:
        await bot.send(frame("participant_events.join", {"participant": PARTICIPANT, "timestamp": TS, "data": None}))
        await bot.send(transcript("hello there"))
        await bot.send(audio())
        await bot.send(frame("participant_events.chat_message",
                             {"participant": PARTICIPANT, "timestamp": TS, "data": {"text": "hi", "to": "everyone"}}))  # fmt: skip
    events = await text.wait_for(4)
    # The meeting's session.started (relay/core/sessions.py) comes before its first event.
    assert [e.type for e in events] == ["session.started", "participant.join", "transcript.final", "chat.message"]
    assert text.channels[2] == f"relay:events:recall:{RECORDING}:transcript.final"
    join = events[1]
    assert join.session.id == RECORDING and join.session.bot_id == "bot-1"
    assert join.session.metadata == {"team": "sales"}
    assert join.participant is not None and join.participant.id == "100" and join.participant.is_host
    assert events[2].payload.text == "hello there"
    (chunk,) = await media.wait_for(1)
    assert chunk.type == "audio.chunk" and chunk.payload.duration_ms == 20
    assert media.channels == [f"relay:media:recall:{RECORDING}:audio.chunk"]
    await wait_for_metric(relay, "relay_events_published_total", 1, source="recall", type="transcript.final")


@pytest.mark.parametrize("path", ["/recall", "/recall/"])
async def test_both_paths_are_served(start_relay, collect, path: str) -> None:
    relay = await start_relay()
    events = collect("relay:events:*")
    async with await open_bot(relay.recall_url(path=path)) as bot:
        await bot.send(transcript("ok"))
    await events.wait_for(1)


@pytest.mark.parametrize(
    ("url_args", "reason"),
    [
        ({"token": None}, "missing_token"),
        ({"token": "wrong-token-0123456789abcd"}, "invalid_token"),
        ({"token": RECALL_TOKEN[:-1]}, "invalid_token"),
        ({"token": None, "path": f"/recall/{RECALL_TOKEN}"}, None),
    ],
)
async def test_bad_tokens_are_refused_with_403_before_accept(start_relay, url_args, reason) -> None:
    relay = await start_relay()
    with pytest.raises(InvalidStatus) as info:
        await open_bot(relay.recall_url(**url_args))
    assert info.value.response.status_code in (403, 404)
    if reason is not None:
        assert info.value.response.status_code == 403
        assert relay.metric("relay_connections_rejected_total", source="recall", reason=reason) == 1
    assert relay.metric("relay_connections_accepted_total", source="recall") == 0


async def test_signature_is_checked_when_required(start_relay, collect) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    relay = await start_relay(recall={"signing_secrets": [secret], "require_signature": True})
    with pytest.raises(InvalidStatus) as info:
        await open_bot(relay.recall_url())
    assert info.value.response.status_code == 403
    assert relay.metric("relay_connections_rejected_total", source="recall", reason="missing_signature") == 1
    import time

    headers = sign(secret, "msg_1", int(time.time()))
    events = collect("relay:events:*")
    async with await open_bot(relay.recall_url(), additional_headers=headers) as bot:
        await bot.send(transcript("signed"))
    await events.wait_for(1)
    # The same headers named svix-* (Recall's sample verifier accepts both), over a real handshake.
    async with await open_bot(relay.recall_url(), additional_headers=sign(secret, "msg_3", int(time.time()), prefix="svix")) as bot:
        await bot.send(transcript("svix signed"))
    await events.wait_for(2)
    stale = sign(secret, "msg_2", int(time.time()) - 3600)
    with pytest.raises(InvalidStatus):
        await open_bot(relay.recall_url(), additional_headers=stale)
    assert relay.metric("relay_connections_rejected_total", source="recall", reason="stale_signature") == 1


async def test_bad_frames_are_counted_and_do_not_cost_what_came_before_or_after(start_relay, collect) -> None:
    relay = await start_relay()
    events = collect("relay:events:*")
    async with await open_bot(relay.recall_url()) as bot:
        await bot.send(transcript("before"))
        await bot.send("{not json")
        await bot.send('["an", "array"]')
        await bot.send(frame("transcript.data", {"words": "not a list", "participant": PARTICIPANT}))
        await bot.send(transcript("after"))
        await bot.send(frame("brand_new.event", {"x": 1}))
    got = await events.wait_for(3)
    assert [e.type for e in got] == ["transcript.final", "transcript.final", "generic"]
    assert [e.payload.text for e in got[:2]] == ["before", "after"]
    assert got[2].payload.provider_type == "brand_new.event"
    rejected = sum(
        relay.metric("relay_frames_rejected_total", source="recall", reason=r)
        for r in ("invalid_json", "not_an_object", "invalid_field", "missing_field")
    )
    assert rejected == 3


async def test_oversize_frame_closes_1009_and_keeps_earlier_events(start_relay, collect) -> None:
    relay = await start_relay(recall={"max_frame_bytes": 4096})
    events = collect("relay:events:*")
    bot = await open_bot(relay.recall_url(), max_size=None)
    await bot.send(transcript("kept"))
    await bot.send("x" * 5000)
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            await bot.recv()
    assert bot.close_code == 1009
    (event,) = await events.wait_for(1)
    assert event.payload.text == "kept"
    await wait_for_metric(relay, "relay_frames_rejected_total", 1, source="recall", reason="oversize")


async def test_pings_and_fragmented_messages_between_frames_keep_every_event_in_order(start_relay, collect) -> None:
    # Data frames take the splitter (relay/core/wsframes.py); a ping goes to websockets and back; a
    # fragmented message hands the rest of the stream to websockets. Nothing is lost on the way.
    relay = await start_relay()
    events = collect("relay:events:*")
    async with await open_bot(relay.recall_url()) as bot:
        await bot.send(transcript("one"))
        pong = await bot.ping()
        await bot.send(transcript("two"))
        async with asyncio.timeout(5):
            await pong  # the relay answered between two data frames
        whole = transcript("three in fragments")
        await bot.send([whole[:10], whole[10:40], whole[40:]])
        await bot.send(transcript("four"))
    texts = [e.payload.text for e in await events.wait_for(4)]
    assert texts == ["one", "two", "three in fragments", "four"]


async def wait_for_metric(relay, name: str, value: float, **labels: str) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(5):
        while relay.metric(name, **labels) < value:
            await asyncio.sleep(0.01)


async def test_connections_beyond_the_cap_get_503(start_relay) -> None:
    relay = await start_relay(recall={"max_connections": 2})
    first, second = await open_bot(relay.recall_url()), await open_bot(relay.recall_url())
    with pytest.raises(InvalidStatus) as info:
        await open_bot(relay.recall_url())
    assert info.value.response.status_code == 503
    assert relay.metric("relay_connections_rejected_total", source="recall", reason="over_capacity") == 1
    assert relay.metric("relay_connections_open", source="recall") == 2
    await first.close()
    await wait_for_metric_below(relay, "relay_connections_open", 2, source="recall")
    async with await open_bot(relay.recall_url()):
        pass
    await second.close()


async def wait_for_metric_below(relay, name: str, value: float, **labels: str) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(5):
        while relay.metric(name, **labels) >= value:
            await asyncio.sleep(0.01)


async def test_ops_endpoints(start_relay, redis_server) -> None:
    relay = await start_relay()
    async with httpx.AsyncClient(base_url=relay.http_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
        metrics = (await http.get("/metrics")).text
        for name in ("relay_connections_open", "relay_events_published_total", "relay_publish_latency_seconds",
                     "relay_queue_depth", "relay_events_dropped_total", "relay_redis_errors_total",
                     "relay_connections_rejected_total"):  # fmt: skip
            assert f"# HELP {name} " in metrics
        redis_server.stop()
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["redis"] == "unavailable"
        assert (await http.get("/healthz")).status_code == 200
    redis_server.start()


async def test_quiet_bots_are_pinged_and_dead_ones_closed_1011(start_relay) -> None:
    relay = await start_relay(recall={"ping_interval_s": 0.2, "ping_timeout_s": 0.3})
    alive = await open_bot(relay.recall_url(), ping_interval=None)  # answers pings, sends none
    # A peer that completes the handshake and then never reads: it cannot answer a ping.
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(
        f"GET /recall/?token={RECALL_TOKEN} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert (await reader.readline()).startswith(b"HTTP/1.1 101")
    await wait_for_metric(relay, "relay_connections_closed_total", 1, source="recall", code="1011")
    async with asyncio.timeout(5):
        while not reader.at_eof():  # the relay closed the TCP connection
            await reader.read(65536)
    writer.close()
    assert alive.state.name == "OPEN"
    await alive.close()


async def test_a_full_queue_stops_reading_the_socket_and_loses_nothing(start_relay, collect, redis_client) -> None:
    relay = await start_relay(redis={"queue_max_events": 2, "batch_max_events": 1})
    events = collect("relay:events:*:transcript.*")
    await redis_client.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
    async with await open_bot(relay.recall_url()) as bot:
        for n in range(50):
            await bot.send(transcript(f"n{n}"))
    got = await events.wait_for(50)
    assert [e.payload.text for e in got] == [f"n{n}" for n in range(50)]
    assert relay.metric("relay_backpressure_pauses_total", source="recall") >= 1


@pytest.mark.parametrize("cut", [False, True], ids=["closed", "cut"])
async def test_a_finished_connection_leaves_no_cyclic_garbage(start_relay, collect, cut: bool) -> None:
    """Closed or cut, a bot's connection is freed by refcounting: nothing for the cyclic GC."""
    from relay.providers.recall.ingress import RecallConnection
    from relay.core.internals import RelayHttpProtocol

    relay = await start_relay()
    events = collect("relay:events:recall:*")
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # from the handshake on: uvicorn's HTTP protocol is done with there
    try:
        bots = [await open_bot(relay.recall_url()) for _ in range(5)]
        for bot in bots:
            await bot.send(transcript("hello there"))
        await events.wait_for(5)
        for bot in bots:
            if cut:
                bot.transport.abort()
            else:
                await bot.close()
        while relay.app.state.relay.ingress.open_connections:
            await asyncio.sleep(0.01)
        gc.collect()
        kinds = (RecallConnection, RelayHttpProtocol, ServerProtocol)
        left = [type(o).__name__ for o in gc.garbage if isinstance(o, kinds)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


# --- observers -------------------------------------------------------------------------------------


class RecordingObserver:
    """An observer of the given interest that records what it is handed (and may fail on it)."""

    def __init__(self, name: str, interest: Interest, fail: bool = False) -> None:
        self.name = name
        self.interest = interest
        self.fail = fail
        self.events: list[Any] = []
        self.disconnects: list[str] = []
        self.disconnected = asyncio.Event()

    def on_event(self, event: Any) -> None:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("a bridge bug")

    def on_disconnect(self, session: Any) -> None:
        self.disconnects.append(session.id)
        self.disconnected.set()


def _observe_with(relay: Any, *observers: Any) -> None:
    ingress = relay.relay.ingress
    ingress.routes = ObserverRoutes(observers)
    ingress.observers = ingress.routes.observers


async def test_observers_get_only_the_types_and_sessions_they_declared(start_relay, collect, monkeypatch) -> None:
    built: list[str] = []
    model = EventRecord.model
    monkeypatch.setattr(EventRecord, "model", lambda self: built.append(self.type) or model(self))
    relay = await start_relay()
    sales = RecordingObserver("sales", Interest(frozenset({"audio.chunk"}), lambda s: s.metadata.get("team") == "sales"))
    support = RecordingObserver("support", Interest(frozenset({"transcript.final", "audio.chunk"}), lambda s: s.metadata.get("team") == "support"))
    _observe_with(relay, sales, support)
    events = collect("relay:*")
    async with await open_bot(relay.recall_url()) as bot:
        await bot.send(transcript("not observed"))
        await bot.send(audio())
    await events.wait_for(2)
    await sales.disconnected.wait()
    assert [e.type for e in sales.events] == ["audio.chunk"]
    assert support.events == []
    assert built == ["audio.chunk"]  # no model for the transcript nobody wanted
    assert sales.disconnects == support.disconnects == [RECORDING]


async def test_a_failing_observer_is_a_bridge_error_not_a_rejected_frame(start_relay, collect) -> None:
    relay = await start_relay()
    broken = RecordingObserver("broken", Interest(frozenset({"transcript.final"})), fail=True)
    _observe_with(relay, broken)
    events = collect("relay:events:*")
    async with await open_bot(relay.recall_url()) as bot:
        await bot.send(transcript("one"))
        await bot.send(transcript("two"))
    assert [e.payload.text for e in await events.wait_for(2)] == ["one", "two"]
    await broken.disconnected.wait()
    assert relay.metric("relay_bridge_errors_total", bridge="broken") == 2
    assert relay.metric("relay_frames_rejected_total", source="recall", reason="observer_error") == 0
    assert relay.metric("relay_connections_closed_total", source="recall", code="1000") == 1


async def test_an_invalid_utf8_text_frame_costs_that_frame_not_the_connection(start_relay, collect) -> None:
    # RFC 6455 section 8.1 would fail the connection (1007); the relay drops the one frame on purpose.
    relay = await start_relay()
    events = collect("relay:events:*")
    async with await open_bot(relay.recall_url()) as bot:
        await bot.send(transcript("before"))
        await bot.send(b'{"event": "\xff"}', text=True)
        await bot.send(transcript("after"))
    assert [e.payload.text for e in await events.wait_for(2)] == ["before", "after"]
    assert relay.metric("relay_frames_rejected_total", source="recall", reason="invalid_utf8") == 1
    # "after" came over the same connection, behind the bad frame: the connection was not failed.
