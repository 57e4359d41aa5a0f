"""``relay demo`` as a person runs it: a process that shows events from every provider and, when
its time is up or on SIGINT/SIGTERM, exits 0 with every process it started gone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.dev.local_redis import free_port


def child_processes(pid: int) -> dict[int, str]:
    """Live children of ``pid``, each with its start time (to tell a reused pid apart)."""
    children: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            stat = Path(f"/proc/{child}/stat").read_text()
            children[int(child)] = stat.rsplit(")", 1)[1].split()[19]  # field 22: starttime
    return children


def still_running(children: dict[int, str]) -> list[int]:
    alive = []
    for pid, started in children.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[19] == started and fields[0] != "Z":
            alive.append(pid)
    return alive


@contextlib.contextmanager
def running_demo(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``relay demo`` as a subprocess; killed if a test leaves it running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    # Nothing answers here, so the demo starts (and must stop) a private redis-server.
    env["RELAY_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay.tools.cli", "demo", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60.0) -> list[str]:
    """stderr lines up to and including the first containing ``marker``."""
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    pytest.fail(f"no {marker!r} from the demo; stderr so far: {''.join(lines)}")


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the demo did not exit; stderr: {err}")


def event_lines(out: str, source: str) -> list[str]:
    return [line for line in out.splitlines() if line[13:].startswith(source)]


def test_demo_shows_every_provider_and_exits_0_leaving_no_process() -> None:
    with running_demo("--duration", "4", "--bots", "1") as proc:
        banner = read_until(proc, "simulated Recall bot")
        assert any("started a private redis-server" in line for line in banner), banner
        children = child_processes(proc.pid)
        assert children, "the private redis-server should be the demo's child"
        out, err = finish(proc)
    assert proc.returncode == 0, err
    recall = event_lines(out, "recall")
    assert any("participant.join" in line for line in recall), out
    assert any("transcript.final" in line for line in recall), out
    # ASAPP transcribed the bots' audio through the relay's bridge; VideoDB played its capture session.
    assert any("transcript.final" in line for line in event_lines(out, "asapp")), out
    assert any("transcript.final" in line for line in event_lines(out, "videodb")), out
    assert "audio.chunk" not in out  # media only with --media
    assert "events shown" in err and "Traceback" not in err
    assert still_running(children) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_demo_stops_cleanly_on_a_signal(sig: signal.Signals) -> None:
    with running_demo("--bots", "1", "--json") as proc:
        read_until(proc, "simulated Recall bot")
        children = child_processes(proc.pid)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # an event arrived: the demo is in full swing
        assert '"schema_version":1' in first
        proc.send_signal(sig)
        out, err = finish(proc)
    assert proc.returncode == 0, err
    assert "stopping" in err and "Traceback" not in err
    assert still_running(children) == []
