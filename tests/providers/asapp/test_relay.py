"""The whole path: a Recall bot's socket into the relay, the bridge to the ASAPP emulator, transcripts on Redis."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from websockets.asyncio.client import connect

from relay.dev.asapp_emulator import AsappEmulator
from relay.providers.asapp.config import AsappSettings
from relay.schema import StreamSummaryEvent, TranscriptEvent
from tests.providers.asapp.helpers import chunks, expected_8k, speech

RECORDING = "rec-asapp-e2e"
SPEAKER = {"id": 7, "name": "Grace", "is_host": False, "platform": "desktop", "extra_data": {}, "email": "grace@example.com"}


def frame(event: str, data: dict[str, Any]) -> str:
    return orjson.dumps(
        {
            "event": event,
            "data": {
                "data": data,
                "realtime_endpoint": {"id": "re-1", "metadata": {"asapp": "true"}},
                "recording": {"id": RECORDING, "metadata": {}},
                "bot": {"id": "bot-1", "metadata": {}},
                "audio_separate": {"id": "as-1", "metadata": {}},
            },
        }
    ).decode()


async def test_bot_audio_becomes_asapp_transcripts_beside_the_meeting(
    start_relay: Any, collect: Any, asapp_emulator: AsappEmulator
) -> None:
    relay = await start_relay(
        asapp={"enabled": True, "api_id": "emulator-id", "api_secret": "emulator-secret",
               "base_url": asapp_emulator.base_url, "pace_speed": 20.0, "agent_emails": ["grace@example.com"]},
    )  # fmt: skip
    events = collect(f"relay:events:*:{RECORDING}:*")
    pcm = speech(21, 1.0)
    async with connect(relay.recall_url(), proxy=None, open_timeout=5) as bot:
        for i, c in enumerate(chunks(pcm)):
            ts = {"relative": 30.0 + i * 0.02, "absolute": "2026-11-25T20:00:30Z"}
            await bot.send(frame("audio_separate_raw.data",
                                 {"buffer": base64.b64encode(c).decode(), "timestamp": ts, "participant": SPEAKER}))  # fmt: skip
        await bot.send(frame("participant_events.leave", {"participant": SPEAKER, "timestamp": ts, "data": None}))

    expected = expected_8k(pcm)
    n_transcripts = -(-len(expected) // 3200)
    await events.wait_for(n_transcripts + 2)  # transcripts, the summary, Recall's leave
    # sender.externalId comes from the e-mail Recall gave: the same person in every meeting.
    external_id = AsappSettings().external_id_of(session_id=RECORDING, participant_id="7", name="Grace", email="grace@example.com")
    assert external_id.startswith("email-") and "grace" not in external_id
    account = asapp_emulator.account(RECORDING, external_id)
    assert account.committed_bytes == len(expected) and account.sha256 == hashlib.sha256(expected).hexdigest()
    transcripts = [e for e in events.events if isinstance(e, TranscriptEvent)]
    assert len(transcripts) == n_transcripts
    assert all(t.participant.role == "agent" and t.participant.id == "7" for t in transcripts)
    assert transcripts[0].payload.start == 30.0
    assert any(isinstance(e, StreamSummaryEvent) for e in events.events)
    assert relay.metric("relay_asapp_transcripts_total") == n_transcripts
