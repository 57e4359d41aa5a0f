"""The VideoDB emulator itself: as strict as VideoDB where the relay depends on it, and a process."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.providers.videodb.helpers import API_KEY


async def fetch_url(emu, token: str = API_KEY, collection: str = "default") -> httpx.Response:
    async with httpx.AsyncClient(base_url=emu.base_url, trust_env=False) as http:
        return await http.get(f"/collection/{collection}/websocket", headers={"x-access-token": token})


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


async def test_events_only_reach_the_socket_their_job_is_bound_to(videodb_emulator) -> None:
    emu = videodb_emulator
    url = (await fetch_url(emu)).json()["data"]["websocket_url"]
    async with connect(url, proxy=None) as ws, httpx.AsyncClient(base_url=emu.base_url, trust_env=False) as http:
        conn = orjson.loads(await ws.recv())["connection_id"]
        assert not await emu.emit("rts-1", "transcript", {"text": "unbound"})
        headers = {"x-access-token": API_KEY}
        bad = await http.post("/rtstream/rts-1/transcription", json={"action": "start", "ws_connection_id": conn})
        assert bad.status_code == 401
        ok = await http.post("/rtstream/rts-1/transcription", json={"action": "start", "ws_connection_id": conn}, headers=headers)
        assert ok.status_code == 200
        assert await emu.emit("rts-1", "transcript", {"text": "bound"}, "mic:default")
        assert orjson.loads(await ws.recv()) == {
            "channel": "transcript", "rtstream_id": "rts-1", "rtstream_name": "mic:default", "data": {"text": "bound"}
        }  # fmt: skip
        assert not await emu.emit("rts-1", "audio_index", {"text": "other job, unbound"})
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
