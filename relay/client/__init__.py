"""The consumer SDK: the relay's events from Redis as typed models, live or from the log.

* :class:`RelayClient` (:mod:`relay.client.live`): the live stream, from Redis pub/sub.

It imports only the schema, the channel names and the errors (and :mod:`relay.core.backoff`), so
a consumer gets no part of the server (``tests/test_client_light.py``).
"""

from relay.client.live import RelayClient, subscription_patterns

__all__ = ["RelayClient", "subscription_patterns"]
