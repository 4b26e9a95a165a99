"""Stripe flows against localstripe (a separate process) and the loopback front for what it lacks.

localstripe delivers its signed webhooks to a live Falcon server; a real Celery worker applies them
by re-reading the subscription from Stripe.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.request
from datetime import timedelta
from typing import Any

import pytest
import stripe
from django.core import mail
from django.utils import timezone

from agents.models import Trigger
from billing.models import MeterReport, StripeEvent, Subscription, UsageCounter
from billing.quotas import entitlement
from billing.services import grace_expire, meter_report, plan_set, stripe_event_process
from tenants.audit import Actor
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent

SYSTEM = Actor.system("tests")
from tests.conftest import WEBHOOK_SECRET  # noqa: E402 - shared with the browser journeys


def _until(predicate, what: str, timeout: float = 30.0) -> None:
    """Waits for an outcome produced by other processes (localstripe's delivery, the worker)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    at = at or int(time.time())
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def _subscribe(client: stripe.StripeClient, customer: str, price: str = "price_pro_month") -> Any:
    """What the customer does on the Checkout page: a card, then the subscription."""
    client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    client.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": "pm_card_visa"}}
    )
    return client.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": price}]})


def _checkout(client, tenant) -> str:
    response = client.post("/api/v1/billing/checkout", {"plan": "pro", "interval": "month"}, format="json")
    assert response.status_code == 201, response.json()
    assert "/c/pay/cs_test_" in response.json()["url"]
    return Subscription.objects.get(tenant=tenant).stripe_customer_id


@pytest.mark.django_db(transaction=True)
def test_checkout_then_stripe_webhooks_put_the_tenant_on_the_plan(
    world, alice_client, stripe_env, stripe_servers, live_server, celery_worker
):
    plan_set(tenant=world.tenant_a, plan="free", actor=SYSTEM)
    stripe_servers.webhook_register(f"{live_server.url}/billing/stripe/webhook", WEBHOOK_SECRET)

    customer = _checkout(alice_client, world.tenant_a)

    session = stripe_servers.checkout_sessions[-1]
    assert (session["customer"], session["line_items_price"], session["client_reference_id"]) == (
        customer,
        "price_pro_month",
        str(world.tenant_a.pk),
    )
    assert stripe_env.v1.customers.retrieve(customer)["metadata"]["falcon_tenant"] == str(world.tenant_a.pk)
    # A second checkout reuses the customer: one Stripe customer per tenant.
    assert _checkout(alice_client, world.tenant_a) == customer

    stripe_sub = _subscribe(stripe_env, customer)

    _until(lambda: Subscription.objects.get(tenant=world.tenant_a).plan == "pro", "the plan to become pro")
    sub = Subscription.objects.get(tenant=world.tenant_a)
    assert (sub.status, sub.stripe_subscription_id, sub.interval) == ("active", stripe_sub["id"], "month")
    assert int(sub.current_period_start.timestamp()) == stripe_sub["current_period_start"]
    assert entitlement(world.tenant_a).period_start == sub.current_period_start
    synced = AuditEvent.objects.filter(tenant=world.tenant_a, action="billing.subscription_synced").first()
    assert synced is not None
    assert synced.changes["after"]["plan"] == "pro"
    assert StripeEvent.objects.filter(
        type="customer.subscription.created", processed_at__isnull=False
    ).exists()

    portal = alice_client.post("/api/v1/billing/portal")
    assert portal.status_code == 201
    assert portal.json()["url"].startswith("https://billing.stripe.com/p/session/")
    assert stripe_servers.portal_sessions[-1]["customer"] == customer


@pytest.mark.django_db(transaction=True)
def test_a_failed_payment_gives_a_grace_period_then_free_with_triggers_paused(
    world, alice_client, stripe_env, stripe_servers, live_server, celery_worker, settings
):
    settings.FALCON_BILLING_GRACE_DAYS = 3
    plan_set(tenant=world.tenant_a, plan="free", actor=SYSTEM)
    stripe_servers.webhook_register(f"{live_server.url}/billing/stripe/webhook", WEBHOOK_SECRET)
    customer = _checkout(alice_client, world.tenant_a)
    stripe_sub = _subscribe(stripe_env, customer)
    _until(lambda: Subscription.objects.get(tenant=world.tenant_a).plan == "pro", "the plan to become pro")
    agent_id = create_agent(alice_client, {"steps": [{"id": "s", "type": "transform", "value": 1}]})
    for n in range(4):
        made = alice_client.post(
            "/api/v1/triggers/",
            {"name": f"h{n}", "agent": agent_id, "kind": "webhook", "config": {}},
            format="json",
        )
        assert made.status_code == 201
    mail.outbox.clear()

    # The customer switches to yearly billing and the new invoice is charged to a card that declines:
    # localstripe marks the subscription past_due. It does not emit invoice.payment_failed on this
    # path, so the test delivers that event, signed as Stripe signs it, to the live endpoint.
    card = stripe_env.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4000000000000341", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    stripe_env.v1.payment_methods.attach(card["id"], params={"customer": customer})
    stripe_env.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": card["id"]}}
    )
    item = stripe_sub["items"]["data"][0]["id"]
    updated = stripe_env.v1.subscriptions.update(
        stripe_sub["id"], params={"items": [{"id": item, "plan": "price_pro_year"}]}
    )
    assert updated["status"] == "past_due"
    failed = _event("evt_failed_1", "invoice.payment_failed", {"object": "invoice", "customer": customer})
    request = urllib.request.Request(
        f"{live_server.url}/billing/stripe/webhook",
        data=failed,
        headers={"Content-Type": "application/json", "Stripe-Signature": _sign(failed)},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200

    _until(
        lambda: Subscription.objects.get(tenant=world.tenant_a).status == "past_due",
        "the subscription to be past due",
    )
    sub = Subscription.objects.get(tenant=world.tenant_a)
    assert sub.plan == "pro"  # the plan holds during the grace period
    assert timedelta(days=2, hours=23) < sub.grace_until - timezone.now() <= timedelta(days=3)
    _until(lambda: any("Payment failed" in m.subject for m in mail.outbox), "the owners to be told")
    assert "alice@a.example" in next(m for m in mail.outbox if "Payment failed" in m.subject).to

    # Nothing changes before the grace period ends...
    assert grace_expire() == 0
    Subscription.objects.filter(pk=sub.pk).update(grace_until=timezone.now() - timedelta(seconds=1))
    # ...then the tenant is on Free; its triggers are paused and nothing is deleted.
    assert grace_expire() == 1
    sub.refresh_from_db()
    assert sub.plan == "free"
    assert not Trigger.objects.filter(tenant=world.tenant_a, enabled=True).exists()
    assert Trigger.objects.filter(tenant=world.tenant_a).count() == 4
    assert AuditEvent.objects.filter(tenant=world.tenant_a, action="billing.downgraded").count() == 1
    # Re-enabling meets the Free plan's limits: 4 triggers of 5 allowed is fine.
    trigger = Trigger.objects.filter(tenant=world.tenant_a).first()
    assert (
        alice_client.patch(f"/api/v1/triggers/{trigger.pk}", {"enabled": True}, format="json").status_code
        == 200
    )


def _event(event_id: str, type_: str, obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": type_,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    ).encode()


@pytest.mark.django_db
def test_webhook_signatures_duplicates_and_out_of_order_events(
    world, client, alice_client, stripe_env, django_capture_on_commit_callbacks
):
    customer = _checkout(alice_client, world.tenant_a)
    old = _subscribe(stripe_env, customer)
    stripe_env.v1.subscriptions.cancel(old["id"])
    current = stripe_env.v1.subscriptions.create(
        params={"customer": customer, "items": [{"plan": "price_team_month"}]}
    )
    url = "/billing/stripe/webhook"

    # A forged or altered body is refused and not stored.
    created = _event(
        "evt_1",
        "customer.subscription.created",
        {"id": current["id"], "object": "subscription", "customer": customer},
    )
    forged = client.post(
        url, created, content_type="application/json", HTTP_STRIPE_SIGNATURE=_sign(created, "whsec_other")
    )
    assert (forged.status_code, forged.json()["error"]["code"]) == (400, "bad_signature")
    stale = client.post(
        url,
        created,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=_sign(created, at=int(time.time()) - 600),
    )
    assert stale.status_code == 400
    assert not StripeEvent.objects.exists()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        accepted = client.post(
            url, created, content_type="application/json", HTTP_STRIPE_SIGNATURE=_sign(created)
        )
    assert (accepted.status_code, accepted.json()["duplicate"]) == (200, False)
    assert len(callbacks) == 1  # processing is queued for a worker
    repeat = client.post(url, created, content_type="application/json", HTTP_STRIPE_SIGNATURE=_sign(created))
    assert (repeat.status_code, repeat.json()["duplicate"]) == (200, True)
    assert StripeEvent.objects.count() == 1
    assert stripe_event_process(StripeEvent.objects.get().pk) == "team active"

    # The old subscription's deletion arrives late: Stripe's current state (team, active) wins.
    deleted = _event(
        "evt_0",
        "customer.subscription.deleted",
        {"id": old["id"], "object": "subscription", "customer": customer, "status": "canceled"},
    )
    with django_capture_on_commit_callbacks(execute=False):
        assert (
            client.post(
                url, deleted, content_type="application/json", HTTP_STRIPE_SIGNATURE=_sign(deleted)
            ).status_code
            == 200
        )
    assert stripe_event_process(StripeEvent.objects.get(event_id="evt_0").pk) == "team active"
    assert Subscription.objects.get(tenant=world.tenant_a).plan == "team"
    assert stripe_event_process(StripeEvent.objects.get(event_id="evt_0").pk) == "done already"

    # Once Stripe has no live subscription, the next event moves the tenant to Free.
    stripe_env.v1.subscriptions.cancel(current["id"])
    ended = _event(
        "evt_2",
        "customer.subscription.deleted",
        {"id": current["id"], "object": "subscription", "customer": customer},
    )
    with django_capture_on_commit_callbacks(execute=False):
        client.post(url, ended, content_type="application/json", HTTP_STRIPE_SIGNATURE=_sign(ended))
    assert stripe_event_process(StripeEvent.objects.get(event_id="evt_2").pk) == "free active"


@pytest.mark.django_db
def test_overage_is_reported_to_meters_once_even_across_failures(
    world, alice_client, stripe_env, stripe_servers
):
    customer = _checkout(alice_client, world.tenant_a)
    _subscribe(stripe_env, customer)
    plan_set(tenant=world.tenant_a, plan="pro", actor=SYSTEM)
    ent = entitlement(world.tenant_a)
    counter = UsageCounter.objects.create(
        tenant=world.tenant_a,
        metric="runs",
        period_start=ent.period_start,
        period_end=ent.period_end,
        used=20_030,
    )
    stripe_servers.fail_meter_events = 3  # the client's own retries (2) do not get through either

    first = meter_report()

    assert first == {"created": 1, "sent": 0, "failed": 1}
    report = MeterReport.objects.get()
    assert report.sent_at is None
    assert "Try again" in report.error
    assert meter_report() == {"created": 0, "sent": 1, "failed": 0}  # the same report, the same identifier
    UsageCounter.objects.filter(pk=counter.pk).update(used=20_035)
    assert meter_report() == {"created": 1, "sent": 1, "failed": 0}
    assert meter_report() == {"created": 0, "sent": 0, "failed": 0}

    events = stripe_servers.meter_events
    assert sorted(int(e["payload"]["value"]) for e in events.values()) == [5, 30]
    assert {e["event_name"] for e in events.values()} == {"falcon_runs"}
    assert {e["payload"]["stripe_customer_id"] for e in events.values()} == {customer}
    assert set(events) == {r.identifier for r in MeterReport.objects.all()}
    assert stripe_servers.meter_attempts == 5
