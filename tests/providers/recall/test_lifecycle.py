"""A meeting's lifecycle end to end: a Recall bot connects to a real relay, talks, leaves; the
meeting's log opens with ``session.started`` and closes with ``session.ended``, and the sessions
index knows it (short grace set through the ``[log]`` settings)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis.asyncio as aioredis

from relay.channels import LOG_FIELD, LogKeys
from tests.providers.recall.test_ingress import RECORDING, open_bot, transcript

KEYS = LogKeys()


async def logged(redis: aioredis.Redis, key: str) -> list[dict[str, Any]]:
    return [orjson.loads(fields[LOG_FIELD.encode()]) for _, fields in await redis.xrange(key)]


async def test_a_meeting_log_starts_with_session_started_and_ends_with_session_ended(
    start_relay: Any, redis_client: aioredis.Redis
) -> None:
    relay = await start_relay(log={"end_grace_s": 0.5})
    ws = await open_bot(relay.recall_url())
    for n in range(3):
        await ws.send(transcript(f"line {n}"))
    await ws.close()

    async with asyncio.timeout(15):
        while not (events := await logged(redis_client, KEYS.log(RECORDING))) or events[-1]["type"] != "session.ended":
            await asyncio.sleep(0.05)
    assert [e["type"] for e in events] == ["session.started", *["transcript.final"] * 3, "session.ended"]
    assert [e["payload"]["text"] for e in events[1:-1]] == ["line 0", "line 1", "line 2"]
    started, ended = events[0], events[-1]
    assert started["session"]["id"] == RECORDING and started["session"]["bot_id"] == "bot-1"
    assert ended["payload"]["reason"] == "disconnected"
    assert ended["payload"]["started"] == started["payload"]["started"]
    assert await redis_client.zscore(KEYS.sessions, RECORDING) is not None
    assert [e["type"] for e in await logged(redis_client, KEYS.sessions_log)] == ["session.started", "session.ended"]
    assert 0 < await redis_client.ttl(KEYS.log(RECORDING)) <= 86_400
