"""Building agents in tests: through the API, or through the services when the API is not the subject."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

SANDBOX_ECHO: dict[str, Any] = {
    "inputs": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    "steps": [
        {"id": "greet", "type": "transform", "value": "Hello {{ input.name }}"},
        {"id": "say", "type": "llm", "model": "sandbox/echo", "prompt": "{{ steps.greet.output }}"},
    ],
    "output": {"greeting": "{{ steps.greet.output }}", "said": "{{ steps.say.output }}"},
}
# One transform step answering 42.
SIX_TIMES_SEVEN: dict[str, Any] = {"steps": [{"id": "s", "type": "transform", "value": "{{ 6 * 7 }}"}]}


def create_agent(
    client: APIClient,
    definition: dict[str, Any],
    name: str = "greeter",
    publish: bool = True,
    description: str = "",
) -> str:
    body = {"name": name, "definition": definition} | ({"description": description} if description else {})
    response = client.post("/api/v1/agents/", body, format="json")
    assert response.status_code == 201, response.json()
    agent_id = response.json()["id"]
    if publish:
        published = client.post(f"/api/v1/agents/{agent_id}/versions/1/publish")
        assert published.status_code == 200, published.json()
    return str(agent_id)


def published_agent(tenant: Any, definition: dict[str, Any], name: str = "calc") -> Any:
    """An agent whose first version is published, created through the services by the system."""
    from agents.workflows.services import agent_create, version_publish
    from tenants.audit import Actor

    system = Actor.system("tests")
    agent = agent_create(
        tenant=tenant, name=name, description="", actor=system, created_by=None, definition=definition
    )
    version_publish(version=agent.versions.get(), actor=system)
    agent.refresh_from_db()
    return agent
