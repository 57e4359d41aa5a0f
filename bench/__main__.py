"""``python -m bench <workload> [options]``: run one workload (or ``all``), save and print its result.

    python -m bench flood        # 20 bots, transcripts flat out; plus the generator vs a discard server
    python -m bench capacity     # most bots at 2 events/s with zero loss and p99 < 50 ms
    python -m bench latency      # 1,000 events/s steady: p50/p99
    python -m bench audio        # most bots x 50 buffers/s of 20 ms in real time
    python -m bench idle         # RSS per idle connection
    python -m bench scaling      # flood on 1 vs 2 relay processes (SO_REUSEPORT)
    python -m bench asapp        # the ASAPP bridge's CPU per stream (relay with the bridge on vs off)
    python -m bench log          # the durable log: Redis memory per meeting-hour, replay speed
    python -m bench all          # all of the above, then docs/performance.md (python -m bench.report)

Each writes ``bench/results/<workload>.json`` and prints its summary (ratios against the baselines).
``--quick`` shrinks every workload to seconds, for trying the bench out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import machine, workloads
from bench.harness import ROOT, Bench

RESULTS = ROOT / "bench" / "results"
WORKLOADS = ("flood", "capacity", "latency", "audio", "idle", "scaling", "asapp", "log")
QUICK: dict[str, dict[str, Any]] = {
    "flood": {"bots": 4, "duration_s": 2, "repeats": 1},
    "capacity": {"duration_s": 3, "start": 50, "maximum": 200, "time_cap_s": 30},
    "latency": {"bots": 20, "rate": 10, "duration_s": 2},
    "audio": {"duration_s": 2, "start": 10, "maximum": 40, "time_cap_s": 30},
    "idle": {"bots": 100},
    "scaling": {"bots": 4, "duration_s": 2},
    "asapp": {"bots": 2, "duration_s": 3},
    "log": {"meetings": 1, "minutes": 5.0},
}


def save(result: dict[str, Any], tag: str | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["machine"] = machine.describe()
    path = RESULTS / f"{result['workload']}{'-' + tag if tag else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


#: ``python -m bench.profile`` runs that ``all`` adds for the report: flood, paced audio, 5,000 bots.
PROFILES: tuple[tuple[str, ...], ...] = (
    (),
    ("--kind", "audio", "--bots", "400", "--rate", "50", "--duration", "6", "--save-as", "profile-audio"),
    ("--bots", "5000", "--rate", "2", "--duration", "8", "--save-as", "profile-capacity"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=(*WORKLOADS, "all"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    parser.add_argument("--bots", type=int, help="flood/latency/idle/scaling: number of bots")
    parser.add_argument("--duration", type=float, help="seconds of load per run")
    parser.add_argument("--maximum", type=int, help="capacity/audio: largest N to try")
    parser.add_argument("--time-cap", type=float, help="capacity/audio: seconds per target for the search")
    parser.add_argument("--targets", help="comma-separated subset of relay,relay-nolog,relay-plainlog,relay-bridges,handwritten,forwarder,forwarder-log (relay-nolog: the durable log off; relay-plainlog: live_log_id off)")
    parser.add_argument("--loadgen-procs", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument("--relay-src", type=Path, help="run the relay from this directory (e.g. a `git archive` of a commit)")
    parser.add_argument("--tag", help="save as bench/results/<workload>-<tag>.json (kept out of the report)")
    args = parser.parse_args(argv)
    if args.relay_src is not None:
        args.relay_src = args.relay_src.resolve()
        sys.path.insert(0, str(args.relay_src))

    chosen = WORKLOADS if args.workload == "all" else (args.workload,)
    with Bench(loadgen_procs=args.loadgen_procs, relay_src=args.relay_src) as bench:
        for name in chosen:
            options: dict[str, Any] = dict(QUICK[name]) if args.quick else {}
            if args.bots is not None and name in ("flood", "latency", "idle", "scaling", "asapp"):
                options["bots"] = args.bots
            if args.duration is not None and name != "idle":
                options["duration_s"] = args.duration
            if args.maximum is not None and name in ("capacity", "audio"):
                options["maximum"] = args.maximum
            if args.time_cap is not None and name in ("capacity", "audio"):
                options["time_cap_s"] = args.time_cap
            if args.targets and name not in ("scaling", "asapp"):
                options["targets"] = tuple(args.targets.split(","))
            print(f"== {name} {options or ''}", flush=True)
            result = getattr(workloads, name)(bench, **options)
            if args.relay_src is not None:
                result["relay_src"] = str(args.relay_src)
            path = save(result, args.tag)
            print(json.dumps(result["summary"], indent=2), flush=True)
            print(f"-> {path.relative_to(ROOT)}", flush=True)
    if args.workload == "all":
        from bench import profile, report

        if not args.quick:  # the page's profile sections (py-spy), as bench/README.md lists them
            relay_src = ["--relay-src", str(args.relay_src)] if args.relay_src is not None else []
            for profile_args in PROFILES:
                print(f"== profile {' '.join(profile_args)}", flush=True)
                profile.main([*profile_args, *relay_src])
        report.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
