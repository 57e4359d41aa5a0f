"""The workloads: each runs the targets under one load and returns a JSON-ready result with ratios.

Every function takes a :class:`~bench.harness.Bench` (one Redis for the session) and its knobs, and
returns ``{"workload", "runs", "summary"}``; :mod:`bench.__main__` saves and prints it. The relay and
the baselines are measured in the same call, with the same load generator, one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.harness import Bench

BASELINES = ("handwritten", "forwarder")
Result = dict[str, Any]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _p99(run: Result) -> float | None:
    return (run.get("latency_ms") or {}).get("p99")


def _clean(run: Result) -> bool:
    """Everything sent arrived and every bot connected and sent without error."""
    return run.get("lost", 1) == 0 and run["connect_failed"] == 0 and run["send_errors"] == 0 and not run["errors"]


def _median_run(runs: list[Result], key: str) -> Result:
    """The run with the median ``key`` (the middle one of three): one stall does not make the figure."""
    ordered = sorted(runs, key=lambda r: r.get(key) or 0)
    return ordered[len(ordered) // 2]


def flood(bench: Bench, bots: int = 20, duration_s: float = 5.0,
          targets: Sequence[str] = ("relay", "relay-bridges", *BASELINES), repeats: int = 3) -> Result:  # fmt: skip
    """``bots`` bots send transcripts as fast as they can for ``duration_s``; events/s through Redis.

    Each target runs ``repeats`` times, interleaved (relay, baselines, relay, ...), and the median
    run counts. Also runs the load generator against the discard server: its send rate there is the
    most the generator can offer, which has to exceed every target's throughput. ``relay-bridges``
    is the relay with the ASAPP bridge on and no meeting bridged: what the bridge costs the meetings
    it does not bridge (within 10 % of the relay, and still ahead of the forwarder).
    """
    every: dict[str, list[Result]] = {t: [] for t in (*targets, "discard")}
    for _ in range(repeats):
        for t in every:
            every[t].append(bench.run_load(t, kind="transcript", bots=bots, rate=0, duration_s=duration_s))
    runs = {t: _median_run(rs, "send_rate" if t == "discard" else "events_per_s") for t, rs in every.items()}
    relay = runs.get("relay", {})
    summary = {t: {"events_per_s": r.get("events_per_s"), "cpu_us_per_event": r.get("cpu_us_per_event"),
                   "redis_cpu_us_per_event": r.get("redis_cpu_us_per_event"),
                   "lost": r.get("lost"), "p99_ms": _p99(r)} for t, r in runs.items() if t != "discard"}  # fmt: skip
    summary["loadgen_ceiling_per_s"] = runs["discard"]["send_rate"]
    for b in BASELINES:
        if b in runs and relay:
            summary[f"relay_vs_{b}"] = _ratio(relay.get("events_per_s"), runs[b].get("events_per_s"))
            summary[f"relay_vs_{b}_cpu_efficiency"] = _ratio(runs[b].get("cpu_us_per_event"), relay.get("cpu_us_per_event"))
    best = max((r.get("events_per_s") or 0) for t, r in runs.items() if t != "discard")
    summary["loadgen_headroom"] = _ratio(runs["discard"]["send_rate"], best)
    summary["targets_met"] = {
        "flood >= 2.5x handwritten": (summary.get("relay_vs_handwritten") or 0) >= 2.5,
        "flood >= 1.0x forwarder": (summary.get("relay_vs_forwarder") or 0) >= 1.0,
    }
    if "relay-nolog" in runs and relay:
        # The relay's default writes the durable log (one EVALSHA per event instead of a PUBLISH).
        summary["log_on_vs_off"] = _ratio(relay.get("events_per_s"), runs["relay-nolog"].get("events_per_s"))
        if "forwarder" in runs:
            summary["nolog_vs_forwarder"] = _ratio(runs["relay-nolog"].get("events_per_s"), runs["forwarder"].get("events_per_s"))
    if "relay-plainlog" in runs and "forwarder" in runs:
        summary["plainlog_vs_forwarder"] = _ratio(runs["relay-plainlog"].get("events_per_s"), runs["forwarder"].get("events_per_s"))
    if "forwarder-log" in runs and relay:
        # The same Redis work (an append and a publish per event) without the relay's parsing.
        summary["relay_vs_forwarder_log"] = _ratio(relay.get("events_per_s"), runs["forwarder-log"].get("events_per_s"))
        summary["targets_met"]["flood >= 1.0x forwarder-log (the same Redis work)"] = (summary["relay_vs_forwarder_log"] or 0) >= 1.0
    if "relay-bridges" in runs and relay:
        bridges = runs["relay-bridges"]
        summary["bridges_vs_relay"] = _ratio(bridges.get("events_per_s"), relay.get("events_per_s"))
        if "forwarder" in runs:
            summary["bridges_vs_forwarder"] = _ratio(bridges.get("events_per_s"), runs["forwarder"].get("events_per_s"))
        summary["targets_met"]["bridges on >= 0.9x relay"] = (summary["bridges_vs_relay"] or 0) >= 0.9
        if "forwarder" in runs:
            summary["targets_met"]["bridges on >= 1.0x forwarder"] = (summary.get("bridges_vs_forwarder") or 0) >= 1.0
    summary["all_runs_events_per_s"] = {t: [r.get("events_per_s") or r.get("send_rate") for r in rs] for t, rs in every.items()}
    return {"workload": "flood", "params": {"bots": bots, "duration_s": duration_s, "repeats": repeats},
            "runs": [r for rs in every.values() for r in rs], "summary": summary}  # fmt: skip


def latency(bench: Bench, bots: int = 100, rate: float = 10.0, duration_s: float = 10.0,
            targets: Sequence[str] = ("relay", *BASELINES)) -> Result:  # fmt: skip
    """``bots`` x ``rate`` events/s steady (1,000 events/s by default); end-to-end latency percentiles."""
    runs = {t: bench.run_load(t, kind="transcript", bots=bots, rate=rate, duration_s=duration_s) for t in targets}
    summary: dict[str, Any] = {t: {"p50_ms": (r.get("latency_ms") or {}).get("p50"), "p99_ms": _p99(r), "lost": r.get("lost")}
                               for t, r in runs.items()}  # fmt: skip
    for b in BASELINES:
        if b in runs and "relay" in runs:
            summary[f"p99_baseline_{b}_over_relay"] = _ratio(_p99(runs[b]), _p99(runs["relay"]))
    summary["targets_met"] = {"p99 < 2 ms at 1,000 events/s": (_p99(runs.get("relay", {})) or 1e9) < 2.0}
    return {"workload": "latency", "params": {"bots": bots, "rate": rate, "duration_s": duration_s,
            "events_per_s": bots * rate}, "runs": list(runs.values()), "summary": summary}  # fmt: skip


def search(bench: Bench, target: str, run: Callable[[int], Result], passes: Callable[[Result], bool], *,
           start: int, maximum: int, time_cap_s: float, precision: float = 0.1) -> tuple[int | None, list[Result]]:  # fmt: skip
    """The largest N that passes: double from ``start`` until a failure, then bisect to ``precision``.

    A failing N is run once more and fails only if both runs fail: on a shared machine one stall
    of another job's making (100 ms is common) is enough to fail a p99 of a few thousand events.
    Stops at ``maximum`` or once ``time_cap_s`` has been spent (the answer is then a lower bound).
    """
    began = time.monotonic()
    trials: list[Result] = []
    good: int | None = None
    bad: int | None = None
    n = start
    while time.monotonic() - began < time_cap_s:
        result = run(n)
        result["passed"] = passes(result)
        if not result["passed"]:
            trials.append(result)
            print(f"  {target:12s} N={n:<6d} fail   lost={result.get('lost')} p99={_p99(result)} ms: once more", flush=True)
            result = run(n)
            result["passed"] = passes(result)
        trials.append(result)
        print(f"  {target:12s} N={n:<6d} {'pass' if result['passed'] else 'FAIL'}  lost={result.get('lost')} "
              f"p99={_p99(result)} ms  sent={result['sent']}", flush=True)  # fmt: skip
        if result["passed"]:
            good = n
        else:
            bad = n
        if bad is None:
            if n >= maximum:
                break
            n = min(maximum, n * 2)
        elif good is None:
            if n <= 1:
                break
            n = max(1, n // 2)
        else:
            if bad - good <= max(1, int(good * precision)):
                break
            n = (good + bad) // 2
    return good, trials


def capacity(bench: Bench, rate: float = 2.0, duration_s: float = 8.0, start: int = 250, maximum: int = 8000,
             time_cap_s: float = 240.0, targets: Sequence[str] = ("relay", "forwarder", "handwritten")) -> Result:  # fmt: skip
    """The most bots at ``rate`` events/s each with zero loss and p99 < 50 ms, per target."""

    def passes(r: Result) -> bool:
        return _clean(r) and (_p99(r) or 1e9) < 50.0

    runs, summary = _search_each(bench, {t: passes for t in targets}, "transcript", rate, duration_s, start, maximum, time_cap_s)
    relay_best = summary.get("relay", {}).get("max_bots")
    summary["targets_met"] = {">= 5,000 bots at 2 events/s, zero loss, p99 < 50 ms": (relay_best or 0) >= 5000}
    return {"workload": "capacity", "params": {"rate": rate, "duration_s": duration_s, "start": start, "maximum": maximum,
            "time_cap_s": time_cap_s}, "runs": runs, "summary": summary}  # fmt: skip


def _search_each(
    bench: Bench, checks: dict[str, Callable[[Result], bool]], kind: str, rate: float, duration_s: float,
    start: int, maximum: int, time_cap_s: float,
) -> tuple[list[Result], dict[str, Any]]:
    """For each target, the most bots of ``kind`` at ``rate``/s that pass its check; with ratios."""
    summary: dict[str, Any] = {}
    runs: list[Result] = []
    for t, check in checks.items():
        best, trials = search(bench, t, lambda n, t=t: bench.run_load(t, kind=kind, bots=n, rate=rate,
                              duration_s=duration_s), check, start=start, maximum=maximum, time_cap_s=time_cap_s)  # fmt: skip
        runs += trials
        summary[t] = {"max_bots": best, "trials": [(r["bots"], r["passed"], _p99(r), r.get("lost")) for r in trials]}
    relay_best = summary.get("relay", {}).get("max_bots")
    for b in BASELINES:
        if b in summary:
            summary[f"relay_vs_{b}"] = _ratio(relay_best, summary[b]["max_bots"])
    return runs, summary


def audio(bench: Bench, rate: float = 50.0, duration_s: float = 5.0, start: int = 50, maximum: int = 800,
          time_cap_s: float = 180.0, targets: Sequence[str] = ("relay", "forwarder", "handwritten")) -> Result:  # fmt: skip
    """The most bots sending 20 ms audio buffers at ``rate``/s each in real time, per target.

    Real time: zero loss, the generator kept its schedule (no frame left more than 100 ms late:
    otherwise the target pushed back and the bots fell behind the meeting), and p99 < 100 ms (five
    buffers) from send to subscriber. The discard server shows the generator's own ceiling.
    """

    def passes(r: Result) -> bool:
        return _clean(r) and r["loadgen_behind_max_s"] < 0.1 and (_p99(r) or 1e9) < 100.0

    checks: dict[str, Callable[[Result], bool]] = {t: passes for t in targets}
    checks["discard"] = lambda r: r["loadgen_behind_max_s"] < 0.1 and r["send_errors"] == 0
    runs, summary = _search_each(bench, checks, "audio", rate, duration_s, start, maximum, time_cap_s)
    relay_best = summary.get("relay", {}).get("max_bots")
    summary["targets_met"] = {">= 400 bots of audio in real time, zero loss": (relay_best or 0) >= 400}
    return {"workload": "audio", "params": {"rate": rate, "duration_s": duration_s, "start": start, "maximum": maximum,
            "time_cap_s": time_cap_s}, "runs": runs, "summary": summary}  # fmt: skip


def idle(bench: Bench, bots: int = 2000, hold_s: float = 1.0, targets: Sequence[str] = ("relay", *BASELINES)) -> Result:
    """``bots`` connected, silent bots: the target's RSS growth per connection (``/proc/<pid>/status``)."""
    runs = {t: bench.run_load(t, kind="idle", bots=bots, rate=0, duration_s=hold_s) for t in targets}
    summary: dict[str, Any] = {t: {"rss_per_connection_kb": r.get("rss_per_connection_kb")} for t, r in runs.items()}
    for b in BASELINES:
        if b in runs and "relay" in runs:
            summary[f"relay_over_{b}"] = _ratio(runs["relay"].get("rss_per_connection_kb"), runs[b].get("rss_per_connection_kb"))
    summary["targets_met"] = {"<= 15 KB RSS per idle connection": (runs.get("relay", {}).get("rss_per_connection_kb") or 1e9) <= 15}
    return {"workload": "idle", "params": {"bots": bots}, "runs": list(runs.values()), "summary": summary}


def scaling(bench: Bench, bots: int = 20, duration_s: float = 5.0, workers: Sequence[int] = (1, 2)) -> Result:
    """Flood against ``relay serve --workers 1`` and ``--workers 2`` (processes sharing the port with ``SO_REUSEPORT``)."""
    runs = {k: bench.run_load(f"relay-w{k}", kind="transcript", bots=bots, rate=0, duration_s=duration_s) for k in workers}
    summary: dict[str, Any] = {f"workers_{k}": {"events_per_s": r.get("events_per_s"), "cpu_us_per_event": r.get("cpu_us_per_event"),
                               "lost": r.get("lost")} for k, r in runs.items()}  # fmt: skip
    if 1 in runs and 2 in runs:
        summary["speedup_2_over_1"] = _ratio(runs[2].get("events_per_s"), runs[1].get("events_per_s"))
    return {"workload": "scaling", "params": {"bots": bots, "duration_s": duration_s}, "runs": list(runs.values()), "summary": summary}


def asapp(bench: Bench, bots: int = 20, duration_s: float = 10.0) -> Result:
    """The ASAPP bridge's CPU per stream: ``bots`` speakers of audio (50 buffers/s) with the bridge on and off.

    Each bot is one meeting with one speaker, so one ASAPP stream (16 -> 8 kHz resampling, pacing,
    the emulator's WebSocket); the difference in the relay's CPU, divided by streams and seconds, is
    the bridge's cost per stream as a share of one core.
    """
    runs = {t: bench.run_load(t, kind="audio", bots=bots, rate=50, duration_s=duration_s) for t in ("relay", "relay-asapp")}
    off, on = runs["relay"], runs["relay-asapp"]
    per_stream = (on["target_cpu_s"] - off["target_cpu_s"]) / bots / duration_s
    summary = {
        "cpu_s_bridge_off": off["target_cpu_s"], "cpu_s_bridge_on": on["target_cpu_s"],
        "cpu_per_stream_pct_of_core": round(per_stream * 100, 2),
        "streams_per_core": round(1 / per_stream) if per_stream > 0 else None,
        "asapp_events_published": on.get("unmarked"), "lost": {t: r.get("lost") for t, r in runs.items()},
    }  # fmt: skip
    return {"workload": "asapp", "params": {"bots": bots, "duration_s": duration_s}, "runs": list(runs.values()), "summary": summary}


def log(bench: Bench, meetings: int = 5, minutes: float = 60.0) -> Result:
    """The durable log's Redis memory per meeting-hour and the replay speed of one (bench/log_sizing.py)."""
    from bench import log_sizing

    return log_sizing.run(bench.redis.url, meetings=meetings, minutes=minutes)
