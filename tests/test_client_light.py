"""The consumer SDK stays light: importing ``relay.client`` (or the package's public API) loads no
part of the server, no provider, and none of the server's dependencies.

Each check runs in a fresh interpreter, so what this test session imported does not hide a heavy
import. redis-py itself imports hiredis when it is installed (its parser of choice), so hiredis is
judged against a plain ``import redis.asyncio``: the relay must add nothing of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("prometheus_client", "uvicorn", "starlette", "httptools", "uvloop", "soxr", "numpy", "websockets", "hiredis")
SERVER = ("relay.core.publisher", "relay.core.redis_link", "relay.core.metrics", "relay.providers", "relay.server", "relay.dev", "relay.tools")

PROBE = """
import json, sys
import redis.asyncio
before = set(sys.modules)
import {module}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def newly_imported(module: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY or any(m == s or m.startswith(s + ".") for s in SERVER)]


@pytest.mark.parametrize("module", ["relay.client", "relay"])
def test_importing_the_client_loads_nothing_of_the_server(module: str) -> None:
    loaded = newly_imported(module)
    assert "relay.client" in loaded  # the probe saw the import
    assert heavy(loaded) == []


def test_the_probe_sees_a_heavy_import() -> None:
    assert "relay.core.publisher" in heavy(newly_imported("relay.core.publisher"))
