"""Settings: read once at start into one typed object that is passed down.

Sources, strongest first: ``RELAY_*`` environment variables, then the TOML file given with
``--config`` (``config/relay.example.toml`` documents every key), then the defaults below.
A section's key maps to ``RELAY_<SECTION>_<KEY>``: ``[redis] url`` is ``RELAY_REDIS_URL``,
``[recall] tokens`` is ``RELAY_RECALL_TOKENS``. Lists from the environment are comma-separated.

Secrets are :class:`~pydantic.SecretStr` (they print as ``**********``) and may be read from a file
named by the ``*_file`` twin of the setting (``RELAY_RECALL_TOKENS_FILE``), one secret per line.
Nothing else in the relay reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from relay.channels import DEFAULT_REDIS_URL
from relay.core.secret_files import read_secret_lines
from relay.errors import ConfigError
from relay.providers.asapp.config import AsappSettings
from relay.providers.videodb.config import VideoDBSettings


class RedisURL(str):
    """A Redis URL whose ``repr`` hides its password: settings get printed, logged and dumped.

    The value is the whole URL (the client needs it); :attr:`password` lets the log redactor
    learn the secret.
    """

    __slots__ = ()

    @property
    def password(self) -> str | None:
        return urlsplit(self).password

    def __repr__(self) -> str:
        parts = urlsplit(self)
        if parts.password is None:
            return super().__repr__()
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return repr(urlunsplit(parts._replace(netloc=f"{user}:**********@{host}")))


CommaList = Annotated[list[str], NoDecode]
SecretList = Annotated[list[SecretStr], NoDecode]


def split_commas(value: Any) -> Any:
    """Accept ``"a,b"`` (environment) as well as ``["a", "b"]`` (TOML)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    shutdown_grace_s: float = Field(default=10.0, gt=0)
    #: A connection must send its request head (the WebSocket upgrade) within this many seconds.
    handshake_timeout_s: float = Field(default=10.0, gt=0)
    #: Processes serving the port together (SO_REUSEPORT); each is a whole relay.
    workers: int = Field(default=1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    #: Behind a TLS-terminating proxy: trust X-Forwarded-* from these addresses (uvicorn's option).
    forwarded_allow_ips: str = "127.0.0.1"

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if self.workers > 1 and self.port == 0:
            raise ValueError("workers > 1 needs a fixed port")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile must be set together")
        for path in (self.tls_certfile, self.tls_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a readable file")
        return self


class RedisSettings(_Section):
    url: Annotated[str, AfterValidator(RedisURL)] = RedisURL(DEFAULT_REDIS_URL)
    channel_prefix: str = Field(default="relay", pattern=r"^[A-Za-z0-9_.\-]+$")
    queue_max_events: int = Field(default=10_000, ge=1)
    batch_max_events: int = Field(default=500, ge=1)
    outage_buffer_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    socket_timeout_s: float = Field(default=5.0, gt=0)
    #: Start a private redis-server when nothing answers at the default URL (local runs).
    start_local: bool = True

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class LogSettings(_Section):
    """The durable per-meeting log (Redis Streams; docs/events.md, "The log")."""

    #: Append every text event to its session's log (and say its position in the live message).
    enabled: bool = True
    #: Entries kept per session (XADD MAXLEN ~): an hour of a busy meeting is a few thousand.
    max_entries: int = Field(default=100_000, ge=100)
    #: Also log audio and video, into a stream of their own with its own, short bound.
    media: bool = False
    media_max_entries: int = Field(default=6_000, ge=100)
    #: Put ``log_id`` into live messages (one script call per session and batch). Off: plain XADD +
    #: PUBLISH, about half Redis' CPU per event, but no ``log_id`` live and re-sends may repeat an
    #: event in the log (relay/core/event_log.py).
    live_log_id: bool = True
    #: Log partial transcripts too (most of a meeting's log; their finals repeat their words).
    partials: bool = True
    #: A session's keys expire this long after it ended (and after this long without activity).
    retention_s: int = Field(default=86_400, ge=60)
    #: A bot whose last connection closed has ended once it has not come back for this long (Recall
    #: retries a dropped connection for about 90 s).
    end_grace_s: float = Field(default=120.0, gt=0)


class RecallSettings(_Section):
    path: str = "/recall"
    tokens: SecretList = Field(default_factory=list)
    tokens_file: Path | None = None
    #: Recall workspace secrets (``whsec_...``) for the optional signature check; two allow rotation.
    signing_secrets: SecretList = Field(default_factory=list)
    signing_secrets_file: Path | None = None
    require_signature: bool = False
    signature_tolerance_s: int = Field(default=300, gt=0)
    max_frame_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_connections: int = Field(default=10_000, ge=1)
    ping_interval_s: float = Field(default=20.0, gt=0)
    ping_timeout_s: float = Field(default=20.0, gt=0)

    _split = field_validator("tokens", "signing_secrets", mode="before")(split_commas)

    @model_validator(mode="after")
    def _secret_files(self) -> RecallSettings:
        if self.tokens_file is not None:
            self.tokens = [*self.tokens, *map(SecretStr, read_secret_lines(self.tokens_file))]
        if self.signing_secrets_file is not None:
            self.signing_secrets = [*self.signing_secrets, *map(SecretStr, read_secret_lines(self.signing_secrets_file))]
        for token in self.tokens:
            if len(token.get_secret_value()) < 16:
                raise ValueError("tokens must be at least 16 characters")
        for secret in self.signing_secrets:
            if not secret.get_secret_value().startswith("whsec_"):
                raise ValueError("signing secrets look like whsec_<base64>")
        if self.require_signature and not self.signing_secrets:
            raise ValueError("require_signature needs signing_secrets")
        return self


class Settings(BaseSettings):
    """Everything the relay reads at start. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="RELAY_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        case_sensitive=False,
    )

    server: ServerSettings = ServerSettings()
    redis: RedisSettings = RedisSettings()
    recall: RecallSettings = RecallSettings()
    log: LogSettings = LogSettings()
    videodb: VideoDBSettings = VideoDBSettings()
    asapp: AsappSettings = AsappSettings()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment and ``config_file``; raise :class:`ConfigError` if invalid."""
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"--config: {config_file} is not a readable file")

    class _Settings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources = [init_settings, env_settings]
            if config_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            return tuple(sources)

    try:
        return _Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # a TOML syntax error
        raise ConfigError(f"{config_file}: {exc}") from None


def _describe(exc: ValidationError) -> str:
    """Name each bad setting by its environment variable, without echoing the value (it may be secret)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in err["loc"]]
        env = "RELAY_" + "_".join(loc[:2]).upper() if loc else "RELAY_*"
        key = ".".join(loc)
        lines.append(f"{key} ({env}): {err['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)
