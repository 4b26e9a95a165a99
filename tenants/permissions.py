"""The one map of who may do what: roles for people, scopes for API keys.

A request is allowed an action when the member's role grants it (session) or when one of the key's
scopes grants it (API key). Object-level rights (django-guardian) refine this inside a tenant; they are
never the tenant boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    BUILDER = "builder", "Builder"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"
    AUDITOR = "auditor", "Auditor"


class Scope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    RUN = "run", "Run"
    ADMIN = "admin", "Admin"
    AUDIT = "audit", "Audit"


class Action(StrEnum):
    TENANT_READ = "tenant.read"
    TENANT_MANAGE = "tenant.manage"
    TENANT_SECURITY = "tenant.security"
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"
    MEMBERS_MANAGE_OWNERS = "members.manage_owners"
    API_KEYS_MANAGE = "api_keys.manage"
    BILLING_READ = "billing.read"
    BILLING_MANAGE = "billing.manage"
    SPEND_CAPS_MANAGE = "billing.spend_caps"
    AGENTS_READ = "agents.read"
    AGENTS_BUILD = "agents.build"
    AGENTS_PUBLISH = "agents.publish"
    AGENTS_RUN = "agents.run"
    RUNS_READ = "runs.read"
    CONNECTORS_MANAGE = "connectors.manage"
    PROMPTS_READ = "prompts.read"
    PROMPTS_EDIT = "prompts.edit"
    PROMPTS_PUBLISH = "prompts.publish"
    AUDIT_READ = "audit.read"


_READ = {
    Action.TENANT_READ,
    Action.MEMBERS_READ,
    Action.AGENTS_READ,
    Action.RUNS_READ,
    Action.BILLING_READ,
    Action.PROMPTS_READ,
}
_BUILD = {Action.AGENTS_BUILD, Action.AGENTS_PUBLISH, Action.CONNECTORS_MANAGE, Action.PROMPTS_EDIT}
_MANAGE = {Action.TENANT_MANAGE, Action.MEMBERS_MANAGE, Action.API_KEYS_MANAGE, Action.SPEND_CAPS_MANAGE}

ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.ADMIN: frozenset(
        _READ | _BUILD | _MANAGE | {Action.AGENTS_RUN, Action.AUDIT_READ, Action.PROMPTS_PUBLISH}
    ),
    Role.BUILDER: frozenset(_READ | _BUILD | {Action.AGENTS_RUN}),
    Role.OPERATOR: frozenset(_READ | {Action.AGENTS_RUN}),
    Role.VIEWER: frozenset(_READ),
    Role.AUDITOR: frozenset(_READ | {Action.AUDIT_READ}),
}

SCOPE_ACTIONS: dict[str, frozenset[Action]] = {
    # Each scope can read what it acts on, so a single-scope key is usable on its own.
    Scope.READ: frozenset(_READ),
    Scope.WRITE: frozenset(_BUILD | {Action.TENANT_READ, Action.AGENTS_READ, Action.PROMPTS_READ}),
    Scope.RUN: frozenset({Action.AGENTS_RUN, Action.TENANT_READ, Action.AGENTS_READ, Action.RUNS_READ}),
    # billing.manage: only on keys an owner created (checked by TenantContext, see OWNER_KEY_ONLY).
    Scope.ADMIN: frozenset(
        _MANAGE
        | {
            Action.TENANT_READ,
            Action.MEMBERS_READ,
            Action.BILLING_READ,
            Action.BILLING_MANAGE,
            Action.PROMPTS_READ,
            Action.PROMPTS_PUBLISH,
        }
    ),
    Scope.AUDIT: frozenset({Action.AUDIT_READ, Action.TENANT_READ}),
}

# Actions only a person can take: a leaked key must not be able to take over or lock out a tenant.
PERSON_ONLY = frozenset({Action.MEMBERS_MANAGE_OWNERS, Action.TENANT_SECURITY})
# Actions a key may take only while the person who created it is an owner of the tenant.
OWNER_KEY_ONLY = frozenset({Action.BILLING_MANAGE})


def role_allows(role: str, action: Action) -> bool:
    return action in ROLE_ACTIONS.get(role, frozenset())


def scopes_allow(scopes: Iterable[str], action: Action) -> bool:
    if action in PERSON_ONLY:
        return False
    return any(action in SCOPE_ACTIONS.get(scope, frozenset()) for scope in scopes)


def role_may_grant_scopes(role: str, scopes: Iterable[str]) -> bool:
    """A member may mint a key only with scopes whose every action their own role holds."""
    granted = ROLE_ACTIONS.get(role, frozenset())
    # Owner-key-only actions never pass through a non-owner's key, so they do not block minting.
    return all(SCOPE_ACTIONS[scope] - OWNER_KEY_ONLY <= granted for scope in scopes)


def role_matrix() -> list[tuple[str, list[str]]]:
    """(action, roles that hold it) rows, for the README and the API docs."""
    return [
        (action.value, [role.value for role in Role if action in ROLE_ACTIONS[role]]) for action in Action
    ]


def matrix_markdown() -> str:
    """The role and scope matrices as the README shows them (a test keeps the README in step)."""
    roles = [role.value for role in Role]
    scopes = [scope.value for scope in Scope]
    lines = ["| action | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles)]
    lines += [
        f"| `{action.value}` | " + " | ".join("✓" if action in ROLE_ACTIONS[r] else "" for r in roles) + " |"
        for action in Action
    ]
    lines += [
        "",
        "| action | " + " | ".join(f"`{s}` key" for s in scopes) + " |",
        "|---|" + "---|" * len(scopes),
    ]
    lines += [
        f"| `{action.value}` | "
        + " | ".join(
            ("✓ (an owner's key)" if action in OWNER_KEY_ONLY else "✓") if scopes_allow([s], action) else ""
            for s in scopes
        )
        + " |"
        for action in Action
    ]
    return "\n".join(lines)
