"""The ASAPP emulator enforces the service's rules and accounts for every byte it transcribes."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from relay.dev.asapp_emulator import AsappEmulator

HEADERS = {"asapp-api-id": "emulator-id", "asapp-api-secret": "emulator-secret"}
START = {"message": "startStream", "sender": {"role": "agent", "externalId": "alice"}, "language": "en-US",
         "samplingRate": 8000, "encoding": "L16", "smartFormatting": True, "detailedToken": False,
         "audioRecordingAllowed": False, "redactionOutput": "redacted"}  # fmt: skip


async def get_url(emu: AsappEmulator, conversation: str = "conv-1", headers: dict[str, str] = HEADERS) -> httpx.Response:
    async with httpx.AsyncClient(base_url=emu.base_url) as client:
        return await client.post("/autotranscribe/v1/streaming-url", json={"externalId": conversation}, headers=headers)


async def open_stream(emu: AsappEmulator, **start: Any) -> tuple[ClientConnection, dict[str, Any]]:
    url = (await get_url(emu)).json()["streamingUrl"]
    ws = await connect(url, proxy=None)
    await ws.send(orjson.dumps({**START, **start}).decode())
    return ws, orjson.loads(await ws.recv())


async def test_url_needs_credentials(asapp_emulator: AsappEmulator) -> None:
    response = await get_url(asapp_emulator, headers={"asapp-api-id": "emulator-id", "asapp-api-secret": "wrong"})
    assert response.status_code == 401 and response.json()["error"]["message"] == "Unauthorized"
    asapp_emulator.fail_url_requests(429, retry_after=3)
    response = await get_url(asapp_emulator)
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert (await get_url(asapp_emulator)).status_code == 200


async def test_urls_are_single_use_and_expire(asapp_emulator: AsappEmulator) -> None:
    url = (await get_url(asapp_emulator)).json()["streamingUrl"]
    async with connect(url, proxy=None):
        pass
    with pytest.raises(InvalidStatus):
        await connect(url, proxy=None)
    asapp_emulator.config.url_ttl_s = 0
    url = (await get_url(asapp_emulator)).json()["streamingUrl"]
    with pytest.raises(InvalidStatus):
        await connect(url, proxy=None)
    assert asapp_emulator.rejected_connects == 2


@pytest.mark.parametrize(
    ("start", "code"),
    [({"samplingRate": 16000}, "4051"), ({"encoding": "PCM"}, "4053"), ({"language": "fr-FR"}, "4056"),
     ({"sender": {"role": "boss", "externalId": "x"}}, "2002")],
)  # fmt: skip
async def test_start_stream_is_checked(asapp_emulator: AsappEmulator, start: dict[str, Any], code: str) -> None:
    ws, reply = await open_stream(asapp_emulator, **start)
    assert reply["status"]["code"] == code
    await ws.close()


async def test_audio_before_start_is_refused(asapp_emulator: AsappEmulator) -> None:
    url = (await get_url(asapp_emulator)).json()["streamingUrl"]
    async with connect(url, proxy=None) as ws:
        await ws.send(b"\x00" * 320)
        assert orjson.loads(await ws.recv())["status"]["code"] == "4050"


async def test_transcripts_summary_and_accounting(asapp_emulator: AsappEmulator) -> None:
    ws, reply = await open_stream(asapp_emulator)
    assert reply["message"] == "startResponse" and reply["status"]["code"] == "1000"
    audio = bytes(range(256)) * 20  # 5120 bytes = 320 ms: one 200 ms transcript + a 120 ms remainder
    for i in range(0, len(audio), 1280):
        await ws.send(audio[i : i + 1280])
    first = orjson.loads(await ws.recv())
    assert (first["message"], first["start"], first["end"]) == ("transcript", 0, 200)
    await ws.send('{"message": "finishStream"}')
    last = orjson.loads(await ws.recv())
    assert (last["start"], last["end"]) == (200, 320)
    final = orjson.loads(await ws.recv())
    assert final["message"] == "finalResponse"
    assert final["summary"]["totalAudioBytes"] == len(audio) and final["summary"]["transcripts"] == 2
    await ws.close()
    account = asapp_emulator.account("conv-1", "alice")
    assert account.committed_bytes == len(audio) and account.sha256 == hashlib.sha256(audio).hexdigest()


async def test_too_fast_audio_is_refused(asapp_emulator: AsappEmulator) -> None:
    asapp_emulator.config.speed = 1.0
    asapp_emulator.config.burst_ms = 100
    ws, _ = await open_stream(asapp_emulator)
    codes = []
    for _ in range(10):
        await ws.send(b"\x00" * 1600)  # 1 s of audio at once
    async for frame in ws:
        codes.append(orjson.loads(frame).get("status", {}).get("code"))
    assert codes[-1] == "4082"
    assert asapp_emulator.account("conv-1", "alice").committed_bytes < 16_000


async def test_idle_stream_is_closed(asapp_emulator: AsappEmulator) -> None:
    asapp_emulator.config.idle_s = 0.2
    ws, _ = await open_stream(asapp_emulator)
    assert orjson.loads(await ws.recv())["status"]["code"] == "4083"
    await ws.close()
