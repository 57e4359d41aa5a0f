"""The durable per-meeting log, as the publisher writes it: one Redis script call per event.

Pub/sub keeps nothing for a consumer that is away; so every text event is also appended to its
session's Stream (``<prefix>:log:{<session>}``, :class:`relay.channels.LogKeys`) in the order the
relay publishes it. One script call per event does both, atomically::

    EVALSHA <sha> 2 <log key> <session key>  <channel> <maxlen> <producer> <splice>  <seq> <body>

* **XADD** ``<log key> MAXLEN ~ <maxlen> * e <body>``: Redis gives the entry id, so any number of
  relay processes may write one session's log (a bot that moved, several workers) and the ids stay
  ordered. Trimming with ``~`` removes whole radix-tree nodes only: cheap, and a little more than
  ``maxlen`` may be kept.
* **PUBLISH** ``<channel>`` the body with ``"log_id":"<entry id>"`` added as its last field (when
  ``splice`` is 1), so a live consumer knows where each message sits in the log and can fill a gap
  from it. The body the relay packs never has ``log_id`` (:meth:`relay.schema.EventBase.to_json`).
* **Idempotent re-sends.** The publisher re-sends a batch whose replies it did not get (Redis
  failed mid-batch), so some of its events may already be in the log. Each event carries the
  publisher's ``producer`` id (random per process) and a ``seq`` that only grows, in the order the
  publisher sends; the script keeps the last ``seq`` per producer in the session's hash (field
  ``producer:<id>``) and skips, log and live message both, an event at or below it. Order is kept:
  Redis runs one connection's commands in order, and a re-sent batch goes out before anything
  newer (relay/core/publisher.py).

The script replies ``1`` (appended), ``0`` (a re-send already there), or, when the XADD itself
failed (the key holds another type), the error as a status reply starting ``log:``. The event is
then still published live, and :class:`~relay.core.redis_link.RedisPublishLink` counts the reply
(``relay_redis_errors_total{operation="log_append"}``, and a log line) instead of failing the link: re-sending cannot fix a wrong key type,
and failing would stop every session's events over one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from relay.core.redis_link import pack_command

__all__ = ["LOG_SCRIPT", "LOG_SCRIPT_SHA", "LogConfig", "log_head", "load_script_command", "pack_log_tail"]

LOG_SCRIPT: Final = b"""\
local last = redis.call('HGET', KEYS[2], ARGV[3])
if last and tonumber(last) >= tonumber(ARGV[5]) then return 0 end
local ok, id = pcall(redis.call, 'XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[6])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[5])
if not ok then
  redis.call('PUBLISH', ARGV[1], ARGV[6])
  return {ok = 'log:' .. tostring(id.err or id)}
end
if ARGV[4] == '1' then
  redis.call('PUBLISH', ARGV[1], string.sub(ARGV[6], 1, -2) .. ',"log_id":"' .. id .. '"}')
else
  redis.call('PUBLISH', ARGV[1], ARGV[6])
end
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
    #: Add ``log_id`` to the live message.
    live_log_id: bool = True
    #: Log ``transcript.partial`` too. Partials repeat the words their final will carry (a word
    #: more each), so they are most of a meeting's log (bench/log_sizing.py); a log kept for the
    #: whole meeting rarely needs them. Off: they go out live only (without ``log_id``).
    partials: bool = True


def load_script_command() -> bytes:
    """``SCRIPT LOAD`` of the log script: sent when the publisher's link connects (Redis may have
    restarted and forgotten it)."""
    return pack_command(b"SCRIPT", b"LOAD", LOG_SCRIPT)


def log_head(log_key: str, session_key: str, channel: str, max_entries: int, producer: str, splice: bool) -> bytes:
    """Everything of one event's ``EVALSHA`` that its session and type fix, in RESP: the publisher
    caches it per route and appends :func:`pack_log_tail` per event."""
    args = (log_key.encode(), session_key.encode(), channel.encode(), b"%d" % max_entries,
            b"producer:" + producer.encode(), b"1" if splice else b"0")  # fmt: skip
    out = [b"*11\r\n$7\r\nEVALSHA\r\n$40\r\n", LOG_SCRIPT_SHA, b"\r\n$1\r\n2\r\n"]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def pack_log_tail(seq: int, body: bytes) -> list[bytes]:
    """The per-event end of the command :func:`log_head` begins: the sequence number and the body."""
    digits = b"%d" % seq
    return [b"$%d\r\n%s\r\n$%d\r\n" % (len(digits), digits, len(body)), body, b"\r\n"]
