"""The current tenant, tenant selection, MFA enforcement, sign-up and the operator CLI."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client

from tenants.models import AuditEvent, Membership, Tenant, User
from tests.conftest import key_client, member, session_client

pytestmark = pytest.mark.django_db


def test_current_tenant(world, bob_client):
    response = bob_client.get("/api/v1/tenant")
    assert response.status_code == 200
    assert response.json() == {
        "id": str(world.tenant_a.pk),
        "slug": "tenant-a",
        "name": "Tenant A",
        "require_mfa": False,
        "prompt_four_eyes": False,
        "audit_run_starts": False,
        "retention_days": None,
        "legal_hold": None,
        "created_at": response.json()["created_at"],
    }


def test_rename_is_for_owners_and_admins_and_audited(world, alice_client, bob_client):
    assert bob_client.patch("/api/v1/tenant", {"name": "Nope"}, format="json").status_code == 403
    response = alice_client.patch("/api/v1/tenant", {"name": "Acme Two"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "Acme Two"
    event = AuditEvent.objects.get(action="tenant.updated")
    assert event.changes == {"before": {"name": "Tenant A"}, "after": {"name": "Acme Two"}}


def test_blank_and_unknown_fields_are_refused(world, alice_client):
    response = alice_client.patch("/api/v1/tenant", {"name": "   "}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]
    response = alice_client.patch("/api/v1/tenant", {"slug": "other"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"slug": ["Unknown field."]}
    assert Tenant.objects.get(pk=world.tenant_a.pk).slug == "tenant-a"


def _enable_totp(user: User) -> str:
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def test_requiring_mfa_needs_the_owner_to_have_it_first(world, alice_client):
    response = alice_client.patch("/api/v1/tenant", {"require_mfa": True}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "mfa_not_enabled"
    _enable_totp(world.alice)
    response = alice_client.patch("/api/v1/tenant", {"require_mfa": True}, format="json")
    assert response.status_code == 200
    assert response.json()["require_mfa"] is True


def test_required_mfa_locks_out_members_without_it_but_not_api_keys(
    world, alice_client, bob_client, make_key
):
    _enable_totp(world.alice)
    assert alice_client.patch("/api/v1/tenant", {"require_mfa": True}, format="json").status_code == 200
    response = bob_client.get("/api/v1/members/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "mfa_required"
    _enable_totp(world.bob)
    assert bob_client.get("/api/v1/members/").status_code == 200
    _, token = make_key(world.tenant_a, ["read"])
    assert key_client(token).get("/api/v1/members/").status_code == 200


def test_only_owners_may_change_the_mfa_requirement(world, make_key):
    admin = member(world.tenant_a, "admin")
    _enable_totp(admin)
    response = session_client(admin, world.tenant_a).patch(
        "/api/v1/tenant", {"require_mfa": True}, format="json"
    )
    assert response.status_code == 403
    _, token = make_key(world.tenant_a, ["admin"])
    assert key_client(token).patch("/api/v1/tenant", {"require_mfa": True}, format="json").status_code == 403
    assert not Tenant.objects.get(pk=world.tenant_a.pk).require_mfa


def test_tenant_header_selects_among_several_tenants(world):
    Membership.objects.create(tenant=world.tenant_b, user=world.alice, role="viewer")
    response = session_client(world.alice).get("/api/v1/tenant")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "tenant_required"
    assert response.json()["error"]["fields"] == {
        "X-Falcon-Tenant": ["Name the tenant with the X-Falcon-Tenant header (its slug)."]
    }
    assert session_client(world.alice, world.tenant_b).get("/api/v1/tenant").json()["slug"] == "tenant-b"


def test_a_tenant_you_do_not_belong_to_is_404_like_a_missing_one(world):
    missing = session_client(world.bob)
    missing.credentials(HTTP_X_FALCON_TENANT="no-such-tenant")
    foreign = session_client(world.bob, world.tenant_b)
    assert missing.get("/api/v1/tenant").status_code == 404
    assert foreign.get("/api/v1/tenant").status_code == 404
    assert missing.get("/api/v1/tenant").json() == foreign.get("/api/v1/tenant").json()


def test_api_key_naming_another_tenant_is_404(world, make_key):
    _, token = make_key(world.tenant_b, ["read"])
    client = key_client(token)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_FALCON_TENANT="tenant-a")
    assert client.get("/api/v1/tenant").status_code == 404


def test_tenants_list_and_create(world, alice_client):
    response = alice_client.post(
        "/api/v1/tenants/", {"slug": "alice-labs", "name": "Alice Labs"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["role"] == "owner"
    listed = alice_client.get("/api/v1/tenants/").json()["results"]
    assert [(t["slug"], t["role"]) for t in listed] == [("alice-labs", "owner"), ("tenant-a", "owner")]
    for bad, code in [("tenant-a", "slug_taken"), ("Bad Slug!", "invalid_slug"), ("api", "slug_reserved")]:
        response = alice_client.post("/api/v1/tenants/", {"slug": bad, "name": "x"}, format="json")
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["fields"].keys() == {"slug"}


def test_signup_creates_a_personal_tenant_after_email_verification(db):
    browser = Client()
    response = browser.post(
        "/accounts/signup/",
        {
            "email": "erin@example.org",
            "password1": "a-long-enough-pass-99",
            "password2": "a-long-enough-pass-99",
        },
    )
    assert response.status_code == 302
    erin = User.objects.get(email="erin@example.org")
    membership = Membership.objects.select_related("tenant").get(user=erin)
    assert membership.role == "owner"
    assert membership.tenant.slug == "erin"
    assert AuditEvent.objects.filter(tenant=membership.tenant, action="tenant.created").exists()
    # Verification is mandatory: the mail carries the confirmation link.
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/confirm-email/\S+)", mail.outbox[0].body)
    assert link is not None
    assert browser.post(link.group(1)).status_code == 302
    assert erin.emailaddress_set.get().verified


def test_login_asks_for_the_totp_code_when_mfa_is_on(world):
    secret = _enable_totp(world.bob)
    browser = Client()
    response = browser.post(
        "/accounts/login/", {"login": "bob@a.example", "password": "correct horse battery staple"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert browser.get("/").status_code == 302  # not signed in yet
    code = format_hotp_value(hotp_value(secret, next(yield_hotp_counters_from_time())))
    response = browser.post("/accounts/2fa/authenticate/", {"code": code})
    assert response.status_code == 302
    assert browser.get("/").status_code == 200


def test_cli_tenant_create(db):
    out = StringIO()
    call_command(
        "tenant_create", "globex", "--owner-email", "Hank@Globex.example", "--name", "Globex", stdout=out
    )
    tenant = Tenant.objects.get(slug="globex")
    owner = User.objects.get(email="hank@globex.example")
    assert Membership.objects.get(tenant=tenant, user=owner).role == "owner"
    assert not owner.has_usable_password()
    assert "Created tenant globex" in out.getvalue()
    with pytest.raises(CommandError, match="taken"):
        call_command("tenant_create", "globex", "--owner-email", "x@y.example", stdout=StringIO())
    with pytest.raises(CommandError, match="not an e-mail"):
        call_command("tenant_create", "other", "--owner-email", "nobody", stdout=StringIO())


def test_password_reset_mails_a_working_link(world):
    browser = Client()
    assert browser.post("/accounts/password/reset/", {"email": "bob@a.example"}).status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+)", mail.outbox[0].body)
    assert link is not None
    form = browser.get(link.group(1), follow=True)
    assert form.status_code == 200
    response = browser.post(
        form.redirect_chain[-1][0] if form.redirect_chain else link.group(1),
        {"password1": "a-brand-new-secret-77", "password2": "a-brand-new-secret-77"},
    )
    assert response.status_code == 302
    world.bob.refresh_from_db()
    assert world.bob.check_password("a-brand-new-secret-77")


def test_one_person_may_create_only_so_many_tenants(world, alice_client, settings):
    settings.FALCON_MAX_TENANTS_PER_USER = 2
    assert (
        alice_client.post("/api/v1/tenants/", {"slug": "alice-two", "name": "x"}, format="json").status_code
        == 201
    )
    refused = alice_client.post("/api/v1/tenants/", {"slug": "alice-three", "name": "x"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_limit"
    assert not Tenant.objects.filter(slug="alice-three").exists()
    # Operators are not limited by it.
    call_command("tenant_create", "ops-made", "--owner-email", world.alice.email, stdout=StringIO())
    assert Tenant.objects.filter(slug="ops-made").exists()
