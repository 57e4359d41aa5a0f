"""Servers embedded in a program leave its signals alone: a SIGINT reaches the program's handler
while the relay and both emulators go on serving (``relay demo`` decides what stops, and when)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette

from relay.dev.embedded import AppServer


@pytest.fixture
async def program_handles_sigint() -> AsyncIterator[asyncio.Event]:
    """The program's own SIGINT handler (as the demo installs it); the event it sets."""
    loop = asyncio.get_running_loop()
    got = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, got.set)
    yield got
    loop.remove_signal_handler(signal.SIGINT)


async def _sigint_reaches_the_program(got: asyncio.Event, servers: list[Any]) -> None:
    before = signal.getsignal(signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)
    async with asyncio.timeout(5):
        await got.wait()
    assert signal.getsignal(signal.SIGINT) is before
    assert [server.should_exit for server in servers] == [False] * len(servers)


async def test_app_server_and_emulators_leave_sigint_to_the_program(
    program_handles_sigint: asyncio.Event, asapp_emulator: Any, videodb_emulator: Any
) -> None:
    async with AppServer(Starlette()) as app_server:
        servers = [app_server._server, asapp_emulator._server._server, videodb_emulator._server._server]
        await _sigint_reaches_the_program(program_handles_sigint, servers)


async def test_an_embedded_relay_leaves_sigint_to_the_program(
    program_handles_sigint: asyncio.Event, start_relay: Any
) -> None:
    relay = await start_relay()
    await _sigint_reaches_the_program(program_handles_sigint, [relay.server])
