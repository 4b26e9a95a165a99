"""What a tenant may read of an error: a short message, without tracebacks, local paths or secrets.

Errors shown to tenants (connector tests, step errors, notification deliveries, LLM failures) pass
through ``public_error``: an upstream system's body is cut to a short excerpt, a Python traceback or a
file path of this installation never leaves it, and known secret values are redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_PUBLIC_ERROR_CHARS = 300
REDACTED = "[redacted]"
_TRACEBACK = re.compile(r"Traceback \(most recent call last\):.*", re.DOTALL)
_FRAME = re.compile(r'File "[^"]+", line \d+(, in \S+)?')
# Absolute paths of this machine (not URLs: a "/" preceded by ":/" or a host is left alone).
_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.+-]+/)+[\w.+-]*")
_SPACE = re.compile(r"\s+")


def public_error(text: object, secrets: Iterable[str] = (), limit: int = MAX_PUBLIC_ERROR_CHARS) -> str:
    message = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            message = message.replace(secret, REDACTED)
    message = _TRACEBACK.sub("[traceback removed]", message)
    message = _FRAME.sub("[frame]", message)
    message = _PATH.sub("[path]", message)
    message = _SPACE.sub(" ", message).strip()
    return message if len(message) <= limit else message[: limit - 1] + "…"
