"""Core plumbing below the providers: the publisher and its Redis link, metrics, observers, logs,
the GC policy, WebSocket framing, backoff and secret files. Nothing here knows a provider."""
