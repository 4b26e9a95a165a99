"""Agents as files: export from one tenant, import into another, through the API; what must be filled in
is reported; nothing secret leaves; imported prompt versions arrive for review, never approved."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.prompts.models import PromptVersion
from agents.runs.execution import run_execute
from agents.triggers.models import Trigger
from agents.workflows.models import Agent
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent

pytestmark = pytest.mark.django_db

CRM_TOKEN = "crm-token-never-exported-123456"


def _prompt(client: Any) -> None:
    created = client.post(
        "/api/v1/prompts/",
        {
            "name": "greeting",
            "description": "how we greet",
            "version": {"template": "Say hello to {{ who }}", "input_variables": ["who"]},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    prompt_id = created.json()["id"]
    base = f"/api/v1/prompts/{prompt_id}/versions/1"
    assert client.post(f"{base}/submit").status_code == 200
    assert client.post(f"{base}/approve", {"comment": "ok"}, format="json").status_code == 200
    moved = client.put(f"/api/v1/prompts/{prompt_id}/labels/production", {"version": 1}, format="json")
    assert moved.status_code == 200, moved.json()


def _connector(client: Any, name: str, base_url: str) -> None:
    created = client.post(
        "/api/v1/connectors/",
        {
            "name": name,
            "kind": "http",
            "config": {"base_url": base_url, "auth": "bearer"},
            "secrets": {"token": CRM_TOKEN},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()


SUPPORT: dict[str, Any] = {
    "inputs": {"type": "object", "properties": {"name": {"type": "string"}}},
    "steps": [
        {
            "id": "greet",
            "type": "llm",
            "model": "sandbox/echo",
            "prompt": {"name": "greeting", "label": "production", "variables": {"who": "{{ input.name }}"}},
        },
        {"id": "where", "type": "transform", "value": "{{ env.region }}"},
        {"id": "lookup", "type": "http", "connector": "crm", "path": "/customers"},
    ],
    "output": {"greeting": "{{ steps.greet.output }}", "status": "{{ steps.lookup.output.status }}"},
}


@pytest.fixture
def source_agent(world, alice_client, loopback) -> str:
    _prompt(alice_client)
    _connector(alice_client, "crm", loopback.base)
    assert (
        alice_client.post(
            "/api/v1/variables/", {"name": "region", "value": "eu-west-secret-value"}, format="json"
        )
    ).status_code == 201
    agent_id = create_agent(alice_client, SUPPORT, name="support")
    second = {**SUPPORT, "output": {**SUPPORT["output"], "v": 2}}
    assert (
        alice_client.post(
            f"/api/v1/agents/{agent_id}/versions", {"definition": second, "note": "v2"}, format="json"
        ).status_code
        == 201
    )
    assert alice_client.post(f"/api/v1/agents/{agent_id}/versions/2/publish").status_code == 200
    for body in (
        {"agent": agent_id, "name": "inbox", "kind": "webhook", "config": {"scheme": "standard"}},
        {"agent": agent_id, "name": "nightly", "kind": "schedule", "config": {"cron": "0 3 * * *"}},
    ):
        created = alice_client.post("/api/v1/triggers/", body, format="json")
        assert created.status_code == 201, created.json()
    return agent_id


def test_export_names_what_it_needs_and_carries_no_secret(world, alice_client, source_agent):
    response = alice_client.get(f"/api/v1/agents/{source_agent}/export")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="support.falcon.json"'
    bundle = response.json()
    text = json.dumps(bundle)
    assert CRM_TOKEN not in text
    assert "eu-west-secret-value" not in text
    assert "whsec_" not in text
    assert bundle["format"] == "falcon.agent-bundle"
    assert bundle["format_version"] == 1
    assert [(v["number"], v["published"]) for v in bundle["versions"]] == [(1, False), (2, True)]
    assert bundle["connectors"] == [{"name": "crm", "kind": "http"}]
    assert bundle["variables"] == [{"name": "region", "description": ""}]
    assert bundle["prompts"][0]["name"] == "greeting"
    assert bundle["prompts"][0]["versions"][0]["labels"] == ["production"]
    assert bundle["prompts"][0]["versions"][0]["template"] == "Say hello to {{ who }}"
    assert {t["name"]: t["kind"] for t in bundle["triggers"]} == {"inbox": "webhook", "nightly": "schedule"}
    published = alice_client.get(f"/api/v1/agents/{source_agent}/export?versions=published").json()
    assert [v["number"] for v in published["versions"]] == [2]
    assert AuditEvent.objects.filter(tenant=world.tenant_a, action="agent.exported").count() == 2


def test_another_tenants_agent_cannot_be_exported(world, charlie_client, source_agent):
    assert charlie_client.get(f"/api/v1/agents/{source_agent}/export").status_code == 404


def test_import_elsewhere_reports_what_to_fill_in(
    world, alice_client, charlie_client, source_agent, loopback
):
    bundle = alice_client.get(f"/api/v1/agents/{source_agent}/export").json()
    response = charlie_client.post("/api/v1/agents/import", bundle, format="json")
    assert response.status_code == 201, response.json()
    report = response.json()
    todo = {(t["kind"], t["name"]) for t in report["todo"]}
    assert todo == {
        ("connector", "crm"),
        ("variable", "region"),
        ("prompt_review", "greeting"),
        ("trigger", "inbox"),
        ("trigger", "nightly"),
        ("publish", "2"),
    }
    assert report["published_version"] is None
    assert [v["number"] for v in report["versions"]] == [1, 2]
    agent = Agent.objects.get(tenant=world.tenant_b, name="support")
    assert agent.published_version is None
    # The prompt arrived for review, not approved; the labels are left for the reviewer to move.
    version = PromptVersion.objects.get(tenant=world.tenant_b, prompt__name="greeting")
    assert version.status == PromptVersion.Status.IN_REVIEW
    assert not version.prompt.labels.exists()
    # Triggers arrive disabled, the webhook with a new secret shown once.
    triggers = {t["name"]: t for t in report["triggers"]}
    assert triggers["inbox"]["secret"].startswith("whsec_")
    assert not Trigger.objects.filter(tenant=world.tenant_b, enabled=True).exists()
    # Publishing checks every reference again: the connector is still missing.
    refused = charlie_client.post(f"/api/v1/agents/{agent.pk}/versions/2/publish")
    assert refused.status_code == 400
    assert "no connector named 'crm'" in json.dumps(refused.json())
    _connector(charlie_client, "crm", loopback.base)
    assert charlie_client.post(f"/api/v1/agents/{agent.pk}/versions/2/publish").status_code == 200
    event = AuditEvent.objects.get(tenant=world.tenant_b, action="agent.imported")
    assert "connector:crm" in event.changes["after"]["todo"]


def test_a_round_trip_that_needs_nothing_is_published_and_runs(
    world, alice_client, charlie_client, source_agent, loopback
):
    """Tenant B already has what the agent needs (its CRM connector under another name, mapped)."""
    _prompt(charlie_client)
    _connector(charlie_client, "their-crm", loopback.base)
    assert (
        charlie_client.post(
            "/api/v1/variables/", {"name": "region", "value": "us"}, format="json"
        ).status_code
        == 201
    )
    bundle = alice_client.get(f"/api/v1/agents/{source_agent}/export?versions=published").json()
    response = charlie_client.post(
        "/api/v1/agents/import",
        {"bundle": {**bundle, "triggers": []}, "name": "their support", "connectors": {"crm": "their-crm"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    report = response.json()
    assert report["todo"] == []
    assert report["published_version"] == 1
    assert report["connectors"] == [
        {"name": "crm", "mapped_to": "their-crm", "kind": "http", "status": "matched"}
    ]
    agent = Agent.objects.get(tenant=world.tenant_b, name="their support")
    assert agent.published_version.definition["steps"][2]["connector"] == "their-crm"
    run = charlie_client.post(
        f"/api/v1/agents/{agent.pk}/runs", {"input": {"name": "Bo"}}, format="json"
    ).json()
    assert run_execute(run["id"]) == "succeeded"
    done = charlie_client.get(f"/api/v1/runs/{run['id']}").json()
    assert done["output"] == {"greeting": "[sandbox] Say hello to Bo", "status": 200, "v": 2}
    assert loopback.received[-1]["headers"].get("authorization") == f"Bearer {CRM_TOKEN}"


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"format": "something-else"}, 400, "bundle.format"),
        ({"format_version": 99}, 400, "bundle.format_version"),
        ({"versions": []}, 400, "bundle.versions"),
        ({"versions": [{"number": 1, "definition": {"steps": [{"id": "x", "type": "nope"}]}}]}, 400, None),
    ],
)
def test_bad_bundles_are_refused_whole(
    world, alice_client, charlie_client, source_agent, change, status, field
):
    bundle = {**alice_client.get(f"/api/v1/agents/{source_agent}/export").json(), **change}
    response = charlie_client.post("/api/v1/agents/import", bundle, format="json")
    assert response.status_code == status, response.json()
    if field:
        assert field in response.json()["error"]["fields"]
    assert not Agent.objects.filter(tenant=world.tenant_b).exists()
    assert not PromptVersion.objects.filter(tenant=world.tenant_b).exists()


def test_name_taken_and_kind_mismatch_are_conflicts(world, alice_client, charlie_client, source_agent):
    bundle = alice_client.get(f"/api/v1/agents/{source_agent}/export").json()
    create_agent(charlie_client, {"steps": [{"id": "a", "type": "transform", "value": "1"}]}, name="support")
    taken = charlie_client.post("/api/v1/agents/import", bundle, format="json")
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "name_taken"
    charlie_client.post(
        "/api/v1/connectors/",
        {"name": "crm", "kind": "slack_webhook", "secrets": {"url": "https://hooks.slack.com/x"}},
        format="json",
    )
    mismatch = charlie_client.post(
        "/api/v1/agents/import", {"bundle": bundle, "name": "other"}, format="json"
    )
    assert mismatch.status_code == 409
    assert mismatch.json()["error"]["code"] == "connector_kind_mismatch"
