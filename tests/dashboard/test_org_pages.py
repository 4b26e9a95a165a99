"""Organization, usage, prompts and audit pages through the test client: role checks, inline errors,
one-time secrets, four eyes, exports, and no 500 on bad input."""

from __future__ import annotations

import json
import re

import pytest

from agents.prompts.models import Prompt, PromptLabel
from tenants.models import ApiKey, Invitation, Membership, Tenant
from tenants.permissions import Role
from tests.conftest import member
from tests.dashboard.test_pages import browser_for

pytestmark = pytest.mark.django_db


def test_a_member_creates_an_organization_and_lands_in_it(world):
    browser = browser_for(world.alice)
    bad = browser.post("/organization/new/", {"name": "Acme", "slug": "Not A Slug"})
    assert bad.status_code == 400
    assert re.search(r'id="org-slug"[^>]*aria-invalid="true"', bad.content.decode())
    made = browser.post("/organization/new/", {"name": "Acme Support", "slug": "acme-support"})
    assert made.status_code == 302
    tenant = Tenant.objects.get(slug="acme-support")
    assert Membership.objects.get(tenant=tenant, user=world.alice).role == Role.OWNER
    assert "Acme Support" in browser.get("/").content.decode().split("<main", 1)[1]


def test_invitations_keys_and_settings_for_owners_only(world):
    owner, viewer = browser_for(world.alice), browser_for(world.bob)
    page = owner.post(
        "/organization/members/", {"action": "invite", "email": "vic@a.example", "role": "viewer"}
    )
    assert page.status_code == 200
    assert "/invitations/accept" in page.content.decode() or "token=" in page.content.decode()
    assert Invitation.objects.filter(email="vic@a.example").exists()
    again = owner.post(
        "/organization/members/", {"action": "invite", "email": "vic@a.example", "role": "viewer"}
    )
    assert again.status_code == 400
    assert 'id="e-inv-email"' in again.content.decode()
    assert "Send invitation" not in viewer.get("/organization/members/").content.decode()
    assert (
        viewer.post(
            "/organization/members/", {"action": "invite", "email": "x@a.example", "role": "viewer"}
        ).status_code
        == 403
    )
    made = owner.post("/organization/keys/", {"action": "create", "name": "ci", "scopes": ["run"]})
    token = re.search(r'<code id="new-key">([^<]+)</code>', made.content.decode()).group(1)
    assert ApiKey.objects.get(name="ci").prefix in token
    assert token not in owner.get("/organization/keys/").content.decode()
    assert owner.post("/organization/keys/", {"action": "create", "name": "none"}).status_code == 400
    assert viewer.get("/organization/keys/").status_code == 403
    assert (
        owner.post("/organization/settings/", {"name": "Tenant A2", "prompt_four_eyes": "on"}).status_code
        == 302
    )
    world.tenant_a.refresh_from_db()
    assert (world.tenant_a.name, world.tenant_a.prompt_four_eyes) == ("Tenant A2", True)
    assert viewer.post("/organization/settings/", {"name": "hijack"}).status_code == 403


def test_prompt_four_eyes_review_and_label_move(world):
    owner = browser_for(world.alice)
    admin_user = member(world.tenant_a, Role.ADMIN, "ada@a.example")
    admin = browser_for(admin_user)
    owner.post("/organization/settings/", {"name": "Tenant A", "prompt_four_eyes": "on"})
    assert owner.post("/prompts/", {"name": "greeting", "description": "hi"}).status_code == 302
    prompt = Prompt.objects.get(name="greeting")
    path = f"/prompts/{prompt.pk}/"
    owner.post(path, {"action": "new", "template": "Hello {{ name }}", "input_variables": "name"})
    owner.post(path, {"action": "submit", "version": "1"})
    refused = owner.post(path, {"action": "approve", "version": "1"})
    assert refused.status_code == 403
    assert 'role="alert"' in refused.content.decode()  # four eyes, said on the page
    rejected = admin.post(path, {"action": "reject", "version": "1"})
    assert rejected.status_code == 400
    assert 'id="e-comment"' in rejected.content.decode()
    assert admin.post(path, {"action": "approve", "version": "1", "comment": "ok"}).status_code == 302
    assert admin.post(path, {"action": "label", "label": "production", "version": "1"}).status_code == 302
    assert PromptLabel.objects.get(prompt=prompt, name="production").version.number == 1
    preview = admin.post(path, {"action": "render", "version": "1", "variables": json.dumps({"name": "Ada"})})
    assert "Hello Ada" in preview.content.decode()
    bad = admin.post(path, {"action": "render", "version": "1", "variables": "{oops"})
    assert bad.status_code == 400
    owner.post(path, {"action": "new", "template": "Hi {{ name }}!", "input_variables": "name"})
    side = owner.get(f"{path}?from=1&to=2").content.decode()
    assert "Hello {{ name }}" in side
    assert "Hi {{ name }}!" in side
    assert browser_for(world.charlie).get(path).status_code == 404


def test_auditor_reads_and_exports_the_log_and_is_refused_builder_pages(world):
    auditor = browser_for(member(world.tenant_a, Role.AUDITOR, "audra@a.example"))
    page = auditor.get("/audit/").content.decode()
    assert "tenant.created" in page or "member" in page
    export = auditor.get("/audit/?export=jsonl")
    assert export.status_code == 200
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert all("hash" in json.loads(line) for line in lines)
    assert "The chain verifies" in auditor.get("/audit/?verify=1").content.decode()
    assert auditor.get("/audit/?since=yesterday").status_code == 400
    assert auditor.get("/agents/new/").status_code == 403
    assert "Audit" not in browser_for(world.bob).get("/").content.decode().split("</nav>")[0].split("Main")[1]
    assert browser_for(world.bob).get("/audit/").status_code == 403


def test_usage_page_shows_every_metric_and_billing_errors_are_messages(world):
    owner = browser_for(world.alice)
    page = owner.get("/usage/").content.decode()
    for metric in ("runs", "llm tokens", "agents", "connectors", "triggers"):
        assert f'data-testid="usage-{metric.replace(" ", "-")}"' in page, metric
    assert "Runs per day, by agent" in page
    refused = browser_for(world.bob).post("/usage/checkout", {"plan": "pro"})
    assert refused.status_code == 403
    assert owner.post("/usage/spend-cap", {"monthly_usd": "-5"}).status_code == 302
    assert owner.post("/usage/nonsense").status_code == 404


def test_someone_without_an_organization_is_welcomed_and_a_stale_tenant_falls_back(world):
    from tests.factories import make_user

    loner = browser_for(make_user(email="lone@x.example"))
    landing = loner.get("/")
    assert landing.status_code == 302
    assert landing["Location"] == "/organization/new/"
    assert b"Welcome to Falcon" in loner.get("/organization/new/").content
    assert loner.post("/organization/new/", {"name": "Solo", "slug": "solo"}).status_code == 302
    assert b"Solo" in loner.get("/").content
    alice = browser_for(world.alice)
    session = alice.session
    session["falcon_tenant"] = "tenant-b"  # not hers (or no longer)
    session.save()
    assert alice.get("/").status_code == 200
    assert alice.get("/?tenant=tenant-b").status_code == 404
