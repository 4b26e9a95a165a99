"""Per-object rights on agents and prompts (django-guardian), inside a tenant, on top of roles.

The role map gives each member default rights on every agent and prompt of the tenant. Owners and
admins may set a member's rights on one object explicitly (view, edit, publish, run): that set then
replaces the role's defaults for that object, adding or removing rights (a builder who may edit an
agent but not publish it; a viewer who may run one agent). A member marked ``granted_only`` gets
nothing from the role on agents and prompts, only what is granted (an operator who may run two
agents). Owners and admins always hold every right. API keys act by their scopes, not by object.
``object_allows`` is the one check; the API and services call it. The tenant boundary stays where
it is: objects of another tenant are never in the querysets these rights refine.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from guardian.models import UserObjectPermission

from falcon.errors import InvalidInput, NotFound
from tenants.access import TenantContext
from tenants.audit import Actor, audit_record
from tenants.models import Membership
from tenants.permissions import Action, Role, role_allows

RIGHTS = ("view", "edit", "publish", "run")
ACTION_RIGHT: dict[Action, str] = {
    Action.AGENTS_READ: "view",
    Action.AGENTS_BUILD: "edit",
    Action.AGENTS_PUBLISH: "publish",
    Action.AGENTS_RUN: "run",
    Action.PROMPTS_READ: "view",
    Action.PROMPTS_EDIT: "edit",
    Action.PROMPTS_PUBLISH: "publish",
}
ROLE_RIGHT_ACTIONS = {
    "agent": {
        "view": Action.AGENTS_READ,
        "edit": Action.AGENTS_BUILD,
        "publish": Action.AGENTS_PUBLISH,
        "run": Action.AGENTS_RUN,
    },
    "prompt": {
        "view": Action.PROMPTS_READ,
        "edit": Action.PROMPTS_EDIT,
        "publish": Action.PROMPTS_PUBLISH,
        "run": Action.AGENTS_RUN,
    },
}
ALWAYS_ALL = (Role.OWNER, Role.ADMIN)


def _kind(obj_or_model: Any) -> str:
    return str(obj_or_model._meta.model_name)


def _content_type(obj_or_model: Any) -> ContentType:
    return ContentType.objects.get_for_model(obj_or_model)


def explicit_rights(membership: Membership, obj: models.Model) -> set[str] | None:
    """The member's explicit rights on ``obj``, or None when the role's defaults apply."""
    codes = set(
        UserObjectPermission.objects.filter(
            user_id=membership.user_id, content_type=_content_type(obj), object_pk=str(obj.pk)
        ).values_list("permission__codename", flat=True)
    )
    kind = _kind(obj)
    if f"{kind}_custom" not in codes:
        return None
    return {right for right in RIGHTS if f"{kind}_{right}" in codes}


def role_rights(membership: Membership, kind: str) -> set[str]:
    if membership.granted_only and membership.role not in ALWAYS_ALL:
        return set()
    return {
        right for right, action in ROLE_RIGHT_ACTIONS[kind].items() if role_allows(membership.role, action)
    }


def effective_rights(membership: Membership, obj: models.Model) -> set[str]:
    if membership.role in ALWAYS_ALL:
        return set(RIGHTS)
    explicit = explicit_rights(membership, obj)
    return explicit if explicit is not None else role_rights(membership, _kind(obj))


def object_allows(ctx: TenantContext, action: Action, obj: models.Model) -> bool:
    """Whether the request's actor may take ``action`` on this agent or prompt."""
    if ctx.membership is None or action not in ACTION_RIGHT:
        return ctx.allows(action)  # API keys act by scope; other actions have no object rights
    return member_allows(ctx.membership, action, obj)


def member_allows(membership: Membership, action: Action, obj: models.Model) -> bool:
    """The same decision for a member, where services act for a known person (e.g. a reviewer)."""
    right = ACTION_RIGHT.get(action)
    if right is None:
        return role_allows(membership.role, action)
    return right in effective_rights(membership, obj)


def may_on_some(ctx: TenantContext, action: Action, model: type[models.Model]) -> bool:
    """Whether the actor may take ``action`` on at least one object of ``model`` (the coarse check)."""
    if ctx.allows(action) and not (ctx.membership and ctx.membership.granted_only):
        return True
    right = ACTION_RIGHT.get(action)
    if ctx.membership is None or right is None:
        return ctx.allows(action)
    if ctx.membership.role in ALWAYS_ALL:
        return True
    return UserObjectPermission.objects.filter(
        user_id=ctx.membership.user_id,
        content_type=_content_type(model),
        permission__codename=f"{_kind(model)}_{right}",
    ).exists()


def visible_filter(ctx: TenantContext, model: type[models.Model], path: str = "") -> models.Q | None:
    """A filter narrowing a queryset to objects (at ``path``) the member may view; None: no narrowing."""
    membership = ctx.membership
    if membership is None or membership.role in ALWAYS_ALL:
        return None
    kind = _kind(model)
    field = f"{path}__pk__in" if path else "pk__in"
    rows = UserObjectPermission.objects.filter(
        user_id=membership.user_id, content_type=_content_type(model)
    ).values_list("object_pk", "permission__codename")
    custom: set[str] = set()
    viewable: set[str] = set()
    for object_pk, code in rows:
        if code == f"{kind}_custom":
            custom.add(object_pk)
        elif code == f"{kind}_view":
            viewable.add(object_pk)
    if "view" in role_rights(membership, kind):
        hidden = custom - viewable
        return ~models.Q(**{field: list(hidden)}) if hidden else None
    return models.Q(**{field: list(custom & viewable)})


@transaction.atomic
def object_rights_set(
    *, obj: models.Model, membership: Membership, rights: list[str] | None, actor: Actor
) -> None:
    """Sets a member's explicit rights on an agent or prompt (None returns them to the role's)."""
    if membership.tenant_id != obj.tenant_id:  # type: ignore[attr-defined]
        raise NotFound("No such member.", field="member")
    if membership.role in ALWAYS_ALL:
        raise InvalidInput("Owners and admins hold every right; nothing to set.", field="member")
    if rights is not None and (unknown := sorted(set(rights) - set(RIGHTS))):
        raise InvalidInput(f"Unknown rights: {', '.join(unknown)}; use {', '.join(RIGHTS)}.", field="rights")
    kind = _kind(obj)
    before = explicit_rights(membership, obj)
    content_type = _content_type(obj)
    UserObjectPermission.objects.filter(
        user_id=membership.user_id, content_type=content_type, object_pk=str(obj.pk)
    ).delete()
    if rights is not None:
        codes = [f"{kind}_custom", *(f"{kind}_{right}" for right in sorted(set(rights)))]
        permissions = {
            p.codename: p for p in Permission.objects.filter(content_type=content_type, codename__in=codes)
        }
        UserObjectPermission.objects.bulk_create(
            [
                UserObjectPermission(
                    user_id=membership.user_id,
                    permission=permissions[code],
                    content_type=content_type,
                    object_pk=str(obj.pk),
                )
                for code in codes
            ]
        )
    audit_record(
        tenant=membership.tenant_id,
        actor=actor,
        action=f"{kind}.rights_changed",
        target_type=kind,
        target_id=obj.pk,
        before={"member": membership.user.email, "rights": sorted(before) if before is not None else None},
        after={
            "member": membership.user.email,
            "rights": sorted(set(rights)) if rights is not None else None,
        },
    )


def rights_listing(obj: models.Model) -> list[dict[str, Any]]:
    """Every member with their explicit and effective rights on ``obj`` (for GET .../permissions)."""
    tenant_id = getattr(obj, "tenant_id")  # noqa: B009 - agents and prompts both have one
    members = Membership.objects.filter(tenant_id=tenant_id).select_related("user").order_by("user__email")
    content_type = _content_type(obj)
    kind = _kind(obj)
    codes: dict[Any, set[str]] = {}
    for user_id, code in UserObjectPermission.objects.filter(
        content_type=content_type, object_pk=str(obj.pk)
    ).values_list("user_id", "permission__codename"):
        codes.setdefault(user_id, set()).add(code)
    listing = []
    for membership in members:
        mine = codes.get(membership.user_id, set())
        explicit = {r for r in RIGHTS if f"{kind}_{r}" in mine} if f"{kind}_custom" in mine else None
        if membership.role in ALWAYS_ALL:
            effective = set(RIGHTS)
        elif explicit is not None:
            effective = explicit
        else:
            effective = role_rights(membership, kind)
        listing.append(
            {
                "member": str(membership.pk),
                "email": membership.user.email,
                "role": membership.role,
                "granted_only": membership.granted_only,
                "explicit": sorted(explicit) if explicit is not None else None,
                "effective": [r for r in RIGHTS if r in effective],
            }
        )
    return listing
