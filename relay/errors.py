"""The relay's one exception hierarchy, and the one set of reasons a frame is rejected for.

Every error the relay raises on purpose is a :class:`RelayError`:

* :class:`FrameRejected`: a provider's frame or payload that no event can be made of. Its
  ``reason`` is one of :data:`REJECT_REASONS` (bounded: it is the ``reason`` label of
  ``relay_frames_rejected_total``), its ``detail`` says where (a field path such as
  ``data.recording.id``), never frame content, so both are safe to log.
* :class:`UpstreamError`: a call to a provider failed (network, 5xx, a body that is not what the
  provider documents); :class:`AuthRejected` when its answer was 401/403 (retrying cannot help).
* :class:`ConfigError`: a setting is invalid; the message names it, never a secret's value.
* :class:`LogError`: reading the durable log cannot give what was asked:
  :class:`BadPosition` (not a log position), :class:`SessionNotFound` (no log for that session),
  :class:`HistoryTrimmed` (retention removed entries after the position), :class:`HistoryLost`
  (the log was lost, e.g. Redis restarted without persistence). A consumer is told, never handed
  a silently partial meeting.
* :class:`MeetingReleased`: a worker group's worker no longer holds a meeting (relay/client/workers.py).

Every parser (Recall, VideoDB, ASAPP) says the same thing the same way: JSON that does not parse is
``invalid_json`` wherever it came from. docs/operations.md lists the reasons and what each means
for an operator.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "REJECT_REASONS",
    "AuthRejected",
    "BadPosition",
    "ConfigError",
    "HistoryLost",
    "HistoryTrimmed",
    "LogError",
    "MeetingReleased",
    "SessionNotFound",
    "FrameRejected",
    "RejectReason",
    "RelayError",
    "UpstreamError",
    "not_json_reason",
]

RejectReason = Literal[
    "invalid_json",  # not JSON at all
    "invalid_utf8",  # a text/JSON frame that is not valid UTF-8
    "not_an_object",  # JSON, but not an object
    "missing_field",  # a required field is absent (or null); the detail names it
    "invalid_field",  # a known field has the wrong type or an impossible value; the detail names it
    "invalid_base64",  # an audio/video buffer that is not standard padded base64
    "unsupported_protocol",  # a protocol version the relay does not speak (Recall's legacy header)
    "binary_before_header",  # a non-JSON binary frame before any legacy header (Recall)
    "short_binary_frame",  # a legacy binary frame too short for its prefix (Recall)
    "invalid_frame_type",  # neither text nor bytes (a caller bug)
    "internal_error",  # a parser bug; counted rather than crashing the connection
]

#: Every reason a :class:`FrameRejected` may carry: the bounded label set of the rejection metric.
REJECT_REASONS: Final[frozenset[str]] = frozenset(get_args(RejectReason))


def not_json_reason(frame: str | bytes | bytearray | memoryview) -> RejectReason:
    """Why a frame that does not parse as JSON is rejected: ``invalid_utf8`` when its encoding is
    broken, else ``invalid_json``. Every parser asks here, so one fault has one name everywhere.
    Called on the error path only (it decodes the frame once more)."""
    try:
        if isinstance(frame, str):
            frame.encode("utf-8")  # lone surrogates cannot be encoded
        else:
            bytes(frame).decode("utf-8")
    except UnicodeError:
        return "invalid_utf8"
    return "invalid_json"


class RelayError(Exception):
    """Base of every error the relay raises on purpose."""


class FrameRejected(RelayError):
    """A frame (or webhook body) from a provider that the parser cannot turn into events."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason: RejectReason = reason
        self.detail = detail


class UpstreamError(RelayError):
    """A provider call failed in a way worth retrying; ``reason`` is a bounded metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


class AuthRejected(UpstreamError):
    """The provider refused the credentials (HTTP 401/403): retrying will not help."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("auth", detail)


class ConfigError(RelayError):
    """A setting is invalid; the message names it and never contains a secret's value."""


class LogError(RelayError):
    """Reading a session's log cannot give what was asked; ``session`` names it (may be None)."""

    def __init__(self, message: str, session: str | None = None) -> None:
        super().__init__(message)
        self.session = session


class BadPosition(LogError):
    """Not a log position (a Redis Stream entry id such as ``1733130000000-0``)."""


class SessionNotFound(LogError):
    """The session has no log: never seen, or past its retention (the whole log expired)."""


class HistoryTrimmed(LogError):
    """Entries after the position were removed by retention: the rest of the meeting is not whole."""


class HistoryLost(LogError):
    """The log does not hold the position and retention did not remove it: the log itself was lost
    (Redis restarted without persistence, or the key was deleted)."""


class MeetingReleased(RelayError):
    """The worker no longer holds this meeting: stop, do not treat it as done.

    ``reason`` is ``"stopping"`` (the group is stopping; the claim is released for another worker)
    or ``"claim_lost"`` (another worker took the meeting over, or the heartbeat could not reach Redis
    for ``claim_idle_s``). Everything the handler handled before is saved or repeated to the next
    worker, never lost.
    """

    def __init__(self, session: str, reason: Literal["stopping", "claim_lost"]) -> None:
        super().__init__(f"meeting {session!r} released ({reason})")
        self.session = session
        self.reason: Literal["stopping", "claim_lost"] = reason
