"""Falcon's own exceptions: services raise these; the API turns them into the one error shape."""

from __future__ import annotations


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
