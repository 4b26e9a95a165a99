"""The tenant a dashboard page acts in: the one the member picked (kept in the session), else their
only or first tenant. Pages check the same role map and object rights as the API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import render

from falcon.errors import FalconError
from tenants.access import TenantContext, member_context
from tenants.models import Membership, User
from tenants.permissions import Action

SESSION_KEY = "falcon_tenant"


def page_context(request: HttpRequest) -> TenantContext:
    user = request.user
    assert isinstance(user, User)
    wanted = request.GET.get("tenant") or request.session.get(SESSION_KEY, "")
    if not wanted:
        first = (
            Membership.objects.filter(user=user)
            .order_by("tenant__slug")
            .values_list("tenant__slug", flat=True)
        )
        wanted = first.first() or ""
    ctx = member_context(request, user, wanted)
    request.session[SESSION_KEY] = ctx.tenant.slug
    return ctx


def frame(ctx: TenantContext, **extra: Any) -> dict[str, Any]:
    """What every page's frame needs (the tenant switcher), plus the page's own values."""
    tenants = Membership.objects.filter(user=ctx.user).select_related("tenant").order_by("tenant__slug")
    may = {
        "audit": ctx.allows(Action.AUDIT_READ),
        "build": ctx.allows(Action.AGENTS_BUILD),
        "billing": ctx.allows(Action.BILLING_READ),
        "members": ctx.allows(Action.MEMBERS_READ),
    }
    return {"ctx": ctx, "tenants": [m.tenant for m in tenants], "may": may, **extra}


def tenant_page(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """A signed-in page in the member's current tenant; refusals render as pages in the product's look."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            ctx = page_context(request)
            return view(request, ctx, *args, **kwargs)
        except FalconError as exc:
            status = exc.status_code if exc.status_code in (403, 404) else 400
            template = "dashboard/error.html"
            return render(request, template, {"status": status, "message": exc.message}, status=status)

    return wrapped
