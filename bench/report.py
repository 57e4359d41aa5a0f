"""``python -m bench.report``: regenerate ``docs/performance.md`` and ``docs/performance.png``.

Reads the latest result of each workload from ``bench/results/`` (``python -m bench all`` writes
them), the profile summary (``python -m bench.profile``) and the analysis in ``bench/NOTES.md``,
and writes the table, the plot and the hardware the figures came from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.harness import ROOT

RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
PLOT = ROOT / "docs" / "performance.png"
NOTES = ROOT / "bench" / "NOTES.md"
TARGETS = ("relay", "handwritten", "forwarder")
#: Frames every sample passes through (process start, the server's run loop): not worth a row.
_BOILERPLATE = ("<frozen runpy>", "relay/tools/cli.py:", "uvicorn/server.py:", "uvicorn/_compat.py:", "asyncio/runners.py:Runner.run",
                "relay/server/serve.py:run", "multiprocessing/", "asyncio/base_events.py:")  # fmt: skip


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ratio(a: Any, b: Any, invert: bool = False) -> str:
    if not a or not b:
        return "–"
    return f"{(b / a if invert else a / b):.2f}×"


def rows(results: dict[str, dict[str, Any] | None]) -> list[list[str]]:
    """Table rows: workload, metric, relay, handwritten, forwarder, relay÷handwritten, relay÷forwarder, target, met."""
    out: list[list[str]] = []

    def add(workload: str, metric: str, values: dict[str, Any], target: str, met: Any, lower_better: bool = False, digits: int = 1) -> None:
        r, h, f = (values.get(t) for t in TARGETS)
        out.append([workload, metric, _fmt(r, digits), _fmt(h, digits), _fmt(f, digits),
                    _ratio(r, h, lower_better), _ratio(r, f, lower_better), target, _fmt(met)])  # fmt: skip

    if flood := results.get("flood"):
        s = flood["summary"]
        met = s["targets_met"]
        add("flood", f"events/s ({flood['params']['bots']} bots; median of {flood['params'].get('repeats', 1)} runs)",
            {t: s.get(t, {}).get("events_per_s") for t in TARGETS},
            "≥ 2.5× handwritten, ≥ 1.0× forwarder", met["flood >= 2.5x handwritten"] and met["flood >= 1.0x forwarder"])  # fmt: skip
        add("flood", "target CPU µs/event", {t: s.get(t, {}).get("cpu_us_per_event") for t in TARGETS}, "", None, lower_better=True)
        if bridges := s.get("relay-bridges"):
            out.append(["flood", "events/s with the ASAPP bridge on, no meeting bridged", _fmt(bridges.get("events_per_s")),
                        "", "", "", _ratio(bridges.get("events_per_s"), s.get("forwarder", {}).get("events_per_s")),
                        f"≥ 0.9× relay (is {_fmt(s.get('bridges_vs_relay'), 2)}×), ≥ 1.0× forwarder",
                        _fmt(met.get("bridges on >= 0.9x relay") and met.get("bridges on >= 1.0x forwarder", True))])  # fmt: skip
        out.append(["flood", "load generator vs discard server (events/s)", _fmt(s.get("loadgen_ceiling_per_s")), "", "",
                    "", "", f"headroom {_fmt(s.get('loadgen_headroom'), 2)}× over the fastest target", ""])  # fmt: skip
    if cap := results.get("capacity"):
        s = cap["summary"]
        add("capacity", "max bots at 2 ev/s, 0 loss, p99 < 50 ms", {t: s.get(t, {}).get("max_bots") for t in TARGETS},
            "≥ 5,000", s["targets_met"][next(iter(s["targets_met"]))])  # fmt: skip
    if lat := results.get("latency"):
        s = lat["summary"]
        add("latency", f"p50 ms at {lat['params']['events_per_s']:g} ev/s", {t: s.get(t, {}).get("p50_ms") for t in TARGETS},
            "", None, lower_better=True, digits=2)  # fmt: skip
        add("latency", f"p99 ms at {lat['params']['events_per_s']:g} ev/s", {t: s.get(t, {}).get("p99_ms") for t in TARGETS},
            "< 2 ms", s["targets_met"][next(iter(s["targets_met"]))], lower_better=True, digits=2)  # fmt: skip
    if au := results.get("audio"):
        s = au["summary"]
        add("audio", "max bots × 50 buffers/s in real time", {t: s.get(t, {}).get("max_bots") for t in TARGETS},
            f"≥ 400 (generator alone: {_fmt(s.get('discard', {}).get('max_bots'))})", s["targets_met"][next(iter(s["targets_met"]))])  # fmt: skip
    if idle := results.get("idle"):
        s = idle["summary"]
        add("idle", f"RSS KB per idle connection ({idle['params']['bots']:,} bots)",
            {t: s.get(t, {}).get("rss_per_connection_kb") for t in TARGETS}, "≤ 15 KB",
            s["targets_met"][next(iter(s["targets_met"]))], lower_better=True)  # fmt: skip
    if sc := results.get("scaling"):
        s = sc["summary"]
        out.append(["scaling", "flood events/s, 1 → 2 relay processes",
                    f"{_fmt(s.get('workers_1', {}).get('events_per_s'))} → {_fmt(s.get('workers_2', {}).get('events_per_s'))}",
                    "", "", "", "", f"speedup {_fmt(s.get('speedup_2_over_1'), 2)}×", ""])  # fmt: skip
    if asapp := results.get("asapp"):
        s = asapp["summary"]
        out.append(["asapp", f"bridge CPU per stream, % of a core ({asapp['params']['bots']} streams, audio 50 buffers/s)",
                    _fmt(s.get("cpu_per_stream_pct_of_core"), 2), "", "", "", "",
                    f"≈ {_fmt(s.get('streams_per_core'))} streams per core; {_fmt(s.get('asapp_events_published'))} ASAPP events published", ""])  # fmt: skip
    return out


def plot(results: dict[str, dict[str, Any] | None], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"relay": "#2a6fdb", "handwritten": "#d95f02", "forwarder": "#7570b3"}
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    panels = [
        ("flood", "flood: events/s (higher is better)", lambda s, t: s.get(t, {}).get("events_per_s")),
        ("flood", "flood: target CPU µs per event (lower is better)", lambda s, t: s.get(t, {}).get("cpu_us_per_event")),
        ("capacity", "capacity: bots at 2 ev/s, p99<50 ms", lambda s, t: s.get(t, {}).get("max_bots")),
        ("latency", "latency, steady load: p99 ms (lower is better)", lambda s, t: s.get(t, {}).get("p99_ms")),
        ("audio", "audio: bots × 50 buffers/s in real time", lambda s, t: s.get(t, {}).get("max_bots")),
        ("idle", "idle: RSS KB per connection (lower is better)", lambda s, t: s.get(t, {}).get("rss_per_connection_kb")),
    ]  # fmt: skip
    for ax, (name, title, get) in zip(axes.flat, panels, strict=True):
        ax.set_title(title, fontsize=10)
        result = results.get(name)
        if not result:
            ax.text(0.5, 0.5, "not run", ha="center", va="center")
            continue
        values = [get(result["summary"], t) or 0 for t in TARGETS]
        bars = ax.bar(TARGETS, values, color=[colors[t] for t in TARGETS])
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in values], fontsize=8)
        if name == "flood" and "events/s" in title:
            ceiling = result["summary"].get("loadgen_ceiling_per_s")
            if ceiling:
                ax.axhline(ceiling, color="grey", linestyle="--", linewidth=1)
                ax.text(2.4, ceiling, "load generator vs discard", ha="right", va="bottom", fontsize=7, color="grey")
    fig.suptitle("relay vs hand-written glue vs no-parse forwarder (same run, same load generator; shared 2-core machine)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render(results: dict[str, dict[str, Any] | None]) -> str:
    machine = next((r["machine"] for r in results.values() if r), {})
    when = sorted(r["when"] for r in results.values() if r)
    lines = [
        "# Performance",
        "",
        "<!-- generated by `python -m bench.report` (or `make bench-report`) from bench/results/*.json; do not edit -->",
        "",
        "**Read these figures as ratios.** They come from a *shared, noisy 2-core machine*: the relay, the",
        "load generator (2 processes), the counting subscriber and redis-server all run on the same two cores,",
        "while other jobs use them too. Absolute numbers move by tens of percent between runs; the ratios",
        "against the baselines, measured in the same run with the same load generator, are steadier.",
        "",
        "Reproduce: `make bench` (every workload and the profiles, then this page) or one workload: `python -m bench flood`",
        "(`capacity`, `latency`, `audio`, `idle`, `scaling`, `asapp`); `--quick` for a smoke run. See `bench/README.md`.",
        "",
        "## Results",
        "",
        "| workload | metric | relay | hand-written | forwarder | relay ÷ hand-written | relay ÷ forwarder | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    lines += [
        "",
        "Ratios are oriented so that > 1× means the relay is better (for latency, CPU and memory, the baseline's",
        "value divided by the relay's).",
        "",
        "![relay vs baselines](performance.png)",
        "",
    ]
    if NOTES.is_file():
        lines += [NOTES.read_text().rstrip(), ""]
    for profile in filter(None, (_load("profile"), _load("profile-audio"), _load("profile-capacity"))):
        p = profile["params"]
        load = "flood" if not p["rate"] else f"{p['rate']:g}/s per bot"
        lines += [f"## Profile (py-spy, relay under {p['kind']} load, {load})", "",
                  f"{profile['samples']:,} samples of the relay process at {profile['rate']} Hz with {p['bots']} bots sending "
                  f"{p['kind']} frames ({load}) at {profile['when']}; the relay did {_fmt(profile['run'].get('events_per_s'))} "
                  f"events/s at {_fmt(profile['run'].get('cpu_us_per_event'))} µs CPU/event. "
                  "Share of samples whose stack contains the function (`python -m bench.profile`):", "",
                  "| inclusive % | function |", "|---:|---|"]  # fmt: skip
        frames = [(n, pct) for n, pct in profile["inclusive"] if not n.startswith(_BOILERPLATE)]
        lines += [f"| {pct:.1f} | `{name}` |" for name, pct in frames[:22]]
        lines += ["", "Self time (the leaf frame):", "", "| self % | function |", "|---:|---|"]
        lines += [f"| {pct:.1f} | `{name}` |" for name, pct in profile["self"][:20]]
        lines.append("")
    srcs = sorted({r.get("relay_src") or "this checkout" for r in results.values() if r})
    loads = [run["load_avg_1m"] for r in results.values() if r for run in r["runs"] if "load_avg_1m" in run]
    lines += ["## Hardware", "", f"Results from {when[0] if when else '?'} to {when[-1] if when else '?'} (UTC), "
              f"checkout at commit `{machine.get('commit', '?')}`, relay from {', '.join(srcs)}."
              + (f" 1-minute load average at the start of each run: {min(loads):.1f} to {max(loads):.1f} "
                 "(2 CPUs: above 2, other jobs were competing for the cores)." if loads else ""), "",
              f"* CPU: {machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} logical CPUs (`/proc/cpuinfo`)",
              f"* Python {machine.get('python', '?')}, Linux {machine.get('kernel', '?')}, load average at the start "
              f"{', '.join(f'{x:.2f}' for x in machine.get('load_avg', []))}",
              "* Memory (`free -m`):", "", "```", machine.get("free_m", "?"), "```", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import WORKLOADS

    results = {name: _load(name) for name in WORKLOADS}
    if not any(results.values()):
        print("no results in bench/results/: run `python -m bench all` first", file=sys.stderr)
        return 1
    DOC.parent.mkdir(parents=True, exist_ok=True)
    plot(results, PLOT)
    DOC.write_text(render(results))
    print(f"wrote {DOC.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
