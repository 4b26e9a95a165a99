"""Dashboard pages through Django's test client: tenant walls, object rights, and no N+1 on lists."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agents.runs.execution import run_execute
from agents.runs.services import run_start
from agents.workflows.models import Agent
from tenants.audit import Actor
from tenants.models import Membership
from tenants.permissions import Role
from tests.agents.helpers import create_agent
from tests.conftest import member

pytestmark = pytest.mark.django_db

STEP = {"steps": [{"id": "s", "type": "transform", "value": "{{ input.n }}"}]}


def browser_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _runs(alice_client, name: str, n: int) -> str:
    agent_id = create_agent(alice_client, STEP, name=name)
    agent = Agent.objects.get(pk=agent_id)
    for i in range(n):
        run, _ = run_start(agent=agent, input={"n": i}, actor=Actor.system("t"))
        run_execute(run.pk)
    return agent_id


def test_pages_render_for_a_member_with_their_tenant(world, alice_client):
    _runs(alice_client, "counter", 2)
    browser = browser_for(world.alice)
    for path in ("/", "/agents/", "/runs/", "/agents/?q=count&state=published"):
        page = browser.get(path)
        assert page.status_code == 200, path
        assert b"Tenant A" in page.content or path != "/"
    assert b"counter" in browser.get("/runs/").content


def test_another_tenants_run_is_a_404_page(world, alice_client):
    _runs(alice_client, "counter", 1)
    run_id = alice_client.get("/api/v1/runs/").json()["results"][0]["id"]
    assert browser_for(world.alice).get(f"/runs/{run_id}/").status_code == 200
    page = browser_for(world.charlie).get(f"/runs/{run_id}/")
    assert page.status_code == 404
    assert b"Not found" in page.content
    # Naming tenant A in the switcher does not help an outsider.
    assert browser_for(world.charlie).get("/?tenant=tenant-a").status_code == 404


def test_hidden_agents_and_their_runs_stay_hidden(world, alice_client):
    secret = _runs(alice_client, "secret", 1)
    person = member(world.tenant_a, Role.BUILDER)
    membership = Membership.objects.get(tenant=world.tenant_a, user=person)
    alice_client.put(
        f"/api/v1/agents/{secret}/permissions", {"member": str(membership.pk), "rights": []}, format="json"
    )
    run_id = alice_client.get("/api/v1/runs/").json()["results"][0]["id"]
    browser = browser_for(person)
    assert b"secret" not in browser.get("/agents/").content
    assert b"secret" not in browser.get("/runs/").content
    assert browser.get(f"/runs/{run_id}/").status_code == 404


def test_viewers_get_no_run_controls_and_cannot_post_them(world, alice_client):
    _runs(alice_client, "counter", 1)
    run_id = alice_client.get("/api/v1/runs/").json()["results"][0]["id"]
    viewer = browser_for(world.bob)  # bob is a viewer of tenant A
    page = viewer.get(f"/runs/{run_id}/")
    assert page.status_code == 200
    assert b"Re-run" not in page.content
    assert viewer.post(f"/runs/{run_id}/rerun").status_code == 403
    assert browser_for(world.alice).post(f"/runs/{run_id}/rerun").status_code == 302


@pytest.mark.parametrize("path", ["/", "/runs/", "/agents/"])
def test_list_pages_make_a_fixed_number_of_queries(world, alice_client, path):
    """No N+1: ten more runs and agents do not add queries."""
    browser = browser_for(world.alice)
    _runs(alice_client, "first", 2)
    browser.get(path)
    with CaptureQueriesContext(connection) as few:
        assert browser.get(path).status_code == 200
    for n in range(10):
        _runs(alice_client, f"more-{n}", 1)
    with CaptureQueriesContext(connection) as many:
        assert browser.get(path).status_code == 200
    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]


TYPED = {
    "inputs": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Who to greet"},
            "times": {"type": "integer", "minimum": 1},
            "loud": {"type": "boolean"},
        },
        "required": ["name", "times"],
    },
    "steps": [{"id": "s", "type": "transform", "value": "{{ input.name }} x{{ input.times }}"}],
}


def test_run_now_form_is_generated_from_the_input_schema_and_shows_errors_at_the_field(world, alice_client):
    agent_id = create_agent(alice_client, TYPED, name="typed")
    browser = browser_for(world.alice)
    page = browser.get(f"/agents/{agent_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("name", "times", "loud"):
        assert f'name="{name}"' in html
    assert "Who to greet" in html
    bad = browser.post(f"/agents/{agent_id}/", {"name": "Ada", "times": "many"})
    assert bad.status_code == 400
    assert b'id="e-times"' in bad.content
    assert b"Not a valid integer" in bad.content
    schema_bad = browser.post(f"/agents/{agent_id}/", {"name": "Ada", "times": "0"})
    assert schema_bad.status_code == 400
    assert b'id="e-times"' in schema_bad.content  # the schema's problem lands at its field
    good = browser.post(f"/agents/{agent_id}/", {"name": "Ada", "times": "2", "loud": "on"})
    assert good.status_code == 302
    run = alice_client.get("/api/v1/runs/").json()["results"][0]
    assert good["Location"] == f"/runs/{run['id']}/"
    detail = alice_client.get(f"/api/v1/runs/{run['id']}").json()
    assert detail["input"] == {"name": "Ada", "times": 2, "loud": True}
    assert detail["trigger"] == "manual"
    # A viewer sees the agent but no form, and cannot post one.
    viewer = browser_for(world.bob)
    assert b'type="submit">Run' not in viewer.get(f"/agents/{agent_id}/").content
    assert viewer.post(f"/agents/{agent_id}/", {"name": "x", "times": "1"}).status_code == 403


def test_unknown_pages_are_the_products_404_for_browsers_and_json_for_programs(world):
    browser = browser_for(world.alice)
    page = browser.get("/no/such/page/", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert page.status_code == 404
    assert b"<h1>Not found</h1>" in page.content
    assert b"app." in page.content  # the product's stylesheet
    api = browser.get("/api/v1/no-such-thing", HTTP_ACCEPT="text/html")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"
    assert browser.get("/no/such/page/").json()["error"]["code"] == "not_found"


def test_a_500_in_a_page_is_the_products_error_page_and_json_for_the_api():
    from django.test import RequestFactory

    from falcon.api import handler500

    page = handler500(RequestFactory().get("/agents/", HTTP_ACCEPT="text/html"))
    assert page.status_code == 500
    assert b"Something went wrong on our side" in page.content
    api = handler500(RequestFactory().get("/api/v1/agents/", HTTP_ACCEPT="text/html"))
    assert api.status_code == 500
    assert api["Content-Type"].startswith("application/json")


def test_runs_filter_by_time_range(world, alice_client):
    from datetime import timedelta

    from django.utils import timezone

    from agents.runs.models import Run

    _runs(alice_client, "old-and-new", 2)
    Run.objects.filter(pk=Run.objects.order_by("created_at").first().pk).update(
        created_at=timezone.now() - timedelta(days=3)
    )
    browser = browser_for(world.alice)
    assert browser.get("/runs/?within=24h").content.decode().count("old-and-new") == 1
    assert browser.get("/runs/?within=7d").content.decode().count("old-and-new") == 2
    assert browser.get("/runs/?within=nonsense").status_code == 200
