"""The compliance console in the browser: a Compliance-group staff member opens a tenant's run, gives a
reason, sees the run; the tenant's owner finds the access in the dashboard's audit log."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from agents.runs.execution import run_execute
from tests.agents.helpers import create_agent
from tests.browser.conftest import Watched, sign_in
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_break_glass_access_is_asked_for_recorded_and_shown_to_the_tenant(
    world, alice_client, watched: Watched
):
    agent_id = create_agent(
        alice_client,
        {"steps": [{"id": "echo", "type": "transform", "value": "{{ input.note }}"}]},
        name="echo",
    )
    run = alice_client.post(
        f"/api/v1/agents/{agent_id}/runs", {"input": {"note": "private-note-77"}}, format="json"
    )
    run_execute(run.json()["id"])
    staff = make_user(email="compliance@falcon.example", is_staff=True)
    staff.groups.add(Group.objects.get(name="Compliance"))

    sign_in(watched, "compliance@falcon.example")
    page = watched.page
    page.goto("/admin/")
    watched.shot("console-index")
    page.goto("/admin/agents/run/")
    expect(page.locator("#result_list")).to_contain_text("echo")
    watched.shot("console-runs")
    page.goto(f"/admin/agents/run/{run.json()['id']}/change/")
    expect(page.get_by_label("Reason (a ticket id or a sentence)")).to_be_visible()
    assert "private-note-77" not in page.content()
    watched.shot("console-break-glass")
    page.get_by_label("Reason (a ticket id or a sentence)").fill("SUP-1234 customer asked about this run")
    page.get_by_role("button", name="Open with this reason").click()
    expect(page.get_by_test_id("payload-note")).to_contain_text("audit log")
    expect(page.locator("body")).to_contain_text("private-note-77")
    watched.shot("console-run-opened")
    page.context.clear_cookies()  # signed out (the console has no product header)

    sign_in(watched, "alice@a.example")
    page.goto("/audit/")
    expect(page.locator("body")).to_contain_text("staff.access")
    expect(page.locator("body")).to_contain_text("compliance@falcon.example (platform staff)")
    watched.shot("audit-staff-access")
