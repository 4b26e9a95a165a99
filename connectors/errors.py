"""The connectors app's exceptions."""

from __future__ import annotations

from falcon.errors import InvalidInput


class ConnectorError(Exception):
    """A connector call that failed; ``retryable`` for timeouts, connection errors, 429 and 5xx.

    The engine's database hooks turn it into a step failure with the same code, message and status.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "step_failed",
        retryable: bool = False,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.status_code = status_code


class ConnectorInvalid(InvalidInput):
    def __init__(self, problems: dict[str, list[str]]) -> None:
        path, messages = next(iter(problems.items()))
        super().__init__(f"{path}: {messages[0]}", code="invalid_connector")
        self.problems = problems

    @property
    def fields(self) -> dict[str, list[str]]:
        return self.problems


class DecryptionError(Exception):
    """A ciphertext that is malformed, tampered with, moved to another row, or under an unknown key."""


class Blocked(Exception):
    """A destination the guard refuses; the message names the address and why."""
