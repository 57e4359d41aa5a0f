"""A private ``redis-server`` process, for local runs, the demo and the test suite.

``relay serve`` starts one when nothing answers at the default Redis URL and a ``redis-server``
binary is on ``PATH``; the tests start one per session on a free port, and stop and restart it to
play Redis outages.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = (
    "install Redis (Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`) "
    "or point RELAY_REDIS_URL at a running server"
)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def redis_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something at host:port answers a Redis PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServerProcess:
    """One ``redis-server`` on 127.0.0.1, restartable on the same port; it persists nothing unless
    ``appendonly`` (AOF, fsync on every write: a restart after a kill keeps every acknowledged write)."""

    def __init__(self, port: int | None = None, binary: str | None = None, *, appendonly: bool = False) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError(f"no redis-server binary on PATH: {INSTALL_HINT}")
        self.binary = found
        self.port = port or free_port()
        self.appendonly = appendonly
        self._dir = tempfile.TemporaryDirectory(prefix="relay-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        log = Path(self._dir.name) / "redis.log"
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--dir", self._dir.name, "--logfile", str(log), "--protected-mode", "no",
        ]  # fmt: skip
        # Its own session: a Ctrl-C in the terminal goes to the relay, which still needs Redis to
        # publish what it holds; the relay stops this server itself when it is done.
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not redis_answers("127.0.0.1", self.port):
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}: {err.strip()} (see {log})")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL: an outage, not a clean shutdown) and wait for it to exit."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
