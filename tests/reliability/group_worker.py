"""``python -m tests.reliability.group_worker URL GROUP CONSUMER CLAIM_IDLE_S``: one worker of a group.

A real process, so the fault test can SIGKILL it mid-meeting. It prints ``ready`` once its group
exists, then one JSON line per event as its handler handles it (flushed before the next event is
asked for, so every line is an event handled before the checkpoint can move past it).
"""

from __future__ import annotations

import asyncio
import sys

import orjson

from relay.client import Meeting, WorkerGroup


async def main(url: str, group: str, consumer: str, claim_idle_s: float) -> None:
    async def handle(meeting: Meeting) -> None:
        async for event in meeting:
            line = {"w": consumer, "s": meeting.session, "id": event.id, "log_id": event.log_id, "type": event.type}
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
            sys.stdout.flush()

    async with WorkerGroup(url, group=group, consumer=consumer, claim_idle_s=claim_idle_s, block_s=0.05,
                           start="earliest", max_meetings=8) as workers:  # fmt: skip
        print("ready", flush=True)
        await workers.run(handle)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
