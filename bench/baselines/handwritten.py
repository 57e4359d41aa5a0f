"""The hand-written glue: a Starlette WebSocket route, ``json.loads``, one awaited ``PUBLISH`` per message.

This is the relay a team writes in an afternoon, and what the relay has to beat: it checks the
token, parses each frame with the standard library, picks the fields a consumer needs, and awaits
one ``PUBLISH`` per message on a shared ``redis.asyncio`` client (so a slow Redis slows the socket).

The client's pool blocks when all its connections are busy: with redis-py's default pool, a few
hundred bots make ``publish`` raise ``MaxConnectionsError`` and the handler dies, losing events
(what a first version of such glue does); the bench measures the version that survives.
"""

from __future__ import annotations

import json

from redis.asyncio import BlockingConnectionPool, Redis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.baselines._serve import arguments, serve


def create_app(redis_url: str, token: str) -> Starlette:
    redis = Redis(connection_pool=BlockingConnectionPool.from_url(redis_url, max_connections=100))

    async def recall(websocket: WebSocket) -> None:
        if websocket.query_params.get("token") != token:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        try:
            while True:
                message = json.loads(await websocket.receive_text())
                data = message.get("data", {})
                bot = data.get("bot", {}).get("id", "unknown")
                event = message.get("event", "unknown")
                body = json.dumps({"source": "recall", "type": event, "bot": bot,
                                   "recording": data.get("recording", {}).get("id"), "payload": data.get("data")})  # fmt: skip
                await redis.publish(f"relay:events:recall:{bot}:{event}", body)
        except WebSocketDisconnect:
            pass

    return Starlette(routes=[WebSocketRoute("/recall/", recall), WebSocketRoute("/recall", recall)])


if __name__ == "__main__":
    args = arguments(__doc__ or "")
    serve(create_app(args.redis_url, args.token), args.port)
