"""VideoDB settings (the ``[videodb]`` section, ``RELAY_VIDEODB_*``).

One section serves one or more collections. The simple case is flat::

    [videodb]
    enabled = true
    api_key_file = "/run/secrets/videodb"
    collections = ["default"]            # RELAY_VIDEODB_COLLECTIONS=default,team-b

A collection that needs its own key or base URL is a table instead of a string::

    collections = ["default", { id = "team-b", api_key_file = "/run/secrets/videodb-b" }]

The real-time jobs (transcript, audio index, visual index, alerts) are the same for every
collection: they are started on each rtstream of a capture session when it turns active, and
replaced (the old index stopped first) on the new socket after every reconnect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from relay.core.secret_files import read_secret

__all__ = ["AlertRule", "CollectionSettings", "ResolvedCollection", "VideoDBSettings"]

_ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class AlertRule(BaseModel):
    """An alert on each video rtstream's visual index: VideoDB fires it when ``prompt`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1, description="Name the alert events carry (`payload.label`).")
    prompt: str = Field(min_length=1, description="What to detect, in words (VideoDB's event prompt).")


class CollectionSettings(BaseModel):
    """One collection; unset fields fall back to the section's values."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID_PATTERN)
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_file: Path | None = None

    @model_validator(mode="after")
    def _key_file(self) -> CollectionSettings:
        if self.api_key_file is not None:
            self.api_key = read_secret(self.api_key_file)
        return self


@dataclass(frozen=True, slots=True)
class ResolvedCollection:
    """A collection with every fallback applied: what a client needs to connect."""

    id: str
    base_url: str
    api_key: SecretStr


class VideoDBSettings(BaseModel):
    """The ``[videodb]`` section; see the module docstring and ``config/relay.example.toml``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    #: REST base URL; the socket URL is fetched from it before every connect.
    base_url: str = "https://api.videodb.io"
    #: API key (``sk-...``) sent as ``x-access-token``; or read from ``api_key_file``.
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    #: Collection ids (strings) or tables ``{id, base_url, api_key, api_key_file}``; VideoDB's
    #: own default collection is called ``default``.
    collections: Annotated[list[CollectionSettings], NoDecode] = Field(
        default_factory=lambda: [CollectionSettings(id="default")]
    )

    # --- real-time jobs started on each rtstream of an active capture session -------------------
    transcript: bool = True
    #: The transcription ``engine`` sent with the start; unset = not sent (the SDK's default:
    #: VideoDB picks its own).
    transcript_engine: str | None = None
    #: The audio index is a scene index with ``extraction_type: "transcript"``, segmented by
    #: ``audio_index_segmenter`` (``word``, ``sentence`` or ``time``) every ``audio_index_segmentation_value``.
    audio_index: bool = True
    audio_index_prompt: str = "Summarize what is being discussed and any decisions made."
    audio_index_segmenter: Literal["word", "sentence", "time"] = "time"
    audio_index_segmentation_value: int = Field(default=30, gt=0)
    #: The visual index is a scene index with ``extraction_type: "time"``: ``visual_index_frame_count``
    #: frames described per window of ``visual_index_window_s`` seconds.
    visual_index: bool = True
    visual_index_prompt: str = "Describe what the user is doing on screen."
    visual_index_window_s: int = Field(default=10, gt=0)
    visual_index_frame_count: int = Field(default=5, gt=0)
    #: Alerts on the visual index: a JSON list in the environment, a TOML array of tables in files.
    alerts: Annotated[list[AlertRule], NoDecode] = Field(default_factory=list)
    #: ``callback_url`` of the alerts (the SDK always sends one): this relay's public webhook URL,
    #: with its ``?token=``; unset = null (alerts then arrive on the socket only).
    alert_callback_url: SecretStr | None = None
    #: A job start that failed is retried per rtstream and job with full-jitter backoff from
    #: ``job_retry_initial_s`` up to ``job_retry_max_s``; after ``job_failures_reported``
    #: failures in a row it is reported (error log, metric, a ``stream.error`` event) and retried
    #: at the capped delay.
    job_retry_initial_s: float = Field(default=1.0, gt=0)
    job_retry_max_s: float = Field(default=60.0, gt=0)
    job_failures_reported: int = Field(default=5, ge=1)
    #: After a reconnect or a takeover, transcript segments the socket missed are fetched back over REST, at
    #: most this many pages of 100.
    backfill_max_pages: int = Field(default=20, ge=0)
    #: A final transcript segment published is remembered this long (Redis, shared by replicas),
    #: so one that comes on the socket, in a backfill and as a transcript callback is published once.
    segment_dedupe_ttl_s: int = Field(default=3600, gt=0)

    # --- webhooks (capture-session lifecycle, transcript and alert callbacks) --------------------
    webhook_path: str = Field(default="/videodb/webhook", pattern=r"^/[A-Za-z0-9_./\-]*$")
    #: VideoDB does not sign callbacks: give it the callback URL with ``?token=<this>``; every
    #: delivery must carry it (checked in constant time, never logged). Unset = no check.
    webhook_token: SecretStr | None = None
    webhook_token_file: Path | None = None
    #: Only for a signing proxy in front of the relay (VideoDB itself signs nothing): the secret
    #: of an HMAC-SHA256 of the raw body, in ``webhook_signature_header``; unset = no check.
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    #: Header carrying the hex HMAC-SHA256 of the raw body (``sha256=`` prefix allowed).
    webhook_signature_header: str = "X-VideoDB-Signature"
    #: How long a delivery is remembered for deduplication across replicas.
    webhook_dedupe_ttl_s: int = Field(default=24 * 3600, gt=0)
    #: Deliveries accepted but not yet processed; beyond it the endpoint answers 503 (VideoDB retries).
    webhook_queue_max: int = Field(default=1000, ge=1)
    webhook_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    # --- one socket per collection across replicas ----------------------------------------------
    #: A holder that stops renewing loses the collection after this long; a standby takes over.
    lease_ttl_s: float = Field(default=10.0, gt=0)
    #: How often a standby tries to take a free lease and the holder re-reads the rtstream registry.
    sync_interval_s: float = Field(default=1.0, gt=0)

    # --- socket and reconnects ------------------------------------------------------------------
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    #: A socket whose pong is ``ping_timeout_s`` late is dead (and its close is awaited as long).
    ping_interval_s: float = Field(default=20.0, gt=0)
    ping_timeout_s: float = Field(default=20.0, gt=0)
    http_timeout_s: float = Field(default=10.0, gt=0)
    max_frame_bytes: int = Field(default=1024 * 1024, ge=1024)

    @field_validator("collections", mode="before")
    @classmethod
    def _collections(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [{"id": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("alerts", mode="before")
    @classmethod
    def _alerts(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: a JSON list of {label, prompt}
            try:
                return json.loads(value) if value.strip() else []
            except ValueError:
                raise ValueError("alerts from the environment must be a JSON list of {label, prompt}") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> VideoDBSettings:
        if self.api_key_file is not None:
            self.api_key = read_secret(self.api_key_file)
        if self.webhook_secret_file is not None:
            self.webhook_secret = read_secret(self.webhook_secret_file)
        if self.webhook_token_file is not None:
            self.webhook_token = read_secret(self.webhook_token_file)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        if self.job_retry_max_s < self.job_retry_initial_s:
            raise ValueError("job_retry_max_s must be >= job_retry_initial_s")
        ids = [c.id for c in self.collections]
        if len(set(ids)) != len(ids):
            raise ValueError("collection ids must be unique")
        if self.enabled:
            if not self.collections:
                raise ValueError("enabled needs at least one collection")
            for c in self.collections:
                if c.api_key is None and self.api_key is None:
                    raise ValueError(f"collection {c.id} has no api_key (set api_key or api_key_file)")
        return self

    def resolved(self) -> list[ResolvedCollection]:
        """Every collection with the section's fallbacks applied (only meaningful when enabled)."""
        out = []
        for c in self.collections:
            key = c.api_key or self.api_key
            if key is None:
                raise ValueError(f"collection {c.id} has no api_key")
            out.append(ResolvedCollection(id=c.id, base_url=(c.base_url or self.base_url).rstrip("/"), api_key=key))
        return out
