"""The durable per-meeting log, as the publisher writes it: one Redis script call per session and batch.

Pub/sub keeps nothing for a consumer that is away; so every text event is also appended to its
session's Stream (``<prefix>:log:{<session>}``, :class:`relay.channels.LogKeys`) in the order the
relay publishes it. The publisher groups each batch's events by session (and kind: text or media,
whose logs differ) and sends each group as one script call, which logs and publishes them in order,
atomically::

    EVALSHA <sha> 2 <log key> <session key>  <maxlen> <producer field> <splice>  (<channel> <seq> <body>)...

For each event, in order:

* **XADD** ``<log key> MAXLEN ~ <maxlen> * e <body>``: Redis gives the entry id, so any number of
  relay processes may write one session's log (a bot that moved, several workers) and the ids stay
  ordered. Trimming with ``~`` removes whole radix-tree nodes only: cheap, and a little more than
  ``maxlen`` may be kept.
* **PUBLISH** ``<channel>`` the body with ``"log_id":"<entry id>"`` added as its last field (when
  ``splice`` is 1), so a live consumer knows where each message sits in the log and can fill a gap
  from it. The body the relay packs never has ``log_id`` (:meth:`relay.schema.EventBase.to_json`).
* An event with ``seq`` 0 is not logged (media while the media log is off, partials while
  ``partials`` is off): it is only published, in its place among the others.

**Why groups.** A script call costs Redis about 2.5 us before it does anything, as much as the XADD
and the PUBLISH together (measured with redis-server 7.0: 7.5 us an event called one by one, 4.5 at
25 a call). Redis' one core is shared with the relay and the consumers, so that is throughput.
Grouping keeps each session's order; events of different sessions in one batch may go out in
another order than they were accepted, which no consumer can tell from the order within sessions.

**Idempotent re-sends.** The publisher re-sends a batch whose replies it did not get (Redis failed
mid-batch), so some of its groups may already be in the log. Each event carries the publisher's
``seq``, which only grows, in the order the publisher sends; the script keeps the last ``seq`` per
producer (random per process) and kind in the session's hash (field ``producer:<id>``, and
``producer:<id>:m`` for media) and skips, log and live message both, an event at or below it. A
group runs whole or not at all, and a re-sent batch goes out before anything newer
(relay/core/publisher.py), so order is kept.

**Without ``log_id`` in live messages** (``live_log_id = false``) no script is needed: each logged
event is a plain ``XADD`` followed by its ``PUBLISH`` (:func:`xadd_head`), about half the Redis CPU
of the script (bench/NOTES.md). What that gives up: the live message has no ``log_id``; a batch
re-sent after a failure mid-batch may append an event twice (readers drop repeats by ``id``); and
an XADD refused (a key of another type) fails the link like any error reply.

The script replies ``1``, or, when an XADD failed (the key holds another type), a status reply
``log:<how many>:<error>``; those events are still published live, and
:class:`~relay.core.redis_link.RedisPublishLink` passes the reply on
(``relay_redis_errors_total{operation="log_append"}``, and a log line) instead of failing the link:
re-sending cannot fix a wrong key type, and failing would stop every session's events over one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from relay.core.redis_link import pack_command

__all__ = [
    "LOG_SCRIPT", "LOG_SCRIPT_SHA", "LogConfig", "group_head", "group_prefix", "load_script_command", "pack_entry",
    "xadd_head",
]  # fmt: skip

LOG_SCRIPT: Final = b"""\
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
local top, failed, err = last, 0, nil
for i = 4, #ARGV, 3 do
  local channel, seq, body = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if seq == 0 then
    redis.call('PUBLISH', channel, body)
  elseif seq > last then
    top = seq
    local ok, id = pcall(redis.call, 'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', body)
    if not ok then
      failed, err = failed + 1, id
      redis.call('PUBLISH', channel, body)
    elseif ARGV[3] == '1' then
      redis.call('PUBLISH', channel, string.sub(body, 1, -2) .. ',"log_id":"' .. id .. '"}')
    else
      redis.call('PUBLISH', channel, body)
    end
  end
end
if top > last then redis.call('HSET', KEYS[2], ARGV[2], top) end
if failed > 0 then return {ok = 'log:' .. failed .. ':' .. tostring(err.err or err)} end
return 1
"""

#: What ``SCRIPT LOAD`` answers for :data:`LOG_SCRIPT`, and what ``EVALSHA`` names it by.
LOG_SCRIPT_SHA: Final = hashlib.sha1(LOG_SCRIPT).hexdigest().encode()


@dataclass(frozen=True, slots=True)
class LogConfig:
    """What the publisher needs to write the log (``[log]`` settings, relay/server/settings.py)."""

    #: Text events into ``<prefix>:log:{<session>}``, bounded by ``max_entries``.
    max_entries: int = 100_000
    #: Audio and video too, into ``<prefix>:medialog:{<session>}``, bounded by ``media_max_entries``.
    media: bool = False
    media_max_entries: int = 6_000
    #: Add ``log_id`` to the live message (the script); off: plain XADD + PUBLISH (see above).
    live_log_id: bool = True
    #: Log ``transcript.partial`` too. Partials repeat the words their final will carry (a word
    #: more each), so they are most of a meeting's log (bench/log_sizing.py); a log kept for the
    #: whole meeting rarely needs them. Off: they go out live only (without ``log_id``).
    partials: bool = True


def load_script_command() -> bytes:
    """``SCRIPT LOAD`` of the log script: sent when the publisher's link connects (Redis may have
    restarted and forgotten it)."""
    return pack_command(b"SCRIPT", b"LOAD", LOG_SCRIPT)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def group_head(log_key: str, session_key: str, max_entries: int, producer_field: str, splice: bool) -> bytes:
    """Everything of a group's ``EVALSHA`` after its array header that its session and kind fix, in
    RESP: the publisher caches it per route and writes :func:`group_prefix` before it and
    :func:`pack_entry` per event after it."""
    parts = (log_key.encode(), session_key.encode(), b"%d" % max_entries, producer_field.encode(), b"1" if splice else b"0")
    return b"$7\r\nEVALSHA\r\n$40\r\n" + LOG_SCRIPT_SHA + b"\r\n$1\r\n2\r\n" + b"".join(map(_bulk, parts))


def group_prefix(events: int) -> bytes:
    """The RESP array header of a group of ``events``: 8 fixed parts and 3 per event."""
    return b"*%d\r\n" % (8 + 3 * events)


def pack_entry(channel_bulk: bytes, seq: int, body: bytes) -> list[bytes]:
    """One event of a group: its channel (already a RESP bulk string), ``seq`` (0: publish only) and body."""
    digits = b"%d" % seq
    return [channel_bulk, b"$%d\r\n%s\r\n$%d\r\n" % (len(digits), digits, len(body)), body, b"\r\n"]


def xadd_head(log_key: str, max_entries: int) -> bytes:
    """``XADD <log key> MAXLEN ~ <max_entries> * e`` in RESP, up to the body's bulk string: a logged
    event's first command when ``live_log_id`` is off."""
    parts = (b"XADD", log_key.encode(), b"MAXLEN", b"~", b"%d" % max_entries, b"*", b"e")
    return b"*8\r\n" + b"".join(map(_bulk, parts))
