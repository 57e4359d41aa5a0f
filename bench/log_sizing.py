"""The durable log's cost: Redis memory per meeting-hour, and how fast one meeting-hour replays.

``python -m bench log`` builds meeting-hours of the relay's real events, through the real parser
and publisher, into a private ``redis-server``:

* **A meeting-hour**: four participants taking turns; each utterance of ~12 words (about 5 s of
  speech) is streamed by Recall as a partial per word and a final, framed by ``speech_on`` and
  ``speech_off``; a chat message every 5 minutes. That is ~720 utterances: ~12,000 text events an
  hour, the Recall real-time API's transcript cadence (partials on, the default of most
  transcription providers it fronts). Their frames are built with relay/dev/recall_frames.py and
  parsed by :class:`relay.providers.recall.parse.RecallParser`, so the bodies are what the relay
  logs.
* **Memory**: ``MEMORY USAGE`` (all samples) of each meeting's log and session hash, and the growth
  of ``used_memory`` over ``meetings`` meeting-hours; both per meeting-hour.
* The same **without partials** (``[log] partials = false``).
* **Replay**: :meth:`relay.client.RelayLog.replay` of one meeting-hour, events/s (parsing each into
  its typed model, as a consumer gets them).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import redis as sync_redis
import redis.asyncio as aioredis

from relay.channels import ChannelScheme, LogKeys
from relay.client import RelayLog
from relay.core.event_log import LogConfig
from relay.core.metrics import RelayMetrics
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.dev import recall_frames as frames
from relay.providers.recall.parse import RecallParser
from relay.schema import utc_now

WORDS = "so the plan for next quarter is to ship the relay log and then the cluster work".split()


def meeting_hour_frames(seed: int, minutes: float = 60.0) -> list[str]:
    """The Recall frames of one meeting of ``minutes`` (see the module docstring)."""
    rng = random.Random(seed)
    bot = frames.BotIdentity.create(rng)
    people = [frames.participant(100 + i, f"Person {i}", email=f"p{i}@example.com") for i in range(4)]
    out = [frames.encode(frames.participant_event(bot, "join", who, 0.5 * i)) for i, who in enumerate(people)]
    t, chat_at = 2.0, 300.0
    while t < minutes * 60:
        who = rng.choice(people)
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 16))]
        spoken = frames.words_at(" ".join(words), t)
        out.append(frames.encode(frames.participant_event(bot, "speech_on", who, t)))
        for n in range(1, len(spoken) + 1):
            out.append(frames.encode(frames.transcript(bot, who, spoken[:n], partial=True)))
        out.append(frames.encode(frames.transcript(bot, who, spoken)))
        t = spoken[-1][2] or t
        out.append(frames.encode(frames.participant_event(bot, "speech_off", who, t)))
        if t >= chat_at:
            out.append(frames.encode(frames.chat_message(bot, who, "the deck is in the channel", t)))
            chat_at += 300.0
        t += rng.uniform(0.3, 1.5)
    return out


async def _publish(url: str, meetings: list[list[str]], log: LogConfig) -> list[str]:
    """Parse and publish every meeting's frames through the real publisher; their session ids."""
    publisher = EventPublisher(url, RelayMetrics(), PublisherConfig(log=log), ChannelScheme())
    publisher.start()
    sessions = []
    for meeting in meetings:
        parser = RecallParser()
        for frame in meeting:
            for record in parser.feed_records(frame, utc_now()):
                await publisher.publish(record)
        assert parser.session is not None
        sessions.append(parser.session.id)
    await publisher.aclose(timeout=60)
    return sessions


async def _replay_rate(url: str, session: str) -> tuple[int, float]:
    async with RelayLog(url) as log:
        start = time.perf_counter()
        n = 0
        async for _ in log.replay(session):
            n += 1
        return n, time.perf_counter() - start


def run(redis_url: str, meetings: int = 5, minutes: float = 60.0) -> dict[str, Any]:
    built = [meeting_hour_frames(seed, minutes) for seed in range(meetings)]
    result = _measure(redis_url, built, minutes, LogConfig())
    # ``[log] partials = false``: the finals (and everything else) only.
    without = _measure(redis_url, built, minutes, LogConfig(partials=False))["summary"]
    result["summary"]["without_partials"] = {k: without[k] for k in (
        "events_per_meeting_hour", "bytes_per_event", "mib_per_meeting_hour_keys", "mib_per_meeting_hour_used_memory")}
    return result


def _measure(redis_url: str, built: list[list[str]], minutes: float, log: LogConfig) -> dict[str, Any]:
    meetings = len(built)
    client = sync_redis.Redis.from_url(redis_url)
    client.flushdb()
    before = int(client.info("memory")["used_memory"])
    sessions = asyncio.run(_publish(redis_url, built, log))
    after = int(client.info("memory")["used_memory"])
    keys = LogKeys()
    per_meeting = []
    for session in sessions:
        log_bytes = int(client.memory_usage(keys.log(session), samples=0) or 0)
        hash_bytes = int(client.memory_usage(keys.session(session), samples=0) or 0)
        per_meeting.append({"entries": client.xlen(keys.log(session)), "log_bytes": log_bytes, "session_hash_bytes": hash_bytes})
    client.close()
    replayed, seconds = asyncio.run(_replay_rate(redis_url, sessions[0]))
    hours = minutes / 60.0
    entries = sum(m["entries"] for m in per_meeting) / len(per_meeting)
    key_bytes = sum(m["log_bytes"] + m["session_hash_bytes"] for m in per_meeting) / len(per_meeting)
    return {
        "workload": "log",
        "params": {"meetings": meetings, "minutes": minutes, "partials": log.partials},
        "runs": per_meeting,
        "summary": {
            "events_per_meeting_hour": round(entries / hours),
            "bytes_per_event": round(key_bytes / entries, 1),
            "mib_per_meeting_hour_keys": round(key_bytes / hours / 2**20, 2),
            "mib_per_meeting_hour_used_memory": round((after - before) / meetings / hours / 2**20, 2),
            "replay_events": replayed,
            "replay_s": round(seconds, 3),
            "replay_events_per_s": round(replayed / seconds),
        },
    }
