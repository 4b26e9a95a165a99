"""The agents app's exceptions outside the pure engine (which keeps its own in ``engine/types.py``)."""

from __future__ import annotations

from typing import Any

from agents.engine.validate import Problem
from falcon.errors import FalconError, InvalidInput


class WorkflowInvalid(InvalidInput):
    """Every problem of a definition, keyed by JSON path under ``definition``."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        super().__init__(
            f"The workflow has {len(problems)} problem(s); first: {first.path}: {first.message}",
            code="invalid_workflow",
        )
        self.problems = problems

    @property
    def fields(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for problem in self.problems:
            result.setdefault(f"definition.{problem.path}", []).append(problem.message)
        return result


class RunInputInvalid(InvalidInput):
    def __init__(self, problems: list[Any]) -> None:
        super().__init__(
            f"The input does not match the agent's input schema: {problems[0].path}: {problems[0].message}",
            code="invalid_input",
        )
        self.problems = problems

    @property
    def fields(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for problem in self.problems:
            result.setdefault(problem.path, []).append(problem.message)
        return result


class DeliveryFailed(Exception):
    """A channel refused or could not be reached; the task retries it."""


class TooManyStreams(FalconError):
    """Too many live event streams are open (this web process's, or this tenant's, share of them)."""

    status_code = 429
    default_code = "too_many_streams"

    def __init__(self, which: str) -> None:
        whose = "this tenant has" if which == "tenant" else "this server has"
        super().__init__(f"Too many live event streams: {whose} as many open as allowed; retry shortly.")
