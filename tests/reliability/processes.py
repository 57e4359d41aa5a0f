"""Relay processes for fault tests: start, wait until ready, signal, read memory and metrics.

Each :class:`RelayProcess` is a real ``python -m tests.reliability.serve`` process (a whole relay on a
``SO_REUSEPORT`` socket), so several can share one port like replicas behind one address, and a test
can SIGTERM one of them or read its resident memory from ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


class RelayProcess:
    """One relay process; ``env`` adds ``RELAY_*`` settings to the test's defaults."""

    def __init__(self, port: int, redis_url: str, token: str, **env: str) -> None:
        self.port = port
        base = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        self.env = {
            **base,
            "RELAY_SERVER_PORT": str(port),
            "RELAY_REDIS_URL": redis_url,
            "RELAY_REDIS_START_LOCAL": "false",
            "RELAY_RECALL_TOKENS": token,
            "RELAY_SERVER_ACCESS_LOG": "false",
            **env,
        }
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._exited = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def start(self, timeout: float = 30.0) -> RelayProcess:
        """Start the process and wait for its ``relay ready`` log line."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.serve"],
            cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, name=f"relay {self.port} stderr", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        if not self._ready.wait(timeout):
            raise TimeoutError(f"relay process did not become ready in {timeout} s:\n{self.stderr}")
        # "relay ready" is logged by the lifespan, just before uvicorn starts listening.
        while not self.listening():
            if self.returncode is not None:
                raise RuntimeError(f"relay process exited with {self.returncode}:\n{self.stderr}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"relay process did not listen in {timeout} s:\n{self.stderr}")
            time.sleep(0.01)
        return self

    def listening(self) -> bool:
        """Whether this process (not another on the same port) has a listening socket on the port."""
        needle = f":{self.port:04X} 00000000:0000 0A "
        with open("/proc/net/tcp") as f:
            inodes = {line.split()[9] for line in f if needle in line}
        try:
            fds = os.listdir(f"/proc/{self.pid}/fd")
        except FileNotFoundError:
            return False
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
        return False

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self.lines.append(line)
            if "relay ready" in line:
                self._ready.set()
        self._ready.set()  # exited: stop any waiter
        self._exited.set()

    def terminate(self) -> None:
        """SIGTERM: the graceful drain."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for exit and for the last log line; returns the exit status."""
        assert self._proc is not None
        code = self._proc.wait(timeout)
        self._exited.wait(5)
        return code

    def rss_bytes(self) -> int:
        """Resident memory now (``VmRSS`` in ``/proc/<pid>/status``)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def metrics(self) -> str:
        """``/metrics`` text. With several processes on the port it is whichever one answers:
        call it while this process is the only one listening."""
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5, trust_env=False).text

    def close(self) -> None:
        """Kill whatever is still running (test teardown)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        if self._proc is not None and self._proc.stderr is not None:
            if self._reader is not None:
                self._reader.join(5)
            self._proc.stderr.close()


def metric_value(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
