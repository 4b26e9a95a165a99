"""A dry run: the draft runs in the real engine with simulated answers and no side effect.

Model steps answer with a value shaped by their ``json_schema`` (or a labelled text), connector steps
with a result shaped by their operation, approval waits are approved, timed waits end at once, agent
tools answer a placeholder. Nothing leaves Falcon and nothing is written: the transcript (each
step's input and output, estimated tokens and cost) is the result. The same hooks run generated
test cases dry.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from agents.engine.runner import Runner
from agents.engine.spec import WorkflowSpec, provider_of
from agents.engine.types import LlmRequest, LlmResult, ResolvedPrompt, StepFailure, StepRecord
from agents.llm.gateway import example_for_schema, llm_estimate
from agents.prompts.services import prompt_resolve
from falcon.errors import NotFound

MAX_RESUMES = 50
DRY_LABEL = "[dry run] "


class DryRunHooks:
    """The engine's host for a dry run: every outside effect simulated, every record kept."""

    def __init__(self, tenant_id: Any) -> None:
        self.tenant_id = tenant_id
        self.records: list[StepRecord] = []

    def checkpoint(self, record: StepRecord) -> None:
        self.records.append(record)

    def step_started(self, key: str, step_type: str) -> None:
        return None

    def cancelled(self) -> bool:
        return False

    def llm(self, request: LlmRequest) -> LlmResult:
        tokens, cost = llm_estimate(request)
        if request.json_schema is not None:
            text = json.dumps(example_for_schema(request.json_schema))
        else:
            last = next((m.get("content") for m in reversed(request.messages) if m.get("role") == "user"), "")
            text = DRY_LABEL + "a simulated answer to: " + str(last)[:200]
        completion = min(tokens, 256)
        return LlmResult(
            text=text,
            model=request.model,
            provider=provider_of(request.model),
            prompt_tokens=max(tokens - completion, 0),
            completion_tokens=completion,
            cost_usd=float(cost),
            latency_ms=0,
        )

    def run_agent(self, name: str, input: Any, depth: int) -> Any:
        return {"simulated": True, "agent": name}

    def resolve_prompt(self, ref: Any, step_id: str) -> ResolvedPrompt:
        try:
            version = prompt_resolve(
                tenant_id=self.tenant_id, name=ref.name, label=ref.label, version=ref.version
            )
        except NotFound as exc:
            raise StepFailure(exc.message, code="prompt_not_found") from exc
        return ResolvedPrompt(
            template=version.template,
            system=version.system,
            input_variables=tuple(version.input_variables),
            parameters=dict(version.model_parameters),
        )

    def agent_input_schema(self, name: str) -> dict[str, Any]:
        return {"type": "object"}

    def call_connector(self, step_type: str, connector: str, operation: dict[str, Any]) -> Any:
        if step_type == "http":
            return {"status": 200, "headers": {}, "json": {"simulated": True}, "simulated": True}
        if step_type == "db_query":
            return {"rows": [], "row_count": 0, "simulated": True}
        if step_type == "mcp":
            return {"simulated": True, "would_call": operation}
        return {"simulated": True, "would_send": operation}

    def mcp_tool(self, connector: str, tool: str) -> dict[str, Any]:
        return {"name": tool, "description": "", "input_schema": {"type": "object"}}

    def sleep(self, seconds: float) -> None:
        return None

    def thread_done(self) -> None:
        return None


def _waits(spec: WorkflowSpec) -> set[str]:
    return {s.id for s in spec.steps if s.type == "wait"}


def dry_run(spec: WorkflowSpec, input: Any, *, tenant_id: Any) -> dict[str, Any]:
    """Runs ``spec`` on ``input`` with simulated answers; waits are approved on the way."""
    resume: dict[str, Any] = {}
    for _ in range(MAX_RESUMES):
        hooks = DryRunHooks(tenant_id)
        outcome = Runner(
            spec, input=input, hooks=hooks, run={"id": "dry-run", "agent": "draft"}, resume_values=resume
        ).run()
        if outcome.status != "waiting":
            break
        resume[outcome.waiting_step] = {
            "decision": True,
            "comment": "approved by the dry run",
            "by": "dry run",
            "at": datetime.now(UTC).isoformat(),
        }
    steps = [
        {
            "key": r.key,
            "step": r.step_id,
            "type": r.step_type,
            "kind": r.kind,
            "status": r.status,
            "input": r.input,
            "output": r.output,
            "error": r.error,
            "model": r.model,
            "estimated_tokens": r.prompt_tokens + r.completion_tokens,
            "estimated_cost_usd": f"{r.cost_usd:.6f}",
        }
        for r in hooks.records
        if r.status != "waiting"
    ]
    return {
        "status": outcome.status,
        "input": input,
        "output": outcome.output,
        "error": outcome.error,
        "steps": steps,
        "estimated_tokens": sum(s["estimated_tokens"] for s in steps),
        "estimated_cost_usd": f"{sum(r.cost_usd for r in hooks.records):.6f}",
    }


def example_input(spec: WorkflowSpec) -> Any:
    """An input satisfying the input schema (what a dry run uses when no example is given)."""
    schema = dict(spec.inputs)
    value = example_for_schema(schema) if schema.get("properties") else {}
    return value if isinstance(value, dict) else {}
