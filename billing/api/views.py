"""``/api/v1/usage`` and ``/api/v1/billing/...``: usage against the plan, Checkout, the portal, caps."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing import services
from billing.models import Subscription
from billing.quotas import usage_summary
from falcon.api import StrictSerializer
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.permissions import Action


class CheckoutSerializer(StrictSerializer):
    plan = serializers.ChoiceField(choices=["pro", "team", "enterprise"])
    interval = serializers.ChoiceField(choices=["month", "year"], default="month")


class SpendCapSerializer(StrictSerializer):
    monthly_usd = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        allow_null=True,
        coerce_to_string=True,
    )


class UrlSerializer(serializers.Serializer):
    url = serializers.URLField()


class MetricUsageSerializer(serializers.Serializer):
    used = serializers.JSONField(required=False, help_text="Runs, tokens, USD (string) or objects.")
    limit = serializers.JSONField(help_text="null when unlimited")
    included = serializers.JSONField(required=False, help_text="What the price covers (metered metrics).")
    period_start = serializers.DateTimeField(required=False)
    period_end = serializers.DateTimeField(required=False)


class UsageSerializer(serializers.Serializer):
    plan = serializers.CharField()
    status = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    grace_until = serializers.DateTimeField(allow_null=True)
    features = serializers.ListField(child=serializers.CharField())
    metrics = serializers.DictField(child=MetricUsageSerializer())


class SubscriptionStateSerializer(serializers.Serializer):
    plan = serializers.CharField()
    plan_name = serializers.CharField()
    status = serializers.CharField()
    interval = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    grace_until = serializers.DateTimeField(allow_null=True)
    stripe_managed = serializers.BooleanField()
    billing_configured = serializers.BooleanField()
    spend_cap_usd = serializers.CharField(allow_null=True)


class _BillingViewSet(TenantScopedViewSet):
    queryset = Subscription.objects.all()


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class UsageViewSet(_BillingViewSet):
    """Every metric of the tenant's plan: used, limit (and included amount), period start and end."""

    required_actions = {"retrieve": Action.BILLING_READ}
    serializer_class = UsageSerializer

    def retrieve(self, request: Request) -> Response:
        return Response(usage_summary(self.ctx.tenant))


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class BillingViewSet(_BillingViewSet):
    serializer_class = SubscriptionStateSerializer
    required_actions = {
        "subscription": Action.BILLING_READ,
        "checkout": Action.BILLING_MANAGE,
        "portal": Action.BILLING_MANAGE,
        "spend_cap": Action.BILLING_READ,
        "spend_cap_set": Action.SPEND_CAPS_MANAGE,
    }

    def subscription(self, request: Request) -> Response:
        return Response(services.subscription_state(self.ctx.tenant))

    @extend_schema(request=CheckoutSerializer, responses=UrlSerializer)
    def checkout(self, request: Request) -> Response:
        body = CheckoutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        url = services.checkout_start(tenant=self.ctx.tenant, actor=self.ctx.actor, **body.validated_data)
        return Response({"url": url}, status=201)

    @extend_schema(request=None, responses=UrlSerializer)
    def portal(self, request: Request) -> Response:
        return Response(
            {"url": services.portal_start(tenant=self.ctx.tenant, actor=self.ctx.actor)}, status=201
        )

    @extend_schema(responses=SpendCapSerializer)
    def spend_cap(self, request: Request) -> Response:
        state = services.subscription_state(self.ctx.tenant)
        return Response({"monthly_usd": state["spend_cap_usd"]})

    @extend_schema(request=SpendCapSerializer, responses=SpendCapSerializer)
    def spend_cap_set(self, request: Request) -> Response:
        body = SpendCapSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        sub = services.spend_cap_set(
            tenant=self.ctx.tenant, monthly_usd=body.validated_data["monthly_usd"], actor=self.ctx.actor
        )
        return Response({"monthly_usd": _money(sub.spend_cap_usd)})


def _money(value: Any) -> str | None:
    return None if value is None else str(value)
