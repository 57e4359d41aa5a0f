"""The discard server: accepts WebSocket frames and drops them.

Run against it, the load generator shows its own ceiling, so a result can say that the
generator was not the bottleneck. Same server stack as the baselines (uvicorn), bare ASGI.
"""

from __future__ import annotations

from typing import Any

from bench.baselines._serve import arguments, serve


async def discard(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] == "websocket.receive":
        pass


if __name__ == "__main__":
    args = arguments(__doc__ or "")
    serve(discard, args.port)
