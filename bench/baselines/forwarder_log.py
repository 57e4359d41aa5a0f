"""The no-parse forwarder that also keeps a log: each raw frame ``XADD``-ed to a Stream, then published.

The baseline for the relay with its durable log on (the default): the same work on Redis' side, an
append and a publish per event (here to one stream, ``MAXLEN ~`` bounded: without parsing it cannot
know the meeting), and nothing checked, parsed, normalized or made idempotent. Compared with
:mod:`bench.baselines.forwarder`, it shows what keeping a log costs any Python stack on this machine.
"""

from __future__ import annotations

from redis.asyncio import Redis

from bench.baselines._serve import arguments, serve
from bench.baselines.forwarder import CHANNEL, Forwarder

STREAM = "relay:log:{forward}"


class LoggingForwarder(Forwarder):
    async def _drain(self, redis: Redis) -> None:
        queue, batch = self._queue, self._batch
        while True:
            items = [await queue.get()]
            while len(items) < batch and not queue.empty():
                items.append(queue.get_nowait())
            async with redis.pipeline(transaction=False) as pipe:
                for item in items:
                    pipe.xadd(STREAM, {"e": item}, maxlen=100_000, approximate=True)
                    pipe.publish(CHANNEL, item)
                await pipe.execute()


if __name__ == "__main__":
    args = arguments(__doc__ or "")
    serve(LoggingForwarder(args.redis_url, args.token), args.port)
