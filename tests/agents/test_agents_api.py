"""Agents and versions through the API: validation, immutability, publish and rollback, diff, roles."""

from __future__ import annotations

import pytest

from agents.models import Agent, AgentVersion
from tenants.models import AuditEvent
from tests.agents.helpers import SANDBOX_ECHO, create_agent
from tests.conftest import key_client, member, session_client

pytestmark = pytest.mark.django_db


def test_workflow_schema_is_published(client):
    response = client.get("/api/v1/schemas/workflow.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["title"] == "Falcon workflow definition"
    assert {
        "LlmStep",
        "AgentStep",
        "HttpStep",
        "DbQueryStep",
        "TransformStep",
        "BranchStep",
        "MapStep",
        "WaitStep",
    } <= set(schema["$defs"])


def test_create_publish_and_read_an_agent(world, alice_client):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    body = alice_client.get(f"/api/v1/agents/{agent_id}").json()
    assert body["name"] == "greeter"
    assert body["published_version"] == 1
    assert body["created_by"] == "alice@a.example"
    version = alice_client.get(f"/api/v1/agents/{agent_id}/versions/1").json()
    assert version["definition"] == SANDBOX_ECHO
    assert version["published"] is True
    actions = list(
        AuditEvent.objects.filter(target_id=agent_id).order_by("seq").values_list("action", flat=True)
    )
    assert actions == ["agent.created", "agent.version_created", "agent.published"]


def test_invalid_definition_reports_every_problem_with_its_path_and_stores_nothing(world, alice_client):
    definition = {
        "steps": [
            {"id": "a", "type": "transform", "value": "{{ steps.nope.output }}"},
            {"id": "b", "type": "llm", "model": "acme/gpt-9", "prompt": "{{ broken "},
            {"id": "c", "type": "teleport"},
        ]
    }
    response = alice_client.post("/api/v1/agents/", {"name": "bad", "definition": definition}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_workflow"
    assert "definition.steps[2]" in error["fields"]
    assert "unknown step type 'teleport'" in error["fields"]["definition.steps[2]"][0]
    assert "template syntax error" in error["fields"]["definition.steps[1].prompt"][0]
    assert not Agent.objects.filter(name="bad").exists()


def test_structural_problems_with_paths(world, alice_client):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    cases = [
        (
            {"steps": [{"id": "a", "type": "transform", "value": "{{ steps.zz.output }}"}]},
            "definition.steps[0].value",
            "unknown step 'zz'",
        ),
        (
            {
                "steps": [
                    {"id": "a", "type": "transform", "needs": ["b"], "value": 1},
                    {"id": "b", "type": "transform", "needs": ["a"], "value": 2},
                ]
            },
            "definition.steps",
            "dependency cycle: a -> b -> a",
        ),
        (
            {"steps": [{"id": "a", "type": "llm", "model": "openai/gpt-nope-1", "prompt": "x"}]},
            "definition.steps[0].model",
            "unknown model 'openai/gpt-nope-1'",
        ),
        (
            {"steps": [{"id": "a", "type": "llm", "model": "nomodel", "prompt": "x"}]},
            "definition.steps[0].model",
            "unknown model 'nomodel'",
        ),
        (
            {
                "steps": [
                    {"id": "a", "type": "transform", "value": 1},
                    {"id": "a", "type": "transform", "value": 2},
                ]
            },
            "definition.steps[1].id",
            "duplicate step id 'a'",
        ),
        (
            {"steps": [{"id": "a", "type": "transform", "value": 1, "colour": "red"}]},
            "definition.steps[0].colour",
            "unknown field",
        ),
        (
            {"inputs": {"type": "objekt"}, "steps": [{"id": "a", "type": "transform", "value": 1}]},
            "definition.inputs",
            "not a valid JSON Schema",
        ),
        (
            {"steps": [{"id": "x", "type": "http", "connector": "crm", "path": "/"}]},
            "definition.steps[0].connector",
            "no connector named 'crm'",
        ),
    ]
    for definition, path, message in cases:
        response = alice_client.post(
            f"/api/v1/agents/{agent_id}/versions", {"definition": definition}, format="json"
        )
        assert response.status_code == 400, definition
        fields = response.json()["error"]["fields"]
        assert path in fields, (path, fields)
        assert any(message in text for text in fields[path]), (message, fields[path])
    assert AgentVersion.objects.filter(agent_id=agent_id).count() == 1


def test_versions_are_numbered_and_rollback_is_audited(world, alice_client):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    v2 = {**SANDBOX_ECHO, "output": "{{ steps.say.output }}"}
    response = alice_client.post(
        f"/api/v1/agents/{agent_id}/versions", {"definition": v2, "note": "short"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["number"] == 2
    assert response.json()["published"] is False
    assert alice_client.post(f"/api/v1/agents/{agent_id}/versions/2/publish").status_code == 200
    assert alice_client.get(f"/api/v1/agents/{agent_id}").json()["published_version"] == 2
    assert alice_client.post(f"/api/v1/agents/{agent_id}/versions/1/publish").status_code == 200
    assert alice_client.get(f"/api/v1/agents/{agent_id}").json()["published_version"] == 1
    rollback = AuditEvent.objects.get(action="agent.rolled_back", target_id=agent_id)
    assert rollback.changes == {"before": {"published_version": 2}, "after": {"published_version": 1}}
    listed = alice_client.get(f"/api/v1/agents/{agent_id}/versions").json()["results"]
    assert [v["number"] for v in listed] == [2, 1]
    diff = alice_client.get(f"/api/v1/agents/{agent_id}/versions/diff?from=1&to=2").json()
    assert diff["diff"].startswith("--- v1\n+++ v2\n")
    assert '+  "output": "{{ steps.say.output }}",' in diff["diff"]
    assert alice_client.get(f"/api/v1/agents/{agent_id}/versions/9").status_code == 404
    assert alice_client.get(f"/api/v1/agents/{agent_id}/versions/diff?from=x&to=2").status_code == 400


def test_archive_and_rename(world, alice_client):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    assert (
        alice_client.patch(f"/api/v1/agents/{agent_id}", {"name": "welcomer"}, format="json").json()["name"]
        == "welcomer"
    )
    create_agent(alice_client, SANDBOX_ECHO, name="other")
    clash = alice_client.patch(f"/api/v1/agents/{agent_id}", {"name": "OTHER"}, format="json")
    assert clash.status_code == 409
    assert alice_client.delete(f"/api/v1/agents/{agent_id}").status_code == 204
    assert alice_client.get(f"/api/v1/agents/{agent_id}").json()["archived"] is True
    run = alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "x"}}, format="json")
    assert run.status_code == 409
    assert run.json()["error"]["code"] == "agent_archived"
    assert alice_client.post(f"/api/v1/agents/{agent_id}/unarchive").json()["archived"] is False


def test_roles_for_agents(world, alice_client, make_key):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    operator = session_client(member(world.tenant_a, "operator"), world.tenant_a)
    builder = session_client(member(world.tenant_a, "builder"), world.tenant_a)
    viewer = session_client(world.bob, world.tenant_a)
    assert viewer.get("/api/v1/agents/").status_code == 200
    assert viewer.post("/api/v1/agents/", {"name": "v"}, format="json").status_code == 403
    assert (
        viewer.post(f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "x"}}, format="json").status_code
        == 403
    )
    assert operator.post("/api/v1/agents/", {"name": "o"}, format="json").status_code == 403
    assert (
        operator.post(
            f"/api/v1/agents/{agent_id}/versions", {"definition": SANDBOX_ECHO}, format="json"
        ).status_code
        == 403
    )
    assert (
        operator.post(f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "x"}}, format="json").status_code
        == 202
    )
    assert (
        builder.post(
            f"/api/v1/agents/{agent_id}/versions", {"definition": SANDBOX_ECHO}, format="json"
        ).status_code
        == 201
    )
    assert builder.post(f"/api/v1/agents/{agent_id}/versions/2/publish").status_code == 200
    _, run_key = make_key(world.tenant_a, ["run"])
    assert (
        key_client(run_key)
        .post(f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "x"}}, format="json")
        .status_code
        == 202
    )
    assert key_client(run_key).post("/api/v1/agents/", {"name": "k"}, format="json").status_code == 403


def test_other_tenants_agents_are_404(world, alice_client, charlie_client):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    for method, path in [
        ("get", f"/api/v1/agents/{agent_id}"),
        ("get", f"/api/v1/agents/{agent_id}/versions/1"),
        ("post", f"/api/v1/agents/{agent_id}/runs"),
        ("post", f"/api/v1/agents/{agent_id}/versions/1/publish"),
    ]:
        response = getattr(charlie_client, method)(path, {}, format="json")
        assert response.status_code == 404, path
    assert charlie_client.get("/api/v1/agents/").json()["results"] == []
