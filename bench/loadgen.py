"""The load generator: simulated Recall bots in a process of their own.

Each load-generator process connects its share of the bots (:class:`~relay.providers.recall.
simulator.SimulatedBot`, real WebSocket clients), reports that they are connected, waits for the
common start time, then sends documented frames (built once by :mod:`relay.dev.recall_frames`,
with a :mod:`bench.marker` spliced in per frame) until the run's deadline, and reports what it sent.

Kinds of load:

* ``transcript``: ``transcript.data`` frames, at ``rate`` per bot per second, or as fast as the
  socket takes them when ``rate`` is 0 (flood);
* ``audio``: ``audio_separate_raw.data`` frames of 20 ms of 16 kHz PCM at ``rate`` per bot;
* ``idle``: connect, stay quiet for the run, close.

Everything is bounded: a bot stops at the deadline (or after ``max_events``), and the process exits.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from bench import marker

Kind = Literal["transcript", "audio", "idle"]


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One load-generator process's share of a run."""

    url: str
    kind: Kind
    first_bot: int
    bots: int
    rate: float  # frames per second per bot; 0 = as fast as possible
    duration_s: float
    max_events: int = 10_000_000  # per bot: a bound even for a flood
    connect_concurrency: int = 64


def templates(kind: Kind, bot: int) -> tuple[str, str]:
    """The text before and after the marker in one bot's frames (documented frame shapes)."""
    from relay.dev import recall_frames as frames

    identity = frames.BotIdentity.create(random.Random(bot))
    who = frames.participant(100 + bot % 7, f"Speaker {bot % 7}")
    if kind == "audio":
        pcm = marker.PLACEHOLDER + frames.tone_pcm(20)[marker.SIZE :]
        text = frames.encode(frames.audio_separate(identity, who, pcm, 1.0))
        placeholder = marker.B64_PLACEHOLDER.decode()
    else:
        words = frames.words_at(f"{marker.PLACEHOLDER.decode()} the quick brown fox jumps over", 1.0)
        text = frames.encode(frames.transcript(identity, who, words))
        placeholder = marker.PLACEHOLDER.decode()
    before, after = text.split(placeholder, 1)
    return before, after


async def _run(spec: LoadSpec, ready: Any, go: Any, start_at: Any) -> dict[str, Any]:
    import base64

    from relay.dev.recall_simulator import SimulatedBot

    gate = asyncio.Semaphore(spec.connect_concurrency)
    bots: list[SimulatedBot] = []
    failed = 0

    async def open_one() -> None:
        nonlocal failed
        bot = SimulatedBot(spec.url, open_timeout=120)
        async with gate:
            try:
                await bot.connect()
            except Exception:
                failed += 1
                return
        bots.append(bot)

    await asyncio.gather(*(open_one() for _ in range(spec.bots)))
    # Every bot's frame template is built before the start: building them at the start (~0.1 ms
    # each) made thousands of bots' first frames late and loaded the CPU the target shares.
    shapes = [templates(spec.kind, spec.first_bot + index) for index in range(len(bots))]
    ready.put(("ready", len(bots), failed))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.wait)
    begin = start_at.value
    deadline = begin + spec.duration_s
    await asyncio.sleep(max(0.0, begin - time.time()))

    sent = 0
    behind_max = 0.0  # how late a paced frame left, in seconds: the generator's own lag
    errors = 0
    audio = spec.kind == "audio"
    interval = 1.0 / spec.rate if spec.rate > 0 else 0.0

    async def run_bot(index: int, bot: SimulatedBot) -> None:
        nonlocal sent, behind_max, errors
        number = spec.first_bot + index
        before, after = shapes[index]
        next_at = begin + interval * index / max(len(bots), 1)  # paced bots spread over one interval
        seq = 0
        while seq < spec.max_events:
            now = time.time()
            if interval:
                if next_at >= deadline:
                    break
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                else:
                    behind_max = max(behind_max, now - next_at)
                next_at += interval
            elif now >= deadline:
                break
            mark = marker.make(time.time_ns(), number, seq)
            middle = base64.b64encode(mark).decode() if audio else mark.decode()
            try:
                await bot.send(before + middle + after)
            except Exception:
                errors += 1
                return
            seq += 1
            sent += 1
            if not interval and seq % 16 == 0:
                await asyncio.sleep(0)  # a flooding bot lets the others (and the clock) in

    if spec.kind == "idle":
        await asyncio.sleep(max(0.0, deadline - time.time()))
    else:
        await asyncio.gather(*(run_bot(i, b) for i, b in enumerate(bots)))
    ended = time.time()
    await asyncio.gather(*(b.close() for b in bots), return_exceptions=True)
    return {"connected": len(bots), "connect_failed": failed, "sent": sent, "send_errors": errors,
            "began": begin, "ended": ended, "behind_max_s": round(behind_max, 4)}  # fmt: skip


def process_main(spec: LoadSpec, ready: Any, go: Any, start_at: Any, out: Any) -> None:
    """Entry point of one load-generator process (``multiprocessing``, spawn context)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        result = asyncio.run(_run(spec, ready, go, start_at))
    except BaseException as exc:  # report instead of hanging the parent
        ready.put(("error", 0, repr(exc)))
        result = {"error": repr(exc), "spec": asdict(spec)}
    out.put(result)
