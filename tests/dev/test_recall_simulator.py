"""SimulatedBot against a tiny local WebSocket endpoint: documented frames arrive; Recall's retry policy."""

from __future__ import annotations

import argparse
import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus

import orjson
import pytest
from websockets.asyncio.server import Request, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from relay.dev import recall_frames as frames
from relay.dev import recall_simulator as simulator
from relay.providers.recall.auth import SignatureVerifier
from relay.providers.recall.parse import RecallParser
from relay.dev.recall_simulator import EndpointFailed, MeetingOptions, RetryPolicy, SimulatedBot, run_meeting
from relay.schema import EventBase

FAST_RETRY = RetryPolicy(attempts=3, interval_s=0.05)


class Endpoint:
    """A minimal real-time endpoint: records each connection's frames; can refuse or drop bots."""

    def __init__(self) -> None:
        self.connections: list[list[str | bytes]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.handshakes = 0
        self.refuse = False
        #: Close each connection (code, reason) after it received this many frames; consumed per connection.
        self.drops: list[tuple[int, int, str]] = []
        self.url = ""
        self._changed = asyncio.Event()

    def process_request(self, connection: ServerConnection, request: Request) -> object:
        self.handshakes += 1
        self.headers.append({k.lower(): v for k, v in request.headers.raw_items()})
        self._changed.set()
        if self.refuse:
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        received: list[str | bytes] = []
        self.connections.append(received)
        self.paths.append(ws.request.path if ws.request else "")
        drop = self.drops.pop(0) if self.drops else None
        self._changed.set()
        if drop is not None and drop[0] == 0:
            await ws.close(drop[1], drop[2])
            return
        async for message in ws:
            received.append(message)
            self._changed.set()
            if drop is not None and len(received) >= drop[0]:
                await ws.close(drop[1], drop[2])
                return

    async def wait(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def events(self, index: int = 0) -> list[EventBase]:
        parser = RecallParser()
        return [event for frame in self.connections[index] for event in parser.feed(frame)]


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    async with serve(ep.handler, "127.0.0.1", 0, process_request=ep.process_request, ping_interval=None,
                     max_queue=None) as server:  # never pause reading: a drop must not wait on a full queue
        port = server.sockets[0].getsockname()[1]
        ep.url = f"ws://127.0.0.1:{port}/recall/?token=s3cret-token"
        yield ep


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a cheap in-process condition of the bot; used only where no event exists to wait on."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_documented_frames_arrive_on_the_exact_url(endpoint: Endpoint) -> None:
    alice = frames.participant(100, "Alice", is_host=True)
    png = frames.png_image()
    async with SimulatedBot(endpoint.url) as bot:
        await bot.join(alice, at=0.5)
        await bot.speech_on(alice)
        await bot.transcript(alice, "hello every one", at=1.0, partial=True)
        await bot.transcript(alice, "hello everyone", at=1.0)
        await bot.chat(alice, "hi", to="only_bot")
        await bot.provider_data({"channel": {"alternatives": [{"transcript": "hello"}]}})
        await bot.audio_mixed(frames.tone_pcm(20))
        await bot.audio_separate(alice, b"")
        await bot.video_png(alice, png)
        await bot.video_h264(alice, b"\x00\x00\x00\x01\x67", stream="screenshare")
        await bot.speech_off(alice)
        await bot.leave(alice)
        await endpoint.wait(lambda: len(endpoint.connections[0]) == 12)
    assert endpoint.paths == ["/recall/?token=s3cret-token"]
    assert bot.frames_sent == 12 and bot.connects == 1 and bot.attempts == 1
    assert bot.bytes_sent == sum(len(f) for f in endpoint.connections[0])
    assert bot.sent["participant_events.join"] == 1 and bot.sent["video_separate_png.data"] == 1
    events = endpoint.events()
    assert [e.type for e in events] == [
        "participant.join", "participant.speech_on", "transcript.partial", "transcript.final", "chat.message",
        "transcript.provider_data", "audio.chunk", "audio.chunk", "video.frame", "video.frame",
        "participant.speech_off", "participant.leave",
    ]  # fmt: skip
    assert {e.session.id for e in events} == {bot.identity.recording_id}
    assert {e.session.bot_id for e in events} == {bot.identity.bot_id}
    assert events[0].participant.id == "100" and events[0].time.relative == 0.5
    assert events[3].payload.text == "hello everyone" and events[4].payload.to == "only_bot"
    assert events[6].payload.bytes == 640 and events[7].payload.bytes == 0
    assert events[8].payload.bytes == len(png) and events[9].payload.codec == "h264"


@pytest.mark.parametrize(("audio", "video"), [("separate", True), ("mixed", False), ("none", False)])
async def test_scripted_meeting(endpoint: Endpoint, audio: simulator.AudioMode, video: bool) -> None:
    options = MeetingOptions(duration_s=2.0, participants=3, audio=audio, video=video, rate=10, realtime=False, seed=1)
    bot = await run_meeting(SimulatedBot(endpoint.url), options)
    await endpoint.wait(lambda: len(endpoint.connections[0]) == bot.frames_sent)
    events = endpoint.events()
    types = [e.type for e in events]
    assert types[:3] == ["participant.join"] * 3 and types[-3:] == ["participant.leave"] * 3
    ticks = 100  # 2 s of 20 ms buffers
    chunks = [e for e in events if e.type == "audio.chunk"]
    assert len(chunks) == {"separate": ticks * 3, "mixed": ticks, "none": 0}[audio]
    assert all(c.payload.mix == audio and c.payload.bytes in (0, 640) for c in chunks)
    if audio == "mixed":
        assert all(c.payload.bytes == 640 for c in chunks)  # mixed audio is continuous
    if audio == "separate":
        assert any(c.payload.bytes == 640 for c in chunks) and any(c.payload.bytes == 0 for c in chunks)
    assert types.count("video.frame") == (2 * 2 * 3 if video else 0)  # 2 fps, 2 s, 3 people
    assert types.count("transcript.final") >= 3 and types.count("transcript.partial") >= 6
    assert types.count("participant.speech_on") >= types.count("transcript.final")
    assert types.count("chat.message") >= 1
    # Frames go out in meeting-clock order (a final transcript's time is its first word's: earlier).
    times = [e.time.relative for e in events if not e.type.startswith("transcript.")]
    assert times == sorted(times) and times[-1] == 2.0
    # After the meeting the bot closed the socket itself.
    assert bot.close_code is None and bot.drops == 0


async def test_legacy_meeting(endpoint: Endpoint) -> None:
    options = MeetingOptions(duration_s=1.0, participants=2, audio="separate", video=True, realtime=False, legacy=True)
    bot = await run_meeting(SimulatedBot(endpoint.url), options)
    # The audio connection, then one video connection per participant (Recall's legacy video opens
    # one connection per video stream).
    assert len(bot.video_streams) == 2
    await endpoint.wait(lambda: len(endpoint.connections) == 3 and [len(c) for c in endpoint.connections]
                        == [b.frames_sent for b in (bot, *bot.video_streams)])  # fmt: skip
    received = endpoint.connections[0]
    assert isinstance(received[0], str) and all(isinstance(f, bytes) for f in received[1:])
    # The separate-streams header as Recall's page shows it: no recording id, so the bot id keys the session.
    assert orjson.loads(received[0]) == {"protocol_version": 1, "bot_id": bot.identity.bot_id, "separate_streams": True, "offset": 0.0}
    events = endpoint.events()
    audio = [e for e in events if e.type == "audio.chunk"]
    assert len(audio) == 50 and {e.participant.id for e in audio} == {"100"}  # one speaker; silence is not sent
    assert [e.time.relative for e in audio] == [round(i * 0.02, 2) for i in range(50)]
    assert {e.session.id for e in audio} == {bot.identity.bot_id}
    assert all(e.type == "audio.chunk" for e in events) and bot.sent["legacy.header"] == 1
    for i, stream in enumerate(bot.video_streams, start=1):
        header, *media = endpoint.connections[i]
        assert orjson.loads(header) == {"protocol_version": 1, "bot_id": bot.identity.bot_id}
        assert media and all(isinstance(f, bytes) and f[8:16] == b"\x89PNG\r\n\x1a\n" for f in media)
        video = endpoint.events(i)
        assert [e.type for e in video] == ["video.frame"] * 2  # 2 fps for 1 s
        assert {e.participant.id for e in video} == {str(99 + i)} and [e.time.relative for e in video] == [0.0, 0.5]
        assert {e.session.id for e in video} == {bot.identity.bot_id}
        assert (stream.sent["legacy.header"], stream.sent["legacy.video"]) == (1, 2)


async def test_legacy_video_only_meeting(endpoint: Endpoint) -> None:
    options = MeetingOptions(duration_s=0.5, participants=1, audio="none", video=True, realtime=False, legacy=True)
    bot = await run_meeting(SimulatedBot(endpoint.url), options)
    await endpoint.wait(lambda: len(endpoint.connections) == 2 and len(endpoint.connections[1]) == 2)
    assert endpoint.connections[0] == [] and bot.frames_sent == 0  # no audio: the audio connection stays silent
    [frame] = endpoint.events(1)
    assert frame.type == "video.frame" and frame.participant.id == "100"


async def test_reconnects_after_server_drop_and_resumes(endpoint: Endpoint) -> None:
    endpoint.drops = [(3, 1012, "service restart")]
    alice = frames.participant(1, "Alice")
    async with SimulatedBot(endpoint.url, retry=FAST_RETRY) as bot:
        for _ in range(3):
            await bot.speech_on(alice)
        # The bot is quiet now; it must notice the close and reconnect on its own.
        await wait_until(lambda: bot.connects == 2)
        assert (bot.drops, bot.close_code, bot.close_reason) == (1, 1012, "service restart")
        await bot.leave(alice)
        await endpoint.wait(lambda: len(endpoint.connections) == 2 and len(endpoint.connections[1]) == 1)
    assert endpoint.handshakes == 2 and len(endpoint.connections[0]) == 3
    assert endpoint.events(1)[0].type == "participant.leave"


async def test_sends_during_a_drop_are_not_errors(endpoint: Endpoint) -> None:
    endpoint.drops = [(1, 1001, "going away")]
    alice = frames.participant(1, "Alice")
    async with SimulatedBot(endpoint.url, retry=FAST_RETRY) as bot:
        # A paced bot keeps sending through the close and the reconnect without seeing an error
        # (frames in flight when the server closed are lost, as with Recall).
        sent = 0
        async with asyncio.timeout(10):
            while bot.connects < 2:
                await bot.audio_separate(alice, frames.tone_pcm(20))
                sent += 1
                await asyncio.sleep(0.002)
        await bot.leave(alice)
        await endpoint.wait(lambda: len(endpoint.connections) == 2 and len(endpoint.connections[1]) >= 1)
    assert endpoint.events(1)[-1].type == "participant.leave"
    assert bot.connects == 2 and bot.drops == 1 and bot.frames_sent == sent + 1 and sent > 1


async def test_gives_up_after_the_retries_of_a_failed_handshake(endpoint: Endpoint) -> None:
    endpoint.refuse = True
    bot = SimulatedBot(endpoint.url, retry=FAST_RETRY)
    with pytest.raises(EndpointFailed) as info:
        await bot.connect()
    assert info.value.attempts == 3 and isinstance(info.value.last_error, InvalidStatus)
    assert endpoint.handshakes == 4  # the first attempt and 3 retries
    assert bot.failed and bot.rejected_status == 403 and bot.connects == 0
    with pytest.raises(EndpointFailed):
        await bot.audio_mixed(b"")


async def test_gives_up_after_a_drop_when_the_endpoint_stays_down(endpoint: Endpoint) -> None:
    endpoint.drops = [(1, 1011, "internal error")]
    bot = SimulatedBot(endpoint.url, retry=FAST_RETRY)
    await bot.connect()
    endpoint.refuse = True
    await bot.audio_mixed(b"")
    await asyncio.wait_for(bot.wait_closed(), 10)
    assert bot.failed and endpoint.handshakes == 1 + 3
    assert (bot.close_code, bot.close_reason) == (1011, "internal error")
    with pytest.raises(EndpointFailed):
        await bot.audio_mixed(b"")
    await bot.close()


async def test_without_retry_a_close_is_final(endpoint: Endpoint) -> None:
    endpoint.drops = [(0, 1008, "policy violation")]
    bot = SimulatedBot(endpoint.url)
    await bot.connect()
    await asyncio.wait_for(bot.wait_closed(), 10)
    assert (bot.close_code, bot.close_reason, bot.drops) == (1008, "policy violation", 1)
    with pytest.raises(ConnectionClosed):
        await bot.audio_mixed(b"")
    await bot.close()
    endpoint.refuse = True
    with pytest.raises(InvalidStatus):
        await SimulatedBot(endpoint.url).connect()


async def test_cli_runs_bots_and_hides_the_token(endpoint: Endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    simulator.add_arguments(parser)
    args = parser.parse_args(["--url", endpoint.url, "--bots", "2", "--duration", "0.2", "--audio", "mixed", "--fast"])
    assert await simulator.run(args) == 0
    await endpoint.wait(lambda: len(endpoint.connections) == 2)
    output = capsys.readouterr()
    assert "s3cret-token" not in output.out + output.err
    assert "2 bot(s)" in output.err
    endpoint.refuse = True
    args = parser.parse_args(["--url", endpoint.url, "--duration", "0.1", "--retry-interval", "0.01", "--fast"])
    assert await simulator.run(args) == 1


async def test_signed_handshakes_verify_and_are_fresh_per_attempt(endpoint: Endpoint) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    endpoint.drops = [(0, 1012, "service restart")]
    async with SimulatedBot(endpoint.url, retry=FAST_RETRY, signing_secret=secret) as bot:
        await wait_until(lambda: bot.connects == 2)
    verifier = SignatureVerifier([secret], required=True)
    assert [verifier.check(h) for h in endpoint.headers] == [None, None]
    assert endpoint.headers[0]["webhook-id"] != endpoint.headers[1]["webhook-id"]
    assert SignatureVerifier(["whsec_" + base64.b64encode(b"another secret").decode()]).check(endpoint.headers[0]) is not None
    unsigned = SimulatedBot(endpoint.url)
    await unsigned.connect()
    await unsigned.close()
    assert "webhook-signature" not in endpoint.headers[2]


async def test_a_meeting_through_the_real_relay_reaches_redis(start_relay, collect, recall_bot) -> None:
    relay = await start_relay()
    text = collect("relay:events:recall:*")
    media = collect("relay:media:recall:*")
    bot = await recall_bot(relay.recall_url(), retry=FAST_RETRY)
    options = MeetingOptions(duration_s=1.0, participants=2, audio="separate", video=True, rate=8, realtime=False, seed=3)
    await run_meeting(bot, options)
    n_media = bot.sent["audio_separate_raw.data"] + bot.sent["video_separate_png.data"]
    await text.wait_for(bot.frames_sent - n_media + 1)  # and the meeting's session.started
    await media.wait_for(n_media)
    assert {e.session.id for e in text.events + media.events} == {bot.identity.recording_id}
    assert [e.type for e in text.events][:3] == ["session.started", *["participant.join"] * 2]
    assert [e.type for e in text.events][-2:] == ["participant.leave"] * 2
    assert sum(e.type == "video.frame" for e in media.events) == bot.sent["video_separate_png.data"] == 2 * 2
    assert bot.drops == 0 and bot.connects == 1
