"""Subscriptions (which plan a tenant is on), usage counters, spend caps and Stripe's events."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from billing.plans import PLANS


class Subscription(models.Model):
    """A tenant's plan and, when Stripe manages it, the mirror of its Stripe subscription."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        TRIALING = "trialing", "Trialing"
        PAST_DUE = "past_due", "Past due (grace period)"
        CANCELED = "canceled", "Canceled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.PROTECT, related_name="subscription")
    plan = models.CharField(max_length=32, choices=[(p.code, p.name) for p in PLANS.values()], default="free")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    interval = models.CharField(max_length=8, blank=True)  # month | year, for Stripe-managed plans
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    stripe_subscription_id = models.CharField(max_length=64, blank=True)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(null=True, blank=True)
    overrides = models.JSONField(default=dict, blank=True)  # Enterprise: per-tenant limits
    spend_cap_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_customer_id"],
                condition=~models.Q(stripe_customer_id=""),
                name="subscription_stripe_customer_unique",
            ),
            models.CheckConstraint(condition=models.Q(plan__in=list(PLANS)), name="subscription_plan_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.plan} ({self.status})"


class AgentSpendCap(models.Model):
    """A tenant's monthly cap on one agent's LLM spend (USD), below the tenant's own."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    agent = models.OneToOneField("agents.Agent", on_delete=models.CASCADE, related_name="spend_cap")
    monthly_usd = models.DecimalField(max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return f"{self.agent_id}: ${self.monthly_usd}"


class UsageCounter(models.Model):
    """Usage of one metric in one period (runs, tokens, micro-USD), consumed by conditional UPDATEs.

    ``scope`` is "" for the tenant and ``agent:<id>`` for an agent's own spend. ``alerted_pct`` records
    the highest alert threshold already sent this period, so each alert goes out once.
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    metric = models.CharField(max_length=32)
    scope = models.CharField(max_length=64, blank=True, default="")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    used = models.BigIntegerField(default=0)
    alerted_pct = models.SmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "metric", "scope", "period_start"], name="usage_counter_unique"
            ),
            models.CheckConstraint(condition=models.Q(used__gte=0), name="usage_counter_used_nonnegative"),
        ]
        indexes = [models.Index(fields=["period_end"])]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.metric}{self.scope and ' ' + self.scope}: {self.used}"


class MeterReport(models.Model):
    """Overage sent (or to send) to a Stripe Billing Meter; its id is the meter event's identifier."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    counter = models.ForeignKey(UsageCounter, on_delete=models.PROTECT, related_name="reports")
    event_name = models.CharField(max_length=100)
    quantity = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [models.Index(fields=["sent_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.event_name} {self.quantity} ({'sent' if self.sent_at else 'pending'})"

    @property
    def identifier(self) -> str:
        return f"falcon-{self.pk}"


class StripeEvent(models.Model):
    """A verified Stripe webhook event, stored raw before processing (unique on Stripe's id)."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    customer_id = models.CharField(max_length=64, blank=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.IntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"
