"""Fixtures of the fault tests: relay processes, and the figures each test measures.

A test records what it measured (events lost, seconds to recover, memory) with
``figures.record(...)``; pytest prints every figure in a "reliability figures" section at the end
of the run, which is where the numbers in ``docs/reliability.md`` come from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from relay.dev.local_redis import free_port
from tests.conftest import RECALL_TOKEN
from tests.reliability.processes import RelayProcess

_FIGURES = pytest.StashKey[list[tuple[str, str, float | str, str]]]()


@dataclass
class Figures:
    """What one test measured, for the end-of-run summary."""

    test: str
    rows: list[tuple[str, str, float | str, str]] = field(default_factory=list)

    def record(self, name: str, value: float | str, unit: str = "") -> None:
        self.rows.append((self.test, name, value, unit))


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    found = Figures(request.node.nodeid)
    yield found
    request.config.stash.setdefault(_FIGURES, []).extend(found.rows)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(_FIGURES, [])
    if not rows:
        return
    terminalreporter.section("reliability figures")
    for test, name, value, unit in rows:
        shown = f"{value:g}" if isinstance(value, float | int) else value
        terminalreporter.write_line(f"{test}: {name} = {shown} {unit}".rstrip())


@pytest.fixture
def relay_processes(redis_url: str) -> Iterator[Any]:
    """``relay_processes(port=None, **env)`` starts a :class:`RelayProcess` (on a free port unless
    given one) and waits until it is ready; every process still running is killed at teardown."""
    started: list[RelayProcess] = []

    def start(port: int | None = None, **env: str) -> RelayProcess:
        proc = RelayProcess(port or free_port(), redis_url, RECALL_TOKEN, **env)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.close()
