"""Programs around the relay: the ``relay`` command line, ``relay tail``, ``relay demo``, and the
generators of docs/events.md and docs/asyncapi.yaml."""
