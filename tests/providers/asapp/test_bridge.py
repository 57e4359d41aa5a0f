"""The ASAPP bridge end to end: Recall audio events in, ASAPP emulator over real sockets, events on real Redis.

"No audio lost or doubled" is checked exactly: the emulator keeps, per speaker, the byte count and
SHA-256 of all audio it transcribed across every stream, and the test computes what the bridge
should have sent by resampling the same chunks offline.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import pytest

from relay.core.metrics import RelayMetrics
from relay.providers.asapp.bridge import AsappBridge
from relay.providers.asapp.config import AsappSettings
from relay.dev.asapp_emulator import AsappEmulator
from relay.providers.asapp.resample import Downsampler
from relay.providers.asapp.stream import StreamState
from relay.channels import ChannelScheme
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.schema import (
    AudioChunk,
    AudioChunkEvent,
    EventTime,
    Participant,
    ParticipantChange,
    ParticipantEvent,
    SessionRef,
    Source,
    StreamErrorEvent,
    StreamSummaryEvent,
    TranscriptEvent,
)
from tests.providers.asapp.helpers import chunks, expected_8k, speech

SESSION = SessionRef(id="rec_42", bot_id="bot_42", metadata={"asapp": "true"})
ALICE = Participant(id="100", name="Alice", is_host=True)
BOB = Participant(id="200", name="Bob", is_host=False)
MEETING_START = 100.0  # the speakers' first audio is 100 s into the recording


def audio_event(participant: Participant | None, pcm: bytes, relative: float, session: SessionRef = SESSION) -> AudioChunkEvent:
    return AudioChunkEvent(
        source=Source.RECALL,
        session=session,
        participant=participant,
        time=EventTime(received=datetime.now(timezone.utc), relative=relative),
        payload=AudioChunk(mix="separate", audio=base64.b64encode(pcm).decode(), bytes=len(pcm), duration_ms=len(pcm) / 32),
    )


def feed(bridge: AsappBridge, participant: Participant, pcm: bytes, start: float = MEETING_START) -> None:
    for i, c in enumerate(chunks(pcm)):
        bridge.on_event(audio_event(participant, c, start + i * 0.02))


def leave(participant: Participant) -> ParticipantEvent:
    return ParticipantEvent(
        source=Source.RECALL, type="participant.leave", session=SESSION, participant=participant,
        time=EventTime(received=datetime.now(timezone.utc)), payload=ParticipantChange(action="leave"),
    )  # fmt: skip


def settings_for(emu: AsappEmulator, **overrides: Any) -> AsappSettings:
    values: dict[str, Any] = dict(
        enabled=True, api_id="emulator-id", api_secret="emulator-secret", base_url=emu.base_url,
        pace_speed=emu.config.speed, backoff_initial_s=0.01, backoff_max_s=0.05, final_timeout_s=5.0,
    )  # fmt: skip
    values.update(overrides)
    return AsappSettings(**values)


def sample(metrics: RelayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def publisher(redis_url: str, metrics: RelayMetrics) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(redis_url, metrics, PublisherConfig(), ChannelScheme())
    pub.start()
    yield pub
    await pub.aclose(timeout=5)


@pytest.fixture
async def make_bridge(publisher: EventPublisher, metrics: RelayMetrics) -> AsyncIterator[Any]:
    bridges: list[AsappBridge] = []

    async def make(settings: AsappSettings) -> AsappBridge:
        bridge = AsappBridge(settings, publisher, metrics)
        await bridge.start()
        bridges.append(bridge)
        return bridge

    yield make
    for bridge in bridges:
        await bridge.aclose(timeout=5)


def assert_account(emu: AsappEmulator, speaker: str, pcm: bytes) -> None:
    expected = expected_8k(pcm)
    account = emu.account(SESSION.id, speaker)
    assert account.committed_bytes == len(expected)
    assert account.sha256 == hashlib.sha256(expected).hexdigest()


async def test_two_speakers_two_streams_two_transcript_streams(
    asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any, metrics: RelayMetrics
) -> None:
    events = collect("relay:events:asapp:*")
    bridge = await make_bridge(settings_for(asapp_emulator))
    alice, bob = speech(1, 1.0), speech(2, 0.6)
    feed(bridge, ALICE, alice)
    feed(bridge, BOB, bob)
    streams = bridge.streams(SESSION.id)
    assert set(streams) == {"100", "200"}
    bridge.on_disconnect(SESSION)
    await asyncio.gather(*(s.wait_closed() for s in streams.values()))

    assert_account(asapp_emulator, "100", alice)
    assert_account(asapp_emulator, "200", bob)
    assert asapp_emulator.url_requests_by_conversation == {SESSION.id: 2}  # one URL per socket, one conversation
    n_alice, n_bob = -(-len(expected_8k(alice)) // 3200), -(-len(expected_8k(bob)) // 3200)
    await events.wait_for(n_alice + n_bob + 2)
    transcripts = [e for e in events.events if isinstance(e, TranscriptEvent)]
    by_speaker = {p: [e for e in transcripts if e.participant.id == p] for p in ("100", "200")}
    assert (len(by_speaker["100"]), len(by_speaker["200"])) == (n_alice, n_bob)
    first = by_speaker["100"][0]
    assert first.source == "asapp" and first.type == "transcript.final" and first.session.id == SESSION.id
    assert first.participant.role == "agent" and by_speaker["200"][0].participant.role == "customer"
    assert (first.payload.start, first.payload.end) == (MEETING_START, MEETING_START + 0.2)  # on the meeting's timeline
    assert first.payload.text.startswith("100 audio bytes 0-3200")
    summaries = [e for e in events.events if isinstance(e, StreamSummaryEvent)]
    assert sorted(s.payload.audio_bytes for s in summaries) == sorted([len(expected_8k(alice)), len(expected_8k(bob))])
    assert sample(metrics, "relay_asapp_transcripts_total") == n_alice + n_bob
    assert sample(metrics, "relay_asapp_streams_open") == 0
    assert sample(metrics, "relay_asapp_audio_buffered_bytes") == 0


async def test_forced_drop_loses_and_doubles_nothing(
    asapp_emulator: AsappEmulator, make_bridge: Any, metrics: RelayMetrics
) -> None:
    asapp_emulator.config.speed = 5.0
    bridge = await make_bridge(settings_for(asapp_emulator, pace_speed=5.0))
    alice = speech(3, 4.0)
    feed(bridge, ALICE, alice)
    account = asapp_emulator.account(SESSION.id, "100")
    # Drop while the server holds audio it has not transcribed yet: that audio must be sent again.
    await asapp_emulator.wait_until(lambda: account.committed_bytes >= 3 * 3200 and account.received_bytes > account.committed_bytes)
    assert await asapp_emulator.drop() == 1
    bridge.on_event(leave(ALICE))
    await asapp_emulator.wait_until(lambda: account.streams == 2 and asapp_emulator.open_streams() == 0)
    assert_account(asapp_emulator, "100", alice)
    assert asapp_emulator.url_requests == 2  # a fresh URL for the second socket
    assert account.discarded_bytes > 0  # the drop really cut off audio the server had not transcribed
    assert sample(metrics, "relay_asapp_audio_replayed_bytes_total") >= account.discarded_bytes
    assert sample(metrics, "relay_upstream_reconnects_total", provider="asapp") >= 1


async def test_permanent_error_stops_only_its_stream(
    asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any, metrics: RelayMetrics
) -> None:
    asapp_emulator.config.speed = 5.0
    errors = collect("relay:events:asapp:*:stream.error")
    bridge = await make_bridge(settings_for(asapp_emulator, pace_speed=5.0))
    alice, bob = speech(4, 3.0), speech(5, 3.0)
    feed(bridge, ALICE, alice)
    feed(bridge, BOB, bob)
    await asapp_emulator.wait_until(lambda: asapp_emulator.open_streams() == 2)
    assert await asapp_emulator.send_error("4091", speaker="100", description="limits") == 1
    [error] = await errors.wait_for(1)
    assert isinstance(error, StreamErrorEvent)
    assert (error.payload.code, error.payload.permanent, error.participant.id) == ("4091", True, "100")
    streams = bridge.streams(SESSION.id)
    await streams["100"].wait_closed()
    assert streams["100"].state is StreamState.STOPPED
    feed(bridge, ALICE, speech(4, 0.1), start=200.0)  # a stopped speaker's audio is counted, not re-streamed
    assert bridge.streams(SESSION.id)["100"] is streams["100"]
    assert sample(metrics, "relay_asapp_audio_dropped_bytes_total", reason="stream_stopped") > 0
    bridge.on_disconnect(SESSION)
    await streams["200"].wait_closed()
    assert_account(asapp_emulator, "200", bob)
    assert asapp_emulator.account(SESSION.id, "100").streams == 1


async def test_url_429_honours_retry_after_and_401_is_permanent(
    asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any
) -> None:
    errors = collect("relay:events:asapp:*:stream.error")
    bridge = await make_bridge(settings_for(asapp_emulator))
    asapp_emulator.fail_url_requests(429, retry_after=0.4)
    alice = speech(6, 0.5)
    feed(bridge, ALICE, alice)
    stream = bridge.streams(SESSION.id)["100"]
    await asapp_emulator.wait_until(lambda: asapp_emulator.url_requests == 2)
    times = asapp_emulator.url_request_times
    assert times[1] - times[0] >= 0.4  # backoff alone would retry within 0.05 s
    bridge.on_event(leave(ALICE))
    await stream.wait_closed()
    assert_account(asapp_emulator, "100", alice)

    asapp_emulator.fail_url_requests(401)
    feed(bridge, BOB, speech(7, 0.2))
    [error] = await errors.wait_for(1)
    assert (error.payload.code, error.payload.permanent, error.participant.id) == ("http_401", True, "200")


async def test_idle_speaker_is_finished_then_reopened(asapp_emulator: AsappEmulator, make_bridge: Any) -> None:
    asapp_emulator.config.idle_s = 2.0
    bridge = await make_bridge(settings_for(asapp_emulator, idle_finish_s=0.3))
    first, second = speech(8, 0.4), speech(9, 0.4)
    feed(bridge, ALICE, first)
    account = asapp_emulator.account(SESSION.id, "100")
    # The stream finishes itself after 0.3 s of silence, long before the emulator's 4083.
    await asapp_emulator.wait_until(lambda: account.streams == 1 and asapp_emulator.open_streams() == 0)
    feed(bridge, ALICE, second, start=130.0)
    await asapp_emulator.wait_until(lambda: account.streams == 2)
    stream = bridge.streams(SESSION.id)["100"]
    bridge.on_event(leave(ALICE))
    await stream.wait_closed()
    # Both parts went through the speaker's one resampler: compare against the two parts joined.
    expected = expected_8k(first, second)
    assert account.committed_bytes == len(expected)
    assert account.sha256 == hashlib.sha256(expected).hexdigest()
    assert "4083" not in asapp_emulator.errors_sent


async def test_rollover_before_the_stream_limit(asapp_emulator: AsappEmulator, make_bridge: Any) -> None:
    asapp_emulator.config.speed = 2.0
    asapp_emulator.config.max_stream_s = 0.8
    bridge = await make_bridge(settings_for(asapp_emulator, pace_speed=2.0, rollover_after_s=0.3))
    alice = speech(10, 2.0)
    feed(bridge, ALICE, alice)
    stream = bridge.streams(SESSION.id)["100"]
    account = asapp_emulator.account(SESSION.id, "100")
    await asapp_emulator.wait_until(lambda: account.streams >= 3)
    bridge.on_event(leave(ALICE))
    await stream.wait_closed()
    assert_account(asapp_emulator, "100", alice)
    assert "4090" not in asapp_emulator.errors_sent


async def test_malformed_server_message_is_counted_and_ignored(
    asapp_emulator: AsappEmulator, make_bridge: Any, metrics: RelayMetrics
) -> None:
    asapp_emulator.config.speed = 5.0
    bridge = await make_bridge(settings_for(asapp_emulator, pace_speed=5.0))
    alice = speech(11, 1.5)
    feed(bridge, ALICE, alice)
    await asapp_emulator.wait_until(lambda: asapp_emulator.open_streams() == 1)
    assert await asapp_emulator.send_malformed() == 1
    stream = bridge.streams(SESSION.id)["100"]
    bridge.on_event(leave(ALICE))
    await stream.wait_closed()
    assert sample(metrics, "relay_frames_rejected_total", source="asapp", reason="invalid_json") == 1
    assert_account(asapp_emulator, "100", alice)
    assert asapp_emulator.account(SESSION.id, "100").streams == 1


async def test_only_opted_in_meetings_are_bridged(asapp_emulator: AsappEmulator, make_bridge: Any) -> None:
    bridge = await make_bridge(settings_for(asapp_emulator))  # bridge = "metadata"
    other = SessionRef(id="rec_other", metadata={"asapp": "false"})
    bridge.on_event(audio_event(ALICE, speech(12, 0.1), 1.0, session=other))
    assert bridge.meetings == 0
    bridge.on_event(audio_event(ALICE, speech(12, 0.1), 1.0))
    assert bridge.meetings == 1
    bridge.on_event(audio_event(ALICE, b"", 1.0))  # silence: nothing to do, no error
    bridge.on_event(leave(ALICE))
    assert bridge.streams(SESSION.id) == {}


async def test_url_outage_buffers_within_its_bound_and_counts_drops(
    asapp_emulator: AsappEmulator, make_bridge: Any, metrics: RelayMetrics
) -> None:
    asapp_emulator.fail_url_requests(503, count=1_000_000)
    bridge = await make_bridge(settings_for(asapp_emulator, buffer_max_ms=1_000))
    alice = speech(13, 3.0)
    feed(bridge, ALICE, alice)  # 3 s arrive while ASAPP is unreachable; only the newest 1 s is kept
    await asapp_emulator.wait_until(lambda: asapp_emulator.url_requests >= 3)
    stream = bridge.streams(SESSION.id)["100"]
    assert stream.state.value == "connecting"
    assert sample(metrics, "relay_asapp_audio_buffered_bytes") == 16_000
    dropped = sample(metrics, "relay_asapp_audio_dropped_bytes_total", reason="buffer_full")
    ds = Downsampler()
    produced = sum(len(ds.process(c)) for c in chunks(alice))  # the filter's tail comes only at finish
    assert dropped == produced - 16_000
    asapp_emulator._url_failures.clear()
    bridge.on_event(leave(ALICE))
    await stream.wait_closed()
    # The filter's tail, added at finish, pushed as much again out of the 1 s bound.
    expected = expected_8k(alice)
    kept = expected[-16_000:]
    assert sample(metrics, "relay_asapp_audio_dropped_bytes_total", reason="buffer_full") == len(expected) - 16_000
    account = asapp_emulator.account(SESSION.id, "100")
    assert account.committed_bytes == len(kept)
    assert account.sha256 == hashlib.sha256(kept).hexdigest()


async def test_mixed_audio_is_one_stream(asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any) -> None:
    events = collect("relay:events:asapp:*:transcript.final")
    bridge = await make_bridge(settings_for(asapp_emulator, audio="mixed", mixed_role="customer"))
    mixed = speech(14, 0.6)
    for i, c in enumerate(chunks(mixed)):
        event = audio_event(None, c, 5.0 + i * 0.02)
        bridge.on_event(event.model_copy(update={"payload": event.payload.model_copy(update={"mix": "mixed"})}))
    bridge.on_event(audio_event(ALICE, speech(15, 0.1), 5.0))  # separate audio is ignored in mixed mode
    [stream] = bridge.streams(SESSION.id).values()
    bridge.on_disconnect(SESSION)
    await stream.wait_closed()
    assert_account(asapp_emulator, "mixed", mixed)
    await events.wait_for(3)
    assert {e.participant.role for e in events.events} == {"customer"}


async def test_shutdown_finishes_every_stream(asapp_emulator: AsappEmulator, publisher: EventPublisher,
                                               metrics: RelayMetrics, collect: Any) -> None:  # fmt: skip
    summaries = collect("relay:events:asapp:*:stream.summary")
    bridge = AsappBridge(settings_for(asapp_emulator), publisher, metrics)
    await bridge.start()
    alice, bob = speech(16, 0.3), speech(17, 0.3)
    feed(bridge, ALICE, alice)
    feed(bridge, BOB, bob)
    await bridge.aclose()
    assert_account(asapp_emulator, "100", alice)
    assert_account(asapp_emulator, "200", bob)
    await summaries.wait_for(2)
    bridge.on_event(audio_event(ALICE, speech(16, 0.1), 9.0))  # after shutdown: ignored
    assert bridge.meetings == 0


async def test_policy_close_is_permanent(asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any) -> None:
    errors = collect("relay:events:asapp:*:stream.error")
    bridge = await make_bridge(settings_for(asapp_emulator))
    feed(bridge, ALICE, speech(18, 1.0))
    await asapp_emulator.wait_until(lambda: asapp_emulator.open_streams() == 1)
    assert await asapp_emulator.drop(code=1008) == 1
    [error] = await errors.wait_for(1)
    assert (error.payload.code, error.payload.permanent) == ("ws_1008", True)
    assert asapp_emulator.url_requests == 1  # no retry
