"""Connectors and triggers pages through the test client: secrets write-only, Test, errors at fields,
the webhook secret once with a working example, schedule previews, and who may do what."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from agents.runs.models import Run
from agents.triggers.models import Trigger
from connectors.models import Connector
from tests.agents.helpers import create_agent
from tests.dashboard.test_pages import browser_for
from tests.servers.http_api import HttpApiServer

pytestmark = pytest.mark.django_db

SECRET = "sk-live-abcdefghijklmnop1234"


def test_connector_secret_is_write_only_and_test_reports_latency(world, loopback_allowed):
    api = HttpApiServer()
    try:
        browser = browser_for(world.alice)
        page = browser.get("/connectors/new/?kind=http")
        assert page.status_code == 200
        missing = browser.post(
            "/connectors/new/", {"kind": "http", "name": "crm", "config.base_url": "not a url"}
        )
        assert missing.status_code == 400
        assert re.search(r'id="config.base_url"[^>]*aria-invalid="true"', missing.content.decode())
        created = browser.post(
            "/connectors/new/",
            {
                "kind": "http",
                "name": "crm",
                "config.base_url": api.base,
                "config.auth": "bearer",
                "secrets.token": SECRET,
            },
        )
        assert created.status_code == 302, created.content.decode()[:2000]
        connector = Connector.objects.get(tenant=world.tenant_a, name="crm")
        page = browser.get(f"/connectors/{connector.pk}/").content.decode()
        assert SECRET not in page
        assert "••••1234" in page
        assert SECRET not in browser.get("/connectors/").content.decode()
        tested = browser.post(f"/connectors/{connector.pk}/", {"action": "test"}).content.decode()
        assert "Connection works" in tested
        assert re.search(r"\d+ ms", tested)
        assert SECRET not in tested
        kept = browser.post(
            f"/connectors/{connector.pk}/",
            {"action": "save", "name": "crm", "config.base_url": api.base, "config.auth": "bearer"},
        )
        assert kept.status_code == 302
        connector.refresh_from_db()
        assert "token" in connector.secrets  # an empty password box keeps the secret
    finally:
        api.stop()


def test_viewer_sees_connectors_but_may_not_change_them_and_other_tenants_are_404(world):
    from connectors.services import connector_create
    from tenants.audit import Actor

    connector = connector_create(
        tenant=world.tenant_a, name="crm", kind="http", config={"base_url": "https://crm.example"},
        secrets={}, actor=Actor.system("t"), created_by=None,
    )  # fmt: skip
    viewer = browser_for(world.bob)
    page = viewer.get(f"/connectors/{connector.pk}/").content.decode()
    assert "<form" not in page.split("<main", 1)[1]
    assert viewer.post(f"/connectors/{connector.pk}/", {"action": "delete"}).status_code == 403
    assert viewer.get("/connectors/new/?kind=http").status_code == 403
    assert browser_for(world.charlie).get(f"/connectors/{connector.pk}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_webhook_trigger_secret_shown_once_and_its_python_example_starts_a_run(
    world, alice_client, celery_worker, live_server, settings
):
    settings.FALCON_BASE_URL = live_server.url
    agent_id = create_agent(
        alice_client, {"steps": [{"id": "t", "type": "transform", "value": "{{ input }}"}]}
    )
    browser = browser_for(world.alice)
    page = browser.post(
        "/triggers/", {"agent": agent_id, "name": "inbox", "kind": "webhook", "auth": "standard"}
    )
    assert page.status_code == 201
    html = page.content.decode()
    secret = re.search(r'<code id="secret-value">(whsec_[^<]+)</code>', html).group(1)
    import html as html_lib

    example = html_lib.unescape(re.search(r'data-testid="example-python">(.*?)</pre>', html, re.S).group(1))
    trigger = Trigger.objects.get(name="inbox")
    detail = browser.get(f"/triggers/{trigger.pk}/").content.decode()
    assert secret not in detail
    done = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    run = Run.objects.get(agent_id=agent_id, trigger=Run.Trigger.WEBHOOK)
    assert run.input == {"hello": "world"}
    assert "accepted" in browser.get(f"/triggers/{trigger.pk}/").content.decode()


def test_schedule_form_previews_firings_and_shows_cron_errors_at_the_field(world, alice_client):
    agent_id = create_agent(alice_client, {"steps": [{"id": "t", "type": "transform", "value": 1}]})
    browser = browser_for(world.alice)
    form = {
        "agent": agent_id,
        "name": "daily",
        "kind": "schedule",
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Paris",
    }
    page = browser.post("/triggers/", {**form, "action": "preview"}).content.decode()
    assert page.count("<li>") >= 5
    assert "09:00" in page
    bad = browser.post("/triggers/", {**form, "cron": "61 * * *", "action": "create"})
    assert bad.status_code == 400
    assert re.search(r'id="t-cron"[^>]*aria-invalid="true"', bad.content.decode())
    made = browser.post("/triggers/", {**form, "action": "create"})
    assert made.status_code == 201
    assert 'data-testid="schedule-preview"' in made.content.decode()
    viewer = browser_for(world.bob)
    trigger = Trigger.objects.get(name="daily")
    assert "Disable" not in viewer.get(f"/triggers/{trigger.pk}/").content.decode()
    assert viewer.post(f"/triggers/{trigger.pk}/disable").status_code == 403
    assert browser_for(world.charlie).get(f"/triggers/{trigger.pk}/").status_code == 404
