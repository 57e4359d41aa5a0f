"""The consumer SDK: the relay's events from Redis as typed models, live or from the log.

* :class:`RelayClient` (:mod:`relay.client.live`): the live stream, from Redis pub/sub; it fills
  a lost subscription's gap from the log.
* :class:`RelayLog` (:mod:`relay.client.log`): the durable per-meeting log: replay a meeting,
  follow it from a saved position, follow every meeting from a :class:`Checkpoint`; a consumer is
  told (:class:`~relay.errors.LogError`) when history is trimmed or lost.

It imports only the schema, the channel names and the errors (and :mod:`relay.core.backoff`), so
a consumer gets no part of the server (``tests/test_client_light.py``).
"""

from relay.client.live import RelayClient, subscription_patterns
from relay.client.log import (
    Checkpoint,
    LogFollower,
    Page,
    RelayLog,
    check_position,
    decode_entry,
    is_log_lost,
    parse_position,
    read,
    read_page,
    read_since,
)
from relay.client.workers import ClaimTiming, Meeting, MeetingHandler, MeetingReleased, Progress, WorkerGroup

__all__ = [
    "Checkpoint",
    "ClaimTiming",
    "LogFollower",
    "Meeting",
    "MeetingHandler",
    "MeetingReleased",
    "Page",
    "Progress",
    "RelayClient",
    "RelayLog",
    "WorkerGroup",
    "check_position",
    "decode_entry",
    "is_log_lost",
    "parse_position",
    "read",
    "read_page",
    "read_since",
    "subscription_patterns",
]
