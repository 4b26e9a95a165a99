"""Typed readers for the environment: the only place settings come from.

Every reader accepts ``<NAME>_FILE`` as an alternative to ``<NAME>`` (a path whose contents are the
value, for secrets mounted as files), and raises ``ImproperlyConfigured`` on a missing required value
or one that does not parse, naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_raw(name: str) -> str | None:
    """The value of ``name``, or the contents of the file ``<name>_FILE`` points at, or None."""
    value = os.environ.get(name)
    file_path = os.environ.get(f"{name}_FILE")
    if value is not None and file_path:
        raise ImproperlyConfigured(f"Set either {name} or {name}_FILE, not both.")
    if file_path:
        try:
            return Path(file_path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_path!r} cannot be read: {exc.strerror}") from exc
    return value


def env_is_set(name: str) -> bool:
    return env_raw(name) is not None


def _read(name: str, parse: Callable[[str], T], default: T | object) -> T:
    raw = env_raw(name)
    if raw is None:
        if default is _MISSING:
            raise ImproperlyConfigured(f"The environment variable {name} is required.")
        return default  # type: ignore[return-value]
    try:
        return parse(raw)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"The environment variable {name} is invalid: {exc}") from exc


def env_str(name: str, default: str | object = _MISSING) -> str:
    return _read(name, str, default)


def env_int(name: str, default: int | object = _MISSING, *, minimum: int | None = None) -> int:
    def parse(raw: str) -> int:
        value = int(raw.strip())
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return _read(name, parse, default)


def env_bool(name: str, default: bool | object = _MISSING) -> bool:
    def parse(raw: str) -> bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected one of 1/0, true/false, yes/no, on/off; got {raw!r}")

    return _read(name, parse, default)


def env_list(name: str, default: list[str] | object = _MISSING, *, separator: str = ",") -> list[str]:
    def parse(raw: str) -> list[str]:
        return [item.strip() for item in raw.split(separator) if item.strip()]

    return _read(name, parse, default)


def email_settings_from_url(url: str) -> dict[str, object]:
    """Django e-mail settings from ``EMAIL_URL``.

    Schemes: ``smtp://user:pass@host:port`` (``?tls=1`` for STARTTLS), ``smtps://`` (implicit TLS),
    ``console://``, ``locmem://``, ``dummy://``, ``file:///absolute/folder``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    backends = {
        "console": "django.core.mail.backends.console.EmailBackend",
        "locmem": "django.core.mail.backends.locmem.EmailBackend",
        "dummy": "django.core.mail.backends.dummy.EmailBackend",
        "file": "django.core.mail.backends.filebased.EmailBackend",
        "smtp": "django.core.mail.backends.smtp.EmailBackend",
        "smtps": "django.core.mail.backends.smtp.EmailBackend",
    }
    if scheme not in backends:
        raise ImproperlyConfigured(
            f"EMAIL_URL has an unknown scheme {scheme!r}; use one of {', '.join(sorted(backends))}."
        )
    result: dict[str, object] = {"EMAIL_BACKEND": backends[scheme]}
    if scheme == "file":
        if not parts.path:
            raise ImproperlyConfigured("EMAIL_URL file:// needs a folder path, e.g. file:///var/mail.")
        result["EMAIL_FILE_PATH"] = parts.path
    elif scheme in {"smtp", "smtps"}:
        query = parse_qs(parts.query)
        try:
            port = parts.port
        except ValueError as exc:
            raise ImproperlyConfigured(f"EMAIL_URL has an invalid port: {exc}") from exc
        result.update(
            EMAIL_HOST=parts.hostname or "localhost",
            EMAIL_PORT=port or (465 if scheme == "smtps" else 25),
            EMAIL_HOST_USER=unquote(parts.username or ""),
            EMAIL_HOST_PASSWORD=unquote(parts.password or ""),
            EMAIL_USE_SSL=scheme == "smtps",
            EMAIL_USE_TLS=scheme == "smtp" and query.get("tls", ["0"])[0].lower() in _TRUE,
            EMAIL_TIMEOUT=10,
        )
    return result
