"""The signed-in home page (the user's tenants and roles) and the invitation accept page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from falcon.errors import FalconError
from tenants.access import actor_for_user
from tenants.models import Membership, User
from tenants.permissions import role_matrix
from tenants.services import invitation_accept, user_has_mfa


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    memberships = Membership.objects.select_related("tenant").filter(user=user).order_by("tenant__slug")
    return render(
        request,
        "home.html",
        {
            "memberships": memberships,
            "has_mfa": user_has_mfa(user),
            "role_matrix": role_matrix(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def invitation_accept_page(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("token") or request.POST.get("token") or ""
    if request.method == "POST":
        user = request.user
        assert isinstance(user, User)
        try:
            membership = invitation_accept(token=token, user=user, actor=actor_for_user(request, user))  # type: ignore[arg-type]
        except FalconError as exc:
            return render(
                request, "invitation_accept.html", {"token": token, "error": exc.message}, status=400
            )
        messages.success(request, f"You joined {membership.tenant.name} as {membership.role}.")
        request.session["falcon_tenant"] = membership.tenant.slug  # the dashboard opens in it
        return redirect("/")
    return render(request, "invitation_accept.html", {"token": token})
