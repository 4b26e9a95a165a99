"""The Agent Generator, offline and deterministic: a golden set of descriptions, each with the model
answers the loopback provider gives (broken ones included), and the expected result: the final
structure, or the blocking problem codes. Then the API, accept, refine, tests, walls and audit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents.generator.models import Generation
from agents.generator.services import generation_execute, generation_request
from agents.workflows.models import Agent
from tenants.audit import Actor
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("tests")
MODEL = "openai/gpt-4o-mini"
TEXT_IN = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
APPROVE = {"id": "approve", "type": "wait", "approval": True, "prompt": "Send?"}


def answer(steps: list[dict[str, Any]], inputs: dict[str, Any] | None = None, **extra: Any) -> str:
    definition = {"inputs": inputs or TEXT_IN, "steps": steps, **extra}
    return json.dumps({"name": "Drafted", "description": "d", "plan": ["do it"], "definition": definition})


LLM = {"id": "ask", "type": "llm", "model": MODEL, "prompt": "Summarize {{ input.text }}"}
SHAPE = {"id": "shape", "type": "transform", "value": {"summary": "{{ steps.ask.output }}"}}


@dataclass
class Case:
    description: str
    answers: list[str]
    types: list[str] | None = None  # the expected step types when valid
    blocking: set[str] = field(default_factory=set)  # the expected blocking codes otherwise
    rounds: int = 1
    repaired: bool = False
    connectors: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


GOLDEN = [
    Case("Summarize a text", [answer([LLM, SHAPE])], ["llm", "transform"]),
    Case(
        "Triage tickets by urgency",
        [
            answer(
                [
                    {**LLM, "json_schema": {"type": "object", "properties": {"urgent": {"type": "boolean"}}}},
                    {
                        "id": "route",
                        "type": "branch",
                        "cases": [{"when": "steps.ask.output.urgent", "steps": ["hot"]}],
                        "default": ["cold"],
                    },
                    {"id": "hot", "type": "transform", "value": "escalate"},
                    {"id": "cold", "type": "transform", "needs": ["route"], "value": "queue"},
                ]
            )
        ],
        ["llm", "branch", "transform", "transform"],
    ),
    Case(
        "Translate each line",
        [
            answer(
                [
                    {
                        "id": "each",
                        "type": "map",
                        "items": "input.lines",
                        "steps": [
                            {"id": "one", "type": "llm", "model": MODEL, "prompt": "Translate {{ item }}"}
                        ],
                    }
                ],
                {"type": "object", "properties": {"lines": {"type": "array", "items": {"type": "string"}}}},
            )
        ],
        ["map"],
    ),
    Case(
        "Unknown step type, fixed on the second try",
        [answer([{"id": "mail", "type": "email", "to": "x"}]), answer([LLM])],
        ["llm"],
        rounds=2,
    ),
    Case(
        "needs naming no step",
        [answer([LLM, {**SHAPE, "needs": ["ask", "ghost"]}])],
        ["llm", "transform"],
        repaired=True,
    ),
    Case(
        "Duplicate ids",
        [answer([LLM, {**LLM, "prompt": "Again {{ input.text }}"}])],
        ["llm", "llm"],
        repaired=True,
    ),
    Case(
        "A cycle the model keeps",
        [answer([{**LLM, "needs": ["shape"]}, {**SHAPE, "needs": ["ask"]}])] * 3,
        blocking={"cycle"},
        rounds=3,
    ),
    Case("A model alias", [answer([{**LLM, "model": "gpt-4o"}])], ["llm"], repaired=True),
    Case("A made-up model", [answer([{**LLM, "model": "acme/brain-9"}])], ["llm"], repaired=True),
    Case(
        "An inline API key",
        [answer([{**LLM, "system": "Use api_key=sk-live-0123456789abcdefghijkl"}])] * 3,
        blocking={"inline_secret"},
        rounds=3,
    ),
    Case(
        "Post to Slack without approval",
        [answer([LLM, {"id": "post", "type": "send", "connector": "team", "text": "{{ steps.ask.output }}"}])]
        * 3,
        blocking={"write_without_approval"},
        rounds=3,
        connectors=(
            ("team", "slack_webhook", {"secrets": {"url": "https://hooks.slack.com/services/T/B/X"}}),
        ),
    ),
    Case(
        "Post to Slack after approval",
        [
            answer(
                [
                    LLM,
                    APPROVE,
                    {"id": "post", "type": "send", "connector": "team", "text": "{{ steps.ask.output }}"},
                ]
            )
        ],
        ["llm", "wait", "send"],
        connectors=(
            ("team", "slack_webhook", {"secrets": {"url": "https://hooks.slack.com/services/T/B/X"}}),
        ),
    ),
    Case(
        "Invalid JSON every time",
        ["Sure! Here is your workflow: {steps: [}"] * 3,
        blocking={"invalid_json"},
        rounds=3,
    ),
    Case("Invalid JSON, then valid", ["```json\n{oops\n```", answer([LLM])], ["llm"], rounds=2),
    Case(
        "A raw URL instead of a connector",
        [answer([{"id": "get", "type": "http", "connector": "crm", "path": "https://evil.example/x"}])] * 3,
        blocking={"raw_url"},
        rounds=3,
        connectors=(("crm", "http", {"config": {"base_url": "https://crm.example.com"}}),),
    ),
    Case(
        "An undeclared input",
        [answer([{**LLM, "prompt": "{{ input.text }} for {{ input.customer }}"}])] * 3,
        blocking={"undeclared_input"},
        rounds=3,
    ),
    Case(
        "An unknown connector",
        [answer([{"id": "get", "type": "http", "connector": "nowhere", "path": "/x"}])] * 3,
        blocking={"unknown_connector"},
        rounds=3,
    ),
    Case(
        "Reads a later step",
        [answer([{**LLM, "prompt": "{{ steps.shape.output }}"}, {**SHAPE, "value": "{{ input.text }}"}])] * 3,
        blocking={"reference_not_upstream"},
        rounds=3,
    ),
    Case(
        "Writes to a database without approval",
        [
            answer(
                [
                    {
                        "id": "save",
                        "type": "db_query",
                        "connector": "db",
                        "sql": "INSERT INTO notes VALUES (%s)",
                        "params": ["{{ input.text }}"],
                    }
                ]
            )
        ]
        * 3,
        blocking={"write_without_approval"},
        rounds=3,
        connectors=(
            ("db", "postgres", {"config": {"host": "93.184.216.34", "database": "app", "user": "app"}}),
        ),
    ),
    Case(
        "Reads a database (no approval needed)",
        [
            answer(
                [
                    {
                        "id": "rows",
                        "type": "db_query",
                        "connector": "db",
                        "sql": "SELECT * FROM notes WHERE t = %s",
                        "params": ["{{ input.text }}"],
                    },
                    SHAPE | {"value": "{{ steps.rows.output }}"},
                ]
            )
        ],
        ["db_query", "transform"],
        connectors=(
            ("db", "postgres", {"config": {"host": "93.184.216.34", "database": "app", "user": "app"}}),
        ),
    ),
    Case(
        "The builder turned the approval rule off",
        [answer([LLM, {"id": "post", "type": "send", "connector": "team", "text": "hi"}])],
        ["llm", "send"],
        connectors=(
            ("team", "slack_webhook", {"secrets": {"url": "https://hooks.slack.com/services/T/B/X"}}),
        ),
        options={"require_approval_for_writes": False},
    ),
    Case(
        "A GET lookup through a connector",
        [
            answer(
                [
                    {
                        "id": "get",
                        "type": "http",
                        "connector": "crm",
                        "path": "/companies",
                        "query": {"q": "{{ input.text }}"},
                    },
                    SHAPE | {"value": "{{ steps.get.output }}"},
                ]
            )
        ],
        ["http", "transform"],
        connectors=(("crm", "http", {"config": {"base_url": "https://crm.example.com"}}),),
    ),
]


def _connectors(tenant, specs) -> None:
    from connectors.services import connector_create

    for name, kind, body in specs:
        connector_create(
            tenant=tenant,
            name=name,
            kind=kind,
            config=body.get("config", {}),
            secrets=body.get("secrets", {}),
            actor=SYSTEM,
            created_by=None,
        )


def generate(world, description: str, **options: Any) -> Generation:
    generation = generation_request(
        tenant=world.tenant_a, description=description, actor=SYSTEM, created_by=world.alice, **options
    )
    generation_execute(generation.pk)
    generation.refresh_from_db()
    return generation


def test_the_golden_set_has_at_least_twenty_descriptions():
    assert len(GOLDEN) >= 20


@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: c.description)
def test_golden(world, llm, case: Case):
    _connectors(world.tenant_a, case.connectors)
    llm.enqueue(*[Reply(text=text) for text in case.answers])
    generation = generate(world, case.description, model=MODEL, **case.options)
    assert generation.status == "succeeded", generation.error
    assert len(generation.attempts) == case.rounds
    blocking = {p["code"] for p in generation.problems if p["severity"] == "error"}
    if case.types is not None:
        assert blocking == set(), generation.problems
        assert generation.definition is not None
        assert generation.dry_run is not None
        assert [s["type"] for s in generation.definition["steps"]] == case.types
        assert generation.dry_run["status"] == "succeeded", generation.dry_run
        assert generation.tests
        assert generation.prompt_version is not None
        repaired = any(p["code"] == "repaired" for p in generation.problems)
        assert repaired == case.repaired, generation.problems
    else:
        assert case.blocking <= blocking, generation.problems
        assert all(p["path"] for p in generation.problems)
    assert generation.prompt_tokens > 0  # the model's usage is recorded (and counted by quotas)


def test_the_dry_run_simulates_every_effect(world, llm):
    _connectors(
        world.tenant_a, (("team", "slack_webhook", {"secrets": {"url": "https://hooks.slack.com/s/X"}}),)
    )
    shaped = {
        **LLM,
        "json_schema": {"type": "object", "properties": {"mood": {"type": "string", "enum": ["ok"]}}},
    }
    llm.enqueue(
        Reply(
            text=answer([shaped, APPROVE, {"id": "post", "type": "send", "connector": "team", "text": "x"}])
        )
    )
    generation = generate(world, "Tell the team the mood", model=MODEL)
    run = generation.dry_run
    assert run is not None
    assert run["status"] == "succeeded"
    by_step = {s["step"]: s for s in run["steps"]}
    assert by_step["ask"]["output"] == {"mood": "ok"}
    assert by_step["ask"]["estimated_tokens"] > 0
    assert by_step["post"]["output"]["simulated"] is True
    assert by_step["approve"]["output"]["decision"] is True
    assert len(llm.received) == 1  # the dry run called no model and no connector


def test_the_sandbox_generator_picks_the_closest_template(world):
    generation = generate(world, "Triage our incoming support tickets by priority")
    assert generation.model.startswith("sandbox/")
    assert generation.name.startswith("[sandbox] ")
    assert "Support ticket triage" in generation.name
    assert "closest template" in generation.plan[0]
    assert generation.blocking == []
    assert generation.dry_run["status"] == "succeeded"


def test_refine_gives_a_diff_against_the_version(world, alice_client, llm):
    agent_id = create_agent(alice_client, json.loads(answer([LLM]))["definition"], name="summ")
    llm.enqueue(Reply(text=answer([LLM, SHAPE])))
    from agents.generator.services import agent_refine

    generation = agent_refine(
        agent=Agent.objects.get(pk=agent_id),
        instruction="Wrap the answer",
        actor=SYSTEM,
        created_by=world.alice,
        model=MODEL,
    )
    generation_execute(generation.pk)
    generation.refresh_from_db()
    assert generation.base_version.number == 1
    assert '+      "id": "shape"' in generation.diff
    assert "Wrap the answer" in llm.received[-1].last_user_text


@pytest.mark.django_db(transaction=True)
def test_the_api_generates_on_a_worker_accepts_and_tests(
    world, alice_client, bob_client, charlie_client, celery_worker, llm
):
    llm.enqueue(Reply(text=answer([LLM, SHAPE])))
    started = alice_client.post(
        "/api/v1/agents/generate",
        {"description": "Summarize a text", "model": MODEL, "examples": [{"input": {"text": "hi"}}]},
        format="json",
    )
    assert started.status_code == 202, started.json()
    generation_id = started.json()["id"]
    done = alice_client.get(f"/api/v1/generations/{generation_id}?wait_s=30")
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "succeeded"
    assert body["definition"]["steps"][0]["id"] == "ask"
    assert body["dry_run"]["input"] == {"text": "hi"}
    assert body["tests"][0]["input"] == {"text": "hi"}
    assert charlie_client.get(f"/api/v1/generations/{generation_id}").status_code == 404
    assert (
        bob_client.post(f"/api/v1/generations/{generation_id}/accept", {}, format="json").status_code == 403
    )
    accepted = alice_client.post(f"/api/v1/generations/{generation_id}/accept", {}, format="json")
    assert accepted.status_code == 201, accepted.json()
    agent = Agent.objects.get(pk=accepted.json()["agent"])
    assert agent.published_version_id is None  # nothing is published
    version = agent.versions.get(number=1)
    assert version.tests == body["tests"]
    tested = alice_client.post(f"/api/v1/agents/{agent.pk}/versions/1/test", {"mode": "dry"}, format="json")
    assert tested.status_code == 200, tested.json()
    assert tested.json()["passed"] is True
    live = alice_client.post(f"/api/v1/agents/{agent.pk}/versions/1/test", {"mode": "live"}, format="json")
    assert live.status_code == 200, live.json()
    assert [c["status"] for c in live.json()["cases"]] == ["succeeded", "succeeded"]
    assert live.json()["passed"] is True, live.json()
    actions = set(AuditEvent.objects.filter(tenant=world.tenant_a).values_list("action", flat=True))
    assert {"agent.generation_requested", "agent.generation_accepted"} <= actions


def test_a_generation_with_blocking_problems_cannot_be_accepted(world, alice_client, llm):
    llm.enqueue(*[Reply(text="not json")] * 3)
    generation = generate(world, "Anything", model=MODEL)
    refused = alice_client.post(f"/api/v1/generations/{generation.pk}/accept", {}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "generation_not_ready" or refused.json()["error"]["code"] == (
        "generation_has_problems"
    )
    assert not Agent.objects.filter(tenant=world.tenant_a).exists()


def test_bad_requests_are_clear_errors(alice_client):
    for body, field_name in (
        ({}, "description"),
        ({"description": "x", "trigger": "pigeon"}, "trigger"),
        ({"description": "x", "model": "acme/none"}, "model"),
        ({"description": "x", "examples": [{"output": 1}]}, "examples"),
    ):
        response = alice_client.post("/api/v1/agents/generate", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"]["fields"], body
        assert any(k.startswith(field_name) for k in response.json()["error"]["fields"]), response.json()


def test_the_generator_prompt_is_governed_and_operators_publish_versions(world, tmp_path, llm):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("generator_prompt", stdout=out)
    assert out.getvalue().startswith("production: v1")
    new = tmp_path / "prompt.txt"
    new.write_text("Design Falcon workflows. Answer one JSON object.\n{{ feedback }}")
    call_command("generator_prompt", "--file", str(new), "--note", "shorter", stdout=out)
    assert "Published v2" in out.getvalue()
    llm.enqueue(Reply(text=answer([LLM])))
    generation = generate(world, "Summarize", model=MODEL)
    assert generation.prompt_version == 2
    assert llm.received[-1].body["messages"][0]["content"].startswith("Design Falcon workflows.")
    assert AuditEvent.objects.filter(action="prompt.label_moved").exists()


def test_a_run_costlier_than_the_spend_cap_is_over_budget(world, llm):
    from billing.services import spend_cap_set

    spend_cap_set(tenant=world.tenant_a, monthly_usd="0.01", actor=SYSTEM)
    llm.enqueue(*[Reply(text=answer([{**LLM, "model": "openai/gpt-4o", "max_tokens": 100000}]))] * 3)
    generation = generate(world, "An expensive essay writer", model=MODEL)
    assert "over_budget" in {p["code"] for p in generation.blocking}
    assert any("spend cap" in p["message"] for p in generation.blocking)
