"""``relay replay`` and ``relay tail --from-start`` against a real redis-server: the meeting from its
log, clear exit statuses for every way the log cannot give it, never a hang."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import orjson
import pytest
import redis

from relay.channels import LOG_FIELD, ChannelScheme, LogKeys
from relay.core.event_log import LogConfig
from relay.core.metrics import RelayMetrics
from relay.core.publisher import EventPublisher, PublisherConfig
from relay.schema import EventBase, EventTime, SessionLifecycle, SessionLifecycleEvent, SessionRef, Transcript, TranscriptEvent, utc_now
from relay.tools.cli import main
from relay.tools.tail import EXIT_BAD_POSITION, EXIT_NO_HISTORY

KEYS = LogKeys()


def transcript(n: int, session: str = "rec-1") -> TranscriptEvent:
    return TranscriptEvent(source="recall", type="transcript.final", session=SessionRef(id=session),
                           time=EventTime(received=utc_now()), payload=Transcript(text=f"t{n}", is_final=True))  # fmt: skip


def ended(session: str = "rec-1") -> SessionLifecycleEvent:
    return SessionLifecycleEvent(source="recall", type="session.ended", session=SessionRef(id=session),
                                 time=EventTime(received=utc_now()), payload=SessionLifecycle(reason="disconnected"))  # fmt: skip


@pytest.fixture
def sync_redis(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def append(client: redis.Redis, *events: EventBase, **xadd: object) -> list[str]:
    return [client.xadd(KEYS.log(e.session.id), {LOG_FIELD: e.to_json()}, **xadd).decode() for e in events]  # type: ignore[arg-type]


def replay(redis_url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict], str]:
    started = time.monotonic()
    status = main(["replay", "--redis-url", redis_url, *args])
    assert time.monotonic() - started < 15  # never a hang
    out, err = capsys.readouterr()
    return status, [orjson.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_replay_prints_the_meeting_and_exits_at_the_end(redis_url, sync_redis, capsys) -> None:
    ids = append(sync_redis, *(transcript(n) for n in range(5)))  # no session.ended: a live meeting
    status, lines, _ = replay(redis_url, capsys, "rec-1", "--json")
    assert status == 0
    assert [x["payload"]["text"] for x in lines] == ["t0", "t1", "t2", "t3", "t4"]
    assert [x["log_id"] for x in lines] == ids
    status, lines, _ = replay(redis_url, capsys, "rec-1", "--json", "--from", ids[2])
    assert status == 0 and [x["payload"]["text"] for x in lines] == ["t3", "t4"]


def test_replay_renders_lines_for_people(redis_url, sync_redis, capsys) -> None:
    append(sync_redis, transcript(1))
    assert main(["replay", "--redis-url", redis_url, "rec-1"]) == 0
    out, err = capsys.readouterr()
    assert "transcript.final" in out and out.rstrip().endswith("t1") and "1 events" in err


@pytest.mark.parametrize("position", ["yesterday", "12", "1-2-3"])
def test_a_bad_position_exits_2(redis_url, sync_redis, capsys, position) -> None:
    append(sync_redis, transcript(1))
    status, lines, err = replay(redis_url, capsys, "rec-1", "--from", position)
    assert status == EXIT_BAD_POSITION and lines == [] and "not a log position" in err


def test_a_session_without_a_log_exits_3(redis_url, sync_redis, capsys) -> None:
    status, _, err = replay(redis_url, capsys, "nobody")
    assert status == EXIT_NO_HISTORY and "SessionNotFound" in err and "nobody" in err


def test_trimmed_history_exits_3_unless_partial_is_allowed(redis_url, sync_redis, capsys) -> None:
    sync_redis.config_set("stream-node-max-entries", 10)
    sync_redis.config_set("stream-node-max-bytes", 0)
    try:
        ids = append(sync_redis, *(transcript(n) for n in range(35)), maxlen=20, approximate=True)
    finally:
        sync_redis.config_set("stream-node-max-entries", 100)
        sync_redis.config_set("stream-node-max-bytes", 4096)
    for args in (("rec-1",), ("rec-1", "--from", ids[2])):
        status, lines, err = replay(redis_url, capsys, *args)
        assert status == EXIT_NO_HISTORY and "HistoryTrimmed" in err and lines == []
    status, lines, _ = replay(redis_url, capsys, "rec-1", "--from", ids[2], "--json", "--allow-partial")
    assert status == 0 and lines[0]["payload"]["text"] == "t10" and len(lines) == 25


def test_lost_history_exits_3(redis_url, sync_redis, capsys) -> None:
    old = append(sync_redis, transcript(1), transcript(2))
    sync_redis.delete(KEYS.log("rec-1"))
    append(sync_redis, transcript(3), id=f"{int(old[-1].split('-')[0]) + 1000}-0")
    status, _, err = replay(redis_url, capsys, "rec-1", "--from", old[0])
    assert status == EXIT_NO_HISTORY and "HistoryLost" in err


def test_redis_not_answering_exits_1(capsys) -> None:
    from relay.dev.local_redis import free_port

    status, _, err = replay(f"redis://127.0.0.1:{free_port()}/0", capsys, "rec-1")
    assert status == 1 and "cannot read the log" in err


# --- as processes: --follow, and tail --from-start --------------------------------------------------


def spawn(redis_url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["RELAY_REDIS_URL"] = redis_url
    return subprocess.Popen([sys.executable, "-m", "relay.tools.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)  # fmt: skip


async def finish(proc: subprocess.Popen[bytes]) -> tuple[int, list[dict]]:
    try:
        out, _ = await asyncio.wait_for(asyncio.to_thread(proc.communicate), 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, [orjson.loads(line) for line in out.splitlines()]


async def test_replay_follow_waits_for_new_entries_until_session_ended(redis_url, sync_redis) -> None:
    append(sync_redis, transcript(0))
    proc = spawn(redis_url, "replay", "rec-1", "--json", "--follow")
    assert proc.stdout is not None
    first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
    assert orjson.loads(first)["payload"]["text"] == "t0"
    append(sync_redis, transcript(1), ended())
    status, rest = await finish(proc)
    assert status == 0 and [x["type"] for x in rest] == ["transcript.final", "session.ended"]


async def test_tail_from_start_replays_then_goes_live_without_gaps_or_duplicates(redis_url, sync_redis) -> None:
    """Events keep being published, through the relay's publisher, while tail reads the log and
    subscribes: every one is shown once, in order."""
    publisher = EventPublisher(redis_url, RelayMetrics(), PublisherConfig(timeout_s=2.0, log=LogConfig()), ChannelScheme())
    publisher.start()
    sent: list[EventBase] = []
    try:
        for n in range(20):
            sent.append(transcript(n))
            await publisher.publish(sent[-1])
        await publisher.wait_done(len(sent))
        total = 400
        proc = spawn(redis_url, "tail", "--session", "rec-1", "--from-start", "--json", "--count", str(total))
        assert proc.stderr is not None
        subscribed = asyncio.ensure_future(asyncio.to_thread(proc.stderr.readline))
        published_when_subscribed = None
        for n in range(20, total):  # paced, so that tail subscribes part-way through
            sent.append(transcript(n))
            await publisher.publish(sent[-1])
            await asyncio.sleep(0.005)
            if published_when_subscribed is None and subscribed.done():
                published_when_subscribed = len(sent)
        assert (await subscribed).startswith(b"subscribed to ")
        # The boundary fell inside the run: some events came from the log, later ones live.
        assert published_when_subscribed is not None and published_when_subscribed < total
        status, lines = await finish(proc)
    finally:
        await publisher.aclose(timeout=5)
    assert status == 0
    assert [x["id"] for x in lines] == [e.id for e in sent]


async def test_tail_from_start_needs_a_session(redis_url) -> None:
    proc = spawn(redis_url, "tail", "--from-start")
    status, _ = await finish(proc)
    assert status == 2
