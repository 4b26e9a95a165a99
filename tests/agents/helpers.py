"""Building agents through the API in tests."""

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
