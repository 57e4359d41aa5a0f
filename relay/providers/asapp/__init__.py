"""ASAPP AutoTranscribe: Recall meeting audio → per-speaker ASAPP streams → transcripts in the schema.

* :mod:`.config`   the ``[asapp]`` settings, the bridging rule and the role mapping
* :mod:`.resample` 16 kHz S16LE → 8 kHz L16 (soxr, streaming) and frame sizing (pure)
* :mod:`.parse`    server messages → typed messages → events; status-code classification (pure)
* :mod:`.timeline` speaker audio offsets → meeting time (pure)
* :mod:`.ledger`   audio sent, confirmed and to replay after a reconnect, in a bounded window (pure)
* :mod:`.stream`   one speaker's stream: URL, socket, pacing, replay, idle, rollover (I/O)
* :mod:`.bridge`   the Recall observer: meetings → streams (I/O)

The ASAPP emulator (REST + WebSocket), for tests, demo and bench, is :mod:`relay.dev.asapp_emulator`.
"""
