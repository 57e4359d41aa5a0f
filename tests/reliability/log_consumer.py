"""A consumer process for the resume fault test: follows every meeting from a saved checkpoint.

``python -m tests.reliability.log_consumer REDIS_URL OUT CHECKPOINT``: each event it handles is
appended to ``OUT`` as a JSON line (``id``, ``session``, ``log_id``, ``type``), *then* the
follower's checkpoint is saved to ``CHECKPOINT`` (written aside and renamed, so a kill never
leaves half of one). A kill between the two re-delivers that event on restart: at least once,
which the test dedupes by id. A kill mid-line leaves a torn last line, cut off at start.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson

from relay.client import Checkpoint, RelayLog


def _truncate_torn_line(path: Path) -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with path.open("r+b") as f:
            f.truncate(end)


async def main(url: str, out_path: Path, checkpoint_path: Path) -> None:
    _truncate_torn_line(out_path)
    start = Checkpoint.from_json(checkpoint_path.read_bytes()) if checkpoint_path.exists() else None
    aside = checkpoint_path.with_suffix(".tmp")
    async with RelayLog(url, block_ms=200) as log:
        follower = log.follow_all(from_=start)
        with out_path.open("ab") as out:
            print("following", flush=True)
            async for event in follower:
                out.write(orjson.dumps({"id": event.id, "session": event.session.id, "log_id": event.log_id,
                                        "type": event.type}) + b"\n")  # fmt: skip
                out.flush()
                aside.write_bytes(follower.checkpoint.to_json())
                os.replace(aside, checkpoint_path)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
