"""The no-parse forwarder: raw frames pipelined to Redis, nothing checked or parsed.

A rough ceiling for a Python stack, not a product: a bare ASGI WebSocket handler appends each
frame to a bounded queue, and one task drains the queue in pipelined ``PUBLISH`` batches (the
relay's publishing design without the relay's parsing, validation and normalization).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from bench.baselines._serve import arguments, serve

CHANNEL = "relay:events:forward:raw"


class Forwarder:
    def __init__(self, redis_url: str, token: str, batch: int = 500, queue: int = 10_000) -> None:
        self._redis_url = redis_url
        self._token = f"token={token}".encode()
        self._batch = batch
        self._queue: asyncio.Queue[bytes | str] = asyncio.Queue(queue)
        self._task: asyncio.Task[None] | None = None

    async def _drain(self, redis: Redis) -> None:
        queue, batch = self._queue, self._batch
        while True:
            items = [await queue.get()]
            while len(items) < batch and not queue.empty():
                items.append(queue.get_nowait())
            async with redis.pipeline(transaction=False) as pipe:
                for item in items:
                    self.write(pipe, item)
                await pipe.execute()

    def write(self, pipe: Any, item: bytes | str) -> None:
        """Queue one frame's commands on the batch's pipeline."""
        pipe.publish(CHANNEL, item)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._task = asyncio.create_task(self._drain(Redis.from_url(self._redis_url)))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._task:
                        self._task.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "websocket":
            return
        if self._token not in scope.get("query_string", b""):
            await send({"type": "websocket.close", "code": 1008})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        put = self._queue.put
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            await put(message.get("text") or message.get("bytes") or b"")


if __name__ == "__main__":
    args = arguments(__doc__ or "")
    serve(Forwarder(args.redis_url, args.token), args.port)
