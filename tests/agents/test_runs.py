"""Runs end to end: API -> Redis -> a real Celery worker -> LiteLLM -> the loopback provider server."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from agents.models import Run, StepRun
from agents.runs.execution import run_execute
from agents.runs.services import runs_resume_due
from billing.models import UsageCounter
from tenants.models import AuditEvent
from tests.agents.helpers import SANDBOX_ECHO, create_agent
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db(transaction=True)

FAST_RETRY = {"max_attempts": 3, "backoff_s": 0.05, "max_backoff_s": 0.1}


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Polls a condition until it holds (bounded): the worker runs in other threads."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_now(client, agent_id: str, input: dict[str, Any], wait_s: float = 30, **extra: Any) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/agents/{agent_id}/runs", {"input": input, "wait_s": wait_s, **extra}, format="json"
    )
    assert response.status_code in (200, 202), response.json()
    return response.json()


def steps_of(run: dict[str, Any], kind: str = "step") -> list[dict[str, Any]]:
    return [s for s in run["steps"] if s["kind"] == kind]


def test_sandbox_run_end_to_end_with_timeline(world, alice_client, celery_worker, llm):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    run = run_now(alice_client, agent_id, {"name": "Ada"})
    assert run["status"] == "succeeded", run
    assert run["output"] == {"greeting": "Hello Ada", "said": "[sandbox] Hello Ada"}
    assert [(s["step_id"], s["status"]) for s in steps_of(run)] == [
        ("greet", "succeeded"),
        ("say", "succeeded"),
    ]
    say = steps_of(run)[1]
    assert say["provider"] == "sandbox"
    assert say["input"]["messages"] == [{"role": "user", "content": "Hello Ada"}]
    assert say["started_at"]
    assert say["finished_at"]
    assert run["version"] == 1
    assert llm.received == []  # the sandbox needs no network
    # A run start is recorded on the run itself, not on the tenant's audit chain (unless asked for).
    assert (run["actor_type"], run["actor_label"]) == ("user", "alice@a.example")
    assert run["actor_id"] == str(world.alice.pk)
    assert not AuditEvent.objects.filter(action="run.started", target_id=run["id"]).exists()


def test_a_tenant_may_chain_every_run_start(world, alice_client, bob_client, make_key):
    from tenants.audit import audit_verify_tenant

    assert bob_client.patch("/api/v1/tenant", {"audit_run_starts": True}, format="json").status_code == 403
    turned_on = alice_client.patch("/api/v1/tenant", {"audit_run_starts": True}, format="json")
    assert turned_on.status_code == 200
    assert turned_on.json()["audit_run_starts"] is True
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    _, token = make_key(world.tenant_a, ["run"])
    from tests.conftest import key_client

    run = (
        key_client(token)
        .post(f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "Ada"}}, format="json")
        .json()
    )
    event = AuditEvent.objects.get(action="run.started", target_id=run["id"])
    assert event.actor_type == "api_key"
    assert run["actor_type"] == "api_key"
    assert audit_verify_tenant(world.tenant_a) is None


def test_invalid_input_is_refused_with_the_path(world, alice_client):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    response = alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {"name": 42}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    assert response.json()["error"]["fields"] == {"input.name": ["42 is not of type 'string'"]}
    assert not Run.objects.exists()


def test_four_providers_through_litellm_with_tokens_and_cost(world, alice_client, celery_worker, llm):
    definition = {
        "steps": [
            {
                "id": "o",
                "type": "llm",
                "model": "openai/gpt-4o-mini",
                "system": "be brief",
                "prompt": "to openai",
            },
            {"id": "a", "type": "llm", "model": "anthropic/claude-haiku-4-5", "prompt": "to anthropic"},
            {"id": "g", "type": "llm", "model": "gemini/gemini-2.5-flash", "prompt": "to gemini"},
            {"id": "l", "type": "llm", "model": "ollama/llama3.2", "prompt": "to ollama"},
        ],
        "output": [
            "{{ steps.o.output }}",
            "{{ steps.a.output }}",
            "{{ steps.g.output }}",
            "{{ steps.l.output }}",
        ],
    }
    agent_id = create_agent(alice_client, definition)
    llm.enqueue(
        Reply(text="from openai", prompt_tokens=1000, completion_tokens=2000, provider="openai"),
        Reply(text="from anthropic", prompt_tokens=1000, completion_tokens=1000, provider="anthropic"),
        Reply(text="from gemini", prompt_tokens=100, completion_tokens=10, provider="gemini"),
        Reply(text="from ollama", prompt_tokens=7, completion_tokens=3, provider="ollama"),
    )
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "succeeded", run
    assert run["output"] == ["from openai", "from anthropic", "from gemini", "from ollama"]
    by_step = {s["step_id"]: s for s in steps_of(run)}
    assert {k: (v["provider"], v["prompt_tokens"], v["completion_tokens"]) for k, v in by_step.items()} == {
        "o": ("openai", 1000, 2000),
        "a": ("anthropic", 1000, 1000),
        "g": ("gemini", 100, 10),
        "l": ("ollama", 7, 3),
    }
    # Prices from LiteLLM's offline map: gpt-4o-mini $0.15/$0.60, claude-haiku-4-5 $1/$5 per million.
    assert Decimal(by_step["o"]["cost_usd"]) == Decimal("0.00135000")
    assert Decimal(by_step["a"]["cost_usd"]) == Decimal("0.00600000")
    assert Decimal(by_step["g"]["cost_usd"]) > 0
    assert Decimal(by_step["l"]["cost_usd"]) == 0
    assert run["prompt_tokens"] == 2107
    assert run["completion_tokens"] == 3013
    assert Decimal(run["cost_usd"]) == sum(Decimal(s["cost_usd"]) for s in steps_of(run))
    # The wire requests carried the system prompt and the platform credentials.
    openai_request = llm.requests_for("openai")[0]
    assert openai_request.body["messages"][0] == {"role": "system", "content": "be brief"}
    assert openai_request.headers["authorization"] == "Bearer sk-test-openai-key-123456"
    assert llm.requests_for("anthropic")[0].headers["x-api-key"] == "sk-ant-test-key-123456"
    assert llm.requests_for("gemini")[0].headers["x-goog-api-key"] == "gemini-test-key-123456"
    assert llm.requests_for("ollama")[0].body["messages"][-1]["content"] == "to ollama"


def test_retryable_errors_are_retried_then_succeed(world, alice_client, celery_worker, llm):
    definition = {
        "steps": [
            {"id": "s", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "hi", "retry": FAST_RETRY}
        ]
    }
    agent_id = create_agent(alice_client, definition)
    llm.enqueue(Reply(status=429), Reply(status=503), Reply(text="third time lucky"))
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "succeeded", run
    attempts = [(s["attempt"], s["status"], (s["error"] or {}).get("code")) for s in steps_of(run)]
    assert attempts == [
        (1, "failed", "llm_rate_limited"),
        (2, "failed", "llm_server_error"),
        (3, "succeeded", None),
    ]
    assert run["output"] == "third time lucky"


def test_non_retryable_errors_go_straight_to_the_fallbacks_in_order(world, alice_client, celery_worker, llm):
    definition = {
        "steps": [
            {
                "id": "s",
                "type": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt": "hi",
                "retry": FAST_RETRY,
                "fallbacks": ["anthropic/claude-haiku-4-5", "gemini/gemini-2.5-flash"],
            }
        ]
    }
    agent_id = create_agent(alice_client, definition)
    llm.enqueue(
        Reply(status=400, provider="openai"),
        Reply(status=500, provider="anthropic"),
        Reply(status=500, provider="anthropic"),
        Reply(status=500, provider="anthropic"),
        Reply(text="gemini saves the day", provider="gemini"),
    )
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "succeeded", run
    assert [(s["model"], s["status"]) for s in steps_of(run)] == [
        ("openai/gpt-4o-mini", "failed"),
        ("anthropic/claude-haiku-4-5", "failed"),
        ("anthropic/claude-haiku-4-5", "failed"),
        ("anthropic/claude-haiku-4-5", "failed"),
        ("gemini/gemini-2.5-flash", "succeeded"),
    ]
    assert len(llm.requests_for("openai")) == 1  # a 400 is not retried


def test_all_models_failing_fails_the_run_with_the_step_named(world, alice_client, celery_worker, llm):
    definition = {
        "steps": [
            {
                "id": "s",
                "type": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt": "hi",
                "retry": {"max_attempts": 1},
            }
        ]
    }
    agent_id = create_agent(alice_client, definition)
    llm.enqueue(Reply(status=500))
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "failed"
    assert run["error"]["step"] == "s"
    assert run["error"]["code"] == "llm_server_error"


def test_step_timeout(world, alice_client, celery_worker, llm):
    definition = {
        "steps": [
            {
                "id": "slow",
                "type": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt": "hi",
                "timeout_s": 0.5,
                "retry": {"max_attempts": 1},
            }
        ]
    }
    agent_id = create_agent(alice_client, definition)
    llm.enqueue(Reply(text="too late", delay_s=3))
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "llm_timeout"


def test_structured_output_is_validated_with_one_repair(world, alice_client, celery_worker, llm):
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    definition = {
        "steps": [
            {
                "id": "s",
                "type": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt": "rate it",
                "json_schema": schema,
            }
        ]
    }
    agent_id = create_agent(alice_client, definition)
    llm.enqueue(Reply(text='{"score": "high"}'), Reply(text='```json\n{"score": 9}\n```'))
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "succeeded", run
    assert run["output"] == {"score": 9}
    first, _second = steps_of(run)
    assert first["error"]["code"] == "invalid_structured_output"
    assert "score: 'high' is not of type 'integer'" in first["error"]["message"]
    assert "That answer is not valid" in llm.received[1].body["messages"][-1]["content"]
    llm.enqueue(Reply(text="nope"), Reply(text="still nope"))
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "failed"
    assert run["error"]["code"] == "invalid_structured_output"


@pytest.mark.parametrize(
    "model",
    ["anthropic/claude-haiku-4-5", "openai/gpt-4o-mini", "gemini/gemini-2.5-flash", "ollama/llama3.2"],
)
def test_agent_step_calls_another_agent_as_a_tool(world, alice_client, celery_worker, llm, model):
    adder = {
        "inputs": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
        "steps": [{"id": "sum", "type": "transform", "value": "{{ input.a + input.b }}"}],
    }
    create_agent(alice_client, adder, name="adder")
    definition = {
        "steps": [
            {
                "id": "think",
                "type": "agent",
                "model": model,
                "prompt": "What is 2 + 3?",
                "tools": [{"type": "agent", "agent": "adder"}],
            }
        ]
    }
    agent_id = create_agent(alice_client, definition, name="mathematician")
    llm.enqueue(Reply(tool_calls=[("adder", {"a": 2, "b": 3})]), Reply(text="The answer is 5."))
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "succeeded", run
    assert run["output"] == "The answer is 5."
    iterations = steps_of(run, "iteration")
    tool_calls = steps_of(run, "tool_call")
    assert len(iterations) == 2
    assert [(t["input"], t["output"], t["status"]) for t in tool_calls] == [
        ({"a": 2, "b": 3}, 5, "succeeded")
    ]
    assert run["prompt_tokens"] == 20
    # The model was offered the tool (with the sub-agent's input schema) and got its result back.
    first, second = llm.received
    assert "adder" in str(first.body)
    assert "required" in str(first.body)
    assert "5" in str(second.body)
    assert len(second.body.get("messages") or second.body.get("contents")) > len(
        first.body.get("messages") or first.body.get("contents")
    )


def test_branch_and_map(world, alice_client, celery_worker, llm):
    definition = {
        "inputs": {"type": "object", "properties": {"items": {"type": "array"}}},
        "steps": [
            {
                "id": "route",
                "type": "branch",
                "cases": [{"when": "input['items'] | length > 2", "steps": ["many"]}],
                "default": ["few"],
            },
            {
                "id": "many",
                "type": "map",
                "items": "input['items']",
                "concurrency": 3,
                "steps": [{"id": "ask", "type": "llm", "model": "sandbox/echo", "prompt": "item {{ item }}"}],
            },
            {"id": "few", "type": "transform", "needs": ["route"], "value": "few items"},
            {
                "id": "done",
                "type": "transform",
                "needs": ["many", "few"],
                "value": "{{ steps.many.output if steps.many.status == 'succeeded' else steps.few.output }}",
            },
        ],
    }
    agent_id = create_agent(alice_client, definition)
    run = run_now(alice_client, agent_id, {"items": [1, 2, 3]})
    assert run["status"] == "succeeded", run
    assert run["output"] == ["[sandbox] item 1", "[sandbox] item 2", "[sandbox] item 3"]
    statuses = {s["key"]: s["status"] for s in steps_of(run)}
    assert statuses["few"] == "skipped"
    assert {statuses[f"many[{i}].ask"] for i in range(3)} == {"succeeded"}
    run = run_now(alice_client, agent_id, {"items": [1]})
    assert run["output"] == "few items"


def test_cancel_a_running_run_aborts_the_in_flight_call(world, alice_client, celery_worker, llm):
    definition = {
        "steps": [
            {"id": "slow", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "hi"},
            {"id": "after", "type": "transform", "value": "never"},
        ]
    }
    agent_id = create_agent(alice_client, definition)
    llm.enqueue(Reply(text="late", delay_s=6, prompt_tokens=100, completion_tokens=20))
    run = run_now(alice_client, agent_id, {}, wait_s=0)
    wait_for(lambda: llm.received, what="the provider call")
    started = time.monotonic()
    response = alice_client.post(f"/api/v1/runs/{run['id']}/cancel")
    assert response.status_code == 200
    wait_for(lambda: Run.objects.get(pk=run["id"]).status == "cancelled", timeout=5, what="cancellation")
    assert time.monotonic() - started < 4  # did not wait for the 6 s answer
    assert not StepRun.objects.filter(run_id=run["id"], step_id="after").exists()
    assert alice_client.post(f"/api/v1/runs/{run['id']}/cancel").status_code == 409

    # The answer still arrives later: the tokens the provider reported are settled, not dropped
    # (regression: a cancelled call settled at zero while the provider billed it).
    def tokens_used() -> int:
        counter = UsageCounter.objects.filter(tenant=world.tenant_a, metric="llm_tokens", scope="").first()
        return counter.used if counter else -1

    wait_for(lambda: tokens_used() == 120, timeout=10, what="the late settlement")


def test_cancel_a_queued_run(world, alice_client):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    run = run_now(alice_client, agent_id, {"name": "x"}, wait_s=0)
    response = alice_client.post(f"/api/v1/runs/{run['id']}/cancel")
    assert response.json()["status"] == "cancelled"
    assert AuditEvent.objects.filter(action="run.cancelled", target_id=run["id"]).exists()


def test_approval_wait_and_resume(world, alice_client, celery_worker, llm):
    definition = {
        "steps": [
            {"id": "draft", "type": "transform", "value": "refund {{ input.amount }}"},
            {
                "id": "approve",
                "type": "wait",
                "approval": True,
                "prompt": "Approve {{ steps.draft.output }}?",
            },
            {
                "id": "act",
                "type": "transform",
                "value": "{{ steps.approve.output.decision }} by {{ steps.approve.output.by }}",
            },
        ]
    }
    agent_id = create_agent(alice_client, definition)
    run = run_now(alice_client, agent_id, {"amount": 40}, wait_s=0)
    wait_for(lambda: Run.objects.get(pk=run["id"]).status == "waiting", what="the wait")
    waiting = alice_client.get(f"/api/v1/runs/{run['id']}").json()
    assert waiting["waiting"] == {"step": "approve", "prompt": "Approve refund 40?", "resume_at": None}
    response = alice_client.post(
        f"/api/v1/runs/{run['id']}/resume", {"decision": "approved", "comment": "ok"}, format="json"
    )
    assert response.status_code == 200
    wait_for(lambda: Run.objects.get(pk=run["id"]).status == "succeeded", what="the resumed run")
    assert Run.objects.get(pk=run["id"]).output == "approved by alice@a.example"
    # The step before the wait ran once, on the first claim only.
    assert StepRun.objects.filter(run_id=run["id"], step_id="draft").count() == 1
    assert (
        alice_client.post(
            f"/api/v1/runs/{run['id']}/resume", {"decision": "again"}, format="json"
        ).status_code
        == 409
    )


def test_timed_wait_resumes_without_holding_a_worker(world, alice_client, celery_worker, llm):
    definition = {
        "steps": [
            {"id": "pause", "type": "wait", "duration_s": 0.5},
            {"id": "after", "type": "transform", "value": "{{ steps.pause.output.resumed_by }}"},
        ]
    }
    agent_id = create_agent(alice_client, definition)
    run = run_now(alice_client, agent_id, {}, wait_s=0)
    wait_for(lambda: Run.objects.get(pk=run["id"]).status == "waiting", what="the wait")
    assert Run.objects.get(pk=run["id"]).resume_at is not None
    wait_for(lambda: runs_resume_due() == 1, what="the wait to fall due")  # what beat does every 5 s
    wait_for(lambda: Run.objects.get(pk=run["id"]).status == "succeeded", what="the resumed run")
    assert Run.objects.get(pk=run["id"]).output == "timer"


def test_idempotency_key_returns_the_first_run(world, alice_client, celery_worker, llm):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    first = run_now(alice_client, agent_id, {"name": "x"}, idempotency_key="order-1")
    second = alice_client.post(
        f"/api/v1/agents/{agent_id}/runs",
        {"input": {"name": "x"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order-1",
    ).json()
    assert second["id"] == first["id"]
    assert Run.objects.count() == 1
    third = run_now(alice_client, agent_id, {"name": "x"}, idempotency_key="order-2")
    assert third["id"] != first["id"]


def test_rerun_and_list_filters(world, alice_client, celery_worker, llm):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    run = run_now(alice_client, agent_id, {"name": "x"})
    response = alice_client.post(f"/api/v1/runs/{run['id']}/rerun")
    assert response.status_code == 202
    rerun = response.json()
    assert rerun["rerun_of"] == run["id"]
    assert rerun["trigger"] == "rerun"
    wait_for(lambda: Run.objects.get(pk=rerun["id"]).status == "succeeded", what="the re-run")
    listed = alice_client.get(f"/api/v1/runs/?agent={agent_id}&status=succeeded").json()["results"]
    assert {r["id"] for r in listed} == {run["id"], rerun["id"]}
    assert alice_client.get("/api/v1/runs/?trigger=rerun").json()["results"][0]["id"] == rerun["id"]
    assert alice_client.get("/api/v1/runs/?status=bogus").status_code == 400


def test_secrets_are_redacted_and_big_payloads_truncated(world, alice_client, celery_worker, llm, settings):
    settings.FALCON_RUN_PAYLOAD_LIMIT_BYTES = 4096
    definition = {
        "steps": [
            {
                "id": "leak",
                "type": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt": "my key is {{ input.key }}",
                "retry": {"max_attempts": 1},
            },
            {"id": "big", "type": "transform", "value": "{{ 'x' * 10000 }}"},
            {"id": "headers", "type": "transform", "value": {"Authorization": "Bearer abc", "ok": "yes"}},
        ]
    }
    agent_id = create_agent(alice_client, definition)
    run = run_now(alice_client, agent_id, {"key": "sk-test-openai-key-123456"})
    assert run["status"] == "succeeded", run
    leak, big, headers = steps_of(run)
    assert "sk-test-openai-key-123456" not in str(leak["input"])
    assert "[redacted]" in leak["input"]["messages"][0]["content"]
    assert big["output"]["_truncated"] is True
    assert big["output"]["bytes"] > 10000
    assert headers["output"] == {"Authorization": "[redacted]", "ok": "yes"}


def test_other_tenants_runs_are_404(world, alice_client, charlie_client):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    run = run_now(alice_client, agent_id, {"name": "x"}, wait_s=0)
    for method, path in [
        ("get", f"/api/v1/runs/{run['id']}"),
        ("post", f"/api/v1/runs/{run['id']}/cancel"),
        ("post", f"/api/v1/runs/{run['id']}/resume"),
        ("post", f"/api/v1/runs/{run['id']}/rerun"),
    ]:
        assert getattr(charlie_client, method)(path, {}, format="json").status_code == 404, path
    assert charlie_client.get("/api/v1/runs/").json()["results"] == []


def test_errors_shown_to_tenants_carry_no_internals_or_long_upstream_bodies(world, alice_client, llm):
    definition = {
        "steps": [
            {
                "id": "ask",
                "type": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt": "hi",
                "retry": {"max_attempts": 1},
            }
        ]
    }
    agent_id = create_agent(alice_client, definition, name="leaky")
    upstream = (
        'Traceback (most recent call last):\n  File "/srv/provider/app.py", line 9, in handle\n' + "x" * 5000
    )
    llm.enqueue(Reply(status=400, text=upstream))
    run = alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()
    assert run_execute(run["id"]) == "failed"
    detail = alice_client.get(f"/api/v1/runs/{run['id']}").json()
    for error in (detail["error"], steps_of(detail)[0]["error"]):
        message = error["message"]
        assert "Traceback" not in message
        assert "/srv/provider" not in message
        assert len(message) <= 400
