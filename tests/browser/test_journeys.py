"""Journeys from a signed-out browser, in real chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.agents.helpers import create_agent
from tests.browser.conftest import Watched, sign_in
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = {
    "inputs": {"type": "object", "properties": {"name": {"type": "string"}}},
    "steps": [
        {"id": "greet", "type": "transform", "value": "Hello {{ input.name }}"},
        {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "{{ steps.greet.output }}"},
    ],
    "output": {"said": "{{ steps.ask.output }}"},
}


def test_owner_signs_in_sees_the_overview_and_watches_a_run_finish(
    world, alice_client, celery_worker, llm, watched: Watched
):
    agent_id = create_agent(alice_client, SLOW, name="greeter")
    llm.enqueue(Reply(text="Hi Ada, nice to meet you", delay_s=2))
    run = alice_client.post(
        f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "Ada"}}, format="json"
    ).json()

    sign_in(watched, "alice@a.example", shot=True)
    page = watched.page
    expect(page.get_by_role("heading", level=1)).to_contain_text("Tenant A")
    expect(page.get_by_role("link", name="greeter").first).to_be_visible()
    watched.shot("overview")

    page.get_by_role("link", name="greeter").first.click()
    expect(page).to_have_url(re.compile(rf"/runs/{run['id']}/$"))
    status = page.get_by_test_id("run-status")
    expect(status).not_to_have_text("Succeeded", timeout=1000)  # still waiting for the model
    expect(status).to_have_text("Succeeded", timeout=20_000)  # the page updated itself (htmx polling)
    expect(page.locator("#run-body")).not_to_have_attribute(
        "hx-trigger", re.compile("every")
    )  # polling stopped
    page.get_by_text("ask", exact=True).click()
    expect(page.get_by_test_id("step-output").last).to_contain_text("Hi Ada, nice to meet you")
    watched.shot("run-detail")

    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("table")).to_contain_text("greeter")
    watched.shot("runs")
    page.get_by_role("link", name="Agents", exact=True).click()
    expect(page.get_by_role("table")).to_contain_text("greeter")
    watched.shot("agents")


def test_another_tenants_run_is_a_404_page_in_the_products_look(world, alice_client, watched: Watched):
    agent_id = create_agent(
        alice_client, {"steps": [{"id": "t", "type": "transform", "value": 1}]}, name="mine"
    )
    run = alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()
    sign_in(watched, "charlie@b.example")
    watched.expected.append("status of 404")  # the browser reports the page's own 404
    response = watched.page.goto(f"/runs/{run['id']}/")
    assert response is not None
    assert response.status == 404
    expect(watched.page.get_by_role("heading", level=1)).to_have_text("Not found")
    watched.shot("not-found")


def test_a_member_runs_an_agent_from_the_generated_form(
    world, alice_client, celery_worker, llm, watched: Watched
):
    create_agent(alice_client, SLOW, name="greeter")
    llm.enqueue(Reply(text="Hello from the model"))
    sign_in(watched, "alice@a.example")
    page = watched.page
    page.get_by_role("link", name="Agents", exact=True).click()
    page.get_by_role("link", name="greeter").click()
    page.get_by_label("name").fill("Grace")
    watched.shot("agent")
    page.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("run-status")).to_have_text("Succeeded", timeout=20_000)
    expect(page.get_by_test_id("run-output")).to_contain_text("Hello from the model")
