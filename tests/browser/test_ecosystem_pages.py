"""The ecosystem in the browser: an MCP server added as a connector shows the tools it offers, and a
builder step can call one of them."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Watched, sign_in
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
