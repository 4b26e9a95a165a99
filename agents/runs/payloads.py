"""What the run log may keep: secrets redacted, big payloads truncated with a marker."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings

from falcon.redaction import public_error

SECRET_KEY_PATTERN = re.compile(
    r"(authorization|api[_-]?key|password|passwd|secret|token|cookie)", re.IGNORECASE
)
REDACTED = "[redacted]"


def _redact_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and SECRET_KEY_PATTERN.search(k) else _redact_keys(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_keys(v) for v in value]
    return value


def log_safe(value: Any, *, secrets: list[str] | None = None, limit: int | None = None) -> Any:
    """``value`` with secret-looking fields and known secret values redacted, truncated past ``limit``."""
    if value is None:
        return None
    limit = limit or settings.FALCON_RUN_PAYLOAD_LIMIT_BYTES
    cleaned = _redact_keys(value)
    text = json.dumps(cleaned, default=str, ensure_ascii=False)
    replaced = text
    for secret in secrets or []:
        if secret and len(secret) >= 6:
            replaced = replaced.replace(json.dumps(secret)[1:-1], REDACTED)
    if replaced != text:
        cleaned = json.loads(replaced)
        text = replaced
    size = len(text.encode("utf-8"))
    if size > limit:
        return {"_truncated": True, "bytes": size, "preview": text[: min(4096, limit // 2)]}
    return cleaned


def public_error_of(error: dict[str, Any] | None, secrets: list[str]) -> dict[str, Any] | None:
    """A step's or run's error as tenants see it: the message short, without internals or secrets."""
    if not error or "message" not in error:
        return error
    return {**error, "message": public_error(error["message"], secrets)}
