"""``relay tail``: the renderer on every event kind, and the command as a process against real Redis."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from datetime import datetime, timezone

import orjson
import redis.asyncio as aioredis
from rich.console import Console

from relay.channels import ChannelScheme
from relay.schema import (
    Alert,
    AlertEvent,
    AudioChunk,
    AudioChunkEvent,
    ChatMessage,
    ChatMessageEvent,
    EventBase,
    EventTime,
    Generic,
    GenericEvent,
    Participant,
    ParticipantChange,
    ParticipantEvent,
    SessionRef,
    StreamError,
    StreamErrorEvent,
    Transcript,
    TranscriptEvent,
    VideoFrame,
    VideoFrameEvent,
    parse_event,
)
from relay.tools.tail import EventPrinter, render, summarize

WHEN = EventTime(received=datetime(2026, 11, 25, 20, 1, 2, 345000, tzinfo=timezone.utc))
ADA = Participant(id="100", name="Ada Lovelace")


def event(cls: type[EventBase], type_: str, payload: object, *, source: str = "recall", session: str = "rec-1",
          participant: Participant | None = ADA) -> EventBase:  # fmt: skip
    return cls(source=source, type=type_, session=SessionRef(id=session), participant=participant, time=WHEN, payload=payload)


def plain(e: EventBase) -> str:
    return render(e).plain


def test_render_shows_time_source_session_type_speaker_and_text() -> None:
    line = plain(event(TranscriptEvent, "transcript.final", Transcript(text="hello there", is_final=True)))
    assert line.startswith("20:01:02.345 recall  rec-1")
    assert "transcript.final" in line and line.endswith("Ada Lovelace: hello there")
    long_session = plain(event(ChatMessageEvent, "chat.message", ChatMessage(text="hi"), session="x" * 40))
    assert "xxxxxxxxxxx…" in long_session and "x" * 13 not in long_session


def test_summaries_of_every_kind_never_carry_base64() -> None:
    cases = {
        "speech on": event(ParticipantEvent, "participant.speech_on", ParticipantChange(action="speech_on")),
        "mixed 20 ms, 640 B": event(AudioChunkEvent, "audio.chunk",
                                    AudioChunk(mix="mixed", audio="QUJD" * 200, bytes=640, duration_ms=20)),  # fmt: skip
        "separate 20 ms, 0 B (silent)": event(AudioChunkEvent, "audio.chunk",
                                              AudioChunk(mix="separate", audio="", bytes=0, duration_ms=20)),  # fmt: skip
        "png webcam 1200 B": event(VideoFrameEvent, "video.frame",
                                   VideoFrame(codec="png", stream="webcam", image="iVBO" * 300, bytes=1200)),  # fmt: skip
        "whiteboard: triggered (0.91)": event(AlertEvent, "alert", Alert(label="whiteboard", triggered=True, confidence=0.91),
                                              source="videodb", participant=None),  # fmt: skip
        "4090 stream too long (permanent)": event(StreamErrorEvent, "stream.error",
                                                  StreamError(code="4090", message="stream too long", permanent=True),
                                                  source="asapp"),  # fmt: skip
        "(bot.status_change)": event(GenericEvent, "bot.status_change", Generic(provider_type="bot.status_change")),
    }
    for expected, e in cases.items():
        assert summarize(e) == expected
        assert "QUJD" not in plain(e) and "iVBO" not in plain(e)


def test_printer_writes_json_lines_that_parse_back() -> None:
    out = io.StringIO()
    printer = EventPrinter(json=True, out=out)
    e = event(TranscriptEvent, "transcript.partial", Transcript(text="hel", is_final=False))
    printer(e)
    printer(e)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and parse_event(lines[0]) == e and printer.shown == 2


def test_printer_renders_lines_for_people() -> None:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    EventPrinter(console=console)(event(ChatMessageEvent, "chat.message", ChatMessage(text="see the doc")))
    assert "Ada Lovelace: see the doc" in console.file.getvalue()  # type: ignore[attr-defined]


# --- the command, as a process -------------------------------------------------------------------


def spawn_tail(redis_url: str, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["RELAY_REDIS_URL"] = redis_url  # the default comes from settings, as the README says
    return subprocess.Popen(
        [sys.executable, "-m", "relay.tools.cli", "tail", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip


async def wait_subscribed(proc: subprocess.Popen[bytes]) -> str:
    """The first stderr line, which `relay tail` prints once its subscription is confirmed."""
    assert proc.stderr is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 30)
    assert line.startswith(b"subscribed to "), line
    return line.decode()


async def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    out, _ = await asyncio.wait_for(asyncio.to_thread(proc.communicate), 30)
    return proc.returncode, out.decode()


async def publish(redis: aioredis.Redis, *events: EventBase) -> None:
    for e in events:
        await redis.publish(ChannelScheme().channel(e), e.model_dump_json())


async def test_tail_json_filters_and_exits_after_count(redis_url: str, redis_client: aioredis.Redis) -> None:
    proc = spawn_tail(redis_url, "--json", "--source", "recall", "--type", "transcript.*", "--count", "2")
    try:
        line = await wait_subscribed(proc)
        assert "relay:events:recall:*:transcript.*" in line
        chat_event = event(ChatMessageEvent, "chat.message", ChatMessage(text="not a transcript"))
        other = event(TranscriptEvent, "transcript.final", Transcript(text="from asapp", is_final=True), source="asapp")
        first = event(TranscriptEvent, "transcript.partial", Transcript(text="one", is_final=False))
        second = event(TranscriptEvent, "transcript.final", Transcript(text="one two", is_final=True))
        await publish(redis_client, chat_event, other, first, first, second)  # the repeat is deduplicated
        status, out = await finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 0
    assert [orjson.loads(x)["payload"]["text"] for x in out.splitlines()] == ["one", "one two"]


async def test_tail_pretty_with_media_and_session(redis_url: str, redis_client: aioredis.Redis) -> None:
    proc = spawn_tail(redis_url, "--session", "rec-9", "--media", "--count", "2")
    try:
        await wait_subscribed(proc)
        audio = event(AudioChunkEvent, "audio.chunk", AudioChunk(mix="mixed", audio="AAAA", bytes=3, duration_ms=0.1),
                      session="rec-9")  # fmt: skip
        await publish(
            redis_client,
            event(ChatMessageEvent, "chat.message", ChatMessage(text="other meeting"), session="rec-8"),
            audio,
            event(ChatMessageEvent, "chat.message", ChatMessage(text="our meeting"), session="rec-9"),
        )
        status, out = await finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 2 and "audio.chunk" in lines[0] and lines[1].endswith("Ada Lovelace: our meeting")


async def test_tail_stops_cleanly_on_sigint(redis_url: str) -> None:
    proc = spawn_tail(redis_url)
    try:
        await wait_subscribed(proc)
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        status, _ = await finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 0


async def test_tail_says_why_when_redis_does_not_answer(redis_url: str) -> None:
    from relay.dev.local_redis import free_port

    proc = spawn_tail(f"redis://127.0.0.1:{free_port()}/0")
    _, err = await asyncio.wait_for(asyncio.to_thread(proc.communicate), 30)
    assert proc.returncode == 1 and b"cannot subscribe at redis://127.0.0.1:" in err
