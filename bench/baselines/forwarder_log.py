"""The no-parse forwarder that also keeps a log: each raw frame ``XADD``-ed to a Stream, then published.

The baseline for the relay with its durable log on (the default): the same work on Redis' side, an
append and a publish per event (here to one stream, ``MAXLEN ~`` bounded: without parsing it cannot
know the meeting), and nothing checked, parsed, normalized or made idempotent. Compared with
:mod:`bench.baselines.forwarder`, it shows what keeping a log costs any Python stack on this machine.
"""

from __future__ import annotations

from typing import Any

from bench.baselines._serve import arguments, serve
from bench.baselines.forwarder import CHANNEL, Forwarder

STREAM = "relay:log:{forward}"


class LoggingForwarder(Forwarder):
    def write(self, pipe: Any, item: bytes | str) -> None:
        pipe.xadd(STREAM, {"e": item}, maxlen=100_000, approximate=True)
        pipe.publish(CHANNEL, item)


if __name__ == "__main__":
    args = arguments(__doc__ or "")
    serve(LoggingForwarder(args.redis_url, args.token), args.port)
