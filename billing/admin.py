"""Billing in the compliance console (read-only), and the operator actions on a tenant: set its plan,
allow it a private network (superusers; the same services as `plan_set` and `tenant_network_allow`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from billing.models import MeterReport, StripeEvent, Subscription, UsageCounter
from billing.plans import PLANS
from billing.services import plan_set
from connectors.services import network_allow
from falcon.admin_base import ReadOnlyAdmin
from falcon.errors import FalconError
from tenants.admin import TenantAdmin
from tenants.models import Tenant
from tenants.staff_access import staff_actor


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


# --- the console's operator actions on a tenant: the same services as the commands, audited ----------


class PlanForm(forms.Form):
    plan = forms.ChoiceField(choices=[(code, code) for code in PLANS])


class NetworkForm(forms.Form):
    cidr = forms.CharField(label="Network (CIDR)", max_length=64)
    reason = forms.CharField(max_length=300)


admin.site.unregister(Tenant)


@admin.register(Tenant)
class TenantOperationsAdmin(TenantAdmin):
    """Tenants, read-only, with the two operator actions (superusers only): set the plan, allow a
    private network. Each calls the service the commands call and is audited in the tenant's log."""

    change_form_template = "admin/tenant_operations_change_form.html"

    def get_urls(self) -> list[Any]:
        own = [
            path("<path:object_id>/plan/", self.admin_site.admin_view(self.plan_view), name="tenant-plan"),
            path(
                "<path:object_id>/network/",
                self.admin_site.admin_view(self.network_view),
                name="tenant-network",
            ),
        ]
        return own + super().get_urls()

    def _operation(
        self, request: HttpRequest, object_id: str, form_class: type[forms.Form], title: str, do: Any
    ) -> HttpResponse:
        if not request.user.is_superuser:
            raise PermissionDenied
        tenant = get_object_or_404(Tenant, pk=object_id)
        form = form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                do(tenant, form.cleaned_data, staff_actor(request, request.user))
            except FalconError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"{title}: done (recorded in {tenant.slug}'s audit log).")
                return HttpResponseRedirect(reverse("admin:tenants_tenant_change", args=[tenant.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{title} — {tenant.slug}",
            "form": form,
            "original": tenant,
        }
        return TemplateResponse(
            request, "admin/tenant_operation.html", context, status=400 if form.errors else 200
        )

    def plan_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def apply(tenant: Tenant, data: dict[str, Any], actor: Any) -> None:
            plan_set(tenant=tenant, plan=data["plan"], actor=actor)

        return self._operation(request, object_id, PlanForm, "Set the plan", apply)

    def network_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def apply(tenant: Tenant, data: dict[str, Any], actor: Any) -> None:
            network_allow(tenant=tenant, cidr=data["cidr"], reason=data["reason"], actor=actor)

        return self._operation(request, object_id, NetworkForm, "Allow a private network", apply)
