"""Where events go on Redis: channel names, log keys, and the Redis URL both ends default to.

The relay publishes on the names :class:`ChannelScheme` gives and :mod:`relay.client` subscribes
with the patterns it gives; the relay appends to the keys :class:`LogKeys` gives and the client
reads them. Both come from this one module, so the two ends cannot drift apart; it imports
nothing but the schema, so a consumer that imports the client gets no part of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from relay.schema import EventBase, EventRecord

__all__ = ["DEFAULT_REDIS_URL", "LOG_FIELD", "ChannelScheme", "LogKeys"]

#: The relay's and the client's default: a Redis on this host (``relay serve`` may start one).
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"

#: Characters that would break channel parsing or act as glob syntax in PSUBSCRIBE patterns.
_CHANNEL_UNSAFE: Final = str.maketrans({c: "_" for c in ":*?[]\\ \t\r\n"})
#: The same, and the braces that delimit a Redis Cluster hash tag.
_KEY_UNSAFE: Final = str.maketrans({c: "_" for c in ":*?[]\\ \t\r\n{}"})

#: The one field of a log entry: the event's JSON, exactly as published (without ``log_id``).
LOG_FIELD: Final = "e"


@dataclass(frozen=True, slots=True)
class ChannelScheme:
    """Names Redis channels so consumers can subscribe by pattern.

    ``<prefix>:events:<source>:<session>:<type>`` for text events and
    ``<prefix>:media:<source>:<session>:<type>`` for audio and video, so ``relay:events:*`` gets
    every text event of every provider without a single audio buffer. ``<session>`` is the session
    id with ``: * ? [ ] \\`` and whitespace replaced by ``_`` (the event body keeps the real id).

    Examples: ``relay:events:recall:*:transcript.*`` (all Recall transcripts),
    ``relay:*:*:<session>:*`` (everything about one session), ``relay:media:recall:*:audio.chunk``.
    """

    prefix: str = "relay"

    def channel(self, event: EventBase | EventRecord) -> str:
        kind = "media" if event.is_media else "events"
        session = event.session.id.translate(_CHANNEL_UNSAFE) or "_"
        return f"{self.prefix}:{kind}:{event.source.value}:{session}:{event.type}"

    def pattern(
        self, *, source: str | None = None, session: str | None = None, type: str | None = None, media: bool = False
    ) -> str:
        """The PSUBSCRIBE pattern for a filter; ``None`` matches anything. ``type`` may end in ``*``."""
        kind = "media" if media else "events"
        sess = session.translate(_CHANNEL_UNSAFE) if session is not None else "*"
        return f"{self.prefix}:{kind}:{source or '*'}:{sess}:{type or '*'}"


@dataclass(frozen=True, slots=True)
class LogKeys:
    """Names the Redis keys of the durable per-meeting log (docs/events.md, "The log").

    Every key of one session carries the session inside a Redis Cluster hash tag, ``{<session>}``,
    so that a meeting's log, media log and state live on one shard. ``<session>`` is the session id
    with ``: * ? [ ] { } \\`` and whitespace replaced by ``_`` (events keep the real id; readers
    filter on it, since two ids that differ only in those characters share keys).

    * ``<prefix>:log:{<session>}``: a Stream of the session's text events, one entry per event in
      the order the relay published them, the event's JSON in field :data:`LOG_FIELD`.
    * ``<prefix>:medialog:{<session>}``: the same for audio and video, when that is switched on.
    * ``<prefix>:session:{<session>}``: a Hash of the session's lifecycle (``started``,
      ``ended``, ``bot_id``, ...; see relay/core/sessions.py).
    * ``<prefix>:sessions``: a Sorted Set of session ids scored by their start (Unix ms): the index
      consumers discover meetings from.
    * ``<prefix>:sessions:log``: a Stream of every ``session.started`` and ``session.ended``
      event, for consumers that follow every meeting (worker groups).
    * ``<prefix>:group:{<group>}:progress``: a worker group's checkpoints, a Hash (relay/client/workers.py).
    """

    prefix: str = "relay"

    @staticmethod
    def tag(session: str) -> str:
        """The session as it appears inside the hash tag of its keys."""
        return session.translate(_KEY_UNSAFE) or "_"

    def log(self, session: str) -> str:
        return f"{self.prefix}:log:{{{self.tag(session)}}}"

    def media_log(self, session: str) -> str:
        return f"{self.prefix}:medialog:{{{self.tag(session)}}}"

    def session(self, session: str) -> str:
        return f"{self.prefix}:session:{{{self.tag(session)}}}"

    @property
    def sessions(self) -> str:
        return f"{self.prefix}:sessions"

    @property
    def sessions_log(self) -> str:
        return f"{self.prefix}:sessions:log"

    def group_progress(self, group: str) -> str:
        """A worker group's checkpoint Hash (one key per group; group names are validated)."""
        return f"{self.prefix}:group:{{{group}}}:progress"
