"""The ecosystem in the browser: an MCP server added as a connector shows the tools it offers; an agent
exported by one tenant is imported by another, which is told what to fill in."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from agents.workflows.models import Agent
from tests.agents.helpers import create_agent
from tests.browser.conftest import Watched, sign_in, sign_out
from tests.servers.mcp import McpTestServer

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_mcp_connector_lists_its_tools(world, loopback_allowed, watched: Watched):
    server = McpTestServer(token="browser-mcp-token-0123456789")
    try:
        sign_in(watched, "alice@a.example")
        page = watched.page
        page.get_by_role("link", name="Connectors").click()
        page.get_by_label("Kind").select_option("mcp")
        page.get_by_role("button", name="Continue").click()
        page.get_by_label("Name", exact=True).fill("team")
        page.get_by_label("url").fill(server.url)
        page.get_by_label("auth_value", exact=True).fill("Bearer browser-mcp-token-0123456789")
        watched.shot("connector-mcp-new")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("team")
        tools = page.get_by_test_id("catalogue")
        expect(tools).to_contain_text("tickets.search")
        expect(tools).to_contain_text("Adds two integers.")
        assert "browser-mcp-token" not in page.content()
        page.get_by_role("button", name="Test").click()
        expect(page.get_by_test_id("test-result")).to_contain_text("4 tools")
        watched.shot("connector-mcp")
    finally:
        server.stop()


def test_an_agent_exported_by_one_tenant_is_imported_by_another(
    world, alice_client, watched: Watched, tmp_path
):
    definition = {
        "steps": [
            {"id": "where", "type": "transform", "value": "{{ env.region }}"},
            {"id": "ping", "type": "http", "connector": "crm", "path": "/ping"},
        ]
    }
    alice_client.post(
        "/api/v1/connectors/",
        {"name": "crm", "kind": "http", "config": {"base_url": "https://crm.example"}},
        format="json",
    )
    agent_id = create_agent(alice_client, definition, name="pinger")
    sign_in(watched, "alice@a.example")
    page = watched.page
    page.goto(f"/agents/{agent_id}/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export").click()
    saved = tmp_path / "pinger.falcon.json"
    download.value.save_as(saved)
    assert json.loads(saved.read_text())["agent"]["name"] == "pinger"
    sign_out(watched)

    sign_in(watched, "charlie@b.example")
    page.get_by_role("link", name="Agents").first.click()
    page.get_by_role("link", name="Import").click()
    watched.expected.append("400")  # the form answers 400 with the message at its field
    page.get_by_role("button", name="Continue").click()  # nothing chosen: the message at the field
    expect(page.locator("#e-bundle_file")).to_contain_text("Choose a bundle file")
    page.get_by_label("Bundle file").set_input_files(str(saved))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_label("Connector crm (http)")).to_be_visible()
    watched.shot("agent-import-preview")
    page.get_by_role("button", name="Import").click()
    todo = page.get_by_test_id("todo")
    expect(todo).to_contain_text("Create a connector named 'crm' of kind 'http'.")
    expect(todo).to_contain_text("Set the variable 'region'")
    watched.shot("agent-import-done")
    assert Agent.objects.filter(tenant=world.tenant_b, name="pinger").exists()
