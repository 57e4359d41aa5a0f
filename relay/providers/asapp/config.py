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

Byte order
    ``byte_order`` (``"little"``, the default, or ``"big"``) is the byte order of the 16-bit samples
    sent as ``L16``. ASAPP's page does not state it (RFC 3551's L16 is big-endian, "16-bit PCM" in
    WAV files little-endian), so it is a setting; Recall's input is always little-endian.

Speaker ids (``sender.externalId``)
    ASAPP wants the same ``externalId`` for every interaction of one person, across meetings.
    :meth:`AsappSettings.external_id_of` decides, first rule that applies:

    1. ``external_ids``: an explicit mapping, e-mail address (any case) → id, e.g.
       ``external_ids = {"ada@example.com" = "crm-4711"}``;
    2. the participant's e-mail, when Recall knows it: ``email-`` and the first 32 hex digits of the
       SHA-256 of the lower-cased address (stable for the person, and no address leaves the relay);
    3. last resort, Recall's participant id (else the name) scoped by the meeting, so it cannot
       collide with another meeting's: ``recall-<session id>-<participant id>``. This one is not
       stable across meetings, which is why the two rules above come first.

Roles
    A speaker is ``agent`` when ``agent_is_host`` and Recall says they host, or when their name or
    email (case-insensitive) is listed in ``agent_names`` / ``agent_emails``; everyone else is
    ``customer``.

Secrets
    ``api_id`` and ``api_secret`` are :class:`~pydantic.SecretStr` and may instead be read from the
    first line of ``api_id_file`` / ``api_secret_file``; they are never logged.
"""

from __future__ import annotations

import hashlib
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
    #: ``sender.externalId`` by e-mail address (case-insensitive), before the derived ids; see the module docstring.
    external_ids: dict[str, str] = Field(default_factory=dict)
    #: Byte order of the L16 samples sent to ASAPP (its page does not say; see the module docstring).
    byte_order: Literal["little", "big"] = "little"

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

    @field_validator("external_ids")
    @classmethod
    def _external_ids(cls, value: dict[str, str]) -> dict[str, str]:
        ids = {}
        for email, external_id in value.items():
            if not email.strip() or not external_id.strip():
                raise ValueError("e-mail addresses and ids must not be empty")
            ids[email.strip().lower()] = external_id.strip()
        return ids

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

    def external_id_of(self, *, session_id: str, participant_id: str | None, name: str | None, email: str | None) -> str:
        """ASAPP's ``sender.externalId`` for a participant: the mapping, else their e-mail, else
        their Recall id (or name) scoped by the meeting (the module docstring has the rule)."""
        address = email.strip().lower() if email else ""
        if address:
            mapped = self.external_ids.get(address)
            if mapped is not None:
                return mapped
            return "email-" + hashlib.sha256(address.encode()).hexdigest()[:32]
        return f"recall-{session_id}-{participant_id or name or 'unknown'}"
