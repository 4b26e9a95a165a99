"""Webhook signing secrets (``whsec_``) and signatures: one definition for triggers and notification channels.

Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, several signatures allowed
during a rotation. GitHub's ``X-Hub-Signature-256`` and a shared-secret header are verified here too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


def _same(expected: str, offered: str) -> bool:
    """Constant-time comparison that never raises: a header may hold any characters (non-ASCII too)."""
    return hmac.compare_digest(expected.encode(), offered.encode("utf-8", "replace"))


def whsec_new() -> str:
    """A new signing secret: ``whsec_`` and 24 random bytes in base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def whsec_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    return base64.b64decode(secret.removeprefix(PREFIX))


def standard_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) of one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(whsec_key(secret), signed, hashlib.sha256).digest()).decode()


def standard_headers(secret: str, msg_id: str, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for sending ``body`` now."""
    stamp = str(int(time.time()))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": standard_signature(secret, msg_id, stamp, body),
    }


def verify_standard(secrets_now: Iterable[str], headers: Mapping[str, str], body: bytes) -> str | None:
    """Standard Webhooks: None when valid, else why not. ``headers`` has lowercase names."""
    msg_id, stamp, signatures = (
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
    )
    if not (msg_id and stamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent = int(stamp)
    except ValueError:
        return "webhook-timestamp is not a number"
    if not msg_id.isascii() or len(msg_id) > 200:
        return "webhook-id is not a short ASCII string"
    if abs(time.time() - sent) > TOLERANCE_S:
        return "webhook-timestamp is outside the 5-minute tolerance"
    offered = [part for part in signatures.split() if part.startswith("v1,")]
    for secret in secrets_now:
        expected = standard_signature(secret, msg_id, stamp, body)
        if any(_same(expected, candidate) for candidate in offered):
            return None
    return "no signature matches"


def verify_github(secrets_now: Iterable[str], headers: Mapping[str, str], body: bytes) -> str | None:
    offered = headers.get("x-hub-signature-256", "")
    if not offered.startswith("sha256="):
        return "missing X-Hub-Signature-256"
    for secret in secrets_now:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if _same(expected, offered):
            return None
    return "no signature matches"


def verify_header(secrets_now: Iterable[str], header_value: str) -> str | None:
    if any(_same(secret, header_value) for secret in secrets_now):
        return None
    return "the shared secret header is missing or wrong"
