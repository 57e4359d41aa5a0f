"""What a team would otherwise run, measured by the same bench in the same run.

* :mod:`bench.baselines.handwritten`: the glue a team writes by hand (Starlette WebSocket handler,
  ``json.loads``, one awaited ``PUBLISH`` per message).
* :mod:`bench.baselines.forwarder`: no parsing at all; raw frames pipelined to Redis (a rough
  ceiling for a Python stack).
* :mod:`bench.baselines.discard`: reads frames and drops them; the load generator's own ceiling.

Each runs as ``python -m bench.baselines.<name> --port P [--redis-url URL]``.
"""
