"""The VideoDB emulator, judged by VideoDB's own Python SDK (``videodb`` on PyPI).

The SDK is synchronous (``requests``): its calls run in a thread against the emulator on a real
port, and its socket client (``WebSocketConnection``) in the test's loop. What the SDK does here is
what the relay must do against VideoDB, so an emulator the SDK cannot drive is wrong.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import videodb
import websockets
from videodb.exceptions import AuthenticationError, InvalidRequestError
from websockets.asyncio.client import connect

from tests.providers.videodb.helpers import API_KEY

MIC = {"rtstream_id": "rts-1", "name": "mic:default", "media_types": ["audio"], "channel_id": "mic"}
SCREEN = {"rtstream_id": "rts-3", "name": "display:1", "media_types": ["video"], "channel_id": "screen"}


async def fetch_url(emu, token: str = API_KEY, collection: str = "default") -> httpx.Response:
    async with httpx.AsyncClient(base_url=emu.base_url, trust_env=False) as http:
        return await http.get(f"/collection/{collection}/websocket", headers={"x-access-token": token})


def sdk(emu, api_key: str = API_KEY) -> videodb.client.Connection:
    conn = videodb.connect(api_key=api_key, base_url=emu.base_url)
    conn.session.trust_env = False  # straight to the emulator on loopback
    return conn


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """One blocking SDK call, in a thread, while the emulator serves on this loop."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), 10)


async def next_frame(frames: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(anext(frames), 5)


async def test_socket_urls_are_one_time_and_checked(videodb_emulator) -> None:
    emu = videodb_emulator
    assert (await fetch_url(emu, token="sk-wrong")).status_code == 401
    assert (await fetch_url(emu, collection="missing")).status_code == 404
    url = (await fetch_url(emu)).json()["data"]["websocket_url"]
    async with connect(url, proxy=None) as ws:
        assert orjson.loads(await ws.recv())["connection_id"].startswith("ws-")
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with connect(url, proxy=None):
                pass  # a second connect with the same URL is refused
    emu.fail_url(500, times=1)
    assert (await fetch_url(emu)).status_code == 500
    assert (await fetch_url(emu)).status_code == 200


async def test_strict_envelopes_and_paths(videodb_emulator) -> None:
    emu = videodb_emulator
    headers = {"x-access-token": API_KEY}
    async with httpx.AsyncClient(base_url=emu.base_url, trust_env=False, headers=headers) as http:
        # The path an earlier relay used for the audio index does not exist at VideoDB.
        missing = await http.post("/rtstream/rts-1/index/audio", json={"prompt": "x"})
        assert missing.status_code == 404 and missing.json()["success"] is False
        # A refused call is HTTP 200 with success: false (the SDK raises on it).
        refused = await http.post("/rtstream/rts-1/index/scene", json={"prompt": "no extraction_type"})
        assert refused.status_code == 200 and refused.json()["success"] is False
        bad_config = {"extraction_type": "transcript", "extraction_config": {"segmenter": "minute", "segmentation_value": 1}}
        assert (await http.post("/rtstream/rts-1/index/scene", json=bad_config)).json()["success"] is False
        no_callback = await http.post("/rtstream/rts-1/index/rtx-0/alert", json={"event_id": "e"})
        assert no_callback.status_code == 200 and no_callback.json()["success"] is False
        ok = await http.post("/rtstream/rts-1/index/scene", json={"extraction_type": "time", "extraction_config": None})
        assert ok.json()["success"] is True and ok.json()["data"]["rtstream_index_id"]
        assert (await http.post("/rtstream/rts-1/transcription", json={"action": "begin"})).json()["success"] is False
    assert len(emu.live_indexes("rts-1")) == 1


async def test_the_sdk_drives_every_job_and_each_reaches_its_socket(videodb_emulator) -> None:
    emu = videodb_emulator
    emu.add_capture_session("cap-1", [MIC, SCREEN], end_user_id="user-17")
    conn = sdk(emu)
    socket = await call(conn.connect_websocket, "default")
    await socket.connect()
    try:
        cid = socket.connection_id
        assert cid in emu.connection_ids
        frames = socket.receive()

        session = await call(conn.get_capture_session, "cap-1", "default")
        assert session.status == "active" and session.end_user_id == "user-17"
        (mic,) = session.get_rtstream("mic")
        (screen,) = session.get_rtstream("screen")
        assert (mic.id, screen.id) == ("rts-1", "rts-3")

        await call(mic.start_transcript, ws_connection_id=cid)
        audio = await call(mic.index_audio, prompt="Summarize", batch_config={"type": "time", "value": 30},
                           ws_connection_id=cid)  # fmt: skip
        visual = await call(screen.index_visuals, prompt="Describe", batch_config={"type": "time", "value": 2, "frame_count": 5},
                            ws_connection_id=cid)  # fmt: skip
        assert audio.extraction_type == "transcript" and audio.extraction_config == {"segmenter": "time", "segmentation_value": 30}
        assert visual.extraction_type == "time" and visual.extraction_config == {"time": 2, "frame_count": 5}
        event_id = await call(conn.create_event, "A password is on screen", "pii")
        alert_id = await call(visual.create_alert, event_id, "https://relay.example/videodb/webhook", ws_connection_id=cid)
        assert event_id.startswith("event-") and alert_id.startswith("alert-")
        listed = await call(screen.list_scene_indexes)
        assert [(i.rtstream_index_id, i.status) for i in listed] == [(visual.rtstream_index_id, "connected")]

        # Each started job's events reach the SDK's socket, on the job's own channel.
        span = {"start": 1768910400120, "end": 1768910401480}
        for rtstream, channel, data in [
            ("rts-1", "transcript", {"text": "we ship on Friday", "is_final": True, **span}),
            ("rts-1", "audio_index", {"text": "Release planning", **span}),
            ("rts-3", "visual_index", {"text": "A code editor", **span}),
            ("rts-3", "alert", {"label": "pii", "triggered": True, "confidence": 0.9, **span}),
        ]:
            assert await emu.emit(rtstream, channel, data)
            frame = await next_frame(frames)
            assert (frame["channel"], frame["rtstream_id"], frame["data"]) == (channel, rtstream, data)

        # Stopping an index stops its events (and its alerts); starting it again resumes them.
        await call(visual.stop)
        assert [i.status for i in await call(screen.list_scene_indexes)] == ["stopped"]
        assert not await emu.emit("rts-3", "visual_index", {"text": "not delivered"})
        assert not await emu.emit("rts-3", "alert", {"label": "pii"})
        await call(visual.start)
        assert await emu.emit("rts-3", "visual_index", {"text": "again"})
        assert (await next_frame(frames))["data"] == {"text": "again"}

        # The transcript is kept over REST; since= returns only later segments.
        said = await emu.speak("rts-1", 1.0, every_ms=250)
        for _ in said:
            await next_frame(frames)
        everything = await call(mic.get_transcript)
        assert [r["text"] for r in everything["transcription_records"]] == ["we ship on Friday"] + [s.text for s in said]
        later = await call(mic.get_transcript, since=said[1].start_ms / 1000)
        assert [r["text"] for r in later["transcription_records"]] == [s.text for s in said[2:]]
        assert later["transcription_records"][0]["start"] == said[2].start_ms / 1000  # seconds over REST

        # A refusal with HTTP 200 is an error to the SDK; so is a rejected key.
        emu.fail_jobs(200, times=1)
        with pytest.raises(InvalidRequestError):
            await call(screen.index_visuals, prompt="refused", ws_connection_id=cid)
        with pytest.raises(AuthenticationError):
            await call(sdk(emu, api_key="sk-wrong").connect_websocket, "default")
        with pytest.raises(InvalidRequestError):
            await call(conn.get_capture_session, "cap-missing", "default")
    finally:
        await socket.close()


async def test_events_go_only_to_the_socket_named_and_once_per_running_job(videodb_emulator) -> None:
    emu = videodb_emulator
    url = (await fetch_url(emu)).json()["data"]["websocket_url"]
    async with connect(url, proxy=None) as ws, httpx.AsyncClient(base_url=emu.base_url, trust_env=False) as http:
        conn = orjson.loads(await ws.recv())["connection_id"]
        assert not await emu.emit("rts-1", "transcript", {"text": "unbound"})
        headers = {"x-access-token": API_KEY}
        bad = await http.post("/rtstream/rts-1/transcription", json={"action": "start", "ws_connection_id": conn})
        assert bad.status_code == 401
        ok = await http.post("/rtstream/rts-1/transcription", json={"action": "start", "ws_connection_id": conn}, headers=headers)
        assert ok.json()["success"] is True
        assert await emu.emit("rts-1", "transcript", {"text": "bound"}, "mic:default")
        assert orjson.loads(await ws.recv()) == {
            "channel": "transcript", "rtstream_id": "rts-1", "rtstream_name": "mic:default", "data": {"text": "bound"}
        }  # fmt: skip
        assert not await emu.emit("rts-1", "audio_index", {"text": "other job, none running"})
        body = {"extraction_type": "transcript", "extraction_config": None, "ws_connection_id": conn}
        for _ in range(2):  # two creates: two running (billed) indexes, each delivering
            assert (await http.post("/rtstream/rts-1/index/scene", json=body, headers=headers)).json()["success"]
        assert await emu.emit("rts-1", "audio_index", {"text": "twice"})
        assert [orjson.loads(await ws.recv())["data"]["text"] for _ in range(2)] == ["twice", "twice"]
        assert await emu.drop() == 1
        assert not await emu.emit("rts-1", "transcript", {"text": "socket gone"})


async def test_runs_as_a_process_controlled_over_http() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay.dev.videodb_emulator", "--port", "0", "--api-key", API_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)  # type: ignore[union-attr]
        base = line.split(" on ")[1].split(" ")[0]
        async with httpx.AsyncClient(base_url=base, trust_env=False) as http:
            assert (await http.post("/_emulator/fail", json={"status": 503, "times": 1})).status_code == 200
            assert (await http.get("/collection/default/websocket", headers={"x-access-token": API_KEY})).status_code == 503
            url = (await http.get("/collection/default/websocket", headers={"x-access-token": API_KEY})).json()
            async with connect(url["data"]["websocket_url"], proxy=None) as ws:
                hello = orjson.loads(await ws.recv())
                state = (await http.get("/_emulator/state")).json()
                assert state["connections"] == [hello["connection_id"]] and state["url_requests"] == 2
                assert (await http.post("/_emulator/raw", json={"frame": "garbage"})).json() == {"sent": 1}
                assert await ws.recv() == "garbage"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
