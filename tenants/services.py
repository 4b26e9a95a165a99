"""Every state change of tenants, members, invitations and API keys, each with its audit event."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from falcon.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from tenants import limits
from tenants.audit import Actor, audit_record
from tenants.models import SLUG_VALIDATOR, ApiKey, AuditEvent, Invitation, Membership, Tenant, User
from tenants.permissions import Action, Role, Scope, role_allows, role_may_grant_scopes
from tenants.tokens import (
    api_key_display_prefix,
    api_key_generate,
    api_key_is_well_formed,
    invitation_token_generate,
    secret_hash,
)

RESERVED_SLUGS = frozenset({"admin", "api", "app", "hooks", "static", "www", "billing", "accounts", "falcon"})
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


# --- Tenants --------------------------------------------------------------------------------------------


def _slug_validate(slug: str) -> None:
    if not re.match(SLUG_VALIDATOR.regex, slug):
        raise InvalidInput(str(SLUG_VALIDATOR.message), code="invalid_slug", field="slug")
    if slug in RESERVED_SLUGS:
        raise InvalidInput(f"The slug {slug!r} is reserved.", code="slug_reserved", field="slug")


@transaction.atomic
def tenant_create(*, slug: str, name: str, owner: User, actor: Actor) -> Tenant:
    """A new tenant with ``owner`` as its first owner. People creating tenants for themselves may own at
    most ``FALCON_MAX_TENANTS_PER_USER`` (operators creating them for someone are not limited)."""
    _slug_validate(slug)
    if actor.type == AuditEvent.ActorType.USER and str(actor.id) == str(owner.pk):
        owned = Membership.objects.filter(user=owner, role=Role.OWNER).count()
        if owned >= settings.FALCON_MAX_TENANTS_PER_USER:
            raise Forbidden(
                f"You own {owned} organizations, the most one person may create here; delete one or ask "
                "an operator.",
                code="tenant_limit",
            )
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(f"The slug {slug!r} is taken.", code="slug_taken", field="slug")
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(slug=slug, name=name.strip() or slug)
    except IntegrityError as exc:
        raise Conflict(f"The slug {slug!r} is taken.", code="slug_taken", field="slug") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="tenant.created",
        target_type="tenant",
        target_id=tenant.pk,
        after={"slug": tenant.slug, "name": tenant.name},
    )
    member_add(tenant=tenant, user=owner, role=Role.OWNER, actor=actor)
    return tenant


def tenant_create_personal(*, user: User, actor: Actor) -> Tenant:
    """The tenant a new sign-up lands in, named after the person, with a free slug."""
    local = user.email.split("@", 1)[0].lower()
    base = "".join(ch if ch.isalnum() else "-" for ch in local).strip("-")[:40] or "team"
    base = base if len(base) >= 3 else f"{base}-team"
    slug = base
    while Tenant.objects.filter(slug=slug).exists() or slug in RESERVED_SLUGS:
        slug = f"{base}-{secrets.token_hex(3)}"
    return tenant_create(slug=slug, name=f"{user.name or local}'s workspace", owner=user, actor=actor)


@transaction.atomic
def tenant_update(
    *,
    tenant: Tenant,
    actor: Actor,
    acting_user: User | None,
    name: str | None = None,
    require_mfa: bool | None = None,
    prompt_four_eyes: bool | None = None,
    audit_run_starts: bool | None = None,
    retention_days: int | object | None = ...,
) -> Tenant:
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    if retention_days is not ... and retention_days != tenant.retention_days:
        if retention_days is not None:
            ceiling = limits.retention_days_max(tenant)
            if not isinstance(retention_days, int) or not 1 <= retention_days <= ceiling:
                raise InvalidInput(
                    f"Runs are kept 1 to {ceiling} days on this plan (empty: the plan's {ceiling}).",
                    field="retention_days",
                )
        before["retention_days"], after["retention_days"] = tenant.retention_days, retention_days
        tenant.retention_days = retention_days
    if name is not None and name.strip() != tenant.name:
        if not name.strip():
            raise InvalidInput("The name cannot be blank.", field="name")
        before["name"], after["name"] = tenant.name, name.strip()
        tenant.name = name.strip()
    if require_mfa is not None and require_mfa != tenant.require_mfa:
        if require_mfa:
            limits.feature_require(tenant, "mfa_enforcement", field="require_mfa")
        if require_mfa and acting_user is not None and not user_has_mfa(acting_user):
            raise InvalidInput(
                "Turn on two-factor authentication for your own account before requiring it for everyone.",
                code="mfa_not_enabled",
                field="require_mfa",
            )
        before["require_mfa"], after["require_mfa"] = tenant.require_mfa, require_mfa
        tenant.require_mfa = require_mfa
    if prompt_four_eyes is not None and prompt_four_eyes != tenant.prompt_four_eyes:
        before["prompt_four_eyes"], after["prompt_four_eyes"] = tenant.prompt_four_eyes, prompt_four_eyes
        tenant.prompt_four_eyes = prompt_four_eyes
    if audit_run_starts is not None and audit_run_starts != tenant.audit_run_starts:
        before["audit_run_starts"], after["audit_run_starts"] = tenant.audit_run_starts, audit_run_starts
        tenant.audit_run_starts = audit_run_starts
    if after:
        tenant.save(update_fields=list(after))
        audit_record(
            tenant=tenant,
            actor=actor,
            action="tenant.updated",
            target_type="tenant",
            target_id=tenant.pk,
            before=before,
            after=after,
        )
    return tenant


def user_has_mfa(user: User) -> bool:
    return bool(is_mfa_enabled(user))


# --- Members --------------------------------------------------------------------------------------------


@transaction.atomic
def member_add(*, tenant: Tenant, user: User, role: str, actor: Actor) -> Membership:
    """Adds a person directly (operators and the demo seed; everyone else joins by invitation)."""
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise Conflict(f"{user.email} is already a member.", code="already_member")
    limits.count_check(tenant, "members")
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    audit_record(
        tenant=tenant,
        actor=actor,
        action="member.added",
        target_type="membership",
        target_id=membership.pk,
        after={"user": user.email, "role": role},
    )
    return membership


@transaction.atomic
def member_granted_only_set(*, membership: Membership, granted_only: bool, actor: Actor) -> Membership:
    """Limits a member to the agents and prompts they hold explicit rights on (or lifts the limit)."""
    membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    if membership.granted_only != granted_only:
        membership.granted_only = granted_only
        membership.save(update_fields=["granted_only"])
        audit_record(
            tenant=membership.tenant_id,
            actor=actor,
            action="member.access_changed",
            target_type="membership",
            target_id=membership.pk,
            before={"user": membership.user.email, "granted_only": not granted_only},
            after={"user": membership.user.email, "granted_only": granted_only},
        )
    return membership


def _owners_locked(tenant_id: UUID) -> list[Membership]:
    """The tenant's owner memberships, locked in a fixed order before any other membership row.

    Two owners demoting each other at once then take turns (no deadlock), and the second one sees
    that only one owner is left.
    """
    return list(
        Membership.objects.select_for_update().filter(tenant_id=tenant_id, role=Role.OWNER).order_by("pk")
    )


def _check_may_manage(membership: Membership, new_role: str | None, acting_role: str | None) -> None:
    """Only owners touch owners; ``acting_role`` None means an API key, which never manages owners."""
    touches_owner = membership.role == Role.OWNER or new_role == Role.OWNER
    if touches_owner and (acting_role is None or not role_allows(acting_role, Action.MEMBERS_MANAGE_OWNERS)):
        raise Forbidden("Only an owner can grant, change or remove the owner role.", code="owner_required")


@transaction.atomic
def member_role_change(
    *, membership: Membership, role: str, actor: Actor, acting_role: str | None
) -> Membership:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.", field="role")
    owners = _owners_locked(membership.tenant_id)
    membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    if membership.role == role:
        return membership
    _check_may_manage(membership, role, acting_role)
    if membership.role == Role.OWNER and len(owners) <= 1:
        raise Conflict(
            "The last owner cannot be demoted; make someone else owner first.",
            code="last_owner",
            field="role",
        )
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        tenant=membership.tenant_id,
        actor=actor,
        action="member.role_changed",
        target_type="membership",
        target_id=membership.pk,
        before={"role": before, "user": membership.user.email},
        after={"role": role, "user": membership.user.email},
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, actor: Actor, acting_role: str | None, is_self: bool) -> None:
    """Removes a member; anyone may leave, managers may remove others, never the last owner."""
    owners = _owners_locked(membership.tenant_id)
    membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
    if not is_self:
        _check_may_manage(membership, None, acting_role)
    if membership.role == Role.OWNER and len(owners) <= 1:
        raise Conflict(
            "The last owner cannot leave or be removed; make someone else owner first.", code="last_owner"
        )
    audit_record(
        tenant=membership.tenant_id,
        actor=actor,
        action="member.left" if is_self else "member.removed",
        target_type="membership",
        target_id=membership.pk,
        before={"user": membership.user.email, "role": membership.role},
    )
    # A key acts for the person who minted it: when they go, their keys go with them.
    minted = ApiKey.objects.filter(
        tenant_id=membership.tenant_id, created_by_id=membership.user_id, revoked_at__isnull=True
    )
    for key in minted:
        api_key_revoke(
            api_key=key, actor=actor, reason=f"its creator {membership.user.email} left the tenant"
        )
    membership.delete()


# --- Invitations ----------------------------------------------------------------------------------------


def invitation_accept_url(token: str) -> str:
    return f"{settings.FALCON_BASE_URL}/invitations/accept?token={token}"


@transaction.atomic
def invitation_create(
    *, tenant: Tenant, email: str, role: str, actor: Actor, acting_role: str | None, invited_by: User | None
) -> tuple[Invitation, str]:
    """A pending invitation and its token (returned once, e-mailed once, stored only as a hash)."""
    email = email.strip().lower()
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.", field="role")
    if role == Role.OWNER and (
        acting_role is None or not role_allows(acting_role, Action.MEMBERS_MANAGE_OWNERS)
    ):
        raise Forbidden("Only an owner can invite another owner.", code="owner_required")
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise Conflict(f"{email} is already a member.", code="already_member", field="email")
    pending = Invitation.objects.filter(
        tenant=tenant, email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).first()
    if pending and pending.expires_at > timezone.now():
        raise Conflict(
            f"{email} already has a pending invitation; revoke it to send a new one.",
            code="invitation_pending",
            field="email",
        )
    if pending:  # expired: retire it so the one-pending-per-address constraint lets the new one in
        pending.revoked_at = timezone.now()
        pending.save(update_fields=["revoked_at"])
    limits.count_check(tenant, "members")
    token = invitation_token_generate()
    invitation = Invitation.objects.create(
        tenant=tenant,
        email=email,
        role=role,
        token_hash=secret_hash(token),
        invited_by=invited_by,
        expires_at=timezone.now() + timedelta(days=settings.FALCON_INVITATION_TTL_DAYS),
    )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="invitation.created",
        target_type="invitation",
        target_id=invitation.pk,
        after={"email": email, "role": role, "expires_at": invitation.expires_at.isoformat()},
    )
    url = invitation_accept_url(token)
    tenant_name = tenant.name
    transaction.on_commit(
        lambda: send_mail(
            subject=f"[Falcon] You are invited to {tenant_name}",
            message=(
                f"{actor.label} invited you to join {tenant_name} on Falcon as {role}.\n\n"
                f"Accept the invitation here (valid {settings.FALCON_INVITATION_TTL_DAYS} days):\n{url}\n"
            ),
            from_email=None,
            recipient_list=[email],
            fail_silently=False,
        )
    )
    return invitation, token


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: Actor) -> Invitation:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at:
        raise Conflict(
            "The invitation was already accepted; remove the member instead.", code="already_accepted"
        )
    if invitation.revoked_at:
        return invitation
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(
        tenant=invitation.tenant_id,
        actor=actor,
        action="invitation.revoked",
        target_type="invitation",
        target_id=invitation.pk,
        before={"status": "pending"},
        after={"status": "revoked"},
    )
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: User, actor: Actor) -> Membership:
    """Joins the invited tenant. The token proves the invitation; the signed-in address must match it."""
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("tenant")
        .filter(token_hash=secret_hash(token))
        .first()
    )
    if invitation is None:
        raise NotFound("No invitation matches this token.", code="invitation_not_found", field="token")
    if invitation.revoked_at:
        raise Gone("This invitation was revoked.", code="invitation_revoked", field="token")
    if invitation.accepted_at:
        raise Gone("This invitation was already accepted.", code="invitation_used", field="token")
    if invitation.expires_at <= timezone.now():
        raise Gone(
            "This invitation has expired; ask for a new one.", code="invitation_expired", field="token"
        )
    if invitation.email.lower() != user.email.lower():
        raise Forbidden(
            "This invitation was sent to another e-mail address; sign in with that address to accept it.",
            code="invitation_email_mismatch",
        )
    if Membership.objects.filter(tenant=invitation.tenant, user=user).exists():
        raise Conflict("You are already a member of this tenant.", code="already_member")
    # The invitation already holds its seat; this only refuses when a downgrade left too few.
    limits.count_check(invitation.tenant, "members", adding=0)
    membership = Membership.objects.create(tenant=invitation.tenant, user=user, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        tenant=invitation.tenant,
        actor=actor,
        action="invitation.accepted",
        target_type="invitation",
        target_id=invitation.pk,
        before={"status": "pending"},
        after={"status": "accepted"},
    )
    audit_record(
        tenant=invitation.tenant,
        actor=actor,
        action="member.added",
        target_type="membership",
        target_id=membership.pk,
        after={"user": user.email, "role": membership.role},
    )
    return membership


# --- API keys -------------------------------------------------------------------------------------------


@transaction.atomic
def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    scopes: Sequence[str],
    actor: Actor,
    acting_role: str | None,
    created_by: User | None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is returned here once and never again."""
    scopes = sorted(set(scopes))
    unknown = [scope for scope in scopes if scope not in Scope.values]
    if unknown:
        raise InvalidInput(f"Unknown scopes: {', '.join(unknown)}.", field="scopes")
    if not scopes:
        raise InvalidInput("Give the key at least one scope.", field="scopes")
    if not name.strip():
        raise InvalidInput("The name cannot be blank.", field="name")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.", field="expires_at")
    if acting_role is not None and not role_may_grant_scopes(acting_role, scopes):
        raise Forbidden("Your role cannot grant all of these scopes.", code="scope_not_grantable")
    token = api_key_generate()
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name.strip(),
        prefix=api_key_display_prefix(token),
        key_hash=secret_hash(token),
        scopes=scopes,
        created_by=created_by,
        expires_at=expires_at,
    )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="api_key.created",
        target_type="api_key",
        target_id=key.pk,
        after={
            "name": key.name,
            "prefix": key.prefix,
            "scopes": scopes,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return key, token


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: Actor, reason: str = "") -> ApiKey:
    """Revocation is final: a revoked key never authenticates again."""
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at:
        return api_key
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    audit_record(
        tenant=api_key.tenant_id,
        actor=actor,
        action="api_key.revoked",
        target_type="api_key",
        target_id=api_key.pk,
        before={"status": "active", "name": api_key.name},
        after={"status": "revoked", "name": api_key.name, **({"reason": reason} if reason else {})},
    )
    return api_key


def api_key_authenticate(token: str) -> ApiKey | None:
    """The active key matching ``token``, or None. Malformed keys are refused without a query."""
    if not api_key_is_well_formed(token):
        return None
    key = ApiKey.objects.select_related("tenant").filter(key_hash=secret_hash(token)).first()
    if key is None or not secrets.compare_digest(key.key_hash, secret_hash(token)):
        return None
    now = timezone.now()
    if key.revoked_at or (key.expires_at and key.expires_at <= now):
        return None
    api_key_touch(key, now=now)
    return key


def api_key_touch(key: ApiKey, *, now: datetime) -> None:
    """Records use at most once a minute per key: one conditional UPDATE, skipped when recent."""
    threshold = now - API_KEY_TOUCH_INTERVAL
    if key.last_used_at and key.last_used_at > threshold:
        return
    updated = (
        ApiKey.objects.filter(pk=key.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold))
        .update(last_used_at=now)
    )
    if updated:
        key.last_used_at = now


@transaction.atomic
def tenant_legal_hold(*, tenant: Tenant, actor: Actor, reason: str = "", lift: bool = False) -> Tenant:
    """An operator places (or lifts) a legal hold: while it holds, retention deletes nothing of the tenant.
    Recorded in the tenant's own audit log, which its owners read."""
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if lift:
        if tenant.legal_hold_at is None:
            return tenant
        before: dict[str, object] = {
            "legal_hold_at": tenant.legal_hold_at.isoformat(),
            "reason": tenant.legal_hold_reason,
        }
        tenant.legal_hold_at, tenant.legal_hold_reason = None, ""
        action = "tenant.legal_hold_lifted"
        after: dict[str, object] = {"legal_hold": False}
    else:
        reason = " ".join(reason.split())[:500]
        if not reason:
            raise InvalidInput("Say why the hold is placed (a case or matter reference).", field="reason")
        before = {"legal_hold": tenant.legal_hold_at is not None}
        tenant.legal_hold_at, tenant.legal_hold_reason = timezone.now(), reason
        action = "tenant.legal_hold_placed"
        after = {"legal_hold": True, "reason": reason}
    tenant.save(update_fields=["legal_hold_at", "legal_hold_reason"])
    audit_record(
        tenant=tenant, actor=actor, action=action, target_type="tenant", target_id=tenant.pk, before=before,
        after=after,
    )  # fmt: skip
    return tenant
