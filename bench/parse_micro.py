"""Microbenchmark of the Recall parser's CPU cost per event: ``python -m bench.parse_micro``.

No sockets, no Redis, no other process: one :class:`~relay.providers.recall.parse.RecallParser`
parses the same frame over and over (as one connection does during a flood, so its session and
participant caches are warm), and the script prints microseconds per event for

* ``transcript``: the ``transcript.data`` frame of the flood (``bench.loadgen.templates
  ("transcript", 0)`` with its marker placeholder filled in);
* ``audio``: the ``audio_separate_raw.data`` frame of the audio workload (``templates("audio", 0)``,
  20 ms of PCM);
* ``join``: a ``participant_events.join`` frame of the same bot;

each for ``parse`` alone (:meth:`~RecallParser.feed_records`) and ``parse+json`` (that, then
:meth:`~relay.schema.EventRecord.to_json` of every record: what the relay does per frame before
publishing), plus ``orjson.loads`` of the frame as a floor. Each figure is the best of 5 ``timeit``
repeats (the least disturbed by the rest of the machine), so compare figures from the same machine.

Options: ``--number N`` (calls per repeat, default 20000), ``--repeat R`` (default 5).
"""

from __future__ import annotations

import argparse
import random
import timeit
from collections.abc import Callable
from datetime import datetime, timezone

import orjson

from bench import loadgen, marker
from relay.dev import recall_frames as frames
from relay.providers.recall.parse import RecallParser


def sample_frames() -> dict[str, str]:
    """The frames measured, by name: the ones the benchmark workloads send, marker filled in."""
    import base64

    mark = marker.make(1_700_000_000_000_000_000, 0, 1)
    before, after = loadgen.templates("transcript", 0)
    transcript = before + mark.decode() + after
    before, after = loadgen.templates("audio", 0)
    audio = before + base64.b64encode(mark).decode() + after
    # The same bot and speaker as loadgen's frames (loadgen.templates builds them this way).
    bot = frames.BotIdentity.create(random.Random(0))
    join = frames.encode(frames.participant_event(bot, "join", frames.participant(100, "Speaker 0"), 1.0))
    return {"transcript": transcript, "audio": audio, "join": join}


def measure(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best of ``repeat`` runs of ``number`` calls, in microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def run(number: int = 20_000, repeat: int = 5) -> dict[str, dict[str, float]]:
    now = datetime.now(timezone.utc)
    results: dict[str, dict[str, float]] = {}
    for name, text in sample_frames().items():
        parser = RecallParser()
        feed = parser.feed_records
        feed(text, now)  # warm the connection's caches, as every frame after the first finds them

        def parse_only() -> object:
            return feed(text, now)

        def parse_json() -> object:
            return [r.to_json() for r in feed(text, now)]

        def loads() -> object:
            return orjson.loads(text)

        results[name] = {
            "bytes": len(text),
            "orjson.loads": measure(loads, number, repeat),
            "parse": measure(parse_only, number, repeat),
            "parse+json": measure(parse_json, number, repeat),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.parse_micro", description=__doc__.split("\n")[0])
    ap.add_argument("--number", type=int, default=20_000, help="calls per repeat")
    ap.add_argument("--repeat", type=int, default=5, help="repeats; the best is reported")
    args = ap.parse_args(argv)
    results = run(args.number, args.repeat)
    print(f"{'frame':<12}{'bytes':>7}{'orjson.loads':>14}{'parse':>9}{'parse+json':>12}   (µs/event, best of {args.repeat})")
    for name, r in results.items():
        print(f"{name:<12}{r['bytes']:>7}{r['orjson.loads']:>14.2f}{r['parse']:>9.2f}{r['parse+json']:>12.2f}")


if __name__ == "__main__":
    main()
