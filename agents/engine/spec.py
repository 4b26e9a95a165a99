"""Typed models of a workflow definition; their JSON Schema is published at /api/v1/schemas/workflow.json."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
PROVIDERS = ("openai", "anthropic", "gemini", "ollama", "ollama_chat", "sandbox")


# Steps without I/O or waits: re-running one changes nothing outside the run, so their checkpoints may be
# batched and a workflow made only of them may run inline in a webhook request.
PURE_STEP_TYPES = frozenset({"transform", "branch"})


def provider_of(model: str) -> str:
    """The provider part of a ``provider/name`` model id ("" when there is none)."""
    return model.split("/", 1)[0] if "/" in model else ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Strict):
    max_attempts: int = Field(3, ge=1, le=10, description="Attempts in all, the first included.")
    backoff_s: float = Field(1.0, ge=0, le=60, description="First delay; doubles each retry, with jitter.")
    max_backoff_s: float = Field(30.0, ge=0, le=300)


class _StepBase(_Strict):
    id: str = Field(
        pattern=STEP_ID_PATTERN, description="Unique within the workflow; steps.<id> in templates."
    )
    needs: list[str] | None = Field(
        None, description="Steps this one runs after. Default: the previous step in the list."
    )
    when: str | None = Field(None, description="Template expression; false skips the step.")
    retry: RetryPolicy | None = None
    timeout_s: float | None = Field(None, gt=0, le=3600)


class PromptRef(_Strict):
    """A governed prompt from the library: by label (default ``production``) or a fixed version."""

    name: str
    label: str | None = None
    version: int | None = Field(None, ge=1)
    variables: dict[str, Any] = Field(
        default_factory=dict, description="Values for the prompt's variables (templates over the context)."
    )


class LlmStep(_StepBase):
    type: Literal["llm"]
    model: str = Field(description="provider/model: openai/…, anthropic/…, gemini/…, ollama/…, sandbox/…")
    system: str | None = None
    prompt: str | PromptRef = Field(description="Template of the user message (or a governed prompt).")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=200_000)
    json_schema: dict[str, Any] | None = Field(None, description="Structured output, validated (one repair).")
    fallbacks: list[str] = Field(default_factory=list, description="Other models tried in order.")
    connector: str | None = Field(None, description="Provider connector name; default: the tenant's default.")


class AgentTool(_Strict):
    type: Literal["agent"]
    agent: str = Field(description="Name of another agent of the tenant; its published version runs.")
    description: str = ""


class ConnectorTool(_Strict):
    """A connector call the model may make. The author fixes the ``operation``; the model fills only
    the ``parameters`` (a JSON Schema of an object): with them declared, the operation's templates
    place ``args.<name>`` where the author wants them; without, each type has a default (``db_query``:
    only ``params``; ``http``: ``query`` and ``json``; ``send``: the message fields the author left
    open). A field the author fixed is never the model's to change."""

    type: Literal["http", "db_query", "send"]
    name: str = Field(pattern=STEP_ID_PATTERN)
    connector: str
    description: str = ""
    operation: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] | None = Field(
        None, description="JSON Schema (type object) of what the model fills; args.<name> in operation."
    )


class McpTool(_Strict):
    """A tool of an MCP server connector offered to the model. The author names the server's tool (the
    operation) and may fix some of its arguments; the model fills only the other arguments the server's
    input schema declares."""

    type: Literal["mcp"]
    connector: str
    tool: str = Field(min_length=1, max_length=128, description="The server's tool name.")
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The name the model sees; default: the tool's."
    )
    description: str = Field("", description="Default: the server's description of the tool.")
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments the author fixes (templates inside); the model cannot set them.",
    )


def mcp_function_name(tool: McpTool) -> str:
    return tool.name or re.sub(r"[^A-Za-z0-9_-]", "_", tool.tool)[:64]


def mcp_tool_parameters(tool: McpTool, server_schema: dict[str, Any]) -> dict[str, Any]:
    """The server's input schema without the arguments the author fixed; nothing undeclared accepted."""
    schema = dict(server_schema) if isinstance(server_schema, dict) else {}
    fixed = set(tool.arguments)
    properties = {k: v for k, v in (schema.get("properties") or {}).items() if k not in fixed}
    required = [r for r in schema.get("required") or [] if r not in fixed]
    schema.update(type="object", properties=properties, additionalProperties=False)
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    return schema


SEND_FIELDS = ("to", "subject", "body", "text", "blocks")


def tool_parameters(tool: ConnectorTool) -> dict[str, Any]:
    """The JSON Schema of the arguments the model may give a connector tool: nothing else is accepted."""
    if tool.parameters is not None:
        return {**tool.parameters, "type": "object", "additionalProperties": False}
    fixed = set(tool.operation)
    if tool.type == "db_query":
        properties: dict[str, Any] = {"params": {"type": ["array", "object"]}}
    elif tool.type == "http":
        properties = {
            "query": {"type": "object", "additionalProperties": {"type": "string"}},
            "json": {"description": "The JSON body."},
        }
    else:
        properties = {name: {} for name in SEND_FIELDS}
    properties = {name: schema for name, schema in properties.items() if name not in fixed}
    return {"type": "object", "properties": properties, "additionalProperties": False}


class AgentStep(_StepBase):
    type: Literal["agent"]
    model: str
    system: str | None = None
    prompt: str | PromptRef
    tools: list[Annotated[AgentTool | ConnectorTool | McpTool, Field(discriminator="type")]] = Field(
        default_factory=list
    )
    max_iterations: int = Field(8, ge=1, le=50)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=200_000)
    fallbacks: list[str] = Field(default_factory=list)
    connector: str | None = None


class HttpStep(_StepBase):
    type: Literal["http"]
    connector: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = "/"
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json", description="A JSON body (templates inside).")
    body: str | None = Field(None, description="A raw body instead of json (set Content-Type in headers).")


class DbQueryStep(_StepBase):
    type: Literal["db_query"]
    connector: str
    sql: str
    params: list[Any] | dict[str, Any] = Field(default_factory=list)


class SendStep(_StepBase):
    """A message through a messaging connector (``smtp``: to/subject/body; ``slack_webhook``: text)."""

    type: Literal["send"]
    connector: str
    to: str | list[str] | None = Field(None, description="E-mail recipients (templates).")
    subject: str | None = None
    body: str | None = Field(None, description="The e-mail body (template).")
    text: str | None = Field(None, description="The chat message (template).")


class McpStep(_StepBase):
    """One call of a tool of an MCP server connector; its output is the tool's structured content, or
    its text (parsed when it is JSON). A tool that reports an error fails the step."""

    type: Literal["mcp"]
    connector: str
    tool: str = Field(min_length=1, max_length=128, description="The server's tool name.")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="The tool's arguments (templates inside)."
    )


class TransformStep(_StepBase):
    type: Literal["transform"]
    value: Any = Field(None, description="A template string, or a mapping/list whose strings are templates.")
    jmespath: str | None = Field(None, description="A JMESPath expression over the context instead.")


class BranchCase(_Strict):
    when: str
    steps: list[str]


class BranchStep(_StepBase):
    type: Literal["branch"]
    cases: list[BranchCase] = Field(min_length=1)
    default: list[str] = Field(default_factory=list)


class MapStep(_StepBase):
    type: Literal["map"]
    items: str = Field(description="Template expression giving the list; each item is `item` inside.")
    steps: list[Step] = Field(min_length=1)
    concurrency: int = Field(4, ge=1, le=32)
    output: Any = Field(None, description="Per-item result (template); default: the last sub-step's output.")


class WaitStep(_StepBase):
    type: Literal["wait"]
    duration_s: float | None = Field(None, gt=0, le=90 * 24 * 3600)
    approval: bool = Field(False, description="Wait until POST /runs/{id}/resume with a decision.")
    prompt: str | None = Field(None, description="What the approver is asked (shown on the run).")


Step = Annotated[
    LlmStep
    | AgentStep
    | HttpStep
    | DbQueryStep
    | SendStep
    | McpStep
    | TransformStep
    | BranchStep
    | MapStep
    | WaitStep,
    Field(discriminator="type"),
]
MapStep.model_rebuild()


class WorkflowSpec(_Strict):
    inputs: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"}, description="JSON Schema the run input must satisfy."
    )
    steps: list[Step] = Field(min_length=1, max_length=200)
    output: Any = Field(None, description="Template or mapping built from step results; default: last step.")
    timeout_s: float = Field(3600, gt=0, le=7 * 24 * 3600, description="Whole-run limit (waits excluded).")


def workflow_json_schema() -> dict[str, Any]:
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "/api/v1/schemas/workflow.json"
    schema["title"] = "Falcon workflow definition"
    return schema


_SPEC_CACHE: dict[str, WorkflowSpec] = {}
_USES_ENV: dict[str, bool] = {}
_SPEC_CACHE_MAX = 1024
_ENV_REFERENCE = re.compile(r"\benv\b")


def spec_for_version(
    version_id: object, definition: dict[str, Any] | Callable[[], dict[str, Any]]
) -> WorkflowSpec:
    """The parsed spec of an agent version. Versions are immutable, so one parse per process suffices
    (``definition`` may be a loader, called only when this process has not parsed the version yet)."""
    key = str(version_id)
    spec = _SPEC_CACHE.get(key)
    if spec is None:
        raw = definition() if callable(definition) else definition
        spec = WorkflowSpec.model_validate(raw)
        if len(_SPEC_CACHE) >= _SPEC_CACHE_MAX:
            _SPEC_CACHE.clear()
            _USES_ENV.clear()
        _SPEC_CACHE[key] = spec
        # Whether any template may read ``env`` (the tenant's variables): runs of versions that
        # cannot skip reading them. A false positive only costs that read.
        _USES_ENV[key] = bool(_ENV_REFERENCE.search(json.dumps(raw)))
    return spec


def version_uses_env(version_id: object) -> bool:
    """Whether the version's templates may read ``env`` (True when this process has not parsed it)."""
    return _USES_ENV.get(str(version_id), True)
