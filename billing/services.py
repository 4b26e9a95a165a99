"""Every state change of billing: plans, Stripe's events, spend caps, overage, retention, alerts."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from billing import registry, stripe_gateway
from billing.alerts import notify_people
from billing.models import AgentSpendCap, MeterReport, StripeEvent, Subscription, UsageCounter
from billing.plans import METERED, PLANS, Metric, overrides_problems, plan_get
from billing.quotas import _units, entitlement
from falcon.celery import enqueue
from falcon.errors import InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import Membership, Tenant
from tenants.permissions import Role

logger = logging.getLogger(__name__)

LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid")
HANDLED_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
    }
)


STRIPE_EVENT_TASK = "billing.tasks.stripe_event_process_task"


def subscription_locked(tenant_id: Any) -> Subscription:
    """The tenant's subscription row, created on first use (Free), locked for the transaction."""
    Subscription.objects.bulk_create([Subscription(tenant_id=tenant_id)], ignore_conflicts=True)
    return Subscription.objects.select_for_update().get(tenant_id=tenant_id)


def _view(sub: Subscription) -> dict[str, Any]:
    return {
        "plan": sub.plan,
        "status": sub.status,
        "overrides": sub.overrides,
        "grace_until": sub.grace_until.isoformat() if sub.grace_until else None,
        "spend_cap_usd": str(sub.spend_cap_usd) if sub.spend_cap_usd is not None else None,
    }


# --- plan changes ---------------------------------------------------------------------------------------


def _plan_change(sub: Subscription, *, plan: str, actor: Actor, reason: str) -> None:
    """Moves a locked subscription row to ``plan``; a downgrade pauses what the new plan forbids."""
    before_plan = sub.plan
    if plan == before_plan:
        return
    sub.plan = plan
    if _rank(plan) < _rank(before_plan):
        why = (
            f"paused by the change to the {plan_get(plan).name} plan ({reason}); "
            "re-enable within the plan's limits"
        )
        done = " ".join(hook(sub.tenant_id, actor, why) for hook in registry.downgrade_hooks())
        tenant = Tenant.objects.get(pk=sub.tenant_id)
        notify_people(
            sub.tenant_id,
            f"{tenant.name} is now on the {plan_get(plan).name} plan",
            f"{tenant.name} moved from {plan_get(before_plan).name} to {plan_get(plan).name} ({reason}).\n"
            f"{done} Nothing was deleted: objects beyond the new plan's limits "
            "are read-only until you upgrade or remove some.",
        )


def _rank(plan: str) -> int:
    return list(PLANS).index(plan) if plan in PLANS else 0


@transaction.atomic
def plan_set(
    *, tenant: Tenant, plan: str, actor: Actor, overrides: dict[str, Any] | None = None
) -> Subscription:
    """Places a tenant on a plan by hand (operators, self-hosting); Stripe, when configured, decides
    for tenants it manages."""
    if plan not in PLANS:
        raise InvalidInput(f"Unknown plan {plan!r}; plans are {', '.join(PLANS)}.", field="plan")
    if overrides:
        if plan != "enterprise":
            raise InvalidInput("Only Enterprise takes per-tenant overrides.", field="overrides")
        problems = overrides_problems(overrides)
        if problems:
            raise InvalidInput("; ".join(problems), field="overrides")
    sub = subscription_locked(tenant.pk)
    before = _view(sub)
    _plan_change(sub, plan=plan, actor=actor, reason="set by an operator")
    sub.overrides = overrides or {}
    sub.status = Subscription.Status.ACTIVE
    sub.grace_until = None
    sub.updated_at = timezone.now()
    sub.save()
    audit_record(
        tenant=tenant,
        actor=actor,
        action="billing.plan_set",
        target_type="subscription",
        target_id=sub.pk,
        before=before,
        after=_view(sub),
    )
    return sub


# --- Checkout and the billing portal --------------------------------------------------------------------


def _customer_ensure(tenant: Tenant, *, actor: Actor) -> str:
    with transaction.atomic():
        sub = subscription_locked(tenant.pk)
        if sub.stripe_customer_id:
            return sub.stripe_customer_id
        owner = (
            Membership.objects.filter(tenant=tenant, role=Role.OWNER)
            .order_by("created_at")
            .values_list("user__email", flat=True)
            .first()
        )
        sub.stripe_customer_id = stripe_gateway.customer_create(
            tenant_id=str(tenant.pk), name=tenant.name, email=owner or ""
        )
        sub.save(update_fields=["stripe_customer_id"])
        audit_record(
            tenant=tenant,
            actor=actor,
            action="billing.customer_created",
            target_type="subscription",
            target_id=sub.pk,
            after={"stripe_customer_id": sub.stripe_customer_id},
        )
        return sub.stripe_customer_id


def checkout_start(*, tenant: Tenant, plan: str, interval: str, actor: Actor) -> str:
    """A Stripe Checkout Session URL for subscribing ``tenant`` to ``plan`` billed per ``interval``."""
    if not stripe_gateway.configured():
        raise stripe_gateway.BillingNotConfigured()
    if interval not in ("month", "year"):
        raise InvalidInput("interval must be month or year.", field="interval")
    price = settings.STRIPE_PRICES.get((plan, interval), "")
    if plan not in PLANS or plan == "free":
        raise InvalidInput("plan must be pro, team or enterprise.", field="plan")
    if not price:
        raise InvalidInput(
            f"The {plan} plan is not sold per {interval} here (no STRIPE_PRICE_{plan.upper()}_"
            f"{interval.upper()}).",
            code="plan_not_for_sale",
            field="plan",
        )
    customer = _customer_ensure(tenant, actor=actor)
    base = settings.FALCON_BASE_URL
    return stripe_gateway.checkout_session_create(
        customer=customer,
        price=price,
        success_url=f"{base}/?billing=success",
        cancel_url=f"{base}/?billing=cancelled",
        tenant_id=str(tenant.pk),
    )


def portal_start(*, tenant: Tenant, actor: Actor) -> str:
    if not stripe_gateway.configured():
        raise stripe_gateway.BillingNotConfigured()
    customer = _customer_ensure(tenant, actor=actor)
    return stripe_gateway.portal_session_create(customer=customer, return_url=f"{settings.FALCON_BASE_URL}/")


# --- Stripe's webhook events ----------------------------------------------------------------------------


def _customer_of(event: dict[str, Any]) -> str:
    obj = (event.get("data") or {}).get("object") or {}
    if obj.get("object") == "customer":
        return str(obj.get("id") or "")
    customer = obj.get("customer") or ""
    return str(customer.get("id") if isinstance(customer, dict) else customer)


def stripe_event_receive(*, payload: bytes, signature: str) -> tuple[StripeEvent, bool]:
    """Verifies and stores a webhook event; processing follows in a task. A repeat is not new."""
    event = stripe_gateway.webhook_event_verify(payload, signature)
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.create(
                event_id=str(event["id"])[:100],
                type=str(event["type"])[:100],
                customer_id=_customer_of(event)[:64],
                payload=event,
            )
            if stored.type in HANDLED_EVENTS:
                transaction.on_commit(lambda: enqueue(STRIPE_EVENT_TASK, stored.pk))
            else:
                stored.processed_at = timezone.now()
                stored.save(update_fields=["processed_at"])
    except IntegrityError:
        return StripeEvent.objects.get(event_id=event["id"]), False
    return stored, True


def stripe_event_process(event_pk: int) -> str:
    """Applies an event by re-reading the customer's subscriptions from Stripe (never the event's
    own copy), so events arriving late or out of order cannot roll the state back."""
    event = StripeEvent.objects.filter(pk=event_pk, processed_at__isnull=True).first()
    if event is None:
        return "done already"
    StripeEvent.objects.filter(pk=event_pk).update(attempts=event.attempts + 1)
    if not event.customer_id:
        outcome = "no customer"
    else:
        outcome = subscription_sync(customer_id=event.customer_id, cause=event.type)
    StripeEvent.objects.filter(pk=event_pk).update(processed_at=timezone.now(), error="")
    return outcome


def _plan_for_price(price_id: str) -> str | None:
    for (plan, _interval), price in settings.STRIPE_PRICES.items():
        if price and price == price_id:
            return plan
    return None


def subscription_sync(*, customer_id: str, cause: str) -> str:
    """Brings the tenant's plan in line with its Stripe subscriptions as Stripe has them now."""
    subs = stripe_gateway.subscriptions_of(customer_id)
    live = next((s for s in subs if s.status in LIVE_STATUSES), None)
    actor = Actor.system(f"stripe:{cause}")
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().filter(stripe_customer_id=customer_id).first()
        if sub is None:
            logger.warning("Stripe event for customer %s that no tenant has", customer_id)
            return "unknown customer"
        before = _view(sub)
        now = timezone.now()
        if live is None:
            _plan_change(sub, plan="free", actor=actor, reason="the subscription ended")
            sub.status = Subscription.Status.ACTIVE
            sub.stripe_subscription_id = ""
            sub.interval = ""
            sub.grace_until = None
            sub.current_period_start = sub.current_period_end = None
        else:
            plan = _plan_for_price(live.price_id)
            if plan is None:
                logger.error("Stripe subscription %s has price %s that no plan sells", live.id, live.price_id)
                return "unknown price"
            sub.stripe_subscription_id = live.id
            sub.interval = live.interval[:8]
            sub.current_period_start = live.current_period_start
            sub.current_period_end = live.current_period_end
            if live.status in ("past_due", "unpaid"):
                entering = sub.status != Subscription.Status.PAST_DUE
                sub.status = Subscription.Status.PAST_DUE
                sub.grace_until = sub.grace_until or now + timedelta(days=settings.FALCON_BILLING_GRACE_DAYS)
                if sub.grace_until <= now:
                    _plan_change(
                        sub, plan="free", actor=actor, reason="payment failed and the grace period ended"
                    )
                else:
                    _plan_change(sub, plan=plan, actor=actor, reason="Stripe subscription")
                if entering:
                    tenant = Tenant.objects.get(pk=sub.tenant_id)
                    notify_people(
                        sub.tenant_id,
                        f"Payment failed for {tenant.name}",
                        f"The last payment for {tenant.name}'s {plan_get(plan).name} plan failed. The plan "
                        f"stays active until {sub.grace_until:%Y-%m-%d %H:%M} UTC; update the payment method "
                        "in the billing portal, or the organization moves to the Free plan then.",
                    )
            else:
                sub.status = (
                    Subscription.Status.TRIALING if live.status == "trialing" else Subscription.Status.ACTIVE
                )
                sub.grace_until = None
                _plan_change(sub, plan=plan, actor=actor, reason="Stripe subscription")
        sub.updated_at = now
        sub.save()
        after = _view(sub)
        if after != before:
            audit_record(
                tenant=sub.tenant_id,
                actor=actor,
                action="billing.subscription_synced",
                target_type="subscription",
                target_id=sub.pk,
                before=before,
                after=after,
            )
    return f"{sub.plan} {sub.status}"


def grace_expire() -> int:
    """Moves tenants whose past-due grace period has ended to Free (nothing is deleted)."""
    now = timezone.now()
    expired = list(
        Subscription.objects.filter(status=Subscription.Status.PAST_DUE, grace_until__lte=now).values_list(
            "pk", flat=True
        )
    )
    for pk in expired:
        with transaction.atomic():
            sub = Subscription.objects.select_for_update().get(pk=pk)
            if sub.status != Subscription.Status.PAST_DUE or not sub.grace_until or sub.grace_until > now:
                continue
            before = _view(sub)
            actor = Actor.system("billing:grace-expired")
            _plan_change(sub, plan="free", actor=actor, reason="payment failed and the grace period ended")
            sub.updated_at = now
            sub.save()
            audit_record(
                tenant=sub.tenant_id,
                actor=actor,
                action="billing.downgraded",
                target_type="subscription",
                target_id=sub.pk,
                before=before,
                after=_view(sub),
            )
    return len(expired)


# --- spend caps -----------------------------------------------------------------------------------------


def _usd(value: Any, field: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidInput('Give an amount in USD, e.g. "50.00", or null.', field=field) from exc
    if not amount.is_finite() or amount <= 0 or amount >= Decimal("1e10"):
        raise InvalidInput("The cap must be a positive amount in USD.", field=field)
    return amount.quantize(Decimal("0.01"))


@transaction.atomic
def spend_cap_set(*, tenant: Tenant, monthly_usd: Any, actor: Actor) -> Subscription:
    """The tenant's monthly cap on all its LLM spend (None removes it)."""
    amount = _usd(monthly_usd, "monthly_usd")
    sub = subscription_locked(tenant.pk)
    before = _view(sub)
    sub.spend_cap_usd = amount
    sub.save(update_fields=["spend_cap_usd"])
    # A new cap starts its alerts afresh for this period.
    ent = entitlement(tenant.pk)
    UsageCounter.objects.filter(
        tenant=tenant, metric=Metric.LLM_COST_USD, scope="", period_start=ent.period_start
    ).update(alerted_pct=0)
    audit_record(
        tenant=tenant,
        actor=actor,
        action="billing.spend_cap_set",
        target_type="subscription",
        target_id=sub.pk,
        before=before,
        after=_view(sub),
    )
    return sub


@transaction.atomic
def agent_spend_cap_set(
    *, tenant_id: UUID, agent_id: UUID, monthly_usd: Decimal | str | None, actor: Actor
) -> AgentSpendCap | None:
    """One agent's monthly LLM spend cap (None removes it); it may not exceed the tenant's cap."""
    amount = _usd(monthly_usd, "monthly_usd")
    tenant_cap = entitlement(tenant_id).spend_cap_usd
    if amount is not None and tenant_cap is not None and amount > tenant_cap:
        raise InvalidInput(
            f"An agent's cap cannot exceed the organization's (${tenant_cap}).", field="monthly_usd"
        )
    current = AgentSpendCap.objects.select_for_update().filter(agent_id=agent_id).first()
    before = {"monthly_usd": str(current.monthly_usd) if current else None}
    if amount is None:
        if current:
            current.delete()
        cap = None
    elif current:
        current.monthly_usd = amount
        current.save(update_fields=["monthly_usd"])
        cap = current
    else:
        cap = AgentSpendCap.objects.create(tenant_id=tenant_id, agent_id=agent_id, monthly_usd=amount)
    ent = entitlement(tenant_id)
    UsageCounter.objects.filter(
        tenant_id=tenant_id,
        metric=Metric.LLM_COST_USD,
        scope=f"agent:{agent_id}",
        period_start=ent.period_start,
    ).update(alerted_pct=0)
    audit_record(
        tenant=tenant_id,
        actor=actor,
        action="agent.spend_cap_set",
        target_type="agent",
        target_id=agent_id,
        before=before,
        after={"monthly_usd": str(amount) if amount is not None else None},
    )
    return cap


# --- overage to Stripe Billing Meters -------------------------------------------------------------------


def meter_report() -> dict[str, int]:
    """Records usage beyond each paid plan's included amounts as meter reports and sends the unsent.

    A report row is written before its event is sent and its id is the event's ``identifier``:
    a retry after a failure (or a crash between the two) re-sends the same identifier, which Stripe
    de-duplicates, so overage is never billed twice.
    """
    now = timezone.now()
    created = 0
    subs = Subscription.objects.exclude(stripe_customer_id="").exclude(plan="free")
    for sub in subs:
        ent = entitlement(sub.tenant_id, now=now)
        counters = UsageCounter.objects.filter(
            tenant_id=sub.tenant_id,
            scope="",
            metric__in=[m.value for m in METERED],
            period_end__gt=now - timedelta(days=40),
        )
        for counter in counters:
            rule = ent.plan.metered.get(Metric(counter.metric))
            if rule is None or not rule.meter_event:
                continue
            included = _units(counter.metric, rule.included) or 0
            with transaction.atomic():
                locked = UsageCounter.objects.select_for_update().get(pk=counter.pk)
                reported = MeterReport.objects.filter(counter=locked).aggregate(n=Sum("quantity"))["n"] or 0
                delta = max(0, locked.used - included) - reported
                if delta > 0:
                    MeterReport.objects.create(
                        tenant_id=sub.tenant_id, counter=locked, event_name=rule.meter_event, quantity=delta
                    )
                    created += 1
    sent = failed = 0
    for report in (
        MeterReport.objects.filter(sent_at__isnull=True).select_related("counter").order_by("created_at")
    ):
        customer = (
            Subscription.objects.filter(tenant_id=report.tenant_id)
            .values_list("stripe_customer_id", flat=True)
            .first()
        )
        try:
            stripe_gateway.meter_event_send(
                event_name=report.event_name,
                customer=customer or "",
                value=report.quantity,
                identifier=report.identifier,
                timestamp=min(now, report.counter.period_end - timedelta(seconds=1)),
            )
        except Exception as exc:  # one failing event must not stop the others; it is retried next time
            failed += 1
            MeterReport.objects.filter(pk=report.pk).update(error=str(getattr(exc, "message", exc))[:500])
            continue
        sent += 1
        MeterReport.objects.filter(pk=report.pk).update(sent_at=timezone.now(), error="")
    return {"created": created, "sent": sent, "failed": failed}


# --- run-log retention ----------------------------------------------------------------------------------


def retention_prune() -> dict[str, int]:
    """Deletes what each registered pruner holds (finished runs with their steps, delivery records...)
    beyond the retention of each tenant's plan, and records it in the tenant's audit log."""
    now = timezone.now()
    pruners = registry.pruners()
    totals: dict[str, int] = {}
    tenant_ids = dict.fromkeys(tenant_id for pruner in pruners for tenant_id in pruner.tenant_ids())
    held = set(
        Tenant.objects.filter(pk__in=list(tenant_ids), legal_hold_at__isnull=False).values_list(
            "pk", flat=True
        )
    )
    chosen = dict(
        Tenant.objects.filter(pk__in=list(tenant_ids), retention_days__isnull=False).values_list(
            "pk", "retention_days"
        )
    )
    for tenant_id in tenant_ids:
        if tenant_id in held:
            continue  # a legal hold: nothing of this tenant is deleted until it is lifted
        days = entitlement(tenant_id, now=now).limit(Metric.RETENTION_DAYS)
        if tenant_id in chosen:
            days = min(
                int(days), int(chosen[tenant_id] or days)
            )  # the tenant's own choice, never beyond the plan
        cutoff = now - timedelta(days=int(days))
        pruned: dict[str, int] = {}
        for pruner in pruners:
            pruned.update(pruner.prune(tenant_id, cutoff))
        if any(pruned.values()):
            # The log itself records what the retention policy removed, and up to when.
            with transaction.atomic():
                audit_record(
                    tenant=tenant_id,
                    actor=Actor.system("billing:retention"),
                    action="runs.pruned",
                    target_type="tenant",
                    target_id=tenant_id,
                    after={**pruned, "before": cutoff.isoformat(), "retention_days": int(days)},
                )
        for key, value in pruned.items():
            totals[key] = totals.get(key, 0) + value
    return totals


def subscription_state(tenant: Tenant) -> dict[str, Any]:
    sub = Subscription.objects.filter(tenant=tenant).first()
    ent = entitlement(tenant.pk)
    return {
        "plan": ent.plan.code,
        "plan_name": ent.plan.name,
        "status": ent.status,
        "interval": sub.interval if sub else "",
        "period_start": ent.period_start,
        "period_end": ent.period_end,
        "grace_until": ent.grace_until,
        "stripe_managed": ent.stripe_managed,
        "billing_configured": stripe_gateway.configured(),
        "spend_cap_usd": str(ent.spend_cap_usd) if ent.spend_cap_usd is not None else None,
    }
