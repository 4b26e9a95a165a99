"""Falcon's own exceptions, the one error shape, and the one mapping of a refusal to an HTTP answer.

Services raise these; the API's exception handler, the public webhook endpoints and Django's error
handlers all answer with ``error_body`` / ``error_parts``.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.http import JsonResponse


class FalconError(Exception):
    """A refusal a caller can act on: a stable ``code``, a human ``message``, optionally the ``field``."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field

    @property
    def fields(self) -> dict[str, list[str]]:
        return {self.field: [self.message]} if self.field else {}

    @property
    def details(self) -> dict[str, object]:
        """Extra members of the error object (a quota's metric, limit and usage)."""
        return {}


class InvalidInput(FalconError):
    status_code = 400
    default_code = "invalid"


class Forbidden(FalconError):
    status_code = 403
    default_code = "permission_denied"


class NotFound(FalconError):
    status_code = 404
    default_code = "not_found"

    def __init__(self, message: str = "Not found.", **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)


class Conflict(FalconError):
    status_code = 409
    default_code = "conflict"


class Gone(FalconError):
    status_code = 410
    default_code = "gone"


def error_body(
    code: str,
    message: str,
    fields: Mapping[str, object] | None = None,
    details: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The one error shape of the API (``details``: e.g. a quota's metric, limit and usage)."""
    return {"error": {"code": code, "message": message, "fields": dict(fields or {}), **(details or {})}}


def error_parts(exc: FalconError) -> tuple[dict[str, object], int, dict[str, str]]:
    """Body, status and headers of a refusal (``Retry-After`` when it says how long to wait)."""
    wait = getattr(exc, "wait", None)
    headers = {"Retry-After": str(max(1, int(wait)))} if wait is not None else {}
    return error_body(exc.code, exc.message, exc.fields, exc.details), exc.status_code, headers


def error_response(exc: FalconError) -> JsonResponse:
    """A refusal answered outside DRF (public webhook endpoints)."""
    body, status, headers = error_parts(exc)
    return JsonResponse(body, status=status, headers=headers)


def json_error(status: int, code: str, message: str) -> JsonResponse:
    """An error in the one shape, for answers that have no exception behind them."""
    return JsonResponse(error_body(code, message), status=status)
