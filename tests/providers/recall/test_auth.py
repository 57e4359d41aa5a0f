"""Token and signature checks for the Recall upgrade (pure: no sockets)."""

from __future__ import annotations

import base64

import pytest

from relay.providers.recall.auth import SignatureVerifier, TokenVerifier, sign

SECRET = "whsec_" + base64.b64encode(b"recall-workspace-secret-bytes-32").decode()
OTHER = "whsec_" + base64.b64encode(b"another-secret-for-the-rotation!").decode()
NOW = 1_790_000_000


def test_any_configured_token_is_accepted() -> None:
    tokens = TokenVerifier(["old-token-0123456789", "new-token-0123456789"])
    assert tokens.check("old-token-0123456789") is None
    assert tokens.check("new-token-0123456789") is None


@pytest.mark.parametrize(
    ("token", "reason"),
    [(None, "missing_token"), ("", "missing_token"), ("new-token-012345678", "invalid_token"),
     ("new-token-01234567890", "invalid_token"), ("NEW-TOKEN-0123456789", "invalid_token"), ("\udcff", "invalid_token")],
)  # fmt: skip
def test_wrong_missing_or_other_length_tokens_are_refused(token: str | None, reason: str) -> None:
    assert TokenVerifier(["new-token-0123456789"]).check(token) == reason


def test_a_verifier_needs_a_token() -> None:
    with pytest.raises(ValueError):
        TokenVerifier([])


def verifier(**kwargs: object) -> SignatureVerifier:
    return SignatureVerifier([OTHER, SECRET], clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def test_a_signature_from_either_secret_passes() -> None:
    assert verifier().check(sign(SECRET, "msg_1", NOW)) is None
    assert verifier().check(sign(OTHER, "msg_1", NOW - 299)) is None


def test_signature_with_several_entries_passes_if_one_matches() -> None:
    headers = sign(SECRET, "msg_1", NOW)
    headers["webhook-signature"] = "v1,AAAA v2,zzz " + headers["webhook-signature"]
    assert verifier().check(headers) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (sign(SECRET, "msg_1", NOW - 301), "stale_signature"),
        (sign(SECRET, "msg_1", NOW + 301), "stale_signature"),
        ({**sign(SECRET, "msg_1", NOW), "webhook-id": "msg_2"}, "invalid_signature"),
        ({**sign(SECRET, "msg_1", NOW), "webhook-timestamp": "soon"}, "invalid_signature"),
        (sign("whsec_" + base64.b64encode(b"x" * 32).decode(), "msg_1", NOW), "invalid_signature"),
    ],
)
def test_bad_or_replayed_signatures_are_refused(headers: dict[str, str], reason: str) -> None:
    assert verifier().check(headers) == reason


def test_unsigned_upgrades_pass_unless_required() -> None:
    assert verifier().check({}) is None
    assert verifier(required=True).check({}) == "missing_signature"


def test_secrets_must_be_base64() -> None:
    with pytest.raises(ValueError):
        SignatureVerifier(["whsec_not*base64"])


# The svix-* names: Recall's sample verifier (recallai/sample-apps, verify_request_from_recall.ts)
# reads each header as `headers["webhook-..."] ?? headers["svix-..."]`.


def test_svix_header_names_are_accepted_like_webhook_ones() -> None:
    headers = sign(SECRET, "msg_1", NOW, prefix="svix")
    assert set(headers) == {"svix-id", "svix-timestamp", "svix-signature"}
    assert verifier().check(headers) is None
    assert verifier(required=True).check(headers) is None
    assert verifier().check(sign(OTHER, "msg_1", NOW - 299, prefix="svix")) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (sign(SECRET, "msg_1", NOW - 301, prefix="svix"), "stale_signature"),
        ({**sign(SECRET, "msg_1", NOW, prefix="svix"), "svix-id": "msg_2"}, "invalid_signature"),
        ({**sign(SECRET, "msg_1", NOW, prefix="svix"), "svix-timestamp": "soon"}, "invalid_signature"),
        (sign("whsec_" + base64.b64encode(b"x" * 32).decode(), "msg_1", NOW, prefix="svix"), "invalid_signature"),
    ],
)
def test_bad_or_replayed_svix_signatures_are_refused(headers: dict[str, str], reason: str) -> None:
    assert verifier().check(headers) == reason


def test_partial_svix_headers_are_missing_a_signature() -> None:
    partial = sign(SECRET, "msg_1", NOW, prefix="svix")
    del partial["svix-signature"]
    assert verifier().check(partial) is None
    assert verifier(required=True).check(partial) == "missing_signature"


def test_webhook_names_come_first_header_by_header() -> None:
    # Each header is looked up under its webhook- name, then its svix- one, as the sample does: a
    # webhook-signature wins over a svix-signature, and a missing webhook-id is found as svix-id.
    good = sign(SECRET, "msg_1", NOW)
    assert verifier().check({**good, "svix-signature": "v1,AAAA"}) is None
    assert verifier().check({**sign(SECRET, "msg_1", NOW, prefix="svix"), "webhook-signature": "v1,AAAA"}) == "invalid_signature"
    mixed = {"svix-id": "msg_1", "webhook-timestamp": good["webhook-timestamp"], "webhook-signature": good["webhook-signature"]}
    assert verifier().check(mixed) is None
