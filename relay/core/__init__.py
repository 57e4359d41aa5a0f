"""Core plumbing below the providers: the publisher and its Redis link, metrics, observers, logs,
the GC policy, WebSocket framing, backoff, secret files, and (internals.py) every use of uvicorn's
and websockets' non-public names. Nothing here knows a provider."""
