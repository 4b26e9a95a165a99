"""Structured logs: JSON lines with the context of the request or task that wrote them, secrets redacted.

Context is bound per request (``RequestIdMiddleware``), per Celery task (signals in ``falcon.celery``) and
per run and step (the run executor), and cleared when each ends: ``bound(run_id=…)`` for a block,
``bind(…)`` for the rest of the current request or task. ``FALCON_LOG_FORMAT=text`` switches the
console back to plain lines for development.

Redaction follows the run log's rules: values of secret-looking keys, every secret value this process
has encrypted or decrypted (connector credentials, trigger and channel signing secrets, the platform's
provider keys), and the token shapes Falcon issues (``flk_…`` API keys, ``whsec_…`` signing secrets,
bearer credentials) are replaced by ``[redacted]`` in the message, the exception text and every field.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

FIELDS = ("request_id", "tenant", "run_id", "step", "task", "task_id", "trace_id")
REDACTED = "[redacted]"

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("falcon_log_context", default=_EMPTY)

# Values the process has seen as secrets (bounded: the most recent ones), longest first when replacing.
_MAX_SECRETS = 1024  # each log line is checked against every one: 65 µs at 1024
_secrets: OrderedDict[str, None] = OrderedDict()
_secrets_lock = threading.Lock()
_TOKEN_SHAPES = re.compile(
    r"(fl[ki]_[A-Za-z0-9_\-]{8,}|whsec_[A-Za-z0-9+/=_\-]{8,}|sk-[A-Za-z0-9_\-]{12,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}|(?<=://)[^/\s:@]+:[^/\s@]+(?=@))"
)


def bind(**fields: object) -> Token[Mapping[str, str]]:
    """Adds fields to the current context; the caller that owns the context resets it (``unbind``)."""
    values = {k: str(v) for k, v in fields.items() if v is not None and v != ""}
    return _context.set({**_context.get(), **values})


def unbind(token: Token[Mapping[str, str]]) -> None:
    _context.reset(token)


def drop(*names: str) -> None:
    """Removes fields from the current context (a step that ended)."""
    context = _context.get()
    if any(name in context for name in names):
        _context.set(MappingProxyType({k: v for k, v in context.items() if k not in names}))


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current() -> Mapping[str, str]:
    return _context.get()


def fresh() -> Token[Mapping[str, str]]:
    """An empty context (a new request or task must not inherit a previous one's fields)."""
    return _context.set(_EMPTY)


def secret_seen(value: str | None) -> None:
    """Remembers a secret value so that no log line carries it."""
    if not value or len(value) < 6:
        return
    with _secrets_lock:
        _secrets[value] = None
        _secrets.move_to_end(value)
        while len(_secrets) > _MAX_SECRETS:
            _secrets.popitem(last=False)


def redact(text: str) -> str:
    with _secrets_lock:
        known = list(_secrets)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN_SHAPES.sub(REDACTED, text)


def _trace_id() -> str:
    from falcon.tracing import trace_id

    return trace_id()


class ContextFilter(logging.Filter):
    """Puts the bound context on every record (``-`` where a field does not apply) and redacts its
    message once, for every handler."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        from django.conf import settings  # configured by now: logging is set up by django.setup()

        for value in (
            settings.SECRET_KEY,
            getattr(settings, "STRIPE_SECRET_KEY", ""),
            getattr(settings, "STRIPE_WEBHOOK_SECRET", ""),
            *(c.get("api_key", "") for c in getattr(settings, "FALCON_LLM_PROVIDERS", {}).values()),
            *(base64.b64encode(key).decode() for _, key in getattr(settings, "FALCON_ENCRYPTION_KEYS", [])),
            settings.DATABASES["default"].get("PASSWORD", ""),
        ):
            secret_seen(value)

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for field in FIELDS:
            setattr(record, field, context.get(field, "-"))
        if record.trace_id == "-":  # type: ignore[attr-defined]
            record.trace_id = _trace_id() or "-"
        if not getattr(record, "_falcon_redacted", False):
            message = record.getMessage()
            record.msg, record.args = redact(message), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
            record._falcon_redacted = True
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "_falcon_redacted",
    *FIELDS,
}
_SECRET_KEY = re.compile(r"(authorization|api[_-]?key|password|passwd|secret|token|cookie)", re.IGNORECASE)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound context, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = getattr(record, field, "-")
            if value != "-":
                entry[field] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = REDACTED if _SECRET_KEY.search(key) else _plain(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(tenant)s %(run_id)s] %(message)s"
        )
