"""Who is acting in which tenant: resolved once per API request, checked against the role map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework.request import Request

from falcon import logs
from falcon.errors import Forbidden, InvalidInput, NotFound
from tenants.audit import Actor
from tenants.models import ApiKey, AuditEvent, Membership, Tenant, User
from tenants.permissions import OWNER_KEY_ONLY, Action, Role, role_allows, scopes_allow
from tenants.services import user_has_mfa

TENANT_HEADER = "X-Falcon-Tenant"


@dataclass(frozen=True)
class TenantContext:
    tenant: Tenant
    actor: Actor
    user: User | None = None
    membership: Membership | None = None
    api_key: ApiKey | None = None
    # A key minted by a member acts with at most the rights that member holds *now*: their current
    # role (None once they left: the key may do nothing). Keys minted by operators belong to the tenant.
    key_creator_role: str | None = None

    @property
    def role(self) -> str | None:
        """The acting person's role; None for an API key (keys act by scope, not by role)."""
        return self.membership.role if self.membership else None

    def allows(self, action: Action) -> bool:
        if self.api_key is not None:
            if not scopes_allow(self.api_key.scopes, action):
                return False
            if self.api_key.created_by_id is None:  # the tenant's own key (manage.py api_key_create)
                return action not in OWNER_KEY_ONLY
            if self.key_creator_role is None:
                return False
            if action in OWNER_KEY_ONLY:
                return self.key_creator_role == Role.OWNER
            return role_allows(self.key_creator_role, action)
        return self.membership is not None and role_allows(self.membership.role, action)

    def require(self, action: Action) -> None:
        if not self.allows(action):
            who = "this API key's scopes" if self.api_key else f"the {self.role} role"
            raise Forbidden(f"This action ({action.value}) is not allowed for {who}.")


def _client_ip(request: Request) -> str | None:
    return request.META.get("REMOTE_ADDR")


def actor_for_user(request: Request, user: User) -> Actor:
    return Actor(
        type=AuditEvent.ActorType.USER,
        id=str(user.pk),
        label=user.email,
        ip=_client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        request_id=getattr(request, "request_id", ""),
    )


def actor_for_api_key(request: Request, key: ApiKey) -> Actor:
    return Actor(
        type=AuditEvent.ActorType.API_KEY,
        id=str(key.pk),
        label=f"API key {key.name} ({key.prefix}…)",
        ip=_client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        request_id=getattr(request, "request_id", ""),
    )


def tenant_context_resolve(request: Request) -> TenantContext:
    """The tenant the request acts in: the API key's own, or the one a signed-in member names."""
    slug = request.headers.get(TENANT_HEADER, "").strip()
    if isinstance(request.auth, ApiKey):
        key = request.auth
        if slug and slug != key.tenant.slug:
            raise NotFound("Not found.")
        creator_role = None
        if key.created_by_id is not None:
            creator_role = (
                Membership.objects.filter(tenant=key.tenant, user_id=key.created_by_id)
                .values_list("role", flat=True)
                .first()
            )
        logs.bind(tenant=key.tenant_id)
        return TenantContext(
            tenant=key.tenant,
            actor=actor_for_api_key(request, key),
            api_key=key,
            key_creator_role=creator_role,
        )

    user = request.user
    assert isinstance(user, User)
    return member_context(request, user, slug)


def member_context(request: Any, user: User, slug: str) -> TenantContext:
    """A signed-in member's context in the tenant ``slug`` (or their only tenant): the API names it
    with a header, the dashboard remembers it in the session."""
    memberships = Membership.objects.select_related("tenant").filter(user=user)
    if slug:
        membership = memberships.filter(tenant__slug=slug).first()
        if membership is None:
            raise NotFound("Not found.")
    else:
        found = list(memberships[:2])
        if len(found) != 1:
            raise InvalidInput(
                f"Name the tenant with the {TENANT_HEADER} header (its slug).",
                code="tenant_required",
                field=TENANT_HEADER,
            )
        membership = found[0]
    if membership.tenant.require_mfa and not user_has_mfa(user):
        raise Forbidden(
            f"{membership.tenant.name} requires two-factor authentication; turn it on at /accounts/2fa/.",
            code="mfa_required",
        )
    logs.bind(tenant=membership.tenant_id)
    return TenantContext(
        tenant=membership.tenant, actor=actor_for_user(request, user), user=user, membership=membership
    )
