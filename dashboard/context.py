"""The tenant a dashboard page acts in: the one the member picked (kept in the session), else their
only or first tenant. Pages check the same role map and object rights as the API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render

from falcon.errors import FalconError
from tenants.access import TenantContext, member_context
from tenants.models import Membership, User
from tenants.permissions import Action

SESSION_KEY = "falcon_tenant"


NO_ID = uuid.UUID(int=0)  # names no row


def parse_uuid(value: Any) -> uuid.UUID:
    """An id a form posted, or ``NO_ID`` when it is not one (a lookup then finds nothing: 404)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return NO_ID


def field_errors(exc: FalconError) -> dict[str, list[str]]:
    """A refusal as the errors a form shows: at their fields, or above the form (key "")."""
    return dict(exc.fields) or {"": [exc.message]}


class NoTenant(Exception):
    """The signed-in person belongs to no organization yet."""


def page_context(request: HttpRequest) -> TenantContext:
    user = request.user
    assert isinstance(user, User)
    asked = request.GET.get("tenant", "")
    wanted = asked or request.session.get(SESSION_KEY, "")
    if not asked:  # the remembered tenant may be gone (removed, or left): fall back to the first
        slugs = list(
            Membership.objects.filter(user=user)
            .order_by("tenant__slug")
            .values_list("tenant__slug", flat=True)
        )
        if not slugs:
            raise NoTenant()
        if wanted not in slugs:
            wanted = slugs[0]
    ctx = member_context(request, user, wanted)
    request.session[SESSION_KEY] = ctx.tenant.slug
    return ctx


def frame(ctx: TenantContext | None, **extra: Any) -> dict[str, Any]:
    """What every page's frame needs (the tenant switcher), plus the page's own values."""
    if ctx is None:
        return {"ctx": None, "tenants": [], "may": {}, **extra}
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
            try:
                ctx = page_context(request)
            except NoTenant:
                if getattr(view, "without_tenant", False):
                    return view(request, None, *args, **kwargs)
                return redirect("dashboard-organization-new")
            return view(request, ctx, *args, **kwargs)
        except FalconError as exc:
            status = exc.status_code if exc.status_code in (403, 404) else 400
            template = "dashboard/error.html"
            return render(request, template, {"status": status, "message": exc.message}, status=status)

    return wrapped
