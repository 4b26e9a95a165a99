"""Every gallery template runs on the sandbox models for a brand-new tenant, and uses real connectors
once the tenant has them."""

from __future__ import annotations

import pytest

from agents.workflows.gallery import TEMPLATES, template_closest, template_instance
from tests.agents.helpers import create_agent
from tests.agents.test_runs import run_now, steps_of
from tests.servers.http_api import HttpApiServer

pytestmark = pytest.mark.django_db(transaction=True)


def test_there_are_at_least_five_templates_with_distinct_slugs():
    assert len(TEMPLATES) >= 5
    assert len({t.slug for t in TEMPLATES}) == len(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.slug)
def test_each_template_runs_out_of_the_box(world, alice_client, celery_worker, template):
    instance = template_instance(template, world.tenant_a.pk)
    assert {need.name for need in instance.previewed} == {need.name for need in template.needs}
    agent_id = create_agent(alice_client, instance.definition, name=template.slug)
    run = run_now(alice_client, agent_id, template.sample_input)
    assert run["status"] == "succeeded", run
    assert run["output"] not in (None, "", {})
    for need in template.needs:  # the previewed steps said what they would have done
        previews = [s for s in steps_of(run) if s["step_id"] in template.previews]
        assert previews, need
        assert all(s["output"] == template.previews[s["step_id"]] for s in previews), need


def test_a_template_uses_the_tenants_connector_when_it_has_one(
    world, alice_client, celery_worker, loopback_allowed
):
    crm = HttpApiServer()
    try:
        created = alice_client.post(
            "/api/v1/connectors/",
            {"name": "crm", "kind": "http", "config": {"base_url": crm.base}},
            format="json",
        )
        assert created.status_code == 201, created.json()
        template = next(t for t in TEMPLATES if t.slug == "lead-enrichment")
        instance = template_instance(template, world.tenant_a.pk)
        assert instance.previewed == ()
        agent_id = create_agent(alice_client, instance.definition, name="leads")
        run = run_now(alice_client, agent_id, {"email": "jane@acme.example", "company": "acme.example"})
        assert run["status"] == "succeeded", run
        assert crm.received[-1]["path"] == "/companies"
        assert crm.received[-1]["query"] == {"domain": "acme.example"}
        assert "acme.example" in str(steps_of(run)[0]["output"])
    finally:
        crm.stop()


def test_the_closest_template_follows_the_descriptions_words():
    assert template_closest("Triage incoming support tickets by priority").slug == "support-triage"
    assert template_closest("post a Slack message when our webhook gets an event").slug == "webhook-to-slack"
    assert template_closest("e-mail me a daily report from the orders database").slug == "daily-db-report"
    assert template_closest("enrich each new lead from our CRM").slug == "lead-enrichment"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.slug)
def test_each_template_runs_with_only_its_required_fields(world, alice_client, celery_worker, template):
    instance = template_instance(template, world.tenant_a.pk)
    required = instance.definition["inputs"].get("required", [])
    agent_id = create_agent(alice_client, instance.definition, name=f"{template.slug}-min")
    run = run_now(alice_client, agent_id, {k: v for k, v in template.sample_input.items() if k in required})
    assert run["status"] == "succeeded", run
