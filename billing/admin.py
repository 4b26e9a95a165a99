"""Read-only billing views for platform staff; plans change through Stripe or `manage.py plan_set`."""

from __future__ import annotations

from django.contrib import admin

from billing.models import MeterReport, StripeEvent, Subscription, UsageCounter
from falcon.admin_base import ReadOnlyAdmin


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "plan", "status", "current_period_end", "grace_until"]
    list_filter = ["plan", "status"]
    search_fields = ["tenant__slug", "stripe_customer_id"]


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "metric", "scope", "period_start", "used"]
    list_filter = ["metric"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "customer_id", "received_at", "processed_at", "attempts"]
    exclude = ["payload"]


@admin.register(MeterReport)
class MeterReportAdmin(ReadOnlyAdmin):
    list_display = ["tenant", "event_name", "quantity", "created_at", "sent_at"]
