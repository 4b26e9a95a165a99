"""The pure engine with fake hooks: ordering, skips, retries, cancellation, timeouts, waits, sandboxing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.engine import templates
from agents.engine.runner import Runner, backoff_delay
from agents.engine.spec import RetryPolicy
from agents.engine.types import (
    LlmError,
    LlmRequest,
    LlmResult,
    ResolvedPrompt,
    StepFailure,
    StepRecord,
    ToolCall,
)
from agents.engine.validate import workflow_validate


class FakeHooks:
    def __init__(self, llm_replies: list[Any] | None = None, cancel_after: int | None = None) -> None:
        self.records: list[StepRecord] = []
        self.llm_replies = list(llm_replies or [])
        self.llm_requests: list[LlmRequest] = []
        self.connector_replies: list[Any] = []
        self.cancel_after = cancel_after
        self.sleeps: list[float] = []

    def checkpoint(self, record: StepRecord) -> None:
        self.records.append(record)

    def step_started(self, key: str, step_type: str) -> None:
        pass

    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.records) >= self.cancel_after

    def llm(self, request: LlmRequest) -> LlmResult:
        self.llm_requests.append(request)
        reply = self.llm_replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def run_agent(self, name: str, input: Any, depth: int) -> Any:
        return {"agent": name, "input": input}

    def agent_input_schema(self, name: str) -> dict[str, Any]:
        return {"type": "object"}

    def resolve_prompt(self, ref: Any, step_id: str) -> ResolvedPrompt:
        return ResolvedPrompt(template="library: {{ topic }}", input_variables=("topic",))

    def mcp_tool(self, connector: str, tool: str) -> dict[str, Any]:
        return {"name": tool, "description": "", "input_schema": {"type": "object"}}

    def call_connector(self, step_type: str, connector: str, operation: dict[str, Any]) -> Any:
        reply = self.connector_replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def thread_done(self) -> None:
        pass


def text(value: str, **extra: Any) -> LlmResult:
    return LlmResult(
        text=value,
        model="openai/gpt-4o-mini",
        provider="openai",
        prompt_tokens=3,
        completion_tokens=2,
        cost_usd=0.001,
        latency_ms=1,
        **extra,
    )


def spec_of(definition: dict[str, Any]):
    spec, problems = workflow_validate(definition)
    assert problems == [], problems
    return spec


def run(definition: dict[str, Any], hooks: FakeHooks, input: Any = None, **kwargs: Any):
    return Runner(spec_of(definition), input=input or {}, hooks=hooks, **kwargs).run()


def test_sandbox_refuses_python_internals():
    with pytest.raises(templates.TemplateError):
        templates.render("{{ ''.__class__.__mro__ }}", {})
    with pytest.raises(templates.TemplateError):
        templates.render("{{ input.__init__.__globals__ }}", {"input": {}})
    with pytest.raises(templates.TemplateError, match="undefined"):
        templates.render("{{ missing.value }}", {})
    hooks = FakeHooks()
    outcome = run({"steps": [{"id": "x", "type": "transform", "value": "{{ input.__class__ }}"}]}, hooks)
    assert outcome.status == "failed"
    assert outcome.error["code"] == "template_error"


def test_single_expressions_keep_their_type():
    assert templates.render("{{ [1, 2] }}", {}) == [1, 2]
    assert templates.render("n={{ 1 + 1 }}", {}) == "n=2"
    assert templates.render({"a": ["{{ x }}"]}, {"x": {"k": 1}}) == {"a": [{"k": 1}]}


def test_completed_steps_are_not_executed_again():
    hooks = FakeHooks(llm_replies=[text("second")])
    definition = {
        "steps": [
            {"id": "a", "type": "llm", "model": "sandbox/x", "prompt": "one"},
            {"id": "b", "type": "llm", "model": "sandbox/x", "prompt": "{{ steps.a.output }} then two"},
        ]
    }
    outcome = run(definition, hooks, completed={"a": "first"})
    assert outcome.status == "succeeded"
    assert [r.messages[-1]["content"] for r in hooks.llm_requests] == ["first then two"]
    assert [r.key for r in hooks.records] == ["b"]


def test_skips_when_false_and_when_every_need_was_skipped_but_joins_run():
    definition = {
        "steps": [
            {"id": "a", "type": "transform", "value": 1, "when": "input.go"},
            {"id": "b", "type": "transform", "needs": [], "value": 2},
            {"id": "c", "type": "transform", "needs": ["a"], "value": 3},
            {"id": "join", "type": "transform", "needs": ["a", "b"], "value": "{{ steps.b.output }}"},
        ]
    }
    hooks = FakeHooks()
    outcome = run(definition, hooks, input={"go": False})
    statuses = {r.key: r.status for r in hooks.records}
    assert statuses == {"a": "skipped", "b": "succeeded", "c": "skipped", "join": "succeeded"}
    assert outcome.output == 2


def test_retryable_connector_failures_back_off_and_retry():
    hooks = FakeHooks()
    hooks.connector_replies = [StepFailure("busy", code="http_503", retryable=True), {"ok": True}]
    definition = {
        "steps": [
            {
                "id": "h",
                "type": "http",
                "connector": "crm",
                "path": "/x",
                "retry": {"max_attempts": 3, "backoff_s": 2, "max_backoff_s": 10},
            }
        ]
    }
    outcome = Runner(spec_of_unchecked(definition), input={}, hooks=hooks).run()
    assert outcome.status == "succeeded"
    assert [(r.attempt, r.status) for r in hooks.records] == [(1, "failed"), (2, "succeeded")]
    assert 1.0 <= hooks.sleeps[0] <= 2.0


def test_non_retryable_failure_is_not_retried():
    hooks = FakeHooks()
    hooks.connector_replies = [StepFailure("bad request", code="http_400")]
    definition = {"steps": [{"id": "h", "type": "http", "connector": "crm"}]}
    outcome = Runner(spec_of_unchecked(definition), input={}, hooks=hooks).run()
    assert outcome.status == "failed"
    assert outcome.error == {"code": "http_400", "message": "bad request", "step": "h"}
    assert hooks.sleeps == []


def spec_of_unchecked(definition: dict[str, Any]):
    """Connector steps validate only with a connector check; the runner itself does not need one."""
    from agents.engine.spec import WorkflowSpec

    return WorkflowSpec.model_validate(definition)


def test_backoff_doubles_with_jitter_and_a_cap():
    policy = RetryPolicy(max_attempts=5, backoff_s=1, max_backoff_s=5)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 5), (5, 5)]:
        delays = [backoff_delay(policy, attempt) for _ in range(50)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1


def test_cancellation_stops_at_the_next_step_boundary():
    hooks = FakeHooks(cancel_after=1)
    definition = {
        "steps": [{"id": "a", "type": "transform", "value": 1}, {"id": "b", "type": "transform", "value": 2}]
    }
    outcome = run(definition, hooks)
    assert outcome.status == "cancelled"
    assert [r.key for r in hooks.records] == ["a"]


def test_run_deadline_times_out():
    hooks = FakeHooks()
    outcome = run(
        {"steps": [{"id": "a", "type": "transform", "value": 1}]},
        hooks,
        deadline=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert outcome.status == "timed_out"
    assert hooks.records == []


def test_wait_suspends_then_resumes_with_the_value():
    definition = {
        "steps": [
            {"id": "w", "type": "wait", "duration_s": 60},
            {"id": "after", "type": "transform", "value": "{{ steps.w.output.ok }}"},
        ]
    }
    hooks = FakeHooks()
    outcome = run(definition, hooks)
    assert outcome.status == "waiting"
    assert outcome.waiting_step == "w"
    assert outcome.resume_at > datetime.now(UTC) + timedelta(seconds=55)
    hooks = FakeHooks()
    outcome = run(definition, hooks, resume_values={"w": {"ok": "yes"}})
    assert outcome.status == "succeeded"
    assert outcome.output == "yes"


def test_agent_loop_stops_at_max_iterations():
    looping = [text("", tool_calls=[ToolCall(id=str(i), name="helper", arguments={})]) for i in range(3)]
    hooks = FakeHooks(llm_replies=looping)
    definition = {
        "steps": [
            {
                "id": "ag",
                "type": "agent",
                "model": "sandbox/x",
                "prompt": "go",
                "max_iterations": 3,
                "tools": [{"type": "agent", "agent": "helper"}],
            }
        ]
    }
    outcome = run(definition, hooks)
    assert outcome.status == "failed"
    assert outcome.error["code"] == "max_iterations"
    assert [r.kind for r in hooks.records].count("tool_call") == 3


def test_fallback_after_retryable_failures_on_the_primary():
    hooks = FakeHooks(
        llm_replies=[
            LlmError("429", code="llm_rate_limited", retryable=True),
            LlmError("429", code="llm_rate_limited", retryable=True),
            text("fallback ok"),
        ]
    )
    definition = {
        "steps": [
            {
                "id": "s",
                "type": "llm",
                "model": "openai/a",
                "prompt": "p",
                "retry": {"max_attempts": 2, "backoff_s": 0},
                "fallbacks": ["anthropic/b"],
            }
        ]
    }
    outcome = run(definition, hooks)
    assert outcome.output == "fallback ok"
    assert [r.model for r in hooks.llm_requests] == ["openai/a", "openai/a", "anthropic/b"]


def test_validation_catches_ordering_and_placement_problems():
    _, problems = workflow_validate(
        {
            "steps": [
                {"id": "a", "type": "transform", "needs": [], "value": "{{ steps.b.output }}"},
                {"id": "b", "type": "transform", "needs": [], "value": 1},
                {
                    "id": "m",
                    "type": "map",
                    "items": "[1]",
                    "steps": [{"id": "w", "type": "wait", "duration_s": 1}],
                },
            ]
        }
    )
    by_code = {p.code: p.path for p in problems}
    assert by_code["reference_not_upstream"] == "steps[0].value"
    assert by_code["not_allowed_in_map"] == "steps[2].steps[0].type"
    _, problems = workflow_validate(
        {
            "steps": [
                {"id": "a", "type": "transform", "needs": [], "value": 1},
                {"id": "br", "type": "branch", "needs": [], "cases": [{"when": "true", "steps": ["a"]}]},
            ]
        }
    )
    assert [(p.code, p.path) for p in problems] == [
        ("branch_target_before_branch", "steps[1].cases[0].steps[0]")
    ]


def test_fan_out_is_bounded_per_map_step_and_per_model_answer():
    from agents.engine.runner import MAX_MAP_ITEMS, MAX_TOOL_CALLS_PER_ITERATION

    wide = {
        "steps": [
            {
                "id": "each",
                "type": "map",
                "items": "{{ input.things }}",
                "steps": [{"id": "t", "type": "transform", "value": "{{ item }}"}],
            }
        ]
    }
    outcome = run(wide, FakeHooks(), input={"things": list(range(MAX_MAP_ITEMS + 1))})
    assert (outcome.status, outcome.error["code"]) == ("failed", "map_too_many_items")
    assert str(MAX_MAP_ITEMS) in outcome.error["message"]
    assert run(wide, FakeHooks(), input={"things": [1, 2]}).status == "succeeded"

    calls = [
        ToolCall(id=str(i), name="helper", arguments={}) for i in range(MAX_TOOL_CALLS_PER_ITERATION + 1)
    ]
    hooks = FakeHooks(llm_replies=[text("", tool_calls=calls)])
    agent = {
        "steps": [
            {
                "id": "ag",
                "type": "agent",
                "model": "sandbox/x",
                "prompt": "go",
                "tools": [{"type": "agent", "agent": "helper"}],
            }
        ]
    }
    outcome = run(agent, hooks)
    assert (outcome.status, outcome.error["code"]) == ("failed", "too_many_tool_calls")
    assert [r.kind for r in hooks.records].count("tool_call") == 0  # refused before any of them ran


def test_connector_calls_never_outlive_the_step_deadline():
    hooks = FakeHooks()
    hooks.connector_replies = [{"status": 200}]
    step = {"id": "h", "type": "http", "connector": "api", "timeout_s": 7}
    assert run({"steps": [step]}, hooks).status == "succeeded"
    assert hooks.records[-1].input["timeout_s"] == 7


def test_step_ids_named_like_dict_methods_are_steps_in_templates():
    from agents.engine import templates

    context = {"steps": {"get": {"output": 1}, "items": {"output": [2]}, "keys": {"output": "k"}}}
    assert templates.render("{{ steps.get.output }}", context) == 1
    assert templates.render("{{ steps['items'].output }}", context) == [2]
    assert templates.render("{{ steps.keys.output }}", context) == "k"
