"""The only module that imports ``stripe``: Falcon's calls to Stripe, answering in plain data.

Every failure becomes ``BillingError`` (or ``BillingNotConfigured``) so services never see a vendor
exception. ``STRIPE_API_BASE`` points the client at a local stand-in (tests, air-gapped installs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings

from billing.errors import BillingError, BillingNotConfigured, WebhookSignatureInvalid


@dataclass(frozen=True)
class StripeSubscription:
    """What Falcon needs of a Stripe subscription, read fresh from Stripe."""

    id: str
    customer: str
    status: str  # Stripe's: active, trialing, past_due, unpaid, canceled, incomplete, incomplete_expired
    price_id: str
    interval: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    created: int


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def _client() -> stripe.StripeClient:
    if not configured():
        raise BillingNotConfigured()
    base = settings.STRIPE_API_BASE
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": base} if base else None,
        max_network_retries=2,
    )


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except stripe.StripeError as exc:
        # Stripe's messages carry no secrets; the key never appears in them.
        message = getattr(exc, "user_message", None) or str(exc) or type(exc).__name__
        raise BillingError(f"Stripe refused the request: {message[:300]}") from exc


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def customer_create(*, tenant_id: str, name: str, email: str) -> str:
    customer = _call(
        _client().v1.customers.create,
        params={"name": name, "email": email, "metadata": {"falcon_tenant": tenant_id}},
        options={"idempotency_key": f"falcon-customer-{tenant_id}"},
    )
    return str(customer["id"])


def checkout_session_create(
    *, customer: str, price: str, success_url: str, cancel_url: str, tenant_id: str
) -> str:
    session = _call(
        _client().v1.checkout.sessions.create,
        params={
            "mode": "subscription",
            "customer": customer,
            "line_items": [{"price": price, "quantity": 1}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": tenant_id,
            "metadata": {"falcon_tenant": tenant_id},
        },
    )
    return str(session["url"])


def portal_session_create(*, customer: str, return_url: str) -> str:
    session = _call(
        _client().v1.billing_portal.sessions.create, params={"customer": customer, "return_url": return_url}
    )
    return str(session["url"])


def _subscription_from(data: dict[str, Any]) -> StripeSubscription:
    items = (data.get("items") or {}).get("data") or []
    item = items[0] if items else {}
    price = item.get("price") or item.get("plan") or data.get("plan") or {}
    recurring = price.get("recurring") or {}
    # API versions since 2025-03-31 carry the period on the item; older ones (and localstripe) on
    # the subscription itself.
    start = item.get("current_period_start") or data.get("current_period_start")
    end = item.get("current_period_end") or data.get("current_period_end")
    return StripeSubscription(
        id=str(data["id"]),
        customer=str(data.get("customer") or ""),
        status=str(data.get("status") or ""),
        price_id=str(price.get("id") or ""),
        interval=str(recurring.get("interval") or price.get("interval") or ""),
        current_period_start=_ts(start),
        current_period_end=_ts(end),
        created=int(data.get("created") or 0),
    )


def subscriptions_of(customer: str) -> list[StripeSubscription]:
    """Every subscription of a customer, newest first, as Stripe has them now."""
    listing = _call(
        _client().v1.subscriptions.list, params={"customer": customer, "status": "all", "limit": 20}
    )
    subs = [_subscription_from(s.to_dict()) for s in listing.data]
    return sorted(subs, key=lambda s: s.created, reverse=True)


def latest_invoice_status(customer: str) -> str:
    """``paid``, ``open`` (unpaid, e.g. a failed payment) ... of the customer's newest invoice, or ""."""
    listing = _call(_client().v1.invoices.list, params={"customer": customer, "limit": 1})
    return str(listing.data[0]["status"]) if listing.data else ""


def meter_event_send(
    *, event_name: str, customer: str, value: int, identifier: str, timestamp: datetime
) -> None:
    """One Billing Meter event; Stripe de-duplicates on ``identifier``, so a retry never bills twice."""
    _call(
        _client().v1.billing.meter_events.create,
        params={
            "event_name": event_name,
            "identifier": identifier,
            "timestamp": int(timestamp.timestamp()),
            "payload": {"stripe_customer_id": customer, "value": str(value)},
        },
    )


def webhook_event_verify(payload: bytes, signature: str) -> dict[str, Any]:
    """The event in a webhook body once its ``Stripe-Signature`` checks out against the secret."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise BillingNotConfigured()
    try:
        stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, tolerance=300)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        raise WebhookSignatureInvalid("The Stripe signature does not match this body.") from exc
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise WebhookSignatureInvalid("The body is not a Stripe event.") from exc
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise WebhookSignatureInvalid("The body is not a Stripe event.")
    return event
