"""The ``mcp`` connector kind against an MCP server built with the official SDK on loopback: tools
listed on save and by Test, an ``mcp`` step, MCP tools offered to an agent's model, the network policy."""

from __future__ import annotations

from typing import Any

import pytest

from agents.runs.execution import run_execute
from connectors.models import Connector
from tests.agents.helpers import create_agent
from tests.servers.llm import Reply
from tests.servers.mcp import McpTestServer

pytestmark = pytest.mark.django_db

TOKEN = "mcp-secret-token-0123456789"


@pytest.fixture(scope="module")
def mcp_server() -> Any:
    server = McpTestServer(token=TOKEN)
    yield server
    server.stop()


@pytest.fixture
def team_tools(mcp_server: McpTestServer, loopback_allowed: None) -> McpTestServer:
    mcp_server.reset()
    return mcp_server


def _create(client: Any, url: str, secret: str | None = f"Bearer {TOKEN}", name: str = "team") -> Any:
    body: dict[str, Any] = {"name": name, "kind": "mcp", "config": {"url": url}}
    if secret:
        body["secrets"] = {"auth_value": secret}
    return client.post("/api/v1/connectors/", body, format="json")


def _run(client: Any, definition: dict[str, Any], input: dict[str, Any] | None = None) -> dict[str, Any]:
    agent_id = create_agent(client, definition, name="uses-mcp")
    run = client.post(f"/api/v1/agents/{agent_id}/runs", {"input": input or {}}, format="json").json()
    run_execute(run["id"])
    return client.get(f"/api/v1/runs/{run['id']}").json()


def test_tools_are_listed_on_save_and_by_test(world, alice_client, team_tools):
    created = _create(alice_client, team_tools.url)
    assert created.status_code == 201, created.json()
    body = created.json()
    tools = {t["name"]: t for t in body["catalogue"]["tools"]}
    assert set(tools) == {"add", "forecast", "tickets.search", "explode"}
    assert tools["add"]["description"] == "Adds two integers."
    assert tools["add"]["input_schema"]["required"] == ["a", "b"]
    assert body["secrets"] == {"auth_value": {"configured": True, "last4": "6789"}}
    assert TOKEN not in str(body)
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for h in team_tools.headers)

    tested = alice_client.post(f"/api/v1/connectors/{body['id']}/test").json()
    assert tested["ok"] is True, tested
    assert tested["detail"].startswith("4 tools: ")
    assert Connector.objects.get(pk=body["id"]).last_test_ok is True


def test_a_wrong_secret_is_a_clear_failure(world, alice_client, team_tools):
    created = _create(alice_client, team_tools.url, secret="Bearer wrong-token-0000000000")
    assert created.status_code == 201
    assert created.json()["catalogue"]["code"] == "http_401"
    tested = alice_client.post(f"/api/v1/connectors/{created.json()['id']}/test").json()
    assert tested["ok"] is False
    assert tested["code"] == "http_401"
    assert "wrong-token" not in str(tested)


def test_an_mcp_step_calls_one_tool_with_templated_arguments(world, alice_client, team_tools):
    assert _create(alice_client, team_tools.url).status_code == 201
    run = _run(
        alice_client,
        {
            "inputs": {"type": "object", "properties": {"city": {"type": "string"}}},
            "steps": [
                {
                    "id": "weather",
                    "type": "mcp",
                    "connector": "team",
                    "tool": "forecast",
                    "arguments": {"city": "{{ input.city }}"},
                },
                {
                    "id": "sum",
                    "type": "mcp",
                    "connector": "team",
                    "tool": "add",
                    "arguments": {"a": "{{ steps.weather.output.celsius | int }}", "b": 2},
                },
                {
                    "id": "found",
                    "type": "mcp",
                    "connector": "team",
                    "tool": "tickets.search",
                    "arguments": {"query": "refund", "limit": 2},
                },
            ],
            "output": {
                "weather": "{{ steps.weather.output }}",
                "sum": "{{ steps.sum.output }}",
                "found": "{{ steps.found.output }}",
            },
        },
        {"city": "Lyon"},
    )
    assert run["status"] == "succeeded", run
    assert run["output"]["weather"] == {"city": "Lyon", "celsius": 21.5, "summary": "sunny in Lyon (metric)"}
    assert run["output"]["sum"] == {"result": 23}
    assert run["output"]["found"] == {"result": "ticket 1: refund\nticket 2: refund"}
    assert team_tools.calls == [
        ("forecast", {"city": "Lyon", "units": "metric"}),
        ("add", {"a": 21, "b": 2}),
        ("tickets.search", {"query": "refund", "limit": 2}),
    ]
    first = run["steps"][0]
    assert first["input"]["tool"] == "forecast"


def test_a_tool_error_fails_the_step(world, alice_client, team_tools):
    _create(alice_client, team_tools.url)
    run = _run(
        alice_client,
        {
            "steps": [
                {
                    "id": "boom",
                    "type": "mcp",
                    "connector": "team",
                    "tool": "explode",
                    "retry": {"max_attempts": 1},
                }
            ]
        },
    )
    assert run["status"] == "failed"
    assert run["error"]["code"] == "mcp_tool_error"
    assert "the reactor is offline" in run["error"]["message"]


def _weather(fixed: dict[str, Any]) -> dict[str, Any]:
    """The server's forecast tool, offered to the model as `weather` with the author's fixed arguments."""
    return {"type": "mcp", "connector": "team", "tool": "forecast", "name": "weather", "arguments": fixed}


def _assistant(*tools: dict[str, Any]) -> dict[str, Any]:
    """A workflow of one agent step that may use ``tools``."""
    step = {
        "id": "assist",
        "type": "agent",
        "model": "openai/gpt-4o-mini",
        "prompt": "help",
        "tools": list(tools),
    }
    return {"steps": [step]}


def test_mcp_tools_are_offered_to_the_model(world, alice_client, team_tools, llm):
    _create(alice_client, team_tools.url)
    llm.enqueue(
        Reply(tool_calls=[("weather", {"city": "Oslo"})]),
        Reply(tool_calls=[("tickets_search", {"query": "late", "limit": 1})]),
        Reply(text="Sunny in Oslo; one late ticket."),
    )
    run = _run(
        alice_client,
        _assistant(
            _weather({"units": "imperial"}),
            {"type": "mcp", "connector": "team", "tool": "tickets.search"},
        ),
    )
    assert run["status"] == "succeeded", run
    assert run["output"] == "Sunny in Oslo; one late ticket."
    offered = {t["function"]["name"]: t["function"] for t in llm.requests_for("openai")[0].body["tools"]}
    assert set(offered) == {"weather", "tickets_search"}
    assert offered["weather"]["description"] == "The weather forecast for a city."
    # The author fixed `units`: the model is not offered it.
    assert set(offered["weather"]["parameters"]["properties"]) == {"city"}
    assert offered["weather"]["parameters"]["additionalProperties"] is False
    assert team_tools.calls == [
        ("forecast", {"city": "Oslo", "units": "imperial"}),
        ("tickets.search", {"query": "late", "limit": 1}),
    ]


def test_the_model_cannot_set_what_the_author_fixed(world, alice_client, team_tools, llm):
    _create(alice_client, team_tools.url)
    llm.enqueue(
        Reply(tool_calls=[("weather", {"city": "Oslo", "units": "kelvin"})]),
        Reply(text="done"),
    )
    run = _run(alice_client, _assistant(_weather({"units": "metric"})))
    call = next(s for s in run["steps"] if s["kind"] == "tool_call")
    assert call["status"] == "failed"
    assert call["error"]["code"] == "invalid_tool_arguments"
    assert team_tools.calls == []


def test_the_network_policy_applies(world, alice_client, mcp_server, settings):
    """Without an allowance, a loopback MCP server is refused on save; the platform's own services are
    refused even with one."""
    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.0/8"]
    refused = _create(alice_client, mcp_server.url)
    assert refused.status_code == 400
    assert "loopback" in str(refused.json())
    from connectors.models import NetworkAllowance

    NetworkAllowance.objects.create(tenant=world.tenant_a, cidr="127.0.0.0/8")
    platform = _create(alice_client, "http://127.0.0.1:5432/mcp", name="sneaky")
    assert platform.status_code == 400
    assert "platform" in str(platform.json()).lower()
