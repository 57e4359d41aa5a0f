"""VideoDBService against the emulator over real sockets and a real Redis.

Each test is one relay process (or two, for the lease) talking to the emulator: events of every
channel arrive on Redis in the schema, reconnects re-bind, failures are counted, webhooks are
deduplicated and signed, and one collection's socket is held by one process at a time.
"""

from __future__ import annotations

import contextlib
import logging

import orjson
import pytest

from relay.providers.videodb.webhooks import sign
from relay.schema import AlertEvent, GenericEvent, IndexEvent, SessionStatusEvent, TranscriptEvent

from relay.dev.videodb_emulator import VideoDBEmulator

from tests.conftest import TcpProxy

from .helpers import ACTIVE, API_KEY, FreezableProxy, running_service, sample, settings_for, wait_until, wait_until_async

JOBS = [("rts-1", "transcript"), ("rts-1", "audio_index"), ("rts-3", "visual_index"), ("rts-3", "alert")]


async def activate(emulator, relay) -> None:
    """Deliver the capture_session.active webhook and wait until every job is bound to a live socket."""
    assert await emulator.post_webhook(relay.webhook_url, ACTIVE) == [200]
    for rtstream, job in JOBS:
        await emulator.wait_bound(rtstream, job)


def transcript(text: str, is_final: object = True) -> dict:
    return {"text": text, "is_final": is_final, "start": 1710000001234, "end": 1710000002345}


async def test_every_channel_arrives_in_the_schema(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*")
    async with running_service(settings_for(emu), redis_url) as relay:
        await activate(emu, relay)
        await events.wait_for(1)  # the webhook's session.status
        span = {"start": 1710000012340, "end": 1710000018900}
        assert await emu.emit("rts-1", "transcript", transcript("Let's meet Thursday"), "mic:default")
        assert await emu.emit("rts-1", "transcript", transcript("Let's me", "false"), "mic:default")
        assert await emu.emit("rts-1", "audio_index", {"text": "Scheduling talk", **span}, "mic:default")
        assert await emu.emit("rts-1", "spoken_index", {"text": "More scheduling", **span}, "mic:default")
        assert await emu.emit("rts-3", "visual_index", {"text": "Slack is open", **span}, "display:1")
        assert await emu.emit("rts-3", "scene_index", {"text": "A code editor", **span}, "display:1")
        assert await emu.emit("rts-3", "alert", {"label": "sensitive_content", "triggered": True, "confidence": 0.92, **span})
        assert await emu.send_raw({"channel": "capture_session", "capture_session_id": "cap-1", "status": "stopping", "data": {}})
        assert await emu.send_raw({"channel": "upload_progress", "rtstream_id": "rts-1", "data": {"percent": 40}})
        got = await events.wait_for(10)

    by_type = {}
    for event in got:
        by_type.setdefault(event.type, []).append(event)
    assert [e.payload.status for e in by_type["session.status"]] == ["active", "stopping"]
    assert isinstance(by_type["session.status"][0], SessionStatusEvent)
    assert by_type["session.status"][0].payload.detail["end_user_id"] == "user_abc"
    final, partial = by_type["transcript.final"][0], by_type["transcript.partial"][0]
    assert isinstance(final, TranscriptEvent) and final.payload.text == "Let's meet Thursday"
    assert partial.payload.text == "Let's me" and not partial.payload.is_final
    assert [e.payload.text for e in by_type["index.audio"]] == ["Scheduling talk", "More scheduling"]
    assert [e.payload.text for e in by_type["index.visual"]] == ["Slack is open", "A code editor"]
    assert all(isinstance(e, IndexEvent) for e in by_type["index.visual"])
    alert = by_type["alert"][0]
    assert isinstance(alert, AlertEvent) and alert.payload.label == "sensitive_content"
    generic = by_type["generic"][0]
    assert isinstance(generic, GenericEvent) and generic.payload.provider_type == "upload_progress"
    # Socket events are keyed by the capture session the webhook named, with their rtstream.
    assert {e.session.id for e in got} == {"cap-1"}
    assert final.session.stream_id == "rts-1" and final.session.stream_name == "mic:default"
    assert alert.session.stream_id == "rts-3"
    assert all(ch.startswith("relay:events:videodb:cap-1:") for ch in events.channels)
    # The jobs were started with their prompts, and the alert on the visual index.
    starts = {(b.rtstream_id, b.job): b.body for b in emu.bindings}
    assert starts[("rts-1", "audio_index")]["prompt"] == settings_for(emu).audio_index_prompt
    assert emu.events[starts[("rts-3", "alert")]["event_id"]]["label"] == "sensitive_content"


async def test_drop_reconnects_rebinds_and_events_flow_again(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*:transcript.*")
    async with running_service(settings_for(emu), redis_url) as relay:
        await activate(emu, relay)
        first = emu.bound_to("rts-1", "transcript")
        assert await emu.emit("rts-1", "transcript", transcript("before"))
        await events.wait_for(1)

        assert await emu.drop() == 1
        # Nothing is delivered while no socket is bound (the emulator is as strict as VideoDB).
        await emu.wait_until(lambda: emu.is_live_bound("rts-1", "transcript") and emu.bound_to("rts-1", "transcript") != first)
        for rtstream, job in JOBS:
            await emu.wait_bound(rtstream, job)
        assert await emu.emit("rts-1", "transcript", transcript("after"))
        got = await events.wait_for(2)
        assert [e.payload.text for e in got] == ["before", "after"]
        assert emu.url_requests == 2  # a fresh URL for the second connect (the emulator's are one-time)
        m = relay.metrics
        assert sample(m, "relay_upstream_gap_seconds_count", provider="videodb") == 1
        assert sample(m, "relay_upstream_reconnects_total", provider="videodb") == 1
        assert sample(m, "relay_upstream_connects_total", provider="videodb") == 2
        assert sample(m, "relay_videodb_jobs_bound_total", job="transcript", outcome="ok") == 2


async def test_rejected_key_stops_retrying(videodb_emulator, redis_url, redis_client) -> None:
    emu = videodb_emulator
    async with running_service(settings_for(emu, api_key="sk-wrong"), redis_url) as relay:
        await wait_until(lambda: not relay.service.is_running("default"))
        assert relay.service.client("default").rejected
        assert emu.url_requests == 1 and emu.connects == 0
        assert sample(relay.metrics, "relay_upstream_errors_total", provider="videodb", reason="auth") == 1
        assert not relay.service.holds("default")


async def test_forbidden_also_stops_but_5xx_retries(videodb_emulator, redis_url, redis_client) -> None:
    emu = videodb_emulator
    emu.fail_url(503, times=3)
    async with running_service(settings_for(emu), redis_url) as relay:
        await emu.wait_connections(1)
        assert emu.url_requests == 4
        assert sample(relay.metrics, "relay_upstream_errors_total", provider="videodb", reason="http_5xx") == 3
        assert relay.service.is_running("default")

    emu.fail_url(403)
    async with running_service(settings_for(emu), redis_url) as relay:
        await wait_until(lambda: not relay.service.is_running("default"))
        assert sample(relay.metrics, "relay_upstream_errors_total", provider="videodb", reason="auth") == 1


async def test_malformed_frames_are_counted_not_fatal(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*:transcript.*")
    async with running_service(settings_for(emu), redis_url) as relay:
        await activate(emu, relay)
        assert await emu.send_raw("not json at all")
        assert await emu.send_raw(b"\xff\xfe binary junk")
        assert await emu.send_raw({"channel": "transcript", "data": {}})
        assert await emu.send_raw({"channel": "transcript", "rtstream_id": "rts-1", "data": {"text": "x", "is_final": "perhaps"}})
        # Accepted, as VideoDB's own apps send them: no rtstream_id (the collection's), text on top.
        assert await emu.send_raw({"type": "transcript", "text": "no rtstream", "is_final": True})
        assert await emu.emit("rts-1", "transcript", transcript("still here"))
        got = await events.wait_for(2)
        assert [e.payload.text for e in got] == ["no rtstream", "still here"]
        assert got[0].session.id == "default" and got[0].session.stream_id is None
        m = relay.metrics
        assert sample(m, "relay_frames_rejected_total", source="videodb", reason="invalid_json") == 1
        assert sample(m, "relay_frames_rejected_total", source="videodb", reason="invalid_utf8") == 1
        assert sample(m, "relay_frames_rejected_total", source="videodb", reason="missing_field") == 1  # data.text
        assert sample(m, "relay_frames_rejected_total", source="videodb", reason="invalid_field") == 1  # data.is_final
        assert emu.connects == 1  # the socket survived


async def test_duplicate_webhooks_are_published_once(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*:session.status")
    stopped = {"event": "capture_session.stopped", "capture_session_id": "cap-1", "status": "stopped",
               "timestamp": "2026-01-20T13:00:00Z", "data": {}}  # fmt: skip
    exported = {**stopped, "event": "capture_session.exported", "status": "exported",
                "data": {"exported_video_id": "m-1"}}  # fmt: skip
    async with running_service(settings_for(emu), redis_url) as relay:
        assert await emu.post_webhook(relay.webhook_url, stopped, times=3) == [200, 200, 200]
        assert await emu.post_webhook(relay.webhook_url + "/default", exported) == [200]
        got = await events.wait_for(2)
        await relay.publisher.aclose(timeout=5)  # flush: nothing else is pending
        assert [e.payload.status for e in events.events] == ["stopped", "exported"]
        assert got[1].payload.detail["data"]["exported_video_id"] == "m-1"
        assert sample(relay.metrics, "relay_videodb_webhooks_total", outcome="accepted") == 4
        assert sample(relay.metrics, "relay_videodb_webhooks_total", outcome="duplicate") == 2
        assert await emu.post_webhook(relay.webhook_url, b'{"event": 1}') == [400]
        assert await emu.post_webhook(relay.webhook_url, b"not json") == [400]
        assert sample(relay.metrics, "relay_videodb_webhooks_total", outcome="malformed") == 2
        # the rejection metric uses the shared reasons, as socket frames do (no capture_session_id; bad JSON)
        assert sample(relay.metrics, "relay_frames_rejected_total", source="videodb", reason="missing_field") == 1
        assert sample(relay.metrics, "relay_frames_rejected_total", source="videodb", reason="invalid_json") == 1
        assert await emu.post_webhook(relay.webhook_url + "/nope", stopped) == [404]


async def test_webhook_signature(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*:session.status")
    async with running_service(settings_for(emu, webhook_secret="whook-secret"), redis_url) as relay:
        assert await emu.post_webhook(relay.webhook_url, ACTIVE) == [401]
        assert await emu.post_webhook(relay.webhook_url, ACTIVE, secret="wrong-secret") == [401]
        assert await emu.post_webhook(relay.webhook_url, ACTIVE, secret="whook-secret") == [200]
        await events.wait_for(1)
        assert sample(relay.metrics, "relay_videodb_webhooks_total", outcome="bad_signature") == 2
    # The header value is "sha256=" + hex HMAC-SHA256 of the raw body (RFC 4231 test case 2).
    assert sign("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


async def test_failed_job_starts_are_retried(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*:transcript.*")
    async with running_service(settings_for(emu), redis_url) as relay:
        await emu.wait_connections(1)
        emu.fail_jobs(503, times=2)
        await activate(emu, relay)  # bound in the end: the failed rtstream is tried again
        assert sample(relay.metrics, "relay_videodb_jobs_bound_total", job="transcript", outcome="error") == 1
        assert await emu.emit("rts-1", "transcript", transcript("made it"))
        assert [e.payload.text for e in await events.wait_for(1)] == ["made it"]


async def test_a_stopped_sessions_rtstreams_are_not_rebound(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    statuses = collect("relay:events:videodb:*:session.status")
    stopped = {"event": "capture_session.stopped", "capture_session_id": "cap-1", "status": "stopped",
               "timestamp": "2026-01-20T13:00:00Z"}  # fmt: skip
    async with running_service(settings_for(emu), redis_url) as relay:
        await activate(emu, relay)
        assert await emu.post_webhook(relay.webhook_url, stopped) == [200]
        await statuses.wait_for(2)
        assert await redis_client.hlen("relay:videodb:default:rtstreams") == 0
        starts = len(emu.bindings)
        await emu.drop()
        await emu.wait_connections(1)
        client = relay.service.client("default")
        await wait_until(lambda: client.connection_id == emu.connection_ids[0])
        await client.sync()  # whatever the registry still listed would be bound by now
        assert len(emu.bindings) == starts


async def test_a_dead_socket_is_noticed_by_pings(redis_url, redis_client, collect) -> None:
    # The relay reaches the emulator's socket through a proxy that can go silent without closing.
    async with VideoDBEmulator(api_key=API_KEY) as emu, FreezableProxy(emu.host, emu.port) as proxy:
        emu.ws_base = f"ws://127.0.0.1:{proxy.port}"
        events = collect("relay:events:videodb:*:transcript.*")
        settings = settings_for(emu, ping_interval_s=0.2, ping_timeout_s=0.3)
        async with running_service(settings, redis_url) as relay:
            await activate(emu, relay)
            first = emu.bound_to("rts-1", "transcript")
            proxy.freeze()
            # The emulator still sees its end open; only the relay's pings can tell the path is dead.
            await emu.wait_until(lambda: emu.bound_to("rts-1", "transcript") != first and emu.is_live_bound("rts-1", "transcript"))
            assert await emu.emit("rts-1", "transcript", transcript("through a new socket"))
            assert [e.payload.text for e in await events.wait_for(1)] == ["through a new socket"]
            assert sample(relay.metrics, "relay_upstream_errors_total", provider="videodb", reason="ws_network") >= 1
            assert first in emu.connection_ids  # the frozen socket was never closed by the server


async def test_webhooks_while_redis_is_down_are_processed_not_lost(videodb_emulator, redis_server, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    exported = {"event": "capture_session.exported", "capture_session_id": "cap-9", "status": "exported",
                "timestamp": "2026-01-20T14:00:00Z", "data": {"exported_video_id": "m-9"}}  # fmt: skip
    async with running_service(settings_for(emu), redis_url) as relay:
        redis_server.stop()
        try:
            assert await emu.post_webhook(relay.webhook_url, exported) == [200]  # answered at once
            await wait_until(lambda: sample(relay.metrics, "relay_redis_errors_total", operation="videodb_webhook_dedupe") == 1)
        finally:
            redis_server.start()
        events = collect("relay:events:videodb:*:session.status")  # before the publisher's next retry
        got = await events.wait_for(1)
        assert got[0].payload.detail["data"]["exported_video_id"] == "m-9"


async def test_several_collections_each_get_their_socket_and_webhooks(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*:transcript.*")
    other_session = {**ACTIVE, "capture_session_id": "cap-other",
                     "data": {"rtstreams": [{"rtstream_id": "rts-9", "name": "mic:default", "media_types": ["audio"]}]}}  # fmt: skip
    async with running_service(settings_for(emu, collections=["default", "other"]), redis_url) as relay:
        await emu.wait_connections(2)
        assert await emu.post_webhook(relay.webhook_url + "/other", other_session) == [200]
        conn = await emu.wait_bound("rts-9", "transcript")
        assert conn == relay.service.client("other").connection_id != relay.service.client("default").connection_id
        assert await emu.emit("rts-9", "transcript", transcript("other collection"))
        got = await events.wait_for(1)
        assert got[0].session.id == "cap-other"
        assert await redis_client.hlen("relay:videodb:default:rtstreams") == 0


async def test_a_crashing_client_is_logged_and_restarted(videodb_emulator, redis_url, redis_client, collect, caplog) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*:transcript.*")
    async with running_service(settings_for(emu), redis_url) as relay:
        await activate(emu, relay)
        client = relay.service.client("default")
        handle = client._handle
        crashes = []

        async def crash_once(message):  # a bug in our own code, not an upstream failure
            if not crashes:
                crashes.append(message)
                raise RuntimeError("bug")
            await handle(message)

        client._handle = crash_once  # type: ignore[method-assign]
        first = emu.bound_to("rts-1", "transcript")
        assert await emu.emit("rts-1", "transcript", transcript("lost to the bug"))
        await emu.wait_until(lambda: emu.is_live_bound("rts-1", "transcript") and emu.bound_to("rts-1", "transcript") != first)
        assert await emu.emit("rts-1", "transcript", transcript("after restart"))
        assert [e.payload.text for e in await events.wait_for(1)] == ["after restart"]
        assert sample(relay.metrics, "relay_upstream_errors_total", provider="videodb", reason="internal") == 1
        assert "client crashed" in caplog.text


async def test_jobs_are_started_as_the_sdk_starts_them(videodb_emulator, redis_url, redis_client) -> None:
    emu = videodb_emulator
    settings = settings_for(emu, transcript_engine="assemblyai", audio_index_segmenter="sentence", audio_index_segmentation_value=3,
                            alert_callback_url="https://relay.example/videodb/webhook?token=t0k")  # fmt: skip
    async with running_service(settings, redis_url) as relay:
        await activate(emu, relay)
    starts = {(b.rtstream_id, b.job): b.body for b in emu.bindings}
    conn = starts[("rts-1", "transcript")]["ws_connection_id"]
    assert starts[("rts-1", "transcript")] == {"action": "start", "engine": "assemblyai", "ws_connection_id": conn}
    audio = starts[("rts-1", "audio_index")]
    assert audio["extraction_type"] == "transcript"
    assert audio["extraction_config"] == {"segmenter": "sentence", "segmentation_value": 3}
    assert audio["prompt"] == settings.audio_index_prompt and audio["name"] == "relay:audio_index"
    visual = starts[("rts-3", "visual_index")]
    assert visual["extraction_type"] == "time" and visual["extraction_config"] == {"time": 10, "frame_count": 5}
    alert = starts[("rts-3", "alert")]
    assert alert["callback_url"] == "https://relay.example/videodb/webhook?token=t0k"
    assert emu.alerts[next(iter(emu.alerts))].index_id == emu.live_indexes("rts-3")[0].rtstream_index_id
    assert ("POST", "/rtstream/rts-1/index/audio") not in emu.requests


async def test_a_job_that_keeps_failing_is_reported_not_hammered(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    errors = collect("relay:events:videodb:*:stream.error")
    settings = settings_for(emu, audio_index=False, visual_index=False, job_failures_reported=3, job_retry_initial_s=0.05,
                            job_retry_max_s=0.4)  # fmt: skip
    async with running_service(settings, redis_url) as relay:
        await emu.wait_connections(1)
        emu.fail_jobs(200)  # every job call refused: {"success": false} with HTTP 200
        assert await emu.post_webhook(relay.webhook_url, ACTIVE) == [200]
        (error,) = await errors.wait_for(1)
        assert error.payload.code == "job_failed:transcript" and not error.payload.permanent
        assert error.session.id == "cap-1" and error.session.stream_id == "rts-1"
        m = relay.metrics
        assert sample(m, "relay_videodb_jobs_bound_total", job="transcript", outcome="failing") == 1
        attempts = sum(1 for method, path in emu.requests if path == "/rtstream/rts-1/transcription")
        # A refused start is followed by one stop and one start again: 3 calls per attempt, and
        # 3 attempts (0.05, 0.1, 0.2 s of backoff at most) before the report, not one per sync.
        assert attempts <= 3 * 3
        assert not emu.is_live_bound("rts-1", "transcript")
        emu.fail_jobs(None)
        await emu.wait_bound("rts-1", "transcript")
        await wait_until(lambda: sample(m, "relay_videodb_jobs_bound_total", job="transcript", outcome="ok") == 1)
    assert len(errors.events) == 1  # reported once


async def test_webhooks_are_authenticated_by_the_token_in_their_url(videodb_emulator, redis_url, redis_client, collect, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    emu = videodb_emulator
    events = collect("relay:events:videodb:*:session.status")
    token = "whook-token-4f9a1c"
    async with running_service(settings_for(emu, webhook_token=token), redis_url) as relay:
        assert await emu.post_webhook(relay.webhook_url, ACTIVE) == [401]
        assert await emu.post_webhook(relay.webhook_url + "?token=wrong", ACTIVE) == [401]
        assert await emu.post_webhook(relay.webhook_url + f"?token={token}", ACTIVE) == [200]
        (event,) = await events.wait_for(1)
        assert event.payload.status == "active"
        assert sample(relay.metrics, "relay_videodb_webhooks_total", outcome="bad_token") == 2
    # The relay's own logs (and uvicorn's, which serve it) never carry the token; the test's HTTP
    # client (httpx, the sender here) may log the URL it posts to, which is not the relay's doing.
    relay_logs = [r.getMessage() for r in caplog.records if r.name.startswith(("relay", "uvicorn"))]
    assert relay_logs and not any(token in line for line in relay_logs)


async def test_ten_reconnects_leave_one_live_index_per_kind(videodb_emulator, redis_url, redis_client) -> None:
    emu = videodb_emulator
    async with running_service(settings_for(emu), redis_url) as relay:
        await activate(emu, relay)
        for _ in range(10):
            before = {job: emu.bound_to(rts, job) for rts, job in JOBS}
            assert await emu.drop() == 1
            await emu.wait_until(
                lambda: all(emu.is_live_bound(rts, job) and emu.bound_to(rts, job) != before[job] for rts, job in JOBS)
            )
        for rts, job in [("rts-1", "audio_index"), ("rts-3", "visual_index")]:
            live = [i for i in emu.live_indexes(rts) if i.job == job]
            assert len(live) == 1, f"{job}: {len(live)} running"
            assert emu.peak_live_indexes[(rts, job)] == 1  # never two at once, not even for a moment
            assert sum(1 for b in emu.bindings if (b.rtstream_id, b.job) == (rts, job)) == 11
            # The id every replica would stop next is the one running (written just after the create).
            key, running = f"relay:videodb:default:jobs:{rts}", live[0].rtstream_index_id.encode()

            async def recorded(key: str = key, job: str = job, running: bytes = running) -> bool:
                return await redis_client.hget(key, job) == running

            await wait_until_async(recorded, timeout=5)
        assert len(emu.live_alerts("rts-3")) == 1
        assert len(emu.events) == 1  # the alert's event was created once, then reused
        assert sample(relay.metrics, "relay_videodb_jobs_bound_total", job="audio_index", outcome="stopped") == 10


async def test_a_takeover_stops_what_the_previous_holder_started(videodb_emulator, redis_url, redis_client) -> None:
    emu = videodb_emulator
    async with running_service(settings_for(emu), redis_url) as relay:
        await activate(emu, relay)
    # Another process (or this one, restarted) holds the collection now; the ids are in Redis.
    async with running_service(settings_for(emu), redis_url):
        await emu.wait_until(lambda: len(emu.bindings) >= 2 * len(JOBS) and all(emu.is_live_bound(r, j) for r, j in JOBS))
        assert len([i for i in emu.live_indexes("rts-1") if i.job == "audio_index"]) == 1
        assert len(emu.live_indexes("rts-3")) == 1


async def test_a_socket_gap_is_fetched_back_and_every_segment_arrives_once(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    finals = collect("relay:events:videodb:*:transcript.final")
    settings = settings_for(emu, audio_index=False, visual_index=False, alerts=[])
    async with running_service(settings, redis_url) as relay:
        assert await emu.post_webhook(relay.webhook_url, ACTIVE) == [200]
        first = await emu.wait_bound("rts-1", "transcript")
        before = await emu.speak("rts-1", 1.0, every_ms=250)  # delivered on the socket
        await finals.wait_for(len(before))

        emu.fail_url(503)  # no new socket until the gap is over
        assert await emu.drop() == 1
        gap = await emu.speak("rts-1", 5.0, every_ms=250)  # 5 s of speech nobody hears live
        assert len(gap) == 20 and not emu.is_live_bound("rts-1", "transcript")
        emu.fail_url(None)
        await emu.wait_until(lambda: emu.is_live_bound("rts-1", "transcript") and emu.bound_to("rts-1", "transcript") != first)
        after = await emu.speak("rts-1", 1.0, every_ms=250)
        marker = await emu.speak("rts-1", 0.25, every_ms=250, prefix="marker")
        said = [s.text for s in before + gap + after + marker]
        got = await finals.wait_for(len(said))
        # The marker is the last segment spoken; anything published twice would be published before it.
        await wait_until(lambda: any(e.payload.text == marker[0].text for e in finals.events))
        texts = [e.payload.text for e in finals.events]
        assert sorted(texts) == sorted(said), "every segment exactly once"
        assert [e.payload.text for e in got[len(before):len(before) + len(gap)]] == [s.text for s in gap]  # fetched back in order
        backfilled = got[len(before)]
        assert backfilled.session.id == "cap-1" and backfilled.session.stream_id == "rts-1"
        assert backfilled.payload.start_time.timestamp() * 1000 == pytest.approx(gap[0].start_ms)
        since = [p for m, p in emu.requests if m == "GET" and p == "/rtstream/rts-1/transcription"]
        assert len(since) == 1


async def test_an_active_session_is_fetched_rather_than_trusted(videodb_emulator, redis_url, redis_client) -> None:
    emu = videodb_emulator
    # VideoDB knows both rtstreams; the webhook (as delivered) lists only the microphone.
    emu.add_capture_session("cap-1", ACTIVE["data"]["rtstreams"])
    partial = {**ACTIVE, "data": {"rtstreams": [ACTIVE["data"]["rtstreams"][0]]}}
    async with running_service(settings_for(emu), redis_url) as relay:
        assert await emu.post_webhook(relay.webhook_url, partial) == [200]
        for rtstream, job in JOBS:
            await emu.wait_bound(rtstream, job)
    assert ("GET", "/collection/default/capture/session/cap-1") in emu.requests


async def test_at_start_the_sessions_already_active_are_fetched(videodb_emulator, redis_url, redis_client) -> None:
    emu = videodb_emulator
    registry = "relay:videodb:default:rtstreams"
    # Left in Redis by an earlier holder: one session VideoDB has since stopped, one still active
    # whose rtstream the registry recorded without media types.
    await redis_client.hset(registry, mapping={
        "rts-1": orjson.dumps({"capture_session_id": "cap-old", "name": "mic:default", "media_types": ["audio"]}),
        "rts-5": orjson.dumps({"capture_session_id": "cap-2", "name": "mic:default", "media_types": []}),
    })  # fmt: skip
    emu.add_capture_session("cap-old", [ACTIVE["data"]["rtstreams"][0]], status="stopped")
    emu.add_capture_session("cap-2", [{"rtstream_id": "rts-5", "name": "mic:default", "channel_id": "mic"}])
    async with running_service(settings_for(emu), redis_url):
        await emu.wait_bound("rts-5", "transcript")
        assert await redis_client.hkeys(registry) == [b"rts-5"]
        assert not emu.is_live_bound("rts-1", "transcript")


async def test_transcript_and_alert_callbacks_are_published_never_refused(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    events = collect("relay:events:videodb:*")
    transcript_cb = {"type": "transcript", "rtstream_id": "rts-1", "data": {"text": "by callback", "is_final": True,
                                                                             "start": 1710000001234, "end": 1710000002345}}  # fmt: skip
    alert_cb = {"event_id": "event-1", "label": "sensitive_content", "confidence": 0.87, "explanation": "A password field",
                "timestamp": "2026-01-20T12:35:00Z", "start_time": 1768912500, "end_time": 1768912504,
                "stream_url": "https://stream.videodb.io/x.m3u8", "player_url": "https://console.videodb.io/player?x"}  # fmt: skip
    odd_cb = {"type": "something_new", "value": [1, 2]}
    async with running_service(settings_for(emu), redis_url) as relay:
        assert await emu.post_webhook(relay.webhook_url, transcript_cb, times=2) == [200, 200]  # at least once
        assert await emu.post_webhook(relay.webhook_url, alert_cb) == [200]
        assert await emu.post_webhook(relay.webhook_url, odd_cb) == [200]
        assert await emu.post_webhook(relay.webhook_url, b"{not json") == [400]
        got = await events.wait_for(3)
        await wait_until(lambda: sample(relay.metrics, "relay_videodb_webhooks_total", outcome="duplicate") == 1)
    by_type = {e.type: e for e in got}
    assert by_type["transcript.final"].payload.text == "by callback"
    alert = by_type["alert"]
    assert alert.payload.label == "sensitive_content" and alert.payload.confidence == pytest.approx(0.87)
    assert alert.session.id == "default"  # no rtstream: the collection's
    assert alert.payload.start.timestamp() == 1768912500 and alert.payload.end.timestamp() == 1768912504
    assert by_type["generic"].payload.provider_type == "callback.something_new"
    assert len(events.events) == 3


async def test_a_takeover_fetches_back_the_failover_gap_and_every_segment_arrives_once(
    videodb_emulator, redis_url, redis_client, collect
) -> None:
    emu = videodb_emulator
    finals = collect("relay:events:videodb:*:transcript.final")
    settings = settings_for(emu, audio_index=False, visual_index=False, alerts=[])
    said: list[str] = []
    first_holder = contextlib.AsyncExitStack()
    a = await first_holder.enter_async_context(running_service(settings, redis_url))
    try:
        assert await emu.post_webhook(a.webhook_url, ACTIVE) == [200]
        first = await emu.wait_bound("rts-1", "transcript")
        assert a.service.holds("default")
        async with running_service(settings, redis_url) as b:  # a standby
            said += [s.text for s in await emu.speak("rts-1", 1.0, every_ms=250)]  # heard by the first holder
            await finals.wait_for(len(said))
            assert not b.service.holds("default")
            emu.fail_url(503)  # the standby cannot open its socket until the gap is over
            await first_holder.aclose()  # the holder goes away (a rollout): the lease is released
            await wait_until(lambda: b.service.holds("default"))
            gap = await emu.speak("rts-1", 2.0, every_ms=250)  # the transcription runs on; nobody hears it
            assert len(gap) == 8
            said += [s.text for s in gap]
            emu.fail_url(None)
            await emu.wait_until(lambda: emu.is_live_bound("rts-1", "transcript") and emu.bound_to("rts-1", "transcript") != first)
            said += [s.text for s in await emu.speak("rts-1", 1.0, every_ms=250)]
            marker = await emu.speak("rts-1", 0.25, every_ms=250, prefix="marker")
            said += [s.text for s in marker]
            await finals.wait_for(len(said))
            # The marker is the last segment spoken; anything published twice would be published before it.
            await wait_until(lambda: any(e.payload.text == marker[0].text for e in finals.events))
            texts = [e.payload.text for e in finals.events]
            assert sorted(texts) == sorted(said), "every segment exactly once"
            assert [e.payload.text for e in finals.events[4:12]] == [s.text for s in gap]  # fetched back in order
            assert ("GET", "/rtstream/rts-1/transcription") in emu.requests
    finally:
        await first_holder.aclose()


async def test_segments_a_dying_holder_had_not_published_are_fetched_back_by_the_next(
    videodb_emulator, redis_server, redis_url, redis_client, collect
) -> None:
    """A holder claims a final segment and queues it; if it dies before the segment is on Redis,
    the claim is short and the cursor unmoved, so the next holder fetches it back (not skipped)."""
    emu = videodb_emulator
    finals = collect("relay:events:videodb:*:transcript.final")
    settings = settings_for(emu, audio_index=False, visual_index=False, alerts=[])
    said: list[str] = []
    async with TcpProxy(redis_server.port) as proxy:
        first_holder = contextlib.AsyncExitStack()
        a = await first_holder.enter_async_context(running_service(settings, redis_url, publisher_url=proxy.url))
        try:
            assert await emu.post_webhook(a.webhook_url, ACTIVE) == [200]
            await emu.wait_bound("rts-1", "transcript")
            async with running_service(settings, redis_url) as b:  # a standby
                said += [s.text for s in await emu.speak("rts-1", 1.0, every_ms=250)]
                await finals.wait_for(len(said))
                # Published and confirmed (a lasting mark each) before the holder is cut off.
                await wait_until_async(lambda: _segment_claims(redis_client, 4, lasting=True))
                proxy.block()  # the holder's publisher cannot reach Redis; the rest of it can
                queued = [s.text for s in await emu.speak("rts-1", 1.0, every_ms=250)]
                said += queued
                # The holder has read them, claimed them (briefly) and queued them.
                await wait_until(lambda: a.publisher.stats["pending"] >= len(queued))
                emu.fail_url(503)  # the next holder cannot connect until the claims have expired
                await first_holder.aclose()  # it goes away with the segments unpublished
                await wait_until(lambda: b.service.holds("default"))
                await wait_until_async(lambda: _segment_claims(redis_client, 4))
                emu.fail_url(None)
                marker = await emu.speak("rts-1", 0.25, every_ms=250, prefix="marker")
                said += [s.text for s in marker]
                await finals.wait_for(len(said))
                await wait_until(lambda: any(e.payload.text == marker[0].text for e in finals.events))
                assert sorted(e.payload.text for e in finals.events) == sorted(said), "every segment exactly once"
        finally:
            await first_holder.aclose()


async def _segment_claims(redis, count: int, lasting: bool = False) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``count`` segments are claimed (``lasting``: by a mark confirmed as published)."""
    keys = await redis.keys("relay:videodb:default:segment:*")
    if lasting:
        keys = [k for k in keys if await redis.ttl(k) > 60]
    return len(keys) == count


def transcript_callback(text: str, start: int, end: int, **extra: object) -> dict:
    return {"type": "transcript", "rtstream_id": "rts-1", **extra, "data": {"text": text, "is_final": True, "start": start, "end": end}}


async def test_a_segment_on_the_socket_and_as_a_callback_is_published_once(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    finals = collect("relay:events:videodb:*:transcript.final")
    settings = settings_for(emu, audio_index=False, visual_index=False, alerts=[])
    async with running_service(settings, redis_url) as relay:
        assert await emu.post_webhook(relay.webhook_url, ACTIVE) == [200]
        await emu.wait_bound("rts-1", "transcript")
        one = {"text": "socket first", "is_final": True, "start": 1710000001000, "end": 1710000002000}
        assert await emu.emit("rts-1", "transcript", one)
        await finals.wait_for(1)
        assert await emu.post_webhook(relay.webhook_url, transcript_callback("socket first", 1710000001000, 1710000002000)) == [200]
        await wait_until(lambda: sample(relay.metrics, "relay_videodb_webhooks_total", outcome="duplicate") == 1)
        # The other way round: the callback first, then the socket.
        assert await emu.post_webhook(relay.webhook_url, transcript_callback("callback first", 1710000003000, 1710000004000)) == [200]
        await finals.wait_for(2)
        assert await emu.emit("rts-1", "transcript", {"text": "callback first", "is_final": True, "start": 1710000003000, "end": 1710000004000})
        assert await emu.emit("rts-1", "transcript", {"text": "marker", "is_final": True, "start": 1710000005000, "end": 1710000006000})
        await wait_until(lambda: any(e.payload.text == "marker" for e in finals.events))
        assert [e.payload.text for e in finals.events] == ["socket first", "callback first", "marker"]


async def test_a_segment_called_back_to_two_replicas_is_published_once(videodb_emulator, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    finals = collect("relay:events:videodb:*:transcript.final")
    settings = settings_for(emu, audio_index=False, visual_index=False, alerts=[])
    async with running_service(settings, redis_url) as a, running_service(settings, redis_url) as b:
        # Two deliveries of one segment whose bodies differ (so the body's hash does not catch it).
        assert await emu.post_webhook(a.webhook_url, transcript_callback("twice", 1710000001000, 1710000002000)) == [200]
        assert await emu.post_webhook(b.webhook_url, transcript_callback("twice ", 1710000001000, 1710000002000,
                                                                         rtstream_name="mic:default")) == [200]  # fmt: skip
        await wait_until(lambda: sum(sample(r.metrics, "relay_videodb_webhooks_total", outcome="duplicate") for r in (a, b)) == 1)
        assert await emu.post_webhook(a.webhook_url, transcript_callback("marker", 1710000003000, 1710000004000)) == [200]
        await wait_until(lambda: any(e.payload.text == "marker" for e in finals.events))
        assert [e.payload.text for e in finals.events] == ["twice", "marker"]


async def test_a_segment_is_published_while_redis_cannot_deduplicate(videodb_emulator, redis_server, redis_url, redis_client, collect) -> None:
    emu = videodb_emulator
    settings = settings_for(emu, audio_index=False, visual_index=False, alerts=[])
    async with running_service(settings, redis_url) as relay:
        assert await emu.post_webhook(relay.webhook_url, ACTIVE) == [200]
        await emu.wait_bound("rts-1", "transcript")
        redis_server.stop()
        try:
            assert await emu.emit("rts-1", "transcript", {"text": "in the outage", "is_final": True, "start": 1710000001000, "end": 1710000002000})
            await wait_until(lambda: sample(relay.metrics, "relay_redis_errors_total", operation="videodb_segment_dedupe") == 1)
        finally:
            redis_server.start()
        finals = collect("relay:events:videodb:*:transcript.final")  # before the publisher's next retry
        got = await finals.wait_for(1)
        assert got[0].payload.text == "in the outage"


async def test_segment_marks_without_redis_say_first_count_and_log_once(caplog) -> None:
    import socket

    import redis.asyncio as aioredis

    from relay.core.metrics import RelayMetrics
    from relay.providers.videodb.dedupe import segment_key
    from relay.providers.videodb.store import SegmentMarks

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = RelayMetrics()
    redis = aioredis.Redis(host="127.0.0.1", port=port)
    marks = SegmentMarks(redis, "relay", "default", 60, metrics, timeout_s=2.0)
    key = segment_key("rts-1", None, None, "text")
    try:
        with caplog.at_level(logging.WARNING, logger="relay.videodb"):
            assert await marks.first(key) and await marks.first(key)  # published anyway, twice
    finally:
        await redis.aclose()
    assert sample(metrics, "relay_redis_errors_total", operation="videodb_segment_dedupe") == 2
    assert len([r for r in caplog.records if "deduplicate" in r.getMessage()]) == 1
