"""Agents and their versions: create, edit, archive, version, publish and roll back (all audited)."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from agents.engine.spec import WorkflowSpec
from agents.engine.validate import Problem, workflow_validate
from agents.models import Agent, AgentVersion
from billing.plans import Metric
from billing.quotas import quota_count_check, quota_over_limit_check
from falcon.errors import Conflict, InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import Tenant, User


class WorkflowInvalid(InvalidInput):
    """Every problem of a definition, keyed by JSON path under ``definition``."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        super().__init__(
            f"The workflow has {len(problems)} problem(s); first: {first.path}: {first.message}",
            code="invalid_workflow",
        )
        self.problems = problems

    @property
    def fields(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for problem in self.problems:
            result.setdefault(f"definition.{problem.path}", []).append(problem.message)
        return result


def definition_validate(*, tenant: Tenant, definition: Any) -> WorkflowSpec:
    """The parsed spec, or ``WorkflowInvalid`` listing every problem with its path."""
    from agents.llm import model_check

    def agent_check(name: str) -> str | None:
        agent = Agent.objects.filter(tenant=tenant, name__iexact=name, archived_at__isnull=True).first()
        if agent is None:
            return f"no agent named {name!r}"
        if agent.published_version_id is None:
            return f"agent {name!r} has no published version"
        return None

    def connector_check(name: str) -> str | None:
        from connectors.models import Connector

        return (
            None
            if Connector.objects.filter(tenant=tenant, name=name).exists()
            else f"no connector named {name!r}"
        )

    def prompt_check(name: str) -> str | None:
        from agents.models import Prompt

        return (
            None if Prompt.objects.filter(tenant=tenant, name=name).exists() else f"no prompt named {name!r}"
        )

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
) -> Agent:
    """A new agent; with a definition, its first version too (validated first: nothing half-made)."""
    name = name.strip()
    if not name:
        raise InvalidInput("The name cannot be blank.", field="name")
    if definition is not None:
        definition_validate(tenant=tenant, definition=definition)
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
    *, agent: Agent, definition: Any, note: str, actor: Actor, created_by: User | None
) -> AgentVersion:
    """A new immutable version numbered after the last one; invalid definitions are never stored."""
    definition_validate(tenant=agent.tenant, definition=definition)
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
    """Makes ``version`` the one runs and triggers use; publishing an older one is a rollback."""
    quota_over_limit_check(version.tenant_id, Metric.AGENTS)
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


def version_diff(*, old: AgentVersion, new: AgentVersion) -> str:
    """Unified diff of the two definitions as pretty JSON."""

    def lines(version: AgentVersion) -> list[str]:
        return json.dumps(version.definition, indent=2, sort_keys=True).splitlines(keepends=True)

    return "".join(
        difflib.unified_diff(lines(old), lines(new), fromfile=f"v{old.number}", tofile=f"v{new.number}")
    )
