"""The product's journeys, each from a signed-out browser, in real chromium with a real Celery worker.
Screenshots of every page visited (desktop and phone) go to test-artifacts/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect

from agents.workflows.models import Agent
from tenants.models import Invitation
from tenants.permissions import Role
from tests.agents.helpers import create_agent
from tests.browser.conftest import DESKTOP, PHONE, Watched, sign_in, sign_out
from tests.conftest import member
from tests.factories import make_user
from tests.servers.http_api import HttpApiServer

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "correct horse battery staple"


def test_1_sign_up_create_an_org_use_a_template_publish_run_and_watch(celery_worker, watched: Watched):
    page = watched.page
    page.goto("/accounts/signup/")
    watched.shot("sign-up")
    page.get_by_label("Email:").fill("newcomer@acme.example")
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again):").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Sign up", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(re.compile("Verify", re.I))
    watched.shot("verify-email")
    found = re.search(r"https?://\S+/accounts/confirm-email/\S+", str(mail.outbox[-1].body))
    assert found is not None
    link = found.group(0)
    page.goto(link[link.index("/accounts/") :])
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{watched.base}/")

    page.get_by_role("link", name="Organization").click()
    page.get_by_role("link", name="New organization").click()
    page.get_by_label("Name", exact=True).fill("Acme Support")
    page.get_by_label(re.compile("Short name")).fill("acme-support")
    watched.shot("organization-new")
    page.get_by_role("button", name="Create organization").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Acme Support")

    page.get_by_role("link", name="Agents", exact=True).click()
    page.get_by_role("link", name="New agent").click()
    watched.shot("gallery")
    page.get_by_role("link", name="Use template Support ticket triage").click()
    expect(page.get_by_test_id("graph")).to_be_visible()
    watched.shot("builder-from-template")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Support ticket triage")
    page.get_by_role("button", name="Publish v1").click()
    expect(page.get_by_text("Published version 1.")).to_be_visible()
    page.get_by_label("subject").fill("Cannot log in")
    page.get_by_label("body").fill("Since this morning the login page says 500.")
    watched.shot("agent-run-form")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_test_id("run-status")).to_have_text("Succeeded", timeout=30_000)
    page.get_by_text("classify", exact=True).first.click()
    expect(page.get_by_test_id("step-output").first).to_contain_text("priority")
    watched.shot("run-from-template")


def test_2_build_from_scratch_a_mistake_is_shown_at_its_field_then_saved_and_run(
    world, celery_worker, watched: Watched
):
    sign_in(watched, "alice@a.example")
    page = watched.page
    page.goto("/agents/new/")
    page.get_by_label("Name", exact=True).fill("scratch")
    page.get_by_label("Add a step").select_option("llm")
    page.get_by_role("button", name="Add step").click()
    expect(page.locator('[name="s0-model"]')).to_be_visible()
    page.get_by_label("Add a step").select_option("transform")
    page.get_by_role("button", name="Add step").click()
    expect(page.locator('[name="s1-value"]')).to_be_visible()
    page.locator('[name="s0-model"]').fill("nonsense-model")
    page.locator('[name="s0-prompt"]').fill("Say hello to {{ input.text }}")
    page.locator('[name="s1-value"]').fill("{{ steps.llm_1.output }}!")
    page.get_by_role("button", name="Create agent").click()
    model = page.locator('[name="s0-model"]')
    expect(model).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[id="e-s0-model"]')).to_contain_text("unknown model")
    watched.shot("builder-problem-at-field")
    page.get_by_role("button", name="JSON").click()
    expect(page.get_by_label("Workflow definition (JSON)")).to_contain_text("nonsense-model")
    watched.shot("builder-json")
    page.get_by_role("button", name="Form").click()
    page.locator('[name="s0-model"]').fill("sandbox/assistant")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("scratch")
    page.get_by_role("button", name="Publish v1").click()
    page.get_by_label("text").fill("Ada")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_test_id("run-status")).to_have_text("Succeeded", timeout=30_000)
    expect(page.get_by_test_id("run-output")).to_contain_text("Say hello to Ada")


def test_3_an_invited_viewer_is_offered_no_build_or_run_and_typed_urls_are_refused(
    world, alice_client, live_app, settings, watched: Watched
):
    settings.FALCON_BASE_URL = live_app
    agent_id = create_agent(
        alice_client, {"steps": [{"id": "t", "type": "transform", "value": 1}]}, name="tidy"
    )
    make_user(email="vera@a.example")
    sign_in(watched, "alice@a.example")
    page = watched.page
    page.get_by_role("link", name="Organization").click()
    page.get_by_label("E-mail", exact=True).fill("vera@a.example")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Send invitation").click()
    link = page.get_by_test_id("invite-link").locator("code").inner_text()
    watched.shot("members")
    assert Invitation.objects.filter(email="vera@a.example").exists()
    sign_out(watched)

    sign_in(watched, "vera@a.example")
    page.goto(link[len(live_app) :])
    watched.shot("invitation-accept")
    page.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Tenant A")
    page.get_by_role("link", name="Agents", exact=True).click()
    expect(page.get_by_role("link", name="New agent")).to_have_count(0)
    page.get_by_role("link", name="tidy").click()
    expect(page.get_by_role("link", name="Edit in builder")).to_have_count(0)
    expect(page.get_by_role("button", name="Run", exact=True)).to_have_count(0)
    watched.expected.append("status of 403")
    response = page.goto(f"/agents/{agent_id}/build/")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    watched.shot("forbidden")


def test_4_prompt_version_submitted_approved_by_a_second_member_and_label_moved(world, watched: Watched):
    member(world.tenant_a, Role.ADMIN, "ada@a.example")
    world.tenant_a.prompt_four_eyes = True
    world.tenant_a.save(update_fields=["prompt_four_eyes"])
    sign_in(watched, "alice@a.example")
    page = watched.page
    page.get_by_role("link", name="Prompts").click()
    page.get_by_label("Name", exact=True).fill("greeting")
    page.get_by_role("button", name="Create prompt").click()
    page.get_by_label("Template").fill("Hello {{ name }}, welcome to {{ company }}.")
    page.get_by_label("Variables").fill("name, company")
    page.get_by_role("button", name="Save draft").click()
    page.get_by_role("button", name="Submit for review").click()
    expect(page.get_by_test_id("version-1")).to_contain_text("in_review")
    watched.expected.append("status of 403")  # four eyes refuses the author, on the page
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("alert").first).to_contain_text(re.compile("author", re.I))  # four eyes
    watched.shot("prompt")
    sign_out(watched)

    sign_in(watched, "ada@a.example")
    page.get_by_role("link", name="Prompts").click()
    watched.shot("prompts")
    page.get_by_role("link", name="greeting v1").click()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_test_id("version-1")).to_contain_text("approved")
    page.get_by_role("button", name="Move").click()
    expect(page.get_by_test_id("label-production")).to_have_text("production → v1")
    page.get_by_label("Sample variables (JSON)").fill(json.dumps({"name": "Ada", "company": "Acme"}))
    page.get_by_role("button", name="Render").click()
    expect(page.get_by_test_id("rendered")).to_have_text("Hello Ada, welcome to Acme.")


def test_5_a_connector_secret_is_never_shown_again_and_test_reports_latency(
    world, loopback_allowed, watched: Watched
):
    api = HttpApiServer()
    secret = "sk-live-never-shown-9876"
    try:
        sign_in(watched, "alice@a.example")
        page = watched.page
        page.get_by_role("link", name="Connectors").click()
        page.get_by_label("Kind").select_option("http")
        page.get_by_role("button", name="Continue").click()
        page.get_by_label("Name", exact=True).fill("crm")
        page.get_by_label("base_url").fill(api.base)
        page.get_by_label("auth").select_option("bearer")
        page.get_by_label("token", exact=True).fill(secret)
        watched.shot("connector-new")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("crm")
        assert secret not in page.content()
        expect(page.get_by_label("Replace token")).to_have_value("")
        page.get_by_role("button", name="Test").click()
        expect(page.get_by_test_id("test-result")).to_contain_text(re.compile(r"Connection works · \d+ ms"))
        assert secret not in page.content()
        watched.shot("connector")
        page.get_by_role("link", name="Connectors").first.click()
        expect(page.get_by_role("table")).to_contain_text("crm")
        assert secret not in page.content()
        watched.shot("connectors")
    finally:
        api.stop()


def test_6_a_webhook_trigger_delivered_with_the_shown_example_starts_a_run(
    world, alice_client, celery_worker, live_app, settings, watched: Watched
):
    settings.FALCON_BASE_URL = live_app
    create_agent(
        alice_client, {"steps": [{"id": "echo", "type": "transform", "value": "{{ input }}"}]}, name="hooked"
    )
    sign_in(watched, "alice@a.example")
    page = watched.page
    page.get_by_role("link", name="Triggers").click()
    page.get_by_label("Agent").select_option(label="hooked")
    page.get_by_label("Name", exact=True).fill("inbox")
    page.get_by_label("Kind").select_option("webhook")
    page.get_by_label("Signature scheme").select_option("standard")
    watched.shot("triggers")
    page.get_by_role("button", name="Create trigger").click()
    expect(page.get_by_test_id("secret-once")).to_be_visible()
    watched.shot("trigger-secret-once")
    example = page.get_by_test_id("example-python").inner_text()
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    expect(page.get_by_role("cell", name="accepted")).to_be_visible(timeout=15_000)  # deliveries poll
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("table")).to_contain_text("hooked")
    expect(page.get_by_role("table")).to_contain_text("webhook")
    page.reload()
    assert "whsec_" not in page.content()


def test_7_usage_bars_and_the_upgrade_button_reaches_the_local_stripe_checkout(
    world,
    stripe_env,
    stripe_servers,
    watched: Watched,
):
    from billing.services import plan_set
    from tenants.audit import Actor

    plan_set(tenant=world.tenant_a, plan="free", actor=Actor.system("t"))
    watched.allowed.append(stripe_servers.base)
    sign_in(watched, "alice@a.example")
    page = watched.page
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_test_id("usage-runs")).to_be_visible()
    expect(page.get_by_test_id("usage-agents").locator("svg")).to_be_visible()
    expect(page.get_by_test_id("plan-name")).to_have_text("Free")
    watched.shot("usage")
    page.get_by_label("Upgrade to").select_option("pro")
    page.get_by_role("button", name="Upgrade").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Stripe Checkout (local)")
    expect(page.get_by_text("price_pro_month")).to_be_visible()


def test_8_an_auditor_reads_and_exports_the_audit_log_and_sees_no_builder_pages(world, watched: Watched):
    member(world.tenant_a, Role.AUDITOR, "audra@a.example")
    sign_in(watched, "audra@a.example")
    page = watched.page
    page.get_by_role("link", name="Audit").click()
    expect(page.get_by_role("table")).to_contain_text("member")
    page.get_by_role("link", name="Verify the chain").click()
    expect(page.get_by_test_id("chain-status")).to_contain_text("The chain verifies")
    watched.shot("audit")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export JSON Lines").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines
    assert all("hash" in json.loads(line) for line in lines)
    page.get_by_role("link", name="Agents", exact=True).click()
    expect(page.get_by_role("link", name="New agent")).to_have_count(0)
    watched.expected.append("status of 403")
    response = page.goto("/agents/new/")
    assert response is not None
    assert response.status == 403
    assert not Agent.objects.filter(tenant=world.tenant_a).exists()


def test_every_remaining_page_at_desktop_and_phone_is_labelled_and_keyboard_reachable(
    world, alice_client, watched: Watched
):
    create_agent(alice_client, {"steps": [{"id": "t", "type": "transform", "value": 1}]}, name="shots")
    agent = Agent.objects.get(name="shots")
    alice_client.post(
        f"/api/v1/agents/{agent.pk}/versions",
        {"definition": {"steps": [{"id": "t", "type": "transform", "value": 2}]}},
        format="json",
    )
    sign_in(watched, "alice@a.example")
    page = watched.page
    for path, name in (
        ("/", "overview"),
        ("/agents/", "agents"),
        ("/agents/templates/", "gallery"),
        (f"/agents/{agent.pk}/", "agent-page"),
        (f"/agents/{agent.pk}/build/", "builder"),
        (f"/agents/{agent.pk}/diff/?from=1&to=2", "version-diff"),
        ("/runs/", "runs"),
        ("/triggers/", "triggers"),
        ("/connectors/", "connectors"),
        ("/connectors/new/?kind=postgres", "connector-new-postgres"),
        ("/prompts/", "prompts"),
        ("/usage/", "usage"),
        ("/organization/members/", "members"),
        ("/organization/keys/", "keys"),
        ("/organization/settings/", "settings"),
        ("/audit/", "audit"),
        ("/account/", "account"),
        ("/accounts/2fa/", "two-factor"),
        ("/accounts/password/change/", "password-change"),
    ):
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, path
        assert watched.unlabelled() == [], path
        page.set_viewport_size(PHONE)  # readable at a phone's width: nothing widens the page
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        page.set_viewport_size(DESKTOP)
        watched.shot(name)
    page.goto("/agents/")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_be_visible()


def test_9_describe_an_agent_generate_review_create_and_run(world, celery_worker, watched: Watched):
    sign_in(watched, "alice@a.example")
    page = watched.page
    page.get_by_role("link", name="Agents", exact=True).click()
    page.get_by_role("link", name="Describe an agent").click()
    page.get_by_role("link", name=re.compile("Summarize each incoming e-mail")).click()
    expect(page.get_by_label("What should the agent do?")).to_contain_text("Summarize each incoming e-mail")
    watched.shot("describe")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_test_id("generation-status")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_test_id("plan")).to_contain_text("closest template")
    expect(page.get_by_test_id("dry-run-status")).to_have_text("succeeded")
    expect(page.get_by_test_id("graph")).to_be_visible()
    watched.shot("generation")
    page.get_by_role("button", name="Create agent").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Edit E-mail summarizer")
    page.get_by_role("link", name=re.compile("E-mail summarizer")).first.click()
    page.get_by_role("button", name="Publish v1").click()
    page.get_by_label("text").fill("Please send the Q3 figures by Friday.")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_test_id("run-status")).to_have_text("Succeeded", timeout=30_000)
    page.get_by_role("link", name="Agents", exact=True).click()
    page.get_by_role("link", name="E-mail summarizer").click()
    page.get_by_label("What should change?").fill("Also extract the sender's company")
    page.get_by_role("button", name="Propose a change").click()
    expect(page.get_by_test_id("generation-status")).to_have_text("succeeded", timeout=30_000)
    expect(page.get_by_role("button", name="Apply as a new version")).to_be_visible()
    watched.shot("refine")
