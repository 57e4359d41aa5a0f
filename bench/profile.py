"""``python -m bench.profile``: where the relay's time goes under a flood, sampled by py-spy.

Starts the relay, attaches ``py-spy record`` (raw collapsed stacks) to its process, runs the flood
workload against it, and writes ``bench/results/profile.json`` (inclusive and self shares per
function) and the raw stacks as ``bench/results/profile.txt`` (feed it to any flame-graph tool).
py-spy is a bench-only dependency (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.harness import ROOT, Bench, start_target

RESULTS = ROOT / "bench" / "results"
_LINE = re.compile(r" \(([^():]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``file.py:func`` (lines merged, paths shortened)."""
    match = _LINE.search(frame)
    if not match:
        return frame.strip()
    func = frame[: match.start()].strip()
    path = match.group(1)
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    for marker in ("site-packages/", "relay/"):
        if marker in path:
            short = path.split(marker, 1)[1] if marker == "site-packages/" else "relay/" + path.split("relay/", 1)[1]
            break
    return f"{short}:{func}"


def summarize(raw: str) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    inclusive: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        self_[frames[-1]] += n
    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(v * 100 / total, 2)) for k, v in c.most_common(60)] if total else []
    return total, share(inclusive), share(self_)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bots", type=int, default=20)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--kind", choices=("transcript", "audio"), default="transcript")
    parser.add_argument("--rate", type=float, default=0.0, help="per bot; 0 = flood")
    parser.add_argument("--sample-rate", type=int, default=200)
    parser.add_argument("--relay-src", type=Path)
    parser.add_argument("--save-as", default="profile", help="result name: bench/results/<name>.json (the report shows profile, profile-audio and profile-capacity)")
    args = parser.parse_args(argv)
    spy_bin = shutil.which("py-spy")
    if spy_bin is None:
        print("py-spy is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    if args.relay_src is not None:
        args.relay_src = args.relay_src.resolve()
        sys.path.insert(0, str(args.relay_src))
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw_path = RESULTS / f"{args.save_as}.txt"
    with Bench(relay_src=args.relay_src) as bench:
        target = start_target("relay", bench.redis.url, relay_src=args.relay_src)
        try:
            spy = subprocess.Popen([spy_bin, "record", "-p", str(target.pids[0]), "-r", str(args.sample_rate),
                                    "-d", str(int(args.duration + 4)), "-f", "raw", "-o", str(raw_path), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            time.sleep(1.0)  # let py-spy attach
            run = bench.measure(target, kind=args.kind, bots=args.bots, rate=args.rate, duration_s=args.duration)
            _, err = spy.communicate(timeout=60)
        finally:
            target.stop()
    if not raw_path.is_file():
        print(f"py-spy wrote nothing: {err.decode(errors='replace')}", file=sys.stderr)
        return 1
    total, inclusive, self_ = summarize(raw_path.read_text())
    result = {"workload": "profile", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rate": args.sample_rate,
              "params": {"bots": args.bots, "duration_s": args.duration, "kind": args.kind, "rate": args.rate},
              "samples": total, "run": run, "inclusive": inclusive, "self": self_}  # fmt: skip
    (RESULTS / f"{args.save_as}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{total} samples; relay {run.get('events_per_s')} events/s, {run.get('cpu_us_per_event')} µs CPU/event")
    print("inclusive %:")
    for name, pct in inclusive[:30]:
        print(f"  {pct:6.1f}  {name}")
    print("self %:")
    for name, pct in self_[:25]:
        print(f"  {pct:6.1f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
