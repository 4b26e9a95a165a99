"""Agents and their versions: create, edit, archive, version, publish and roll back (all audited)."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from agents.engine.spec import WorkflowSpec
from agents.engine.validate import workflow_validate
from agents.errors import WorkflowInvalid
from agents.llm.gateway import model_check
from agents.prompts.services import prompt_find
from agents.workflows.models import Agent, AgentVersion, AgentWatcher
from billing.plans import Metric
from billing.quotas import quota_count_check, quota_over_limit_check
from connectors.models import Connector
from connectors.services import connector_exists
from falcon.errors import Conflict, InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import Membership, Tenant, User
from tenants.object_access import member_allows
from tenants.permissions import Action


@dataclass(frozen=True)
class Pending:
    """Names a workflow may mention before they exist in the tenant (an imported agent's connectors
    and agent tools, reported as to be filled in): such a version is stored, not published, and
    publishing it checks them again."""

    connectors: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()


def definition_validate(
    *, tenant: Tenant, definition: Any, member: Membership | None = None, pending: Pending | None = None
) -> WorkflowSpec:
    """The parsed spec, or ``WorkflowInvalid`` listing every problem with its path.

    With the ``member`` who saves it, per-object rights apply to what the workflow names: an agent tool
    needs the run right on that agent, a library prompt the view right (one hidden from the member is
    as unknown as a missing one), so a workflow cannot reach what its author may not.
    """
    pending = pending or Pending()

    def agent_check(name: str) -> str | None:
        if name.lower() in pending.agents:
            return None
        agent = Agent.objects.filter(tenant=tenant, name__iexact=name, archived_at__isnull=True).first()
        if agent is None or (member is not None and not member_allows(member, Action.AGENTS_READ, agent)):
            return f"no agent named {name!r}"
        if member is not None and not member_allows(member, Action.AGENTS_RUN, agent):
            return f"you may not run the agent {name!r}, so a workflow of yours may not either"
        if agent.published_version_id is None:
            return f"agent {name!r} has no published version"
        return None

    def connector_check(name: str) -> str | None:
        if name in pending.connectors:
            return None
        return None if connector_exists(tenant_id=tenant.pk, name=name) else f"no connector named {name!r}"

    def prompt_check(name: str) -> str | None:
        prompt = prompt_find(tenant_id=tenant.pk, name=name)
        if prompt is None or (member is not None and not member_allows(member, Action.PROMPTS_READ, prompt)):
            return f"no prompt named {name!r}"
        return None

    spec, problems = workflow_validate(
        definition,
        model_check=model_check,
        agent_check=agent_check,
        connector_check=connector_check,
        prompt_check=prompt_check,
    )
    if problems:
        raise WorkflowInvalid(problems)
    assert spec is not None
    return spec


@transaction.atomic
def agent_create(
    *,
    tenant: Tenant,
    name: str,
    description: str,
    actor: Actor,
    created_by: User | None,
    definition: Any = None,
    member: Membership | None = None,
) -> Agent:
    """A new agent; with a definition, its first version too (validated first: nothing half-made)."""
    name = name.strip()
    if not name:
        raise InvalidInput("The name cannot be blank.", field="name")
    if definition is not None:
        definition_validate(tenant=tenant, definition=definition, member=member)
    if Agent.objects.filter(tenant=tenant, name__iexact=name).exists():
        raise Conflict(f"An agent named {name!r} exists.", code="name_taken", field="name")
    quota_count_check(tenant, Metric.AGENTS)
    try:
        with transaction.atomic():
            agent = Agent.objects.create(
                tenant=tenant, name=name, description=description, created_by=created_by
            )
    except IntegrityError as exc:
        raise Conflict(f"An agent named {name!r} exists.", code="name_taken", field="name") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="agent.created",
        target_type="agent",
        target_id=agent.pk,
        after={"name": name, "description": description},
    )
    if definition is not None:
        version_create(agent=agent, definition=definition, note="", actor=actor, created_by=created_by)
    return agent


@transaction.atomic
def agent_update(
    *, agent: Agent, actor: Actor, name: str | None = None, description: str | None = None
) -> Agent:
    quota_over_limit_check(agent.tenant_id, Metric.AGENTS)
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if name is not None and name.strip() != agent.name:
        name = name.strip()
        if not name:
            raise InvalidInput("The name cannot be blank.", field="name")
        if Agent.objects.filter(tenant_id=agent.tenant_id, name__iexact=name).exclude(pk=agent.pk).exists():
            raise Conflict(f"An agent named {name!r} exists.", code="name_taken", field="name")
        before["name"], after["name"] = agent.name, name
        agent.name = name
    if description is not None and description != agent.description:
        before["description"], after["description"] = agent.description, description
        agent.description = description
    if after:
        agent.updated_at = timezone.now()
        agent.save(update_fields=[*after, "updated_at"])
        audit_record(
            tenant=agent.tenant_id,
            actor=actor,
            action="agent.updated",
            target_type="agent",
            target_id=agent.pk,
            before=before,
            after=after,
        )
    return agent


@transaction.atomic
def agent_archive(*, agent: Agent, actor: Actor, archived: bool = True) -> Agent:
    """Archived agents keep their versions and runs but cannot run; unarchiving restores them."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if bool(agent.archived_at) == archived:
        return agent
    if not archived:
        quota_count_check(agent.tenant_id, Metric.AGENTS)
    agent.archived_at = timezone.now() if archived else None
    agent.updated_at = timezone.now()
    agent.save(update_fields=["archived_at", "updated_at"])
    audit_record(
        tenant=agent.tenant_id,
        actor=actor,
        action="agent.archived" if archived else "agent.unarchived",
        target_type="agent",
        target_id=agent.pk,
        before={"archived": not archived},
        after={"archived": archived},
    )
    return agent


@transaction.atomic
def version_create(
    *,
    agent: Agent,
    definition: Any,
    note: str,
    actor: Actor,
    created_by: User | None,
    member: Membership | None = None,
    pending: Pending | None = None,
) -> AgentVersion:
    """A new immutable version numbered after the last one; invalid definitions are never stored."""
    definition_validate(tenant=agent.tenant, definition=definition, member=member, pending=pending)
    quota_over_limit_check(agent.tenant_id, Metric.AGENTS)
    locked = Agent.objects.select_for_update().get(pk=agent.pk)  # serialises version numbering
    if locked.archived_at:
        raise Conflict("The agent is archived; unarchive it first.", code="agent_archived")
    number = (AgentVersion.objects.filter(agent=locked).aggregate(n=Max("number"))["n"] or 0) + 1
    version = AgentVersion.objects.create(
        tenant_id=locked.tenant_id,
        agent=locked,
        number=number,
        definition=definition,
        note=note,
        created_by=created_by,
    )
    audit_record(
        tenant=locked.tenant_id,
        actor=actor,
        action="agent.version_created",
        target_type="agent",
        target_id=locked.pk,
        after={"version": number, "note": note},
    )
    return version


@transaction.atomic
def version_publish(*, version: AgentVersion, actor: Actor) -> AgentVersion:
    """Makes ``version`` the one runs and triggers use; publishing an older one is a rollback.

    The version is checked again against what the tenant has now (its connectors, agents, prompts and
    models may have changed since it was saved; an imported version may name some still missing)."""
    quota_over_limit_check(version.tenant_id, Metric.AGENTS)
    definition_validate(tenant=version.agent.tenant, definition=version.definition)
    agent = (
        Agent.objects.select_for_update(of=("self",))
        .select_related("published_version")
        .get(pk=version.agent_id)
    )
    if agent.archived_at:
        raise Conflict("The agent is archived; unarchive it first.", code="agent_archived")
    previous = agent.published_version
    if previous is not None and previous.pk == version.pk:
        return version
    agent.published_version = version
    agent.updated_at = timezone.now()
    agent.save(update_fields=["published_version", "updated_at"])
    version.published_at = timezone.now()
    version.save(update_fields=["published_at"])
    rollback = previous is not None and version.number < previous.number
    audit_record(
        tenant=agent.tenant_id,
        actor=actor,
        action="agent.rolled_back" if rollback else "agent.published",
        target_type="agent",
        target_id=agent.pk,
        before={"published_version": previous.number if previous else None},
        after={"published_version": version.number},
    )
    return version


def definition_diff(old: Any, new: Any, *, fromfile: str, tofile: str) -> str:
    """Unified diff of two workflow definitions as pretty JSON."""

    def lines(definition: Any) -> list[str]:
        return json.dumps(definition, indent=2, sort_keys=True).splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(old), lines(new), fromfile=fromfile, tofile=tofile))


def version_diff(*, old: AgentVersion, new: AgentVersion) -> str:
    return definition_diff(old.definition, new.definition, fromfile=f"v{old.number}", tofile=f"v{new.number}")


# --- watchers ---------------------------------------------------------------------------------------------


@transaction.atomic
def watchers_set(*, agent: Agent, user_ids: list[Any], actor: Actor) -> list[str]:
    """Replaces the agent's watchers by these members (ids of memberships' users); each must be allowed
    to see the agent, since a failure message carries its runs' errors."""
    memberships = {
        m.user_id: m
        for m in Membership.objects.filter(tenant_id=agent.tenant_id, user_id__in=user_ids).select_related(
            "user"
        )
    }
    if missing := [str(u) for u in user_ids if u not in memberships]:
        raise InvalidInput(f"Not members of this tenant: {', '.join(missing)}.", field="members")
    if hidden := [
        m.user.email for m in memberships.values() if not member_allows(m, Action.AGENTS_READ, agent)
    ]:
        raise InvalidInput(
            f"These members may not see this agent: {', '.join(sorted(hidden))}.", field="members"
        )
    members = {user_id: m.user.email for user_id, m in memberships.items()}
    before = sorted(AgentWatcher.objects.filter(agent=agent).values_list("user__email", flat=True))
    AgentWatcher.objects.filter(agent=agent).exclude(user_id__in=user_ids).delete()
    AgentWatcher.objects.bulk_create(
        [AgentWatcher(tenant_id=agent.tenant_id, agent=agent, user_id=u) for u in user_ids],
        ignore_conflicts=True,
    )
    after = sorted(members.values())
    audit_record(
        tenant=agent.tenant_id,
        actor=actor,
        action="agent.watchers_changed",
        target_type="agent",
        target_id=agent.pk,
        before={"watchers": before},
        after={"watchers": after},
    )
    return after


def watcher_emails(agent: Agent) -> list[str]:
    """The e-mail addresses of the people watching an agent who may still see it (rights change)."""
    watchers = AgentWatcher.objects.filter(agent=agent).values_list("user_id", flat=True)
    memberships = Membership.objects.filter(tenant_id=agent.tenant_id, user_id__in=list(watchers))
    return sorted(
        m.user.email
        for m in memberships.select_related("user")
        if member_allows(m, Action.AGENTS_READ, agent)
    )


def agents_using_connector(connector: Connector) -> list[str]:
    """Agents whose published version names the connector (connectors asks before deleting one)."""
    users = []
    agents = Agent.objects.filter(tenant_id=connector.tenant_id, published_version__isnull=False)
    for agent in agents.select_related("published_version"):
        if _mentions(agent.published_version.definition, connector.name):  # type: ignore[union-attr]
            users.append(agent.name)
    return sorted(users)


def _mentions(value: Any, name: str) -> bool:
    if isinstance(value, dict):
        return value.get("connector") == name or any(_mentions(v, name) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, name) for v in value)
    return False
