"""Conformance: Recall.ai's own published payloads, fed to the parser, and what reaches the events.

Each payload below is copied from a public Recall.ai page or sample app, named in the comment above
it. Where the page writes a type instead of a value (``"id": string``, ``"relative": float``), a
value of that type is filled in, and nothing else is changed: keys, nesting, nulls and the artifact
key the page uses (which is not always the one the event name suggests) are kept as printed. The
legacy protocol headers are literal. ``test_parse.py`` covers the same kinds on the relay's own
examples, and the errors.
"""

from __future__ import annotations

import base64
import struct
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from relay.dev import recall_frames as frames
from relay.providers.recall.parse import RecallParser
from relay.schema import (
    AudioChunkEvent,
    ChatMessageEvent,
    EventBase,
    Participant,
    ParticipantEvent,
    SessionRef,
    TranscriptEvent,
    VideoFrameEvent,
    parse_event,
)

RECEIVED = datetime(2026, 1, 20, 12, 0, 30, tzinfo=timezone.utc)
PCM = struct.pack("<4h", 0, 1000, -1000, 32767)
PNG = frames.png_image(4, 4)


def feed(payload: Any, parser: RecallParser | None = None) -> EventBase:
    """One payload, sent as Recall sends it (a JSON text frame), twice: the second takes the fast
    path where its kind has one; both must give the same event (but its id, and a final's utterance
    id: two finals are two utterances)."""
    parser = parser or RecallParser()
    text = orjson.dumps(payload).decode()
    [first] = parser.feed(text, received_at=RECEIVED)
    [second] = parser.feed(text, received_at=RECEIVED)
    unpaired: Any = {"id": True, "payload": {"utterance_id"}}
    assert first.model_dump(exclude=unpaired) == second.model_dump(exclude=unpaired)
    assert parse_event(first.model_dump_json()) == first  # what is published parses back
    return first


# Source: https://docs.recall.ai/docs/real-time-event-payloads ("participant_events"; the page's
# participant has no `email`, and `data` is null except for chat messages).
PARTICIPANT_JOIN = {
    "event": "participant_events.join",
    "data": {
        "data": {
            "participant": {"id": 100, "name": "Alice", "is_host": True, "platform": "desktop", "extra_data": {}},
            "timestamp": {"absolute": "2026-01-20T12:00:12.340Z", "relative": 12.34},
            "data": None,
        },
        "realtime_endpoint": {"id": "re-1", "metadata": {}},
        "participant_events": {"id": "pe-1", "metadata": {}},
        "recording": {"id": "rec-1", "metadata": {}},
        "bot": {"id": "bot-1", "metadata": {}},
    },
}


def test_participant_event_payload() -> None:
    event = feed(PARTICIPANT_JOIN)
    assert isinstance(event, ParticipantEvent) and event.type == "participant.join"
    assert event.session == SessionRef(id="rec-1", bot_id="bot-1", endpoint_id="re-1")
    assert event.participant == Participant(id="100", name="Alice", is_host=True, platform="desktop")
    assert event.time.relative == 12.34
    assert event.time.absolute == datetime(2026, 1, 20, 12, 0, 12, 340000, tzinfo=timezone.utc)


def test_chat_message_payload() -> None:
    # The same page: `data` is `{text, to}` for `participant_events.chat_message`.
    payload = orjson.loads(orjson.dumps(PARTICIPANT_JOIN))
    payload["event"] = "participant_events.chat_message"
    payload["data"]["data"]["data"] = {"text": "hello from chat", "to": "everyone"}
    event = feed(payload)
    assert isinstance(event, ChatMessageEvent)
    assert (event.payload.text, event.payload.to, event.participant.id) == ("hello from chat", "everyone", "100")


# Source: https://docs.recall.ai/docs/real-time-event-payloads ("transcript.data"; word times carry
# `relative` only, `end_timestamp` may be null).
TRANSCRIPT = {
    "event": "transcript.data",
    "data": {
        "data": {
            "words": [
                {"text": "good", "start_timestamp": {"relative": 3.1}, "end_timestamp": {"relative": 3.4}},
                {"text": "morning", "start_timestamp": {"relative": 3.4}, "end_timestamp": None},
            ],
            "participant": {"id": 200, "name": None, "is_host": False, "platform": None, "extra_data": {}},
        },
        "realtime_endpoint": {"id": "re-1", "metadata": {}},
        "transcript": {"id": "tr-1", "metadata": {}},
        "recording": {"id": "rec-1", "metadata": {}},
        "bot": {"id": "bot-1", "metadata": {}},
    },
}


@pytest.mark.parametrize("partial", [False, True])
def test_transcript_payloads(partial: bool) -> None:
    # `transcript.partial_data` is the same shape on the same page.
    payload = orjson.loads(orjson.dumps(TRANSCRIPT))
    if partial:
        payload["event"] = "transcript.partial_data"
    event = feed(payload)
    assert isinstance(event, TranscriptEvent)
    assert event.type == ("transcript.partial" if partial else "transcript.final")
    assert (event.payload.text, event.payload.is_final) == ("good morning", not partial)
    assert [(w.text, w.start, w.end) for w in event.payload.words] == [("good", 3.1, 3.4), ("morning", 3.4, None)]
    assert (event.payload.start, event.payload.end, event.time.relative) == (3.1, None, 3.1)
    assert event.participant == Participant(id="200", is_host=False)


def test_transcript_payloads_partial_and_final_share_an_utterance_id() -> None:
    """The page's partial and final, in Recall's order on one connection: one utterance."""
    partial = orjson.loads(orjson.dumps(TRANSCRIPT))
    partial["event"] = "transcript.partial_data"
    partial["data"]["data"]["words"] = partial["data"]["data"]["words"][:1]
    parser = RecallParser()
    [interim] = parser.feed(orjson.dumps(partial).decode(), received_at=RECEIVED)
    [final] = parser.feed(orjson.dumps(TRANSCRIPT).decode(), received_at=RECEIVED)
    assert isinstance(interim, TranscriptEvent) and isinstance(final, TranscriptEvent)
    assert interim.payload.utterance_id is not None
    assert final.payload.utterance_id == interim.payload.utterance_id


# Source: https://github.com/recallai/sample-apps (the zod schemas of its real-time transcript,
# separate-audio and separate-video events): the participant is typed `extra_data: z.any()` and
# `email: z.string().nullish()`.
@pytest.mark.parametrize("extra_data", [{"zoom": {"user_guid": "abc"}}, "a string", ["a", 1], 7, None])
def test_extra_data_is_any_json_as_the_sample_apps_type_it(extra_data: Any) -> None:
    payload = orjson.loads(orjson.dumps(TRANSCRIPT))
    payload["data"]["data"]["participant"].update(extra_data=extra_data, email=None)
    event = feed(payload)
    assert event.participant is not None
    assert event.participant.extra == ({} if extra_data is None else extra_data)
    assert event.participant.email is None


# Source: https://docs.recall.ai/docs/real-time-media (the page's `AudioDataEvent` type; its
# artifact key is `audio_mixed_raw`).
AUDIO_MIXED = {
    "event": "audio_mixed_raw.data",
    "data": {
        "data": {
            "buffer": base64.b64encode(PCM).decode(),
            "timestamp": {"relative": 5.0, "absolute": "2026-01-20T12:00:05.000Z"},
        },
        "realtime_endpoint": {"id": "re-1", "metadata": {"team": "sales"}},
        "recording": {"id": "rec-1", "metadata": {}},
        "bot": {"id": "bot-1", "metadata": {}},
        "audio_mixed_raw": {"id": "am-1", "metadata": {}},
    },
}


def test_mixed_audio_payload() -> None:
    event = feed(AUDIO_MIXED)
    assert isinstance(event, AudioChunkEvent) and event.participant is None
    assert event.session.metadata == {"team": "sales"}
    assert (event.payload.mix, event.payload.bytes, event.payload.duration_ms) == ("mixed", len(PCM), len(PCM) / 32)
    assert base64.b64decode(event.payload.audio) == PCM and event.time.relative == 5.0


def test_mixed_audio_payload_of_the_sample_app_with_a_null_bot() -> None:
    # Source: https://github.com/recallai/sample-apps,
    # bot_mixed_audio_stream_realtime_write_to_audio_files/src/schemas/AudioMixedRawDataEventSchema.ts:
    # the artifact key is `audio_mixed`, and `bot` is `.nullish()`.
    payload = orjson.loads(orjson.dumps(AUDIO_MIXED))
    payload["data"]["audio_mixed"] = payload["data"].pop("audio_mixed_raw")
    payload["data"]["bot"] = None
    event = feed(payload)
    assert isinstance(event, AudioChunkEvent)
    assert (event.session.id, event.session.bot_id, event.session.bot_metadata) == ("rec-1", None, {})


# Source: https://docs.recall.ai/docs/real-time-video (the page's type for `video_separate_png.data`,
# artifact key `audio_mixed_raw` as printed there; `type` is "webcam" | "screenshare").
VIDEO_PNG = {
    "event": "video_separate_png.data",
    "data": {
        "data": {
            "buffer": base64.b64encode(PNG).decode(),
            "timestamp": {"relative": 8.5, "absolute": "2026-01-20T12:00:08.500Z"},
            "type": "screenshare",
            "participant": {"id": 100, "name": "Alice", "is_host": True, "platform": "desktop", "extra_data": {}},
        },
        "realtime_endpoint": {"id": "re-1", "metadata": {}},
        "recording": {"id": "rec-1", "metadata": {}},
        "bot": {"id": "bot-1", "metadata": {}},
        "audio_mixed_raw": {"id": "vs-1", "metadata": {}},
    },
}


def test_video_png_payload() -> None:
    event = feed(VIDEO_PNG)
    assert isinstance(event, VideoFrameEvent)
    assert (event.payload.codec, event.payload.stream, event.payload.bytes) == ("png", "screenshare", len(PNG))
    assert base64.b64decode(event.payload.image) == PNG
    assert (event.participant.id, event.time.relative) == ("100", 8.5)


# --- the legacy protocols: literal headers, binary frames laid out as the pages describe ----------


def test_legacy_separate_audio() -> None:
    # Source: https://recallai.readme.io/docs/real-time-audio-protocol ("Separate Streams": "First
    # 32 bits are a little-endian unsigned integer representing the participant_id", then S16LE PCM).
    parser = RecallParser()
    assert parser.feed('{"protocol_version": 1, "bot_id": "YOUR-BOT-ID-HERE", "separate_streams": true}') == []
    [event] = parser.feed((100).to_bytes(4, "little") + PCM, received_at=RECEIVED)
    assert isinstance(event, AudioChunkEvent)
    assert event.session == SessionRef(id="YOUR-BOT-ID-HERE", bot_id="YOUR-BOT-ID-HERE")
    assert (event.participant.id, event.payload.mix, base64.b64decode(event.payload.audio)) == ("100", "separate", PCM)


def test_legacy_combined_audio_with_recording_id_and_offset() -> None:
    # Source: https://docs.recall.ai/v1.10/docs/real-time-audio-protocol ("Combined Streams"; the
    # page prints the header as a JavaScript object, here as the JSON a bot sends).
    parser = RecallParser()
    header = {"protocol_version": 1, "bot_id": "...", "recording_id": "...", "separate_streams": False, "offset": 0.0}
    assert parser.feed(orjson.dumps(header).decode()) == []
    [event] = parser.feed(PCM, received_at=RECEIVED)
    assert isinstance(event, AudioChunkEvent) and event.participant is None
    assert (event.session.id, event.payload.mix, event.payload.bytes) == ("...", "mixed", len(PCM))


def test_legacy_video() -> None:
    # Source: https://docs.recall.ai/v1.10/docs/real-time-video (first message
    # {"protocol_version": 1, "bot_id": "<BOT_ID>"}; then u32 LE participant_id, u32 LE millisecond
    # timestamp relative to the start of the video, then the PNG), decoded as the page's sample does:
    # int.from_bytes(message[0:4], 'little'), int.from_bytes(message[4:8], 'little'), message[8:].
    parser = RecallParser()
    assert parser.feed('{"protocol_version": 1, "bot_id": "<BOT_ID>"}') == []
    message = (200).to_bytes(4, "little") + (61_500).to_bytes(4, "little") + PNG
    [event] = parser.feed(message, received_at=RECEIVED)
    assert isinstance(event, VideoFrameEvent) and event.type == "video.frame"
    assert event.session == SessionRef(id="<BOT_ID>", bot_id="<BOT_ID>")
    assert (event.participant.id, event.time.relative, event.payload.codec) == ("200", 61.5, "png")
    assert base64.b64decode(event.payload.image) == message[8:]
