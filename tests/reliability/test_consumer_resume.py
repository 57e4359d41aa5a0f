"""A consumer SIGKILLed ten times during a 60 s, 10-meeting run, restarted from its saved checkpoint.

Ten simulated bots stream transcripts into a real relay for 60 s, then leave. A consumer process
(tests/reliability/log_consumer.py) follows every meeting with ``RelayLog.follow_all`` and saves
its checkpoint after each event; it is SIGKILLed at random moments, ten times, and restarted from
whatever checkpoint it had saved. After dedupe by event id, it must have handled every event of
every meeting's log exactly once, in log order, each meeting from ``session.started`` to
``session.ended``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from relay.channels import LOG_FIELD, LogKeys
from relay.dev import recall_frames as frames
from tests.reliability.processes import ROOT

MEETINGS = 10
RUN_S = float(os.environ.get("RELAY_TEST_RESUME_RUN_S", "60"))
KILLS = 10


def start_consumer(url: str, out: Path, checkpoint: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.log_consumer", url, str(out), str(checkpoint)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"following\n"  # its follower exists: it reads from here on
    return proc


def handled(out: Path) -> list[dict]:  # type: ignore[type-arg]
    lines = out.read_bytes().split(b"\n") if out.exists() else []
    found = []
    for line in lines:
        try:
            found.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass  # the torn last line of a kill (the consumer cuts it off on restart)
    return found


async def test_a_consumer_killed_ten_times_resumes_every_meeting_exactly_once_after_dedupe(
    redis_url, redis_client: aioredis.Redis, start_relay, recall_bot, tmp_path: Path, figures
) -> None:
    relay = await start_relay(log={"end_grace_s": 1.0})
    out, checkpoint = tmp_path / "handled.jsonl", tmp_path / "checkpoint.json"
    consumer = await asyncio.to_thread(start_consumer, redis_url, out, checkpoint)
    bots = [await recall_bot(relay.recall_url()) for _ in range(MEETINGS)]
    alice = frames.participant(100, "Alice")
    sent = [0] * MEETINGS
    until = time.monotonic() + RUN_S

    async def meeting(i: int) -> None:
        await bots[i].join(alice)
        while time.monotonic() < until:
            await bots[i].transcript(alice, f"utterance {sent[i]}")
            sent[i] += 1
            await asyncio.sleep(0.05)
        await bots[i].leave(alice)
        await bots[i].close()

    meetings = asyncio.gather(*(meeting(i) for i in range(MEETINGS)))
    rng = random.Random(14)
    kills = 0
    try:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.3, 1.6) * RUN_S / KILLS)
            consumer.send_signal(signal.SIGKILL)
            await asyncio.to_thread(consumer.wait)
            kills += 1
            consumer = await asyncio.to_thread(start_consumer, redis_url, out, checkpoint)
        await meetings
        sessions = [bot.identity.recording_id for bot in bots]
        # Each meeting ends after the grace; the consumer then handles its session.ended.
        async with asyncio.timeout(60):
            while sum(e["type"] == "session.ended" for e in handled(out)) < MEETINGS:
                await asyncio.sleep(0.1)
    finally:
        consumer.kill()
        consumer.wait()
    events = handled(out)
    unique = list({e["id"]: e for e in reversed(events)}.values())[::-1]  # first occurrence of each id
    figures.record("consumer kills", kills)
    figures.record("events handled (with re-deliveries)", len(events))
    figures.record("re-deliveries after kills", len(events) - len(unique))
    keys = LogKeys()
    for session in sessions:
        logged = [entry_id.decode() for entry_id, _ in await redis_client.xrange(keys.log(session))]
        first = orjson.loads((await redis_client.xrange(keys.log(session), count=1))[0][1][LOG_FIELD.encode()])
        assert first["type"] == "session.started"
        got = [e["log_id"] for e in unique if e["session"] == session]
        assert got == logged, session  # every entry once, in log order
        assert [e["type"] for e in unique if e["session"] == session][-1] == "session.ended"
    assert len(unique) == sum(sent) + 4 * MEETINGS  # the transcripts, and per meeting: started, join, leave, ended
