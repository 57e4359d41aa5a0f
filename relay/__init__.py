"""relay: Recall.ai, VideoDB and ASAPP into one versioned event schema on Redis.

The public API for consumers is what this module exports: :class:`RelayClient` (typed events
from Redis), the schema's event types, :data:`SCHEMA_VERSION`, :func:`parse_event`, and the
channel naming (:class:`ChannelScheme`). Importing it loads none of the server (no publisher,
metrics, uvicorn, starlette or provider code): tests/test_client_light.py holds it to that.

Everything else (``relay.core``, ``relay.providers``, ``relay.server``, ``relay.dev``,
``relay.tools``) is the relay itself, its doubles and its programs; see the README's layout.
"""

from relay.channels import DEFAULT_REDIS_URL, ChannelScheme
from relay.client import RelayClient
from relay.errors import RelayError
from relay.schema import (
    SCHEMA_VERSION,
    TYPE_TO_CLASS,
    AlertEvent,
    AudioChunkEvent,
    ChatMessageEvent,
    EventBase,
    GenericEvent,
    IndexEvent,
    ParticipantEvent,
    ProviderDataEvent,
    SessionStatusEvent,
    Source,
    StreamErrorEvent,
    StreamSummaryEvent,
    TranscriptEvent,
    VideoFrameEvent,
    parse_event,
)

__all__ = [
    "DEFAULT_REDIS_URL",
    "SCHEMA_VERSION",
    "TYPE_TO_CLASS",
    "AlertEvent",
    "AudioChunkEvent",
    "ChannelScheme",
    "ChatMessageEvent",
    "EventBase",
    "GenericEvent",
    "IndexEvent",
    "ParticipantEvent",
    "ProviderDataEvent",
    "RelayClient",
    "RelayError",
    "SessionStatusEvent",
    "Source",
    "StreamErrorEvent",
    "StreamSummaryEvent",
    "TranscriptEvent",
    "VideoFrameEvent",
    "parse_event",
]
