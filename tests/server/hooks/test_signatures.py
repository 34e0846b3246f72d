"""The three platforms' signatures, checked against the platforms' own implementations:
slack_sdk's SignatureVerifier, PyNaCl's Ed25519 keys (chinwag verifies with cryptography),
and the HMAC Microsoft documents for Teams outgoing webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from nacl.encoding import HexEncoder
from nacl.signing import SigningKey
from slack_sdk.signature import Clock, SignatureVerifier

from chinwag.errors import BadSignature
from chinwag.server.hooks.signatures import (
    MAX_AGE,
    check_teams_time,
    verify_discord,
    verify_slack,
    verify_teams,
)

BODY = b'{"type":"event_callback","event":{"text":"caf\\u00e9 \xe2\x98\x95"}}'


class _Then(Clock):
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def slack_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp),
                                                             body=body.decode())
    return {"x-slack-request-timestamp": str(timestamp), "x-slack-signature": str(signature)}


def test_slack_signatures_agree_with_slack_sdk() -> None:
    now = time.time()
    headers = slack_headers("s3cret", int(now), BODY)
    verify_slack("s3cret", headers, BODY, now)
    assert SignatureVerifier("s3cret").is_valid(BODY.decode(), headers[
        "x-slack-request-timestamp"], headers["x-slack-signature"])
    with pytest.raises(BadSignature, match="signature"):
        verify_slack("other", headers, BODY, now)
    with pytest.raises(BadSignature, match="signature"):
        verify_slack("s3cret", headers, BODY + b" ", now)
    with pytest.raises(BadSignature):
        verify_slack("s3cret", {}, BODY, now)


def test_a_stale_slack_timestamp_is_refused_as_slack_sdk_refuses_it() -> None:
    now = time.time()
    old = int(now - MAX_AGE - 60)
    headers = slack_headers("s3cret", old, BODY)
    assert not SignatureVerifier("s3cret", clock=_Then(now)).is_valid(
        BODY.decode(), str(old), headers["x-slack-signature"])
    with pytest.raises(BadSignature, match="timestamp"):
        verify_slack("s3cret", headers, BODY, now)
    later = slack_headers("s3cret", int(now + MAX_AGE + 60), BODY)
    with pytest.raises(BadSignature, match="timestamp"):
        verify_slack("s3cret", later, BODY, now)
    with pytest.raises(BadSignature, match="timestamp"):
        verify_slack("s3cret", {**headers, "x-slack-request-timestamp": "yesterday"}, BODY, now)


def test_discord_signatures_made_by_pynacl_verify_with_cryptography() -> None:
    key = SigningKey.generate()
    public = key.verify_key.encode(encoder=HexEncoder).decode()
    now = time.time()
    timestamp = str(int(now))
    signature = key.sign(timestamp.encode() + BODY).signature.hex()
    headers = {"x-signature-ed25519": signature, "x-signature-timestamp": timestamp}
    verify_discord(public, headers, BODY, now)
    other = SigningKey.generate().verify_key.encode(encoder=HexEncoder).decode()
    with pytest.raises(BadSignature, match="signature"):
        verify_discord(other, headers, BODY, now)
    with pytest.raises(BadSignature, match="signature"):
        verify_discord(public, headers, BODY.replace(b"caf", b"tea"), now)
    with pytest.raises(BadSignature, match="signature"):
        verify_discord(public, {**headers, "x-signature-ed25519": "zz"}, BODY, now)
    stale = str(int(now - MAX_AGE - 1))
    with pytest.raises(BadSignature, match="timestamp"):
        verify_discord(public, {"x-signature-ed25519": key.sign(
            stale.encode() + BODY).signature.hex(), "x-signature-timestamp": stale}, BODY, now)


def teams_header(secret: str, body: bytes) -> str:
    """The Authorization header Teams sends (Microsoft's sample: HMAC-SHA256 keyed with the
    base64-decoded security token, base64)."""
    digest = hmac.new(base64.b64decode(secret), body, hashlib.sha256).digest()
    return "HMAC " + base64.b64encode(digest).decode()


def test_teams_hmac() -> None:
    secret = base64.b64encode(b"a security token of 32 bytes....").decode()
    verify_teams(secret, {"authorization": teams_header(secret, BODY)}, BODY)
    with pytest.raises(BadSignature, match="not valid"):
        verify_teams(secret, {"authorization": teams_header(secret, BODY + b"x")}, BODY)
    with pytest.raises(BadSignature, match="no HMAC"):
        verify_teams(secret, {"authorization": "Bearer abc"}, BODY)
    with pytest.raises(BadSignature, match="no HMAC"):
        verify_teams(secret, {}, BODY)


def test_teams_activity_time() -> None:
    now = time.time()
    check_teams_time(None, now)
    check_teams_time("2017-01-19T22:00:00.7385471Z", 1484863200.0)  # Teams' 7 digits
    with pytest.raises(BadSignature, match="timestamp"):
        check_teams_time("2017-01-19T22:00:00.000Z", now)
    with pytest.raises(BadSignature, match="timestamp"):
        check_teams_time("noon", now)
