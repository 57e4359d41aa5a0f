"""ASAPP AutoTranscribe settings (the ``[asapp]`` section, ``RELAY_ASAPP_*``).

Which meetings are bridged
    ``bridge = "all"`` bridges every Recall meeting; ``bridge = "metadata"`` (the default) only those
    whose Recall real-time endpoint metadata has ``metadata_key`` (default ``asapp``) set to a truthy
    value. Recall metadata values are strings, so ``""``, ``"0"``, ``"false"``, ``"no"`` and ``"off"``
    (any case) count as false; anything else present counts as true. Example bot creation:
    ``realtime_endpoints: [{type: "websocket", url: ..., metadata: {"asapp": "true"}, events: [...]}]``.

Audio
    ``audio = "separate"`` opens one ASAPP stream per speaker from ``audio_separate_raw.data``
    events (the bot must subscribe to them); ``"mixed"`` opens one stream per meeting from
    ``audio_mixed_raw.data`` with role ``mixed_role``. Chunks of the other kind are ignored.

Roles
    A speaker is ``agent`` when ``agent_is_host`` and Recall says they host, or when their name or
    email (case-insensitive) is listed in ``agent_names`` / ``agent_emails``; everyone else is
    ``customer``.

Secrets
    ``api_id`` and ``api_secret`` are :class:`~pydantic.SecretStr` and may instead be read from the
    first line of ``api_id_file`` / ``api_secret_file``; they are never logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from relay.core.secret_files import read_secret

#: Recall metadata values that mean "no" for the bridge opt-in key.
FALSY_METADATA = frozenset({"", "0", "false", "no", "off"})


def _split(value: Any) -> Any:
    # The same rule as relay.server.settings.split_commas; repeated because relay.server.settings imports this module.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class AsappSettings(BaseModel):
    """Everything the ASAPP bridge reads; see the module docstring for the meaning of each group."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    api_id: SecretStr | None = None
    api_id_file: Path | None = None
    api_secret: SecretStr | None = None
    api_secret_file: Path | None = None
    #: REST base URL; the streaming URL it hands out is pre-signed and used once.
    base_url: str = "https://api.sandbox.asapp.com"
    language: Literal["en-US", "es-US"] = "en-US"
    smart_formatting: bool = True
    redaction_output: str = "redacted"

    bridge: Literal["all", "metadata"] = "metadata"
    metadata_key: str = "asapp"
    audio: Literal["separate", "mixed"] = "separate"
    mixed_role: Literal["agent", "customer"] = "agent"
    agent_is_host: bool = True
    agent_names: Annotated[list[str], NoDecode] = Field(default_factory=list)
    agent_emails: Annotated[list[str], NoDecode] = Field(default_factory=list)

    #: Largest audio frame sent, in ms of 8 kHz audio (ASAPP takes 20..100 ms).
    chunk_ms: int = Field(default=100, ge=20, le=100)
    #: Per-stream bound on audio held for sending and for replay after a reconnect (ms of audio).
    buffer_max_ms: int = Field(default=60_000, ge=1_000)
    #: Audio may run this far ahead of real time (ms), to catch up after a reconnect.
    pace_lead_ms: int = Field(default=1_000, ge=0)
    #: Real-time factor for pacing: 1.0 in production; tests and benches against the emulator raise it.
    pace_speed: float = Field(default=1.0, gt=0)
    #: Finish a stream after this long without audio (ASAPP closes with 4083 after 60 s); reopen on speech.
    idle_finish_s: float = Field(default=50.0, gt=0)
    #: Roll over to a fresh stream after this long (ASAPP ends a stream at 3 h with 4090).
    rollover_after_s: float = Field(default=10_500.0, gt=0)

    http_timeout_s: float = Field(default=10.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    start_timeout_s: float = Field(default=10.0, gt=0)
    final_timeout_s: float = Field(default=10.0, gt=0)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    #: Longest ``Retry-After`` honoured; a larger value is capped (a bad header must not stall a meeting for hours).
    retry_after_max_s: float = Field(default=300.0, gt=0)

    _split_lists = field_validator("agent_names", "agent_emails", mode="before")(_split)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for the emulator)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _secrets(self) -> AsappSettings:
        if self.api_id_file is not None:
            self.api_id = read_secret(self.api_id_file)
        if self.api_secret_file is not None:
            self.api_secret = read_secret(self.api_secret_file)
        if self.enabled and (self.api_id is None or self.api_secret is None):
            raise ValueError("enabled needs api_id and api_secret (or their *_file)")
        if self.idle_finish_s >= 60:
            raise ValueError("idle_finish_s must stay under ASAPP's 60 s idle limit")
        if self.rollover_after_s >= 3 * 3600:
            raise ValueError("rollover_after_s must stay under ASAPP's 3 h stream limit")
        return self

    # --- decisions the bridge asks ---------------------------------------------------------

    def bridges(self, metadata: dict[str, Any]) -> bool:
        """Whether a meeting with this Recall endpoint metadata is bridged to ASAPP."""
        if self.bridge == "all":
            return True
        if self.metadata_key not in metadata:
            return False
        value = metadata[self.metadata_key]
        if isinstance(value, str):
            return value.strip().lower() not in FALSY_METADATA
        return bool(value)

    def role_of(self, *, name: str | None, email: str | None, is_host: bool | None) -> Literal["agent", "customer"]:
        """``agent`` or ``customer`` for a participant, per the role mapping."""
        if self.agent_is_host and is_host:
            return "agent"
        if name and name.strip().lower() in {n.lower() for n in self.agent_names}:
            return "agent"
        if email and email.strip().lower() in {e.lower() for e in self.agent_emails}:
            return "agent"
        return "customer"
