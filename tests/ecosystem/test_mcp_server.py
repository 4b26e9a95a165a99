"""``/api/mcp``: Falcon's published agents as MCP tools, driven by the official ``mcp`` SDK client
against a live server and a real worker, on the current protocol revision and the handshake one."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from agents.models import Run
from tests.agents.helpers import create_agent
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db(transaction=True)

SUMMARY = {
    "inputs": {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "what to summarise"}},
        "required": ["text"],
    },
    "steps": [
        {"id": "tidy", "type": "transform", "value": "{{ input.text | upper }}"},
        {"id": "say", "type": "llm", "model": "sandbox/echo", "prompt": "{{ steps.tidy.output }}"},
    ],
    "output": {"summary": "{{ steps.say.output }}", "length": "{{ input.text | length }}"},
}
SHOUT = {
    "inputs": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    "steps": [{"id": "up", "type": "transform", "value": "{{ input.word | upper }}"}],
    "output": "{{ steps.up.output }}",
}
FAILING = {
    "inputs": {"type": "object", "properties": {}},
    "steps": [{"id": "boom", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "x"}],
    "output": "{{ steps.boom.output }}",
}


def _session(url: str, token: str | None, mode: str = "auto") -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    return Client(streamable_http_client(url, http_client=http), mode=mode)


def _run(scenario: Any, *args: Any) -> Any:
    """The client's event loop in a thread of its own: the session's browser tests keep one running in
    the main thread."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(anyio.run, scenario, *args).result()


@pytest.fixture
def mcp_url(live_server) -> str:
    return f"{live_server.url}/api/mcp"


@pytest.fixture
def runner_token(world, make_key) -> str:
    _, token = make_key(world.tenant_a, ["run", "read"])
    return token


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_list_offers_the_published_agents_the_key_may_run(
    world, alice_client, charlie_client, mcp_url, runner_token, mode
):
    create_agent(alice_client, SUMMARY, name="Summarise text", description="Summarises a text.")
    create_agent(alice_client, SHOUT, name="draft", publish=False)
    create_agent(charlie_client, SHOUT, name="outsider")

    async def scenario() -> Any:
        async with _session(mcp_url, runner_token, mode) as client:
            return client.protocol_version, await client.list_tools()

    version, listed = _run(scenario)
    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    assert [t.name for t in listed.tools] == ["Summarise_text"]
    tool = listed.tools[0]
    assert tool.description == "Summarises a text."
    assert tool.input_schema == SUMMARY["inputs"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_tools_call_runs_the_agent_through_the_run_path(
    world, alice_client, celery_worker, mcp_url, runner_token, mode
):
    create_agent(alice_client, SUMMARY, name="Summarise text")
    progress: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))

    async def scenario() -> Any:
        async with _session(mcp_url, runner_token, mode) as client:
            await client.list_tools()
            return await client.call_tool(
                "Summarise_text",
                {"text": "hello mcp"},
                progress_callback=on_progress,  # type: ignore[arg-type]
            )

    result = _run(scenario)
    assert not result.is_error
    expected = {"summary": "[sandbox] HELLO MCP", "length": 9}
    assert result.structured_content == expected
    assert json.loads(result.content[0].text) == expected
    run = Run.objects.get()
    assert run.trigger == "mcp"
    assert run.input == {"text": "hello mcp"}
    assert run.steps.count() == 2
    assert [message for _, message in progress] == ["step tidy succeeded", "step say succeeded"]
    assert run.actor_type == "api_key"


def test_a_text_output_is_wrapped_for_structured_content(
    world, alice_client, celery_worker, mcp_url, runner_token
):
    create_agent(alice_client, SHOUT, name="shout")

    async def scenario() -> Any:
        async with _session(mcp_url, runner_token) as client:
            await client.list_tools()
            return await client.call_tool("shout", {"word": "hey"})

    result = _run(scenario)
    assert result.content[0].text == "HEY"
    assert result.structured_content == {"result": "HEY"}


def test_failures_are_tool_errors_naming_the_run(
    world, alice_client, charlie_client, celery_worker, llm, mcp_url, runner_token
):
    llm.enqueue(Reply(status=400))
    create_agent(alice_client, FAILING, name="broken")
    create_agent(alice_client, SHOUT, name="shout")
    outsider = create_agent(charlie_client, SHOUT, name="outsider")

    async def scenario() -> Any:
        async with _session(mcp_url, runner_token) as client:
            await client.list_tools()
            failed = await client.call_tool("broken", {})
            invalid = await client.call_tool("shout", {"word": 42})
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("nobody", {})
            with pytest.raises(MCPError) as walled:  # another tenant's agent, by id: unknown too
                await client.call_tool(outsider, {"word": "hi"})
            return failed, invalid, unknown.value, walled.value

    failed, invalid, unknown, walled = _run(scenario)
    assert walled.code == -32602
    assert not Run.objects.filter(agent_id=outsider).exists()
    run = Run.objects.get(agent__name="broken")
    assert failed.is_error
    assert str(run.pk) in failed.content[0].text
    assert failed.structured_content["status"] == "failed"
    assert invalid.is_error
    assert "invalid_input" in invalid.content[0].text
    assert unknown.code == -32602


def test_keys_are_checked_before_anything(world, alice_client, mcp_url, make_key):
    create_agent(alice_client, SHOUT, name="shout")
    _, reader = make_key(world.tenant_a, ["read"])

    async def listing(token: str | None) -> Any:
        async with _session(mcp_url, token) as client:
            return await client.list_tools()

    refusals = [
        (None, "Send your Falcon API key"),
        ("flk_live_not_a_key", "The API key is not valid"),
        (reader, "not allowed for this API key"),
    ]
    for token, message in refusals:
        with pytest.raises(ExceptionGroup) as refused:  # the SDK's task group carries the MCPError
            _run(listing, token)
        assert refused.group_contains(MCPError, match=message, depth=2), refused.value


def test_raw_http_answers(world, alice_client, mcp_url, runner_token, make_key):
    import httpx

    _, reader = make_key(world.tenant_a, ["read"])
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    unauth = httpx.post(mcp_url, json=body)
    assert unauth.status_code == 401
    assert unauth.json()["error"]["message"]
    assert unauth.headers["WWW-Authenticate"].startswith("Bearer")
    forbidden = httpx.post(mcp_url, json=body, headers={"Authorization": f"Bearer {reader}"})
    assert forbidden.status_code == 403
