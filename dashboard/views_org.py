"""The organization's pages: a new organization, usage and billing (Stripe Checkout and portal, spend
caps), members and invitations, API keys (shown once), settings and the audit log (filters, export,
chain status). The same services and role checks as the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.db.models import Count, F, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents.generator.models import Generation
from billing import services as billing_services
from billing.plans import PLANS
from billing.quotas import usage_summary
from dashboard.charts import daily_usage
from dashboard.context import SESSION_KEY, field_errors, frame, parse_uuid, tenant_page
from falcon.errors import FalconError, InvalidInput, NotFound
from tenants import limits
from tenants import services as tenant_services
from tenants.access import TenantContext, actor_for_user
from tenants.audit import audit_verify_tenant
from tenants.audit_export import audit_export_response, audit_filter
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Role, User
from tenants.permissions import Action, Scope

AUDIT_PAGE = 100


# --- a new organization ----------------------------------------------------------------------------------


def _organization_new(request: HttpRequest, ctx: TenantContext | None) -> HttpResponse:
    """Also the landing page of someone who belongs to no organization yet (``ctx`` is None)."""
    errors: dict[str, list[str]] = {}
    form = {"name": "", "slug": ""}
    user = request.user
    assert isinstance(user, User)
    if request.method == "POST":
        form = {"name": request.POST.get("name", "")[:100], "slug": request.POST.get("slug", "").strip()[:50]}
        try:
            if not form["name"].strip():
                raise InvalidInput("Give the organization a name.", field="name")
            tenant = tenant_services.tenant_create(
                slug=form["slug"],
                name=form["name"],
                owner=user,
                actor=actor_for_user(request, user),  # type: ignore[arg-type]  # a Django request serves too
            )
            request.session[SESSION_KEY] = tenant.slug
            messages.success(request, f"{tenant.name} is ready. You are its owner.")
            return redirect("dashboard-overview")
        except FalconError as exc:
            errors = field_errors(exc)
    body = {"form": form, "errors": errors, "first": ctx is None}
    return render(
        request, "dashboard/organization_new.html", frame(ctx, **body), status=400 if errors else 200
    )


_organization_new.without_tenant = True  # type: ignore[attr-defined]
organization_new_page = tenant_page(_organization_new)


# --- usage and billing -----------------------------------------------------------------------------------


@tenant_page
def usage_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.BILLING_READ)
    usage = usage_summary(ctx.tenant)
    metrics = [
        {"name": name.replace("_", " "), **values, "percent": _percent(values["used"], values["limit"])}
        for name, values in usage["metrics"].items()
        if "used" in values
    ]
    settings_limits = [
        (name.replace("_", " "), values["limit"])
        for name, values in usage["metrics"].items()
        if "used" not in values
    ]
    since = timezone.now() - timedelta(days=30)
    body = {
        "plan": billing_services.subscription_state(ctx.tenant),
        "metrics": metrics,
        "settings_limits": settings_limits,
        "features": usage["features"],
        "charts": daily_usage(ctx.tenant, since),
        "generator": Generation.objects.filter(
            tenant=ctx.tenant, created_at__gte=usage_period_start(usage)
        ).aggregate(
            count=Count("pk"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")), cost=Sum("cost_usd")
        ),
        "plans": [p for code, p in PLANS.items() if code != "free"],
        "may_manage": ctx.allows(Action.BILLING_MANAGE),
        "may_cap": ctx.allows(Action.SPEND_CAPS_MANAGE),
        "errors": {},
    }
    return render(request, "dashboard/usage.html", frame(ctx, **body))


def usage_period_start(usage: dict[str, Any]) -> Any:
    return usage["period_start"]


def _percent(used: Any, limit: Any) -> int | None:
    try:
        return min(100, round(float(used) * 100 / float(limit))) if limit not in (None, 0, "0") else None
    except (TypeError, ValueError):
        return None


@require_POST
@tenant_page
def billing_action(request: HttpRequest, ctx: TenantContext, what: str) -> HttpResponse:
    try:
        if what == "checkout":
            ctx.require(Action.BILLING_MANAGE)
            url = billing_services.checkout_start(
                tenant=ctx.tenant,
                plan=request.POST.get("plan", ""),
                interval=request.POST.get("interval", "month"),
                actor=ctx.actor,
            )
            return redirect(url)
        if what == "portal":
            ctx.require(Action.BILLING_MANAGE)
            return redirect(billing_services.portal_start(tenant=ctx.tenant, actor=ctx.actor))
        if what == "spend-cap":
            ctx.require(Action.SPEND_CAPS_MANAGE)
            raw = request.POST.get("monthly_usd", "").strip()
            billing_services.spend_cap_set(tenant=ctx.tenant, monthly_usd=raw or None, actor=ctx.actor)
            messages.success(request, "Spend cap saved." if raw else "Spend cap removed.")
            return redirect("dashboard-usage")
    except FalconError as exc:
        if exc.status_code in (403, 404):
            raise
        messages.error(request, exc.message)
        return redirect("dashboard-usage")
    raise NotFound()


# --- members, invitations, keys, settings ----------------------------------------------------------------


@tenant_page
def members_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.MEMBERS_READ)
    errors: dict[str, list[str]] = {}
    accept_url = None
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            accept_url = _member_action(request, ctx, action)
            if accept_url is None:
                return redirect("dashboard-members")
        except FalconError as exc:
            if exc.status_code == 403:
                raise
            errors = field_errors(exc)
    may_manage = ctx.allows(Action.MEMBERS_MANAGE)
    body = {
        "members": list(
            Membership.objects.filter(tenant=ctx.tenant).select_related("user").order_by("user__email")
        ),
        "invitations": list(
            Invitation.objects.filter(tenant=ctx.tenant, accepted_at__isnull=True, revoked_at__isnull=True)
            .select_related("invited_by")
            .order_by("-created_at")
        )
        if may_manage
        else [],
        "roles": [r for r in Role.values if ctx.role == Role.OWNER or r != Role.OWNER],
        "may_manage": may_manage,
        "accept_url": accept_url,
        "errors": errors,
        "form": request.POST if errors else {},
    }
    return render(request, "dashboard/members.html", frame(ctx, **body), status=400 if errors else 200)


def _member_action(request: HttpRequest, ctx: TenantContext, action: str) -> str | None:
    """Applies one members-page form; an invitation answers with its accept link (shown once)."""
    post = request.POST
    if action == "invite":
        ctx.require(Action.MEMBERS_MANAGE)
        _, token = tenant_services.invitation_create(
            tenant=ctx.tenant, email=post.get("email", "").strip(), role=post.get("role", ""),
            actor=ctx.actor, acting_role=ctx.role, invited_by=ctx.user,
        )  # fmt: skip
        messages.success(request, f"Invitation sent to {post.get('email')}.")
        return tenant_services.invitation_accept_url(token)
    if action == "revoke":
        ctx.require(Action.MEMBERS_MANAGE)
        invitation = Invitation.objects.filter(
            tenant=ctx.tenant, pk=parse_uuid(post.get("invitation"))
        ).first()
        if invitation is None:
            raise NotFound("No such invitation.")
        tenant_services.invitation_revoke(invitation=invitation, actor=ctx.actor)
        messages.success(request, "Invitation revoked.")
        return None
    membership = (
        Membership.objects.filter(tenant=ctx.tenant, pk=parse_uuid(post.get("member")))
        .select_related("user")
        .first()
    )
    if membership is None:
        raise NotFound("No such member.")
    is_self = membership.user_id == ctx.user.pk if ctx.user else False
    if action == "role":
        ctx.require(Action.MEMBERS_MANAGE)
        tenant_services.member_role_change(
            membership=membership, role=post.get("role", ""), actor=ctx.actor, acting_role=ctx.role
        )
        messages.success(request, f"{membership.user.email} is now {post.get('role')}.")
    elif action == "remove":
        if not is_self:
            ctx.require(Action.MEMBERS_MANAGE)
        tenant_services.member_remove(
            membership=membership, actor=ctx.actor, acting_role=ctx.role, is_self=is_self
        )
        messages.success(request, f"{membership.user.email} removed.")
    else:
        raise NotFound()
    return None


@tenant_page
def keys_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.API_KEYS_MANAGE)
    errors: dict[str, list[str]] = {}
    shown = None
    if request.method == "POST":
        try:
            if request.POST.get("action") == "revoke":
                key = ApiKey.objects.filter(tenant=ctx.tenant, pk=parse_uuid(request.POST.get("key"))).first()
                if key is None:
                    raise NotFound("No such key.")
                tenant_services.api_key_revoke(api_key=key, actor=ctx.actor)
                messages.success(request, f"Key {key.name!r} revoked.")
                return redirect("dashboard-keys")
            scopes = request.POST.getlist("scopes")
            if not scopes:
                raise InvalidInput("Pick at least one scope.", field="scopes")
            key, token = tenant_services.api_key_create(
                tenant=ctx.tenant, name=request.POST.get("name", "").strip()[:100], scopes=scopes,
                actor=ctx.actor, acting_role=ctx.role, created_by=ctx.user,
            )  # fmt: skip
            shown = {"key": key, "token": token}
        except FalconError as exc:
            if exc.status_code == 403:
                raise
            errors = field_errors(exc)
    body = {
        "keys": list(
            ApiKey.objects.filter(tenant=ctx.tenant).select_related("created_by").order_by("-created_at")
        ),
        "scopes": Scope.choices,
        "shown": shown,
        "errors": errors,
    }
    return render(request, "dashboard/keys.html", frame(ctx, **body), status=400 if errors else 200)


@tenant_page
def settings_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.TENANT_READ)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        ctx.require(Action.TENANT_MANAGE)
        require_mfa = request.POST.get("require_mfa") == "on"
        four_eyes = request.POST.get("prompt_four_eyes") == "on"
        chain_runs = request.POST.get("audit_run_starts") == "on"
        raw_retention = request.POST.get("retention_days", "").strip()
        retention: int | None = int(raw_retention) if raw_retention.isdigit() else None
        security_changed = (require_mfa, four_eyes, chain_runs, retention) != (
            ctx.tenant.require_mfa,
            ctx.tenant.prompt_four_eyes,
            ctx.tenant.audit_run_starts,
            ctx.tenant.retention_days,
        )
        try:
            if security_changed:
                ctx.require(Action.TENANT_SECURITY)
            if raw_retention and retention is None:
                raise InvalidInput("A number of days, or empty for the plan's.", field="retention_days")
            tenant_services.tenant_update(
                tenant=ctx.tenant, actor=ctx.actor, acting_user=ctx.user,
                name=request.POST.get("name", "")[:100],
                require_mfa=require_mfa if security_changed else None,
                prompt_four_eyes=four_eyes if security_changed else None,
                audit_run_starts=chain_runs if security_changed else None,
                **({"retention_days": retention} if retention != ctx.tenant.retention_days else {}),
            )  # fmt: skip
            messages.success(request, "Settings saved.")
            return redirect("dashboard-settings")
        except FalconError as exc:
            if exc.status_code == 403:
                raise
            errors = field_errors(exc)
            ctx.tenant.refresh_from_db()
    body = {
        "errors": errors,
        "may_manage": ctx.allows(Action.TENANT_MANAGE),
        "may_security": ctx.allows(Action.TENANT_SECURITY),
        "mfa_enforcement": _has_feature(ctx, "mfa_enforcement"),
        "retention_max": limits.retention_days_max(ctx.tenant),
    }
    return render(request, "dashboard/settings.html", frame(ctx, **body), status=400 if errors else 200)


def _has_feature(ctx: TenantContext, feature: str) -> bool:
    try:
        limits.feature_require(ctx.tenant, feature)
    except FalconError:
        return False
    return True


# --- audit -------------------------------------------------------------------------------------------------

AUDIT_FILTERS = ("action", "actor_type", "target_type", "since", "until")


def _audit_params(request: HttpRequest) -> dict[str, Any]:
    from tenants.api.serializers import AuditEventFilterSerializer

    raw = {k: request.GET[k] for k in AUDIT_FILTERS if request.GET.get(k)}
    params = AuditEventFilterSerializer(data=raw)
    if not params.is_valid():
        field, problems = next(iter(params.errors.items()))
        raise InvalidInput(str(problems[0]), field=str(field))
    return dict(params.validated_data)


def _evidence_response(ctx: TenantContext, params: dict[str, Any]) -> HttpResponse:
    """The evidence bundle of the filtered period (default: the last 30 days), as a download."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from agents.compliance.evidence import bundle_build
    from tenants.audit import audit_record

    until = params.get("until") or timezone.now()
    since = params.get("since") or until - timedelta(days=30)
    data = bundle_build(ctx.tenant, since, until)
    with transaction.atomic():
        audit_record(
            tenant=ctx.tenant,
            actor=ctx.actor,
            action="audit.evidence_exported",
            target_type="tenant",
            target_id=ctx.tenant.pk,
            after={"since": since.isoformat(), "until": until.isoformat(), "bytes": len(data)},
        )
    response = HttpResponse(data, content_type="application/zip")
    name = f"{ctx.tenant.slug}-evidence-{since:%Y%m%d}-{until:%Y%m%d}.zip"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@tenant_page
def audit_page(request: HttpRequest, ctx: TenantContext) -> HttpResponseBase:
    ctx.require(Action.AUDIT_READ)
    errors: dict[str, list[str]] = {}
    try:
        params = _audit_params(request)
    except FalconError as exc:
        errors, params = field_errors(exc), {}
    events = audit_filter(AuditEvent.objects.filter(tenant=ctx.tenant), params).order_by("-seq")
    if request.GET.get("export") in ("jsonl", "csv") and not errors:
        limits.feature_require(ctx.tenant, "audit_export")
        return audit_export_response(ctx.tenant, events, request.GET["export"])
    if request.GET.get("export") == "evidence" and not errors:
        limits.feature_require(ctx.tenant, "audit_export")
        return _evidence_response(ctx, params)
    before = request.GET.get("before", "")
    if before.isdigit():
        events = events.filter(seq__lt=int(before))
    page = list(events[: AUDIT_PAGE + 1])
    broken = audit_verify_tenant(ctx.tenant) if request.GET.get("verify") else None
    body = {
        "events": page[:AUDIT_PAGE],
        "next_before": page[AUDIT_PAGE - 1].seq if len(page) > AUDIT_PAGE else None,
        "filters": {k: request.GET.get(k, "") for k in AUDIT_FILTERS},
        "actor_types": AuditEvent.ActorType.values,
        "verified": bool(request.GET.get("verify")),
        "may_export": _has_feature(ctx, "audit_export"),
        "broken": broken,
        "errors": errors,
        "query": request.GET.urlencode(),
    }
    return render(request, "dashboard/audit.html", frame(ctx, **body), status=400 if errors else 200)
