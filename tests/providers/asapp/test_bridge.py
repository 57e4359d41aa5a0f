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
from relay.providers.asapp.stream import MAX_TOKEN_RETRIES, AsappStream, StreamState
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
# Without an e-mail, sender.externalId is the Recall participant id scoped by the meeting.
ALICE_ID, BOB_ID = "recall-rec_42-100", "recall-rec_42-200"
#: The startStream fields of ASAPP's example (docs/protocols/asapp.md, section 2).
START_FIELDS = {"message", "sender", "language", "samplingRate", "encoding", "smartFormatting", "detailedToken",
                "audioRecordingAllowed", "redactionOutput"}  # fmt: skip


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
    assert emu.violations == []  # real-time pace, 20-100 ms frames


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

    assert_account(asapp_emulator, ALICE_ID, alice)
    assert_account(asapp_emulator, BOB_ID, bob)
    assert asapp_emulator.url_requests_by_conversation == {SESSION.id: 2}  # one URL per socket, one conversation
    starts = [r.start_message for r in asapp_emulator.records]
    assert all(m is not None and set(m) == START_FIELDS for m in starts)
    assert sorted((m["sender"]["externalId"], m["sender"]["role"]) for m in starts if m) == [
        (ALICE_ID, "agent"), (BOB_ID, "customer")]  # fmt: skip
    n_alice, n_bob = -(-len(expected_8k(alice)) // 3200), -(-len(expected_8k(bob)) // 3200)
    await events.wait_for(n_alice + n_bob + 2)
    transcripts = [e for e in events.events if isinstance(e, TranscriptEvent)]
    by_speaker = {p: [e for e in transcripts if e.participant.id == p] for p in ("100", "200")}
    assert (len(by_speaker["100"]), len(by_speaker["200"])) == (n_alice, n_bob)
    first = by_speaker["100"][0]
    assert first.source == "asapp" and first.type == "transcript.final" and first.session.id == SESSION.id
    assert first.participant.role == "agent" and by_speaker["200"][0].participant.role == "customer"
    assert (first.payload.start, first.payload.end) == (MEETING_START, MEETING_START + 0.2)  # on the meeting's timeline
    assert first.payload.text.startswith(f"{ALICE_ID} audio bytes 0-3200")
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
    account = asapp_emulator.account(SESSION.id, ALICE_ID)
    # Drop while the server holds audio it has not transcribed yet: that audio must be sent again.
    await asapp_emulator.wait_until(lambda: account.committed_bytes >= 3 * 3200 and account.received_bytes > account.committed_bytes)
    assert await asapp_emulator.drop() == 1
    bridge.on_event(leave(ALICE))
    await asapp_emulator.wait_until(lambda: account.streams == 2 and asapp_emulator.open_streams() == 0)
    assert_account(asapp_emulator, ALICE_ID, alice)
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
    assert await asapp_emulator.end_streams("4091", speaker=ALICE_ID, description="invalid vocabulary format") == 1
    [error] = await errors.wait_for(1)
    assert isinstance(error, StreamErrorEvent)
    assert (error.payload.code, error.payload.permanent, error.participant.id) == ("4091", True, "100")
    streams = bridge.streams(SESSION.id)
    await streams["100"].wait_closed()
    assert streams["100"].state is StreamState.STOPPED
    feed(bridge, ALICE, speech(4, 0.1), start=200.0)  # a stopped speaker's audio is counted, not re-streamed
    assert bridge.streams(SESSION.id)["100"] is streams["100"]
    # Everything Alice said that no transcript covered is counted as never transcribed.
    alice_account = asapp_emulator.account(SESSION.id, ALICE_ID)
    assert sample(metrics, "relay_asapp_audio_dropped_bytes_total", reason="stream_stopped") >= (
        len(expected_8k(alice)) - alice_account.committed_bytes)  # fmt: skip
    bridge.on_disconnect(SESSION)
    await streams["200"].wait_closed()
    assert_account(asapp_emulator, BOB_ID, bob)
    assert alice_account.streams == 1 and asapp_emulator.url_requests == 2


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
    assert_account(asapp_emulator, ALICE_ID, alice)

    asapp_emulator.fail_url_requests(401)
    feed(bridge, BOB, speech(7, 0.2))
    [error] = await errors.wait_for(1)
    assert (error.payload.code, error.payload.permanent, error.participant.id) == ("http_401", True, "200")


async def test_idle_speaker_is_finished_then_reopened(asapp_emulator: AsappEmulator, make_bridge: Any) -> None:
    asapp_emulator.config.idle_s = 2.0
    bridge = await make_bridge(settings_for(asapp_emulator, idle_finish_s=0.3))
    first, second = speech(8, 0.4), speech(9, 0.4)
    feed(bridge, ALICE, first)
    account = asapp_emulator.account(SESSION.id, ALICE_ID)
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
    account = asapp_emulator.account(SESSION.id, ALICE_ID)
    await asapp_emulator.wait_until(lambda: account.streams >= 3)
    bridge.on_event(leave(ALICE))
    await stream.wait_closed()
    assert_account(asapp_emulator, ALICE_ID, alice)
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
    assert_account(asapp_emulator, ALICE_ID, alice)
    assert asapp_emulator.account(SESSION.id, ALICE_ID).streams == 1


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
    account = asapp_emulator.account(SESSION.id, ALICE_ID)
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
    assert_account(asapp_emulator, f"recall-{SESSION.id}-mixed", mixed)
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
    assert_account(asapp_emulator, ALICE_ID, alice)
    assert_account(asapp_emulator, BOB_ID, bob)
    await summaries.wait_for(2)
    bridge.on_event(audio_event(ALICE, speech(16, 0.1), 9.0))  # after shutdown: ignored
    assert bridge.meetings == 0


# --- how ASAPP ends a stream: finalResponse and its status (docs/protocols/asapp.md, section 4) ------


async def closed(stream: AsappStream, timeout: float = 10.0) -> None:
    """Wait for the stream's task to end; a stream that retries forever fails the test here."""
    async with asyncio.timeout(timeout):
        await stream.wait_closed()


@pytest.mark.parametrize("code", ["4040", "4050", "4051", "4053", "4056", "4082", "4084", "4091", "4092", "4093", "4094"])
async def test_a_permanent_refusal_of_the_start_is_not_retried(
    asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any, metrics: RelayMetrics, code: str
) -> None:
    errors = collect("relay:events:asapp:*:stream.error")
    asapp_emulator.refuse_starts(code, count=100)
    bridge = await make_bridge(settings_for(asapp_emulator))
    alice = speech(19, 0.5)
    feed(bridge, ALICE, alice)
    stream = bridge.streams(SESSION.id)["100"]
    await closed(stream)
    [error] = await errors.wait_for(1)
    assert (error.payload.code, error.payload.permanent, error.participant.id) == (code, True, "100")
    assert stream.state is StreamState.STOPPED
    assert asapp_emulator.url_requests == 1 and asapp_emulator.errors_sent == [code]  # no retry
    assert sample(metrics, "relay_upstream_errors_total", provider="asapp", reason="status_permanent") == 1
    assert sample(metrics, "relay_asapp_audio_dropped_bytes_total", reason="stream_stopped") > 0


async def test_a_transient_refusal_of_the_start_is_retried(asapp_emulator: AsappEmulator, make_bridge: Any) -> None:
    asapp_emulator.refuse_starts("5002", count=2, description="no instances available")
    bridge = await make_bridge(settings_for(asapp_emulator))
    alice = speech(20, 0.5)
    feed(bridge, ALICE, alice)
    stream = bridge.streams(SESSION.id)["100"]
    bridge.on_event(leave(ALICE))
    await closed(stream)
    assert_account(asapp_emulator, ALICE_ID, alice)
    assert asapp_emulator.url_requests == 3 and asapp_emulator.errors_sent == ["5002", "5002"]


async def end_mid_stream(emu: AsappEmulator, bridge: AsappBridge, code: str, pcm: bytes) -> None:
    """Feed ``pcm``; end Alice's stream with ``code`` while the server holds audio it has not
    transcribed; then Alice leaves and her stream finishes."""
    emu.config.speed = 5.0
    emu.config.record_audio = True
    feed(bridge, ALICE, pcm)
    stream = bridge.streams(SESSION.id)["100"]

    def holding_untranscribed() -> bool:
        records = emu.records_of(ALICE_ID)
        return bool(records) and records[0].committed_bytes >= 3 * 3200 and records[0].received_bytes > records[0].committed_bytes

    await emu.wait_until(holding_untranscribed)
    assert await emu.end_streams(code, speaker=ALICE_ID) == 1
    bridge.on_event(leave(ALICE))
    await closed(stream)


@pytest.mark.parametrize(("code", "finished"), [("5000", "transient"), ("5001", "transient"), ("2002", "transient"),
                                                 ("4090", "limit"), ("4083", "idle"), ("1008", "token")])  # fmt: skip
async def test_untranscribed_audio_is_resent_byte_exactly_after_a_transient_end(
    asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any, metrics: RelayMetrics, code: str, finished: str
) -> None:
    errors = collect("relay:events:asapp:*:stream.error")
    bridge = await make_bridge(settings_for(asapp_emulator, pace_speed=5.0))
    alice = speech(21, 4.0)
    await end_mid_stream(asapp_emulator, bridge, code, alice)
    first, second = asapp_emulator.records_of(ALICE_ID)
    assert first.final_code == code and second.final_code == "1000"
    untranscribed = bytes(first.audio[first.committed_bytes :])
    assert untranscribed  # the end really cut off audio the server had not transcribed
    assert bytes(second.audio[: len(untranscribed)]) == untranscribed  # sent again, first thing
    # What the first stream transcribed, then all of the second: the speaker's audio, once, in order.
    assert bytes(first.audio[: first.committed_bytes]) + bytes(second.audio) == expected_8k(alice)
    assert_account(asapp_emulator, ALICE_ID, alice)
    [error] = await errors.wait_for(1)
    assert (error.payload.code, error.payload.permanent) == (code, False)
    assert sample(metrics, "relay_asapp_audio_replayed_bytes_total") >= len(untranscribed)
    assert sample(metrics, "relay_asapp_streams_finished_total", reason=finished) == 1
    assert sample(metrics, "relay_asapp_audio_dropped_bytes_total", reason="stream_stopped") == 0


async def test_audio_asapp_cannot_transcribe_is_counted_not_resent(
    asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any, metrics: RelayMetrics
) -> None:
    errors = collect("relay:events:asapp:*:stream.error")
    bridge = await make_bridge(settings_for(asapp_emulator, pace_speed=5.0))
    alice = speech(22, 4.0)
    await end_mid_stream(asapp_emulator, bridge, "4080", alice)
    first, second = asapp_emulator.records_of(ALICE_ID)
    untranscribed = bytes(first.audio[first.committed_bytes :])
    assert untranscribed and not bytes(second.audio).startswith(untranscribed[:320])  # not sent again
    expected = expected_8k(alice)
    # The new stream carries the audio after what the failed socket sent, up to the end.
    assert expected.endswith(bytes(second.audio))
    lost = len(expected) - first.committed_bytes - second.received_bytes
    assert lost >= len(untranscribed)
    assert sample(metrics, "relay_asapp_audio_dropped_bytes_total", reason="untranscribable") == lost
    [error] = await errors.wait_for(1)
    assert (error.payload.code, error.payload.permanent) == ("4080", False)


async def test_an_expired_token_gets_a_fresh_url_a_bounded_number_of_times(
    asapp_emulator: AsappEmulator, make_bridge: Any, collect: Any
) -> None:
    errors = collect("relay:events:asapp:*:stream.error")
    bridge = await make_bridge(settings_for(asapp_emulator))
    alice = speech(23, 1.0)
    feed(bridge, ALICE, alice)
    await asapp_emulator.wait_until(lambda: asapp_emulator.open_streams() == 1)
    assert await asapp_emulator.drop(code=1008) == 1  # a policy close mid-stream: a fresh URL, not the end
    # The new stream confirms audio (a transcript): the token trouble is over, the count starts again.
    await asapp_emulator.wait_until(lambda: len(asapp_emulator.records) == 2 and asapp_emulator.records[1].committed_bytes > 0)
    asapp_emulator.refuse_starts("1008", count=100, description="invalid or expired token")
    assert await asapp_emulator.drop(code=1011) == 1
    feed(bridge, ALICE, speech(23, 0.5), start=200.0)
    events = await errors.wait_for(3)
    assert [(e.payload.code, e.payload.permanent) for e in events] == [("ws_1008", False), ("closed", False), ("1008", True)]
    await closed(bridge.streams(SESSION.id)["100"])
    # After the transient drop, 1008 refusals: a fresh URL each time, up to the bound, then it stops.
    assert asapp_emulator.errors_sent == ["1008"] * (MAX_TOKEN_RETRIES + 1)
    assert asapp_emulator.url_requests == 2 + MAX_TOKEN_RETRIES + 1


# --- sender.externalId and the byte order -------------------------------------------------------


async def test_external_id_is_the_person_across_meetings(asapp_emulator: AsappEmulator, make_bridge: Any) -> None:
    bridge = await make_bridge(settings_for(asapp_emulator, external_ids={"Carol@Example.com": "crm-7"}))
    grace_1 = Participant(id="100", name="Grace", email="grace@example.com")
    grace_2 = Participant(id="3", name="Grace H.", email="Grace@Example.com ")  # another meeting, another Recall id
    carol = Participant(id="300", name="Carol", email="carol@example.com")
    meetings = [SessionRef(id="rec_a", metadata={"asapp": "true"}), SessionRef(id="rec_b", metadata={"asapp": "true"})]
    for session, people in zip(meetings, [(grace_1, carol, BOB), (grace_2, BOB)], strict=True):
        for person in people:
            bridge.on_event(audio_event(person, speech(24, 0.1), 1.0, session=session))
        bridge.on_disconnect(session)
    await asapp_emulator.wait_until(lambda: len(asapp_emulator.records) == 5 and asapp_emulator.open_streams() == 0)
    ids = {(r.conversation, (r.start_message or {})["sender"]["externalId"]) for r in asapp_emulator.records}
    grace = "email-" + hashlib.sha256(b"grace@example.com").hexdigest()[:32]
    assert ids == {("rec_a", grace), ("rec_b", grace), ("rec_a", "crm-7"), ("rec_a", "recall-rec_a-200"),
                   ("rec_b", "recall-rec_b-200")}  # fmt: skip


async def test_big_endian_output(asapp_emulator: AsappEmulator, make_bridge: Any) -> None:
    bridge = await make_bridge(settings_for(asapp_emulator, byte_order="big"))
    alice = speech(25, 0.6)
    feed(bridge, ALICE, alice)
    stream = bridge.streams(SESSION.id)["100"]
    bridge.on_event(leave(ALICE))
    await closed(stream)
    expected = expected_8k(alice, byte_order="big")
    assert expected != expected_8k(alice)
    account = asapp_emulator.account(SESSION.id, ALICE_ID)
    assert account.sha256 == hashlib.sha256(expected).hexdigest()
