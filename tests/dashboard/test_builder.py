"""The builder through Django's test client: the form round-trips a definition, structural buttons,
problems at their fields, JSON tab sync, save/publish/diff, and who may build."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from agents.workflows.gallery import TEMPLATES, template_instance
from agents.workflows.models import Agent
from dashboard import builder
from dashboard.graph import layout
from tests.dashboard.test_pages import browser_for

pytestmark = pytest.mark.django_db


def form_of(html: str) -> dict[str, str]:
    """The builder's fields as a browser would post them (inputs, selects, textareas, checkboxes)."""
    data: dict[str, str] = {}
    form = html.split('id="builder"', 1)[1].split("</form>", 1)[0]
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]*)"', tag)
        if not name:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                data[name.group(1)] = "on"
            continue
        data[name.group(1)] = _unescape(value.group(1) if value else "")
    for name, body in re.findall(r'<textarea[^>]*name="([^"]*)"[^>]*>(.*?)</textarea>', form, re.S):
        data[name] = _unescape(body)
    for name, body in re.findall(r'<select[^>]*name="([^"]*)"[^>]*>(.*?)</select>', form, re.S):
        selected = re.search(r"<option[^>]*selected[^>]*>([^<]*)</option>", body)
        first = re.search(r'<option(?: value="([^"]*)")?[^>]*>([^<]*)</option>', body)
        if selected:
            data[name] = _unescape(selected.group(1))
        elif first:
            data[name] = _unescape(first.group(1) if first.group(1) is not None else first.group(2))
    return data


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def post(browser: Client, path: str, data: dict[str, str], action: str):
    return browser.post(path, {**data, "action": action})


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.slug)
def test_every_template_round_trips_through_the_form_unchanged(world, template):
    definition = template_instance(template, world.tenant_a.pk).definition
    browser = browser_for(world.alice)
    page = browser.get(f"/agents/new/?template={template.slug}")
    assert page.status_code == 200
    form = builder.Form(form_of(page.content.decode()))
    assert builder.read_definition(form) == definition
    assert form.errors == {}


def test_build_from_scratch_with_a_mistake_shown_at_its_field(world):
    browser = browser_for(world.alice)
    page = browser.get("/agents/new/")
    data = {**form_of(page.content.decode()), "name": "scratch", "add_type:": "llm"}
    page = post(browser, "/agents/new/", data, "add:")
    data = {**form_of(page.content.decode()), "add_type:": "transform"}
    page = post(browser, "/agents/new/", data, "add:")
    data = form_of(page.content.decode())
    assert data["s0-type"] == "llm"
    assert data["s1-type"] == "transform"
    data["s0-model"] = "nonsense-model"
    data["s1-value"] = "{{ steps.llm_1.output }}"
    page = post(browser, "/agents/new/", data, "save")
    assert page.status_code == 400
    html = page.content.decode()
    assert re.search(r'id="s0-model"[^>]*aria-invalid="true"', html)
    assert 'id="e-s0-model"' in html
    assert not Agent.objects.filter(name="scratch").exists()
    data = form_of(html)
    data["s0-model"] = "sandbox/assistant"
    page = post(browser, "/agents/new/", data, "save")
    assert page.status_code == 302
    agent = Agent.objects.get(tenant=world.tenant_a, name="scratch")
    definition = agent.versions.get(number=1).definition
    assert [s["type"] for s in definition["steps"]] == ["llm", "transform"]
    assert definition["steps"][1]["value"] == "{{ steps.llm_1.output }}"


def test_reorder_and_remove_steps_and_add_a_branch_case(world):
    browser = browser_for(world.alice)
    data = form_of(browser.get("/agents/new/?template=support-triage").content.decode())
    page = post(browser, "/agents/new/", data, "down:s0-")
    data = form_of(page.content.decode())
    assert (data["s0-id"], data["s1-id"]) == ("route", "classify")
    page = post(browser, "/agents/new/", data, "add-case:s0-")
    data = form_of(page.content.decode())
    assert "s0-cases.1.when" in data
    page = post(browser, "/agents/new/", data, "remove:s3-")
    data = form_of(page.content.decode())
    assert "s3-type" not in data
    assert data["s2-id"] == "escalate"


def test_json_tab_stays_in_sync_and_bad_json_is_shown_at_the_box(world):
    browser = browser_for(world.alice)
    data = form_of(browser.get("/agents/new/?template=email-summarizer").content.decode())
    data["s0-system"] = "Be brief."
    page = post(browser, "/agents/new/", data, "json")
    html = page.content.decode()
    assert "Be brief." in html
    json_data = form_of(html)
    assert json_data["tab"] == "json"
    json_data["definition_json"] = json_data["definition_json"].replace("Be brief.", "Be very brief.")
    page = post(browser, "/agents/new/", json_data, "form")
    assert form_of(page.content.decode())["s0-system"] == "Be very brief."
    json_data["definition_json"] = "{not json"
    page = post(browser, "/agents/new/", json_data, "form")
    assert page.status_code == 400
    assert 'id="e-definition_json"' in page.content.decode()


def test_problem_paths_map_to_form_fields():
    definition = {
        "steps": [
            {"id": "a", "type": "llm", "retry": {"max_attempts": 0}},
            {"id": "m", "type": "map", "steps": [{"id": "x", "type": "transform"}]},
            {"id": "b", "type": "branch", "cases": [{"when": "", "steps": []}]},
            {"id": "t", "type": "agent", "tools": [{"type": "http"}]},
        ]
    }
    assert builder.field_for_path("steps[0].model", definition) == "s0-model"
    assert builder.field_for_path("steps[0].retry.max_attempts", definition) == "s0-retry.max_attempts"
    assert builder.field_for_path("steps[1].steps[0].value", definition) == "s1.0-value"
    assert builder.field_for_path("steps[2].cases[0].when", definition) == "s2-cases.0.when"
    assert builder.field_for_path("steps[3].tools[0].connector", definition) == "s3-tools"
    assert builder.field_for_path("steps[1]", definition) == "s1-"
    assert builder.field_for_path("inputs.properties", definition) == "inputs"
    assert builder.field_for_path("steps", definition) == ""


def test_the_graph_draws_needs_and_branch_edges():
    template = next(t for t in TEMPLATES if t.slug == "support-triage")
    graph = layout(template.definition)
    assert [n.id for n in graph.nodes] == ["classify", "route", "escalate", "queue"]
    columns = {n.id: n.x for n in graph.nodes}
    assert columns["classify"] < columns["route"] < columns["escalate"] == columns["queue"]
    assert sum(e.branch for e in graph.edges) == 2
    assert {e.label for e in graph.edges if e.branch} == {"case 1", "default"}


def test_save_version_publish_roll_back_and_diff(world):
    browser = browser_for(world.alice)
    data = form_of(browser.get("/agents/new/?template=email-summarizer").content.decode())
    data["name"] = "summ"
    assert post(browser, "/agents/new/", data, "save").status_code == 302
    agent = Agent.objects.get(name="summ")
    data = form_of(browser.get(f"/agents/{agent.pk}/build/").content.decode())
    data["s0-system"] = "Shorter."
    data["note"] = "shorter"
    assert post(browser, f"/agents/{agent.pk}/build/", data, "save").status_code == 302
    assert list(agent.versions.values_list("number", flat=True).order_by("number")) == [1, 2]
    assert browser.post(f"/agents/{agent.pk}/versions/2/publish").status_code == 302
    assert browser.post(f"/agents/{agent.pk}/versions/1/publish").status_code == 302
    agent.refresh_from_db()
    assert agent.published_version.number == 1
    page = browser.get(f"/agents/{agent.pk}/").content.decode()
    assert "Roll back" not in page.split("v1")[0]
    diff = browser.get(f"/agents/{agent.pk}/diff/?from=1&to=2").content.decode()
    assert "Shorter." in diff
    assert browser.get(f"/agents/{agent.pk}/diff/?from=1").status_code == 400


def test_a_viewer_is_not_offered_building_and_is_refused_when_typing_the_url(world, alice_client):
    browser = browser_for(world.alice)
    data = form_of(browser.get("/agents/new/?template=email-summarizer").content.decode())
    data["name"] = "summ"
    post(browser, "/agents/new/", data, "save")
    agent = Agent.objects.get(name="summ")
    viewer = browser_for(world.bob)
    page = viewer.get(f"/agents/{agent.pk}/").content.decode()
    assert "Edit in builder" not in page
    assert "/publish" not in page
    assert "New agent" not in viewer.get("/agents/").content.decode()
    assert viewer.get(f"/agents/{agent.pk}/build/").status_code == 403
    assert viewer.get("/agents/new/").status_code == 403
    assert viewer.get("/agents/templates/").status_code == 403
    assert viewer.post(f"/agents/{agent.pk}/versions/1/publish").status_code == 403
    outsider = browser_for(world.charlie)
    assert outsider.get(f"/agents/{agent.pk}/build/").status_code == 404


def test_describe_and_generation_pages_and_walls(world):
    from agents.generator.models import Generation
    from agents.generator.services import generation_execute

    browser = browser_for(world.alice)
    assert browser.get("/agents/describe/?example=1").status_code == 200
    assert browser.post("/agents/describe/", {"description": "", "trigger": "api"}).status_code == 400
    made = browser.post(
        "/agents/describe/", {"description": "triage support tickets", "trigger": "api", "approval": "on"}
    )
    assert made.status_code == 302
    generation = Generation.objects.get(tenant=world.tenant_a)
    generation_execute(generation.pk)
    page = browser.get(f"/generations/{generation.pk}/").content.decode()
    assert "Support ticket triage" in page
    assert 'data-testid="graph"' in page
    assert browser_for(world.charlie).get(f"/generations/{generation.pk}/").status_code == 404
    assert browser_for(world.bob).get(f"/generations/{generation.pk}/").status_code == 403
    accepted = browser.post(f"/generations/{generation.pk}/accept")
    assert accepted.status_code == 302
    agent = Agent.objects.get(tenant=world.tenant_a)
    assert accepted["Location"] == f"/agents/{agent.pk}/build/"
    assert agent.published_version_id is None


def test_needs_nothing_round_trips_through_the_form(world, alice_client):
    from tests.agents.helpers import create_agent

    definition = {
        "inputs": {"type": "object"},
        "steps": [
            {"id": "a", "type": "transform", "value": 1},
            {"id": "b", "type": "transform", "needs": [], "value": 2},
        ],
    }
    agent_id = create_agent(alice_client, definition, name="parallel")
    html = browser_for(world.alice).get(f"/agents/{agent_id}/build/").content.decode()
    read = builder.read_definition(builder.Form(form_of(html)))
    assert read["steps"][1]["needs"] == []
    assert "needs" not in read["steps"][0]
