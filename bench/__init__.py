"""The relay's benchmark suite: ``python -m bench <workload>`` (see ``bench/README.md``).

Every workload runs the target (the relay, or a baseline from :mod:`bench.baselines`), the
simulated Recall bots (:mod:`bench.loadgen`) and a counting Redis subscriber
(:mod:`bench.subscriber`) as separate processes over loopback sockets, against a private
``redis-server``; results go to ``bench/results/<workload>.json``.
"""
