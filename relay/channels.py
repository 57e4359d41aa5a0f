"""Where events go on Redis: channel names, and the Redis URL both ends default to.

The relay publishes on the names :class:`ChannelScheme` gives and :mod:`relay.client` subscribes
with the patterns it gives, from this one module, so the two cannot drift apart; it imports
nothing but the schema, so a consumer that imports the client gets no part of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from relay.schema import EventBase, EventRecord

__all__ = ["DEFAULT_REDIS_URL", "ChannelScheme"]

#: The relay's and the client's default: a Redis on this host (``relay serve`` may start one).
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"

#: Characters that would break channel parsing or act as glob syntax in PSUBSCRIBE patterns.
_CHANNEL_UNSAFE: Final = str.maketrans({c: "_" for c in ":*?[]\\ \t\r\n"})


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
