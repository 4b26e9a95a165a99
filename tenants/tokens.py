"""Secrets handed to people once: API keys and invitation tokens.

API keys look like ``flk_live_<32 base62>_<6 base62 checksum>``: greppable by secret scanners, and the
CRC32 checksum lets a scanner (or our own authentication) reject a mistyped or made-up key without a
database lookup, as GitHub's tokens do.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
API_KEY_PREFIX = "flk_live_"
_RANDOM_LENGTH = 32
_CHECKSUM_LENGTH = 6
API_KEY_PATTERN = re.compile(
    rf"^{API_KEY_PREFIX}([0-9A-Za-z]{{{_RANDOM_LENGTH}}})_([0-9A-Za-z]{{{_CHECKSUM_LENGTH}}})$"
)
DISPLAY_PREFIX_LENGTH = len(API_KEY_PREFIX) + 8


def base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksum(body: str) -> str:
    return base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_LENGTH)


def api_key_generate() -> str:
    body = API_KEY_PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(_RANDOM_LENGTH))
    return f"{body}_{_checksum(body)}"


def api_key_is_well_formed(token: str) -> bool:
    """Shape and checksum, offline: what a secret scanner can check without asking us."""
    match = API_KEY_PATTERN.match(token)
    if not match:
        return False
    return secrets.compare_digest(_checksum(API_KEY_PREFIX + match.group(1)), match.group(2))


def api_key_display_prefix(token: str) -> str:
    return token[:DISPLAY_PREFIX_LENGTH]


def secret_hash(token: str) -> str:
    """SHA-256 hex: these secrets are long and random, so a fast hash is the right one (no salt needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def invitation_token_generate() -> str:
    return "fli_" + secrets.token_urlsafe(32)
