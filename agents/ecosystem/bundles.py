"""Agents as files: export an agent to a bundle, import a bundle into another tenant or installation.

A bundle (JSON, ``format: "falcon.agent-bundle"``, ``format_version: 1``) carries the agent (name,
description), its versions (all, or the published one) with their tests, the library prompts its
versions name with the prompt versions they use (the one a label points to, or a pinned number),
its triggers' definitions, and what it needs from the tenant by name only: connectors (name and
kind), variables (names, never values) and the agents it calls as tools. Secrets never leave:
connectors are references, triggers get new signing secrets, variable values stay home.

Import (one transaction: nothing half-made) creates the agent and its versions in the caller's
tenant and reports what must be filled in (``todo``):

- connectors are matched by name (``connectors: {"bundle name": "your name"}`` renames them in every
  version) and kind; a missing one is reported, and the versions naming it are kept, not published;
- library prompts are matched by name: an existing prompt of the tenant is used as it is; a missing
  one is created with the bundle's versions as drafts submitted for review (four eyes: an import never
  approves a prompt or moves a label), and the labels to point once approved are reported;
- variables and agent tools missing in the tenant are reported;
- triggers are created disabled (a schedule would fire, and a webhook sender needs the new secret,
  returned once here); enabling them is reported when the bundle had them enabled;
- the bundle's published version is published when nothing is left to fill in; otherwise publishing
  it is the last item (publishing checks every reference again).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.prompts import services as prompt_services
from agents.prompts.models import Prompt, PromptLabel, PromptVersion
from agents.triggers import services as trigger_services
from agents.triggers.models import Trigger
from agents.workflows import services as agent_services
from agents.workflows.models import Agent, AgentVersion, Variable
from connectors.models import Connector
from falcon.errors import Conflict, Forbidden, InvalidInput
from tenants.access import TenantContext
from tenants.audit import audit_record
from tenants.permissions import Action

FORMAT = "falcon.agent-bundle"
FORMAT_VERSION = 1
_ENV_NAME = re.compile(r"\benv\.([A-Za-z_][A-Za-z0-9_]*)|\benv\[\s*['\"]([^'\"]+)['\"]\s*\]")


# --- what a definition names --------------------------------------------------------------------------


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _dicts(child)
    elif isinstance(value, list):
        for child in value:
            yield from _dicts(child)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for child in value.values():
            yield from _strings(child)
    elif isinstance(value, list):
        for child in value:
            yield from _strings(child)


def named_connectors(definition: Any) -> set[str]:
    return {d["connector"] for d in _dicts(definition) if isinstance(d.get("connector"), str)}


def named_agents(definition: Any) -> set[str]:
    return {
        d["agent"] for d in _dicts(definition) if d.get("type") == "agent" and isinstance(d.get("agent"), str)
    }


def named_prompts(definition: Any) -> list[dict[str, Any]]:
    """Each library prompt reference: ``{"name", "label", "version"}``."""
    refs = []
    for d in _dicts(definition):
        ref = d.get("prompt")
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            refs.append({"name": ref["name"], "label": ref.get("label"), "version": ref.get("version")})
    return refs


def named_variables(definition: Any) -> set[str]:
    names: set[str] = set()
    for text in _strings(definition):
        for dotted, indexed in _ENV_NAME.findall(text):
            names.add(dotted or indexed)
    return names


def _rename_connectors(definition: Any, renames: dict[str, str]) -> Any:
    if isinstance(definition, dict):
        out = {k: _rename_connectors(v, renames) for k, v in definition.items()}
        if isinstance(out.get("connector"), str) and out["connector"] in renames:
            out["connector"] = renames[out["connector"]]
        return out
    if isinstance(definition, list):
        return [_rename_connectors(v, renames) for v in definition]
    return definition


# --- export -------------------------------------------------------------------------------------------


def bundle_export(*, ctx: TenantContext, agent: Agent, versions: str = "all") -> dict[str, Any]:
    """The agent as a bundle; ``versions``: ``all`` or ``published``."""
    if versions not in ("all", "published"):
        raise InvalidInput("versions must be 'all' or 'published'.", field="versions")
    chosen = list(agent.versions.order_by("number"))
    if versions == "published":
        chosen = [v for v in chosen if v.pk == agent.published_version_id]
        if not chosen:
            raise Conflict("The agent has no published version.", code="agent_not_published")
    definitions = [v.definition for v in chosen]
    connector_names = set().union(*(named_connectors(d) for d in definitions))
    kinds = dict(
        Connector.objects.filter(tenant_id=agent.tenant_id, name__in=connector_names).values_list(
            "name", "kind"
        )
    )
    variable_names = set().union(*(named_variables(d) for d in definitions))
    described = dict(
        Variable.objects.filter(tenant_id=agent.tenant_id, name__in=variable_names).values_list(
            "name", "description"
        )
    )
    bundle = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": timezone.now().isoformat(),
        "agent": {"name": agent.name, "description": agent.description},
        "versions": [
            {
                "number": v.number,
                "definition": v.definition,
                "note": v.note,
                "tests": v.tests,
                "published": v.pk == agent.published_version_id,
            }
            for v in chosen
        ],
        "prompts": _export_prompts(agent.tenant_id, [r for d in definitions for r in named_prompts(d)]),
        "triggers": [
            {
                "name": t.name,
                "kind": t.kind,
                "config": t.config,
                "input_mapping": t.input_mapping,
                "enabled": t.enabled,
            }
            for t in agent.triggers.order_by("created_at")
        ],
        "connectors": [{"name": n, "kind": kinds.get(n)} for n in sorted(connector_names)],
        "variables": [{"name": n, "description": described.get(n, "")} for n in sorted(variable_names)],
        "agents": [{"name": n} for n in sorted(set().union(*(named_agents(d) for d in definitions)))],
    }
    audit_record(
        tenant=agent.tenant_id,
        actor=ctx.actor,
        action="agent.exported",
        target_type="agent",
        target_id=agent.pk,
        after={"versions": [v.number for v in chosen]},
    )
    return bundle


def _export_prompts(tenant_id: Any, refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    for ref in refs:
        prompt = Prompt.objects.filter(tenant_id=tenant_id, name=ref["name"]).first()
        if prompt is None:
            continue
        entry = by_name.setdefault(
            prompt.name, {"name": prompt.name, "description": prompt.description, "versions": {}}
        )
        version: PromptVersion | None
        label = None
        if ref["version"]:
            version = prompt.versions.filter(number=ref["version"]).first()
        else:
            label = ref["label"] or "production"
            pointer = PromptLabel.objects.filter(prompt=prompt, name=label).select_related("version").first()
            version = pointer.version if pointer else None
        if version is None:
            continue
        item = entry["versions"].setdefault(
            version.number,
            {
                "number": version.number,
                "template": version.template,
                "system": version.system,
                "input_variables": version.input_variables,
                "model_parameters": version.model_parameters,
                "commit_message": version.commit_message,
                "labels": [],
            },
        )
        if label and label not in item["labels"]:
            item["labels"].append(label)
    return [
        {**entry, "versions": [entry["versions"][n] for n in sorted(entry["versions"])]}
        for entry in by_name.values()
    ]


# --- the bundle's shape -------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _BundleAgent(_Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=10_000)


class _BundleVersion(_Strict):
    number: int = Field(ge=1)
    definition: dict[str, Any]
    note: str = Field("", max_length=500)
    tests: list[Any] = Field(default_factory=list, max_length=100)
    published: bool = False


class _BundlePromptVersion(_Strict):
    number: int = Field(ge=1)
    template: str
    system: str = ""
    input_variables: list[str] = Field(default_factory=list)
    model_parameters: dict[str, Any] = Field(default_factory=dict)
    commit_message: str = Field("", max_length=500)
    labels: list[str] = Field(default_factory=list, max_length=20)


class _BundlePrompt(_Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    versions: list[_BundlePromptVersion] = Field(min_length=1, max_length=50)


class _BundleTrigger(_Strict):
    name: str = Field(min_length=1, max_length=100)
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    input_mapping: Any = None
    enabled: bool = False


class _Named(_Strict):
    name: str = Field(min_length=1, max_length=100)
    kind: str | None = None
    description: str = ""


class Bundle(_Strict):
    format: str
    format_version: int
    agent: _BundleAgent
    versions: list[_BundleVersion] = Field(min_length=1, max_length=200)
    prompts: list[_BundlePrompt] = Field(default_factory=list, max_length=50)
    triggers: list[_BundleTrigger] = Field(default_factory=list, max_length=50)
    connectors: list[_Named] = Field(default_factory=list, max_length=100)
    variables: list[_Named] = Field(default_factory=list, max_length=200)
    agents: list[_Named] = Field(default_factory=list, max_length=100)


def bundle_parse(raw: Any) -> Bundle:
    if not isinstance(raw, dict):
        raise InvalidInput(
            "The bundle must be a JSON object (what GET /agents/{id}/export gives).", field="bundle"
        )
    if raw.get("format") != FORMAT:
        raise InvalidInput(f"Not an agent bundle: format must be {FORMAT!r}.", field="bundle.format")
    if raw.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"This installation reads bundle format version {FORMAT_VERSION}, "
            f"not {raw.get('format_version')!r}.",
            field="bundle.format_version",
        )
    try:
        return Bundle.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: {first['msg']}", field=f"bundle.{where}") from exc


# --- import -------------------------------------------------------------------------------------------


def _todo(kind: str, name: str, message: str) -> dict[str, str]:
    return {"kind": kind, "name": name, "message": message}


@transaction.atomic
def bundle_import(
    *,
    ctx: TenantContext,
    raw: Any,
    name: str | None = None,
    connectors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Creates the bundle's agent in ``ctx``'s tenant; returns what was made and what to fill in."""
    bundle = bundle_parse(raw)
    tenant = ctx.tenant
    renames = {k: v for k, v in (connectors or {}).items() if isinstance(k, str) and isinstance(v, str)}
    todo: list[dict[str, str]] = []

    # Connectors: by (renamed) name and kind.
    declared_kinds = {c.name: c.kind for c in bundle.connectors}
    named = set().union(*(named_connectors(v.definition) for v in bundle.versions))
    targets = {n: renames.get(n, n) for n in named}
    existing = dict(
        Connector.objects.filter(tenant=tenant, name__in=set(targets.values())).values_list("name", "kind")
    )
    missing_connectors: set[str] = set()
    connector_report = []
    for source, target in sorted(targets.items()):
        kind = declared_kinds.get(source)
        have = existing.get(target)
        if have is None:
            missing_connectors.add(target)
            todo.append(
                _todo(
                    "connector",
                    target,
                    f"Create a connector named {target!r}" + (f" of kind {kind!r}." if kind else "."),
                )
            )
            status = "missing"
        elif kind and have != kind:
            raise Conflict(
                f"Your connector {target!r} is a {have} connector; the bundle needs a {kind} one. "
                f"Map it to another name with connectors: {{{source!r}: '<name>'}}.",
                code="connector_kind_mismatch",
                field="connectors",
            )
        else:
            status = "matched"
        connector_report.append({"name": source, "mapped_to": target, "kind": kind, "status": status})

    # Agents called as tools, and variables.
    tool_agents = set().union(*(named_agents(v.definition) for v in bundle.versions))
    published = {
        n.lower()
        for n in Agent.objects.filter(
            tenant=tenant, archived_at__isnull=True, published_version__isnull=False
        ).values_list("name", flat=True)
    }
    missing_agents = {a for a in tool_agents if a.lower() not in published}
    for agent_name in sorted(missing_agents):
        todo.append(
            _todo("agent", agent_name, f"Create and publish the agent {agent_name!r} (called as a tool).")
        )
    variables = set().union(*(named_variables(v.definition) for v in bundle.versions))
    have_variables = set(
        Variable.objects.filter(tenant=tenant, name__in=variables).values_list("name", flat=True)
    )
    for variable in sorted(variables - have_variables):
        todo.append(_todo("variable", variable, f"Set the variable {variable!r} (read as env.{variable})."))

    # Library prompts: existing ones are used as they are; missing ones arrive for review.
    prompt_report = _import_prompts(ctx, bundle, todo)

    # The agent and its versions, numbered anew in the bundle's order.
    agent = agent_services.agent_create(
        tenant=tenant,
        name=(name or bundle.agent.name).strip(),
        description=bundle.agent.description,
        actor=ctx.actor,
        created_by=ctx.user,
        member=ctx.membership,
    )
    pending = agent_services.Pending(
        connectors=frozenset(missing_connectors), agents=frozenset(a.lower() for a in missing_agents)
    )
    numbers: dict[int, int] = {}
    to_publish: AgentVersion | None = None
    for item in sorted(bundle.versions, key=lambda v: v.number):
        version = agent_services.version_create(
            agent=agent,
            definition=_rename_connectors(item.definition, renames),
            note=item.note or f"Imported (v{item.number} in the bundle)",
            actor=ctx.actor,
            created_by=ctx.user,
            member=ctx.membership,
            pending=pending,
        )
        if item.tests:
            AgentVersion.objects.filter(pk=version.pk).update(tests=item.tests)
        numbers[item.number] = version.number
        if item.published:
            to_publish = version

    # Triggers, disabled.
    trigger_report = []
    for spec in bundle.triggers:
        trigger, secret = trigger_services.trigger_create(
            agent=agent,
            name=spec.name,
            kind=spec.kind,
            config=spec.config,
            input_mapping=spec.input_mapping,
            enabled=False,
            actor=ctx.actor,
            created_by=ctx.user,
        )
        entry: dict[str, Any] = {
            "id": str(trigger.pk),
            "name": trigger.name,
            "kind": trigger.kind,
            "enabled": False,
        }
        if secret:
            entry["secret"] = secret  # shown once, as when a trigger is created
        if trigger.kind == Trigger.Kind.WEBHOOK:
            entry["url"] = trigger_services.trigger_url(trigger)
        trigger_report.append(entry)
        if spec.enabled:
            todo.append(
                _todo(
                    "trigger", trigger.name, f"Enable the trigger {trigger.name!r} once the agent is ready."
                )
            )

    published_number = None
    if to_publish is not None:
        if todo:
            todo.append(
                _todo(
                    "publish",
                    str(to_publish.number),
                    f"Publish version {to_publish.number} when the items above are done.",
                )
            )
        else:
            ctx.require(Action.AGENTS_PUBLISH)
            agent_services.version_publish(version=to_publish, actor=ctx.actor)
            published_number = to_publish.number

    audit_record(
        tenant=tenant,
        actor=ctx.actor,
        action="agent.imported",
        target_type="agent",
        target_id=agent.pk,
        after={
            "name": agent.name,
            "versions": sorted(numbers.values()),
            "published_version": published_number,
            "todo": [f"{t['kind']}:{t['name']}" for t in todo],
        },
    )
    return {
        "agent": {"id": str(agent.pk), "name": agent.name},
        "versions": [{"bundle": b, "number": n} for b, n in sorted(numbers.items())],
        "published_version": published_number,
        "connectors": connector_report,
        "prompts": prompt_report,
        "triggers": trigger_report,
        "todo": todo,
    }


def _import_prompts(ctx: TenantContext, bundle: Bundle, todo: list[dict[str, str]]) -> list[dict[str, Any]]:
    report = []
    referenced = {ref["name"] for v in bundle.versions for ref in named_prompts(v.definition)}
    given = {p.name: p for p in bundle.prompts}
    for prompt_name in sorted(referenced):
        prompt = Prompt.objects.filter(tenant=ctx.tenant, name=prompt_name).first()
        if prompt is not None:
            report.append({"name": prompt_name, "status": "existing"})
            labels = {
                ref["label"] or "production"
                for v in bundle.versions
                for ref in named_prompts(v.definition)
                if ref["name"] == prompt_name and not ref["version"]
            }
            have = set(PromptLabel.objects.filter(prompt=prompt).values_list("name", flat=True))
            for label in sorted(labels - have):
                todo.append(
                    _todo(
                        "prompt_label",
                        prompt_name,
                        f"Point the label {label!r} of your prompt {prompt_name!r} at an approved version.",
                    )
                )
            continue
        spec = given.get(prompt_name)
        if spec is None:
            todo.append(_todo("prompt", prompt_name, f"Create the library prompt {prompt_name!r}."))
            report.append({"name": prompt_name, "status": "missing"})
            continue
        if not ctx.allows(Action.PROMPTS_EDIT):
            raise Forbidden(
                f"The bundle brings the prompt {prompt_name!r}; creating prompts needs prompts.edit."
            )
        prompt = prompt_services.prompt_create(
            tenant=ctx.tenant,
            name=prompt_name,
            description=spec.description,
            actor=ctx.actor,
            created_by=ctx.user,
        )
        created = []
        for item in sorted(spec.versions, key=lambda v: v.number):
            version = prompt_services.prompt_version_create(
                prompt=prompt,
                template=item.template,
                system=item.system,
                input_variables=item.input_variables,
                model_parameters=item.model_parameters,
                commit_message=item.commit_message or f"Imported (v{item.number} in the bundle)",
                actor=ctx.actor,
                author=ctx.user,
            )
            prompt_services.prompt_version_submit(version=version, actor=ctx.actor)
            created.append(version.number)
            for label in item.labels:
                todo.append(
                    _todo(
                        "prompt_review",
                        prompt_name,
                        f"Review prompt {prompt_name!r} v{version.number} (submitted for review), then point "
                        f"its label {label!r} at it.",
                    )
                )
        report.append({"name": prompt_name, "status": "created", "versions": created, "review": "in_review"})
    return report
