"""What the runner exchanges with the outside world: LLM calls, checkpoints, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class LlmRequest:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    timeout_s: float = 120.0
    connector: str | None = None
    json_schema: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None  # the provider's structured output, passed through


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class LlmResult:
    text: str
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: int
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class ResolvedPrompt:
    """A prompt version as a step uses it: its templates, declared variables and model parameters."""

    template: str
    system: str = ""
    input_variables: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)


class StepFailure(Exception):
    """A step could not produce its output. ``retryable`` failures are retried per the step's policy."""

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


class LlmError(StepFailure):
    pass


class RunCancelled(Exception):
    pass


@dataclass
class StepRecord:
    """One attempt of one step (or one iteration / tool call of an agent step), as the log keeps it."""

    key: str
    step_id: str
    step_type: str
    kind: str = "step"
    attempt: int = 1
    status: str = "succeeded"
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    model: str = ""
    provider: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    parent_key: str = ""


class Hooks(Protocol):
    """What a runner needs from its host (the Celery task, a test, a benchmark)."""

    def checkpoint(self, record: StepRecord) -> None: ...

    def step_started(self, key: str, step_type: str) -> None: ...

    def cancelled(self) -> bool: ...

    def llm(self, request: LlmRequest) -> LlmResult: ...

    def run_agent(self, name: str, input: Any, depth: int) -> Any: ...

    def resolve_prompt(self, ref: Any, step_id: str) -> ResolvedPrompt: ...

    def agent_input_schema(self, name: str) -> dict[str, Any]: ...

    def call_connector(self, step_type: str, connector: str, operation: dict[str, Any]) -> Any: ...

    def mcp_tool(self, connector: str, tool: str) -> dict[str, Any]:
        """The MCP server's description of ``tool`` (``name``, ``description``, ``input_schema``)."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def thread_done(self) -> None: ...
