"""Who may open a Recall connection: the URL token, and optionally Recall's request signature.

Both checks are pure (values in, verdict out) and run before the WebSocket is accepted.

* **Token.** Recall connects to the exact URL it was given, so a secret ``token`` query parameter
  is the documented gate. Several tokens may be valid at once so one can be rotated without
  downtime. Every configured token is compared, always, on SHA-256 digests of equal length, so
  the time taken says nothing about which token, or how much of one, matched.
* **Signature** (optional, svix style). Headers ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature`` (space-separated ``v1,<base64>``), or the same three named ``svix-id``,
  ``svix-timestamp`` and ``svix-signature`` (each header is looked up under its ``webhook-`` name
  first, as Recall's sample verifier does); the signature is
  ``base64(HMAC-SHA256(base64decode(secret minus "whsec_"), "{id}.{timestamp}.{body}"))`` and the
  body of a WebSocket upgrade is empty. Timestamps outside the tolerance are refused as replays.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

#: Bounded rejection reasons: metric label values and log words.
MISSING_TOKEN: Final = "missing_token"
INVALID_TOKEN: Final = "invalid_token"
MISSING_SIGNATURE: Final = "missing_signature"
INVALID_SIGNATURE: Final = "invalid_signature"
STALE_SIGNATURE: Final = "stale_signature"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class TokenVerifier:
    """Checks a ``token`` query value against every configured token in constant time."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = tuple(_digest(t) for t in tokens)
        if not self._digests:
            raise ValueError("at least one token is required")

    def check(self, token: str | None) -> str | None:
        """None when ``token`` is valid, else the rejection reason."""
        if not token:
            return MISSING_TOKEN
        candidate = _digest(token)
        ok = False
        for expected in self._digests:  # no early exit: the work is the same whichever matches
            ok |= hmac.compare_digest(candidate, expected)
        return None if ok else INVALID_TOKEN


class SignatureVerifier:
    """Checks Recall's svix-style signature headers on the upgrade request."""

    def __init__(
        self,
        secrets: Iterable[str],
        *,
        tolerance_s: int = 300,
        required: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = []
        for secret in secrets:
            raw = secret.removeprefix("whsec_")
            try:
                keys.append(base64.b64decode(raw, validate=True))
            except binascii.Error:
                raise ValueError("a signing secret is not whsec_<base64>") from None
        self._keys = tuple(keys)
        self._tolerance = tolerance_s
        self._required = required
        self._clock = clock

    def check(self, headers: Mapping[str, str], body: bytes = b"") -> str | None:
        """None when the request is acceptable, else the rejection reason."""
        # Each header under its ``webhook-`` name, else its ``svix-`` one (as Recall's sample verifier reads them).
        msg_id = headers.get("webhook-id") or headers.get("svix-id")
        stamp = headers.get("webhook-timestamp") or headers.get("svix-timestamp")
        signature = headers.get("webhook-signature") or headers.get("svix-signature")
        if not (msg_id and stamp and signature):
            return MISSING_SIGNATURE if self._required else None
        try:
            sent_at = int(stamp)
        except ValueError:
            return INVALID_SIGNATURE
        if abs(self._clock() - sent_at) > self._tolerance:
            return STALE_SIGNATURE
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = [base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()) for key in self._keys]
        ok = False
        for entry in signature.split():
            version, _, value = entry.partition(",")
            if version != "v1":
                continue
            for exp in expected:
                ok |= hmac.compare_digest(value.encode(), exp)
        return None if ok else INVALID_SIGNATURE


def sign(secret: str, msg_id: str, timestamp: int, body: bytes = b"", *, prefix: str = "webhook") -> dict[str, str]:
    """The headers Recall would send (``prefix`` ``"svix"`` names them ``svix-*``); used by the bot simulator and tests."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(timestamp),
        f"{prefix}-signature": "v1," + base64.b64encode(mac).decode(),
    }
