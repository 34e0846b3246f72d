"""Checking that a hook's request comes from its platform: each platform signs the raw body.

- Slack (https://api.slack.com/authentication/verifying-requests-from-slack):
  ``X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:{timestamp}:{body}")>`` with
  ``X-Slack-Request-Timestamp`` (Unix seconds).
- Discord (https://discord.com/developers/docs/interactions/overview, "Setting Up an Endpoint"):
  ``X-Signature-Ed25519: <hex Ed25519 signature of timestamp + body>`` with
  ``X-Signature-Timestamp``, checked with the application's public key (``cryptography``).
- Teams outgoing webhooks (https://learn.microsoft.com/microsoftteams/platform/webhooks-and-
  connectors/how-to/add-outgoing-webhook): ``Authorization: HMAC <base64 HMAC-SHA256(
  base64-decoded security token, body)>``; the time is the activity's own ``timestamp``.

Digests are compared in constant time (``hmac.compare_digest``). A timestamp more than
``MAX_AGE`` seconds away from now is refused, so a captured request cannot be replayed later.
Every refusal is a ``chinwag.errors.BadSignature`` (401), with nothing of the request in it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from chinwag.errors import BadSignature

MAX_AGE = 300.0
"""Seconds a signed request's timestamp may be from now (Slack's own figure: five minutes)."""


def _fresh(timestamp: str | None, now: float) -> None:
    try:
        sent = float(timestamp) if timestamp is not None else None
    except ValueError:
        sent = None
    if sent is None:
        raise BadSignature("the request has no valid timestamp")
    if abs(now - sent) > MAX_AGE:
        raise BadSignature("the request's timestamp is too old or in the future")


def verify_slack(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """Check a Slack request's ``v0`` signature and its timestamp.

    Args:
        secret: the app's signing secret.
        headers: the request's headers (lower-case names, as Starlette gives them).
        body: the raw body, exactly as received.
        now: the time, Unix seconds.

    Raises:
        BadSignature: no or a wrong signature, or a timestamp over ``MAX_AGE`` from ``now``.
    """
    timestamp = headers.get("x-slack-request-timestamp")
    _fresh(timestamp, now)
    given = headers.get("x-slack-signature", "")
    base = b"v0:" + str(timestamp).encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise BadSignature("the request's signature is not valid")


def verify_discord(public_key: str, headers: Mapping[str, str], body: bytes,
                   now: float) -> None:
    """Check a Discord interaction's Ed25519 signature and its timestamp.

    Args:
        public_key: the application's public key, 64 hex digits.
        headers, body, now: as for ``verify_slack``.

    Raises:
        BadSignature: as for ``verify_slack`` (Discord sends wrong signatures on purpose
            and expects this 401).
    """
    timestamp = headers.get("x-signature-timestamp")
    _fresh(timestamp, now)
    try:
        signature = bytes.fromhex(headers.get("x-signature-ed25519", ""))
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            signature, str(timestamp).encode() + body)
    except (ValueError, InvalidSignature):
        raise BadSignature("the request's signature is not valid") from None


def verify_teams(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Check a Teams outgoing webhook's HMAC (its freshness is ``check_teams_time``'s: the
    time is in the signed body).

    Args:
        secret: the security token Teams showed when the webhook was made (base64).
        headers, body: as for ``verify_slack``.

    Raises:
        BadSignature: no ``Authorization: HMAC ...`` header, or a wrong one.
    """
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.upper() != "HMAC" or not given:
        raise BadSignature("the request has no HMAC authorization")
    key = base64.b64decode(secret)
    expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, given.strip().encode()):
        raise BadSignature("the request's signature is not valid")


def check_teams_time(timestamp: object, now: float) -> None:
    """Refuse a Teams activity whose ``timestamp`` (ISO 8601, in the signed body) is more than
    ``MAX_AGE`` seconds from ``now``; an activity without one passes (the HMAC still holds).

    Raises:
        BadSignature: a timestamp that is stale, in the future or not a time.
    """
    if timestamp is None:
        return
    try:
        sent = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise BadSignature("the request has no valid timestamp") from None
    _fresh(str(sent), now)
