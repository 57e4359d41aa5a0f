"""Every Prometheus metric the relay exports, defined once.

The app factory builds one :class:`RelayMetrics` on its own registry and hands it to each component,
so tests can run several relays in one process without their counters mixing. Label values are
bounded sets (sources, event types the schema knows, reasons named in code), never provider input,
so an attacker cannot grow the series count.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "RelayMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RelayMetrics:
    """The relay's metrics on a private registry; :meth:`render` gives the exposition text."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry

        # --- inbound connections (Recall bots) -------------------------------------------------
        self.connections_open = Gauge(
            "relay_connections_open", "Open inbound WebSocket connections.", ["source"], registry=r
        )
        self.connections_accepted = Counter(
            "relay_connections_accepted_total", "Inbound WebSocket connections accepted.", ["source"], registry=r
        )
        self.connections_rejected = Counter(
            "relay_connections_rejected_total",
            "Inbound connections refused before or at the handshake, by reason.",
            ["source", "reason"],
            registry=r,
        )
        self.connections_closed = Counter(
            "relay_connections_closed_total", "Inbound connections closed, by close code.", ["source", "code"], registry=r
        )
        self.frames_received = Counter(
            "relay_frames_received_total", "WebSocket frames read from providers.", ["source"], registry=r
        )
        self.bytes_received = Counter(
            "relay_received_bytes_total", "Payload bytes read from providers.", ["source"], registry=r
        )
        self.backpressure_pauses = Counter(
            "relay_backpressure_pauses_total",
            "Times a connection stopped reading its socket because the publish queue was full.",
            ["source"],
            registry=r,
        )
        self.frames_rejected = Counter(
            "relay_frames_rejected_total",
            "Frames or messages that could not be parsed, by reason; the connection stays open.",
            ["source", "reason"],
            registry=r,
        )

        # --- events and publishing -------------------------------------------------------------
        self.events_received = Counter(
            "relay_events_received_total", "Normalized events accepted for publishing.", ["source", "type"], registry=r
        )
        self.events_published = Counter(
            "relay_events_published_total", "Events published to Redis.", ["source", "type"], registry=r
        )
        self.events_dropped = Counter(
            "relay_events_dropped_total", "Accepted events that were not published, by reason.", ["source", "reason"], registry=r
        )
        self.publish_latency = Histogram(
            "relay_publish_latency_seconds",
            "Time from receiving a frame to Redis acknowledging its event.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_batch_size = Histogram(
            "relay_publish_batch_size",
            "Events per pipelined PUBLISH batch.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.queue_depth = Gauge("relay_queue_depth", "Events waiting in the publish queue.", registry=r)
        self.outage_buffer_bytes = Gauge(
            "relay_outage_buffer_bytes", "Bytes of accepted events held for Redis: grows while it is unavailable, drains after.", registry=r
        )
        self.outage_buffer_events = Gauge(
            "relay_outage_buffer_events", "Accepted events held for Redis: grows while it is unavailable, drains after.", registry=r
        )
        self.redis_up = Gauge("relay_redis_up", "1 when the last Redis operation succeeded, else 0.", registry=r)
        self.redis_errors = Counter(
            "relay_redis_errors_total", "Failed Redis operations, by operation.", ["operation"], registry=r
        )

        # --- outbound provider sockets (VideoDB, ASAPP) -----------------------------------------
        self.upstream_connected = Gauge(
            "relay_upstream_connected", "1 while the outbound provider socket is open.", ["provider", "target"], registry=r
        )
        self.upstream_connects = Counter(
            "relay_upstream_connects_total", "Successful outbound provider connects.", ["provider"], registry=r
        )
        self.upstream_reconnects = Counter(
            "relay_upstream_reconnects_total", "Outbound reconnect attempts after a drop or failure.", ["provider"], registry=r
        )
        self.bridge_errors = Counter(
            "relay_bridge_errors_total",
            "Events a bridge (an observer of the Recall stream) failed on: a relay bug, not bad input.",
            ["bridge"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "relay_upstream_errors_total", "Outbound provider errors, by reason.", ["provider", "reason"], registry=r
        )
        self.upstream_gap_seconds = Histogram(
            "relay_upstream_gap_seconds",
            "Time an outbound provider socket was down before it was back and re-bound.",
            ["provider"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )

        # --- VideoDB bridge (labels: outcomes and jobs named in code, collection ids from config) --
        self.videodb_webhooks = Counter(
            "relay_videodb_webhooks_total",
            "VideoDB webhook deliveries, by outcome: accepted, duplicate, bad_signature, malformed, too_large, queue_full, unknown_collection.",
            ["outcome"],
            registry=r,
        )
        self.videodb_jobs_bound = Counter(
            "relay_videodb_jobs_bound_total",
            "Real-time job starts (bindings to a socket's connection id), by job and outcome (ok, error).",
            ["job", "outcome"],
            registry=r,
        )
        self.videodb_lease_held = Gauge(
            "relay_videodb_lease_held", "1 while this process holds the collection's socket lease.", ["collection"], registry=r
        )
        self.videodb_lease_acquired = Counter(
            "relay_videodb_lease_acquired_total", "Times this process took a collection's socket lease.", ["collection"], registry=r
        )

        # --- ASAPP bridge (connects/errors/gaps use upstream_* with provider="asapp") -------------
        self.asapp_streams_open = Gauge(
            "relay_asapp_streams_open", "ASAPP speaker streams with an open, started socket.", registry=r
        )
        self.asapp_audio_sent_seconds = Counter(
            "relay_asapp_audio_sent_seconds_total", "Seconds of 8 kHz audio sent to ASAPP (replays included).", registry=r
        )
        self.asapp_audio_buffered_bytes = Gauge(
            "relay_asapp_audio_buffered_bytes", "Audio held by ASAPP streams: unsent, or sent and not yet confirmed.", registry=r
        )
        self.asapp_audio_dropped_bytes = Counter(
            "relay_asapp_audio_dropped_bytes_total",
            "Audio (8 kHz bytes) never transcribed, by reason: buffer_full, replay_window, stream_stopped, untranscribable.",
            ["reason"],
            registry=r,
        )
        self.asapp_audio_replayed_bytes = Counter(
            "relay_asapp_audio_replayed_bytes_total", "Unconfirmed audio sent again on a new stream after a failure.", registry=r
        )
        self.asapp_transcripts = Counter(
            "relay_asapp_transcripts_total", "Final transcripts received from ASAPP.", registry=r
        )
        self.asapp_streams_finished = Counter(
            "relay_asapp_streams_finished_total",
            "ASAPP sockets ended, by reason: finish, rollover, idle, limit, token, transient, untranscribable, permanent.",
            ["reason"],
            registry=r,
        )
        self.asapp_summary_audio_seconds = Counter(
            "relay_asapp_summary_audio_seconds_total", "Audio duration ASAPP reported in finalResponse summaries.", registry=r
        )
        self.asapp_summary_transcripts = Counter(
            "relay_asapp_summary_transcripts_total", "Transcript counts ASAPP reported in finalResponse summaries.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
