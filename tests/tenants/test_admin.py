"""The compliance console: read-only, no secrets, MFA-aware login."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from tenants.audit import Actor
from tenants.models import ApiKey, AuditEvent
from tenants.services import api_key_create
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def compliance_browser(world) -> Client:
    officer = make_user(email="officer@falcon.example", is_staff=True)
    officer.groups.add(Group.objects.get(name="Compliance"))
    browser = Client()
    browser.force_login(officer)
    return browser


def test_compliance_officer_reads_the_audit_log_and_cannot_change_it(world, compliance_browser):
    listing = compliance_browser.get("/admin/tenants/auditevent/?action=tenant.created")
    assert listing.status_code == 200
    assert b"tenant.created" in listing.content
    event = AuditEvent.objects.filter(tenant=world.tenant_a).first()
    detail = compliance_browser.get(f"/admin/tenants/auditevent/{event.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert compliance_browser.get("/admin/tenants/auditevent/add/").status_code == 403
    assert compliance_browser.post(f"/admin/tenants/auditevent/{event.pk}/delete/").status_code == 403
    assert (
        compliance_browser.post(f"/admin/tenants/auditevent/{event.pk}/change/", {"action": "x"}).status_code
        == 403
    )
    assert AuditEvent.objects.get(pk=event.pk).action == event.action


def test_tenants_and_memberships_are_read_only(world, compliance_browser):
    assert compliance_browser.get("/admin/tenants/tenant/").status_code == 200
    assert compliance_browser.get(f"/admin/tenants/tenant/{world.tenant_a.pk}/change/").status_code == 200
    assert compliance_browser.get("/admin/tenants/membership/").status_code == 200
    assert compliance_browser.get("/admin/tenants/tenant/add/").status_code == 403
    # Outside the compliance views the group has no rights.
    assert compliance_browser.get("/admin/tenants/user/").status_code == 403


def test_api_key_pages_never_show_the_hash(world, compliance_browser):
    key, token = api_key_create(
        tenant=world.tenant_a,
        name="ci",
        scopes=["read"],
        actor=Actor.system("t"),
        acting_role=None,
        created_by=None,
    )
    page = compliance_browser.get(f"/admin/tenants/apikey/{key.pk}/change/").content.decode()
    assert key.prefix in page
    assert ApiKey.objects.get(pk=key.pk).key_hash not in page
    assert token not in page


def test_admin_login_goes_through_allauth(db):
    response = Client().get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_people_outside_staff_cannot_open_the_console(world):
    browser = Client()
    browser.force_login(world.alice)
    response = browser.get("/admin/tenants/auditevent/")
    assert response.status_code == 302
