"""The ASAPP emulator enforces the service's rules, as ASAPP documents them, and accounts for every byte it transcribes."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from relay.dev import asapp_emulator as emulator_module
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


async def final_then_close(ws: ClientConnection) -> dict[str, Any]:
    """The server's last message, which must be a finalResponse, and that the socket then closes."""
    frames = [orjson.loads(frame) async for frame in ws]  # until the server closes
    assert frames, "no finalResponse"
    final = frames[-1]
    assert final["message"] == "finalResponse", final
    assert all(f["message"] == "transcript" for f in frames[:-1])
    return final


def test_the_emulator_is_written_from_the_api_not_from_the_relay() -> None:
    tree = ast.parse(Path(emulator_module.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m.startswith("relay")] == ["relay.dev.embedded"]


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
    [({"samplingRate": 16000}, "4053"), ({"encoding": "PCM"}, "4051"), ({"language": "fr-FR"}, "4050"),
     ({"sender": {"role": "boss", "externalId": "x"}}, "4040"), ({"sender": {"role": "agent"}}, "4040")],
)  # fmt: skip
async def test_a_bad_start_stream_is_refused_by_final_response_and_close(
    asapp_emulator: AsappEmulator, start: dict[str, Any], code: str
) -> None:
    ws, reply = await open_stream(asapp_emulator, **start)
    # ASAPP's page: a refusal is no startResponse but a finalResponse carrying the status, then the close.
    assert (reply["message"], reply["status"]["code"]) == ("finalResponse", code)
    assert "summary" not in reply  # the stream never started
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    assert asapp_emulator.errors_sent == [code] and asapp_emulator.records[0].final_code == code


@pytest.mark.parametrize(
    ("first", "code"),
    [(b"\x00" * 320, "4056"), ('{"message": "finishStream"}', "4056"), ("not json", "4040"), ('{"message": 1}', "4040")],
)  # fmt: skip
async def test_start_stream_must_come_first(asapp_emulator: AsappEmulator, first: str | bytes, code: str) -> None:
    url = (await get_url(asapp_emulator)).json()["streamingUrl"]
    async with connect(url, proxy=None) as ws:
        await ws.send(first)
        final = await final_then_close(ws)
    assert final["status"]["code"] == code


async def test_messages_after_the_start_are_checked(asapp_emulator: AsappEmulator) -> None:
    ws, _ = await open_stream(asapp_emulator)
    await ws.send(orjson.dumps(START).decode())  # a second startStream: wrong order
    assert (await final_then_close(ws))["status"]["code"] == "4056"
    ws, _ = await open_stream(asapp_emulator)
    await ws.send(b"\x00" * 321)  # not whole 16-bit samples: cannot be decoded
    final = await final_then_close(ws)
    assert final["status"]["code"] == "4082" and final["summary"]["totalAudioBytes"] == 0


async def test_refused_starts_and_ended_streams(asapp_emulator: AsappEmulator) -> None:
    asapp_emulator.config.record_audio = True
    asapp_emulator.refuse_starts("5002", count=1, description="no instances")
    ws, reply = await open_stream(asapp_emulator)
    assert (reply["message"], reply["status"]) == ("finalResponse", {"code": "5002", "description": "no instances"})
    await ws.close()
    ws, reply = await open_stream(asapp_emulator)  # only the next one was refused
    assert reply["message"] == "startResponse"
    audio = bytes(range(256)) * 15  # 3840 bytes: one 200 ms transcript and 40 ms it never transcribes
    await ws.send(audio[:1600])
    await ws.send(audio[1600:3200])
    await ws.send(audio[3200:])
    assert orjson.loads(await ws.recv())["message"] == "transcript"
    await asapp_emulator.wait_until(lambda: asapp_emulator.records[-1].received_bytes == len(audio))
    assert await asapp_emulator.end_streams("5000", description="internal") == 1
    final = await final_then_close(ws)
    assert final["status"] == {"code": "5000", "description": "internal"}
    assert final["summary"]["totalAudioBytes"] == len(audio)
    record = asapp_emulator.records[-1]
    assert (record.speaker, record.role, record.final_code) == ("alice", "agent", "5000")
    assert bytes(record.audio) == audio and record.committed_bytes == 3200
    assert record.start_message == START
    account = asapp_emulator.account("conv-1", "alice")
    assert (account.committed_bytes, account.discarded_bytes) == (3200, len(audio) - 3200)
    assert asapp_emulator.errors_sent == ["5002", "5000"]


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
    final = await final_then_close(ws)
    assert final["status"] == {"code": "1000", "description": "OK"} and final["streamId"] == reply["streamID"]
    assert final["summary"]["totalAudioBytes"] == len(audio) and final["summary"]["transcripts"] == 2
    assert asapp_emulator.errors_sent == [] and asapp_emulator.records[0].final_code == "1000"
    account = asapp_emulator.account("conv-1", "alice")
    assert account.committed_bytes == len(audio) and account.sha256 == hashlib.sha256(audio).hexdigest()


async def test_too_fast_or_too_large_audio_is_recorded_not_refused(asapp_emulator: AsappEmulator) -> None:
    # ASAPP asks for real-time pace and 20-100 ms frames but documents no status code for either:
    # the emulator does not invent one, it records the breach for tests to assert on.
    asapp_emulator.config.speed = 1.0
    asapp_emulator.config.burst_ms = 100
    ws, _ = await open_stream(asapp_emulator)
    for _ in range(10):
        await ws.send(b"\x00" * 1600)  # 1 s of audio at once
    await ws.send(b"\x00" * 3200)
    await asapp_emulator.wait_until(lambda: asapp_emulator.records[0].received_bytes == 19_200)
    assert "pace" in asapp_emulator.violations and asapp_emulator.violations.count("chunk_size") == 1
    await ws.send('{"message": "finishStream"}')
    assert (await final_then_close(ws))["status"]["code"] == "1000"
    assert asapp_emulator.account("conv-1", "alice").committed_bytes == 19_200


async def test_idle_stream_is_ended(asapp_emulator: AsappEmulator) -> None:
    asapp_emulator.config.idle_s = 0.2
    ws, _ = await open_stream(asapp_emulator)
    final = await final_then_close(ws)
    assert final["status"]["code"] == "4083" and final["summary"]["totalAudioBytes"] == 0


async def test_a_stream_over_the_duration_limit_is_ended(asapp_emulator: AsappEmulator) -> None:
    asapp_emulator.config.max_stream_s = 0.2
    ws, _ = await open_stream(asapp_emulator)
    assert (await final_then_close(ws))["status"]["code"] == "4090"
