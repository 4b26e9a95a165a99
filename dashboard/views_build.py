"""Building agents in the browser: the template gallery, the builder (form and JSON tabs, graph,
problems at their fields), versions (diff, publish, roll back). Saving goes through the same
services as ``POST /api/v1/agents`` and ``POST /api/v1/agents/{id}/versions``."""

from __future__ import annotations

import copy
import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from agents.errors import WorkflowInvalid
from agents.llm.catalogue import models_for_tenant
from agents.prompts.models import Prompt
from agents.workflows import services as agent_services
from agents.workflows.gallery import TEMPLATES, template_get, template_instance
from agents.workflows.models import Agent, AgentVersion
from connectors.models import Connector
from dashboard import builder
from dashboard.context import NO_ID, frame, parse_uuid, tenant_page
from dashboard.graph import layout
from dashboard.selectors import visible_agents
from falcon import jsonlimits
from falcon.errors import FalconError, Forbidden, InvalidInput, NotFound
from tenants.access import TenantContext
from tenants.models import Membership
from tenants.object_access import object_allows, object_rights_set
from tenants.permissions import Action

BLANK: dict[str, Any] = {
    "inputs": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "steps": [],
}
CONNECTOR_KINDS = {
    "llm": ("openai", "anthropic", "gemini", "ollama"),
    "agent": ("openai", "anthropic", "gemini", "ollama"),
    "http": ("http",),
    "db_query": ("postgres", "mysql"),
    "send": ("smtp", "slack_webhook"),
    "mcp": ("mcp",),
}


def _agent_for(ctx: TenantContext, agent_id: Any) -> Agent:
    agent = visible_agents(ctx).select_related("published_version").filter(pk=agent_id).first()
    if agent is None:
        raise NotFound("No such agent.")
    return agent


@tenant_page
def gallery_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.AGENTS_BUILD)
    cards = [template_instance(template, ctx.tenant.pk) for template in TEMPLATES]
    return render(request, "dashboard/gallery.html", frame(ctx, cards=cards))


def _pickers(ctx: TenantContext) -> dict[str, Any]:
    connectors = list(
        Connector.objects.filter(tenant=ctx.tenant).order_by("name").values_list("name", "kind")
    )
    return {
        "models": models_for_tenant(ctx.tenant.pk),
        "connectors_by_type": {
            step_type: [name for name, kind in connectors if kind in kinds]
            for step_type, kinds in CONNECTOR_KINDS.items()
        },
        "prompt_names": list(
            Prompt.objects.filter(tenant=ctx.tenant).order_by("name").values_list("name", flat=True)
        ),
        "step_types": builder.step_types(),
        "input_types": builder.INPUT_TYPES,
    }


def _render_builder(
    request: HttpRequest,
    ctx: TenantContext,
    *,
    agent: Agent | None,
    definition: dict[str, Any],
    name: str,
    description: str,
    note: str,
    tab: str,
    errors: dict[str, list[str]],
    json_text: str | None = None,
    notices: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    raw_steps, raw_inputs = definition.get("steps"), definition.get("inputs")
    steps: list[dict[str, Any]] = raw_steps if isinstance(raw_steps, list) else []
    inputs: dict[str, Any] = raw_inputs if isinstance(raw_inputs, dict) else {"type": "object"}
    body = {
        "agent": agent,
        "name": name,
        "description": description,
        "note": note,
        "tab": tab,
        "steps": builder.step_views(steps, errors),
        "input_rows": builder.input_rows(inputs, errors),
        "inputs_extra": builder.inputs_extra(inputs),
        "output": builder.bound(
            builder.FieldSpec("output", "value"), "output", definition.get("output"), errors
        ),
        "timeout": builder.bound(
            builder.FieldSpec("timeout_s", "number"), "timeout_s", definition.get("timeout_s"), errors
        ),
        "json_text": json_text
        if json_text is not None
        else json.dumps(definition, indent=2, ensure_ascii=False),
        "errors": errors,
        "general_errors": errors.get("", []),
        "problem_count": sum(len(v) for v in errors.values()),
        "graph": layout({"steps": steps}),
        "notices": notices or [],
        **_pickers(ctx),
    }
    if request.headers.get("HX-Request"):
        status = 200  # htmx swaps only successful answers; the problems are in the page itself
    return render(request, "dashboard/builder.html", frame(ctx, **body), status=status)


def _builder(request: HttpRequest, ctx: TenantContext, agent: Agent | None) -> HttpResponse:
    # Creating needs the role's right; an existing agent decides itself (rights may be granted on it).
    if agent is None:
        ctx.require(Action.AGENTS_BUILD)
    elif not object_allows(ctx, Action.AGENTS_BUILD, agent):
        raise Forbidden("You may not edit this agent.")
    if request.method != "POST":
        return _builder_start(request, ctx, agent)
    post = request.POST
    tab = post.get("tab", "form")
    action = post.get("action", "check")
    name = post.get("name", "").strip()[:200]
    description = post.get("description", "")[:2000]
    note = post.get("note", "")[:500]
    form = builder.Form(post)
    json_text = None
    if tab == "json":
        json_text = post.get("definition_json", "")
        try:
            parsed = jsonlimits.loads(json_text)
            if not isinstance(parsed, dict):
                raise ValueError("the definition must be a JSON object")
            definition: dict[str, Any] = parsed
        except ValueError as exc:
            errors = {"definition_json": [f"Not valid JSON: {exc}"[:300]]}
            return _render_builder(
                request, ctx, agent=agent, definition={}, name=name, description=description, note=note,
                tab="json", errors=errors, json_text=json_text, status=400,
            )  # fmt: skip
        definition.setdefault("steps", [])
        definition.setdefault("inputs", {"type": "object"})
    else:
        definition = builder.read_definition(form)
    errors = dict(form.errors)
    next_tab = {"json": "json", "form": "form"}.get(action, tab)
    if action.partition(":")[0] in builder.STRUCTURAL_VERBS:
        if errors:
            errors.setdefault("", []).append("Fix the marked fields before changing the steps.")
        else:
            models = models_for_tenant(ctx.tenant.pk)
            builder.apply_action(definition, action, form, models[0])
    if action in ("check", "save") and not errors:
        try:
            agent_services.definition_validate(
                tenant=ctx.tenant, definition=definition, member=ctx.membership
            )
        except WorkflowInvalid as exc:
            errors = builder.problems_by_field(exc.problems, definition)
    if action == "save" and not errors:
        try:
            return _save(request, ctx, agent, definition, name, description, note)
        except FalconError as exc:
            if isinstance(exc, WorkflowInvalid):
                errors = builder.problems_by_field(exc.problems, definition)
            elif exc.field in ("name", "description"):
                errors = {exc.field: [exc.message]}
            else:
                errors = {"": [exc.message]}
    if next_tab == "json" and tab == "json" and action != "json":
        json_text = json_text  # keep what the member typed, with its problems shown beside it
    elif next_tab == "json":
        json_text = None
    return _render_builder(
        request, ctx, agent=agent, definition=definition, name=name, description=description, note=note,
        tab=next_tab, errors=errors, json_text=json_text if next_tab == "json" else None,
        notices=["No problems found."] if action == "check" and not errors else None,
        status=400 if errors else 200,
    )  # fmt: skip


def _builder_start(request: HttpRequest, ctx: TenantContext, agent: Agent | None) -> HttpResponse:
    notices = []
    if agent is None:
        template = template_get(request.GET.get("template", ""))
        if template is not None:
            instance = template_instance(template, ctx.tenant.pk)
            definition, name, description = instance.definition, template.name, template.summary
            notices = [
                f"Step(s) using {need.name!r} are previews: add a {need.label} connector named "
                f"{need.name!r}, then use the template again to send for real."
                for need in instance.previewed
            ]
        else:
            definition, name, description = copy.deepcopy(BLANK), "", ""
        version = None
    else:
        number = request.GET.get("version", "")
        versions = agent.versions.order_by("-number")
        version = versions.filter(number=int(number)).first() if number.isdigit() else versions.first()
        definition = copy.deepcopy(version.definition) if version else copy.deepcopy(BLANK)
        name, description = agent.name, agent.description
    return _render_builder(
        request, ctx, agent=agent, definition=definition, name=name, description=description,
        note=f"From v{version.number}" if version else "", tab=request.GET.get("tab", "form"), errors={},
        notices=notices,
    )  # fmt: skip


def _save(
    request: HttpRequest,
    ctx: TenantContext,
    agent: Agent | None,
    definition: dict[str, Any],
    name: str,
    description: str,
    note: str,
) -> HttpResponse:
    if agent is None:
        agent = agent_services.agent_create(
            tenant=ctx.tenant, name=name, description=description, actor=ctx.actor, created_by=ctx.user,
            definition=definition, member=ctx.membership,
        )  # fmt: skip
        messages.success(request, f"Agent {agent.name!r} created with version 1. Publish it to run it.")
    else:
        agent_services.agent_update(agent=agent, actor=ctx.actor, name=name, description=description)
        version = agent_services.version_create(
            agent=agent, definition=definition, note=note, actor=ctx.actor, created_by=ctx.user,
            member=ctx.membership,
        )  # fmt: skip
        messages.success(request, f"Saved as version {version.number}.")
    target = reverse("dashboard-agent", kwargs={"agent_id": agent.pk})
    # The builder posts with htmx: a plain redirect would be followed inside the swap.
    return HttpResponseClientRedirect(target) if request.headers.get("HX-Request") else redirect(target)


@tenant_page
def new_agent_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    return _builder(request, ctx, None)


@tenant_page
def builder_page(request: HttpRequest, ctx: TenantContext, agent_id: Any) -> HttpResponse:
    return _builder(request, ctx, _agent_for(ctx, agent_id))


def _version(agent: Agent, number: Any) -> AgentVersion:
    version = agent.versions.filter(number=number).first()
    if version is None:
        raise NotFound("No such version.")
    return version


@require_POST
@tenant_page
def publish_version(request: HttpRequest, ctx: TenantContext, agent_id: Any, number: int) -> HttpResponse:
    agent = _agent_for(ctx, agent_id)
    if not object_allows(ctx, Action.AGENTS_PUBLISH, agent):
        raise Forbidden("You may not publish this agent.")
    previous = agent.published_version
    version = agent_services.version_publish(version=_version(agent, number), actor=ctx.actor)
    rolled_back = previous is not None and version.number < previous.number
    messages.success(request, f"{'Rolled back to' if rolled_back else 'Published'} version {version.number}.")
    return redirect("dashboard-agent", agent_id=agent.pk)


@tenant_page
def diff_page(request: HttpRequest, ctx: TenantContext, agent_id: Any) -> HttpResponse:
    ctx.require(Action.AGENTS_READ)
    agent = _agent_for(ctx, agent_id)
    numbers = []
    for param in ("from", "to"):
        raw = request.GET.get(param, "")
        if not raw.isdigit():
            raise InvalidInput(f"Pick two versions to compare ({param!r} is missing).", field=param)
        numbers.append(int(raw))
    old, new = _version(agent, numbers[0]), _version(agent, numbers[1])
    lines = agent_services.version_diff(old=old, new=new).splitlines()
    body = {"agent": agent, "old": old, "new": new, "lines": lines}
    return render(request, "dashboard/diff.html", frame(ctx, **body))


@require_POST
@tenant_page
def agent_rights(request: HttpRequest, ctx: TenantContext, agent_id: Any) -> HttpResponse:
    """Sets one member's rights on this agent (members.manage), as PUT .../permissions does."""
    ctx.require(Action.MEMBERS_MANAGE)
    agent = _agent_for(ctx, agent_id)
    membership = Membership.objects.filter(
        tenant=ctx.tenant, pk=parse_uuid(request.POST.get("member"))
    ).first()
    if membership is None:
        raise NotFound("No such member.", field="member")
    rights = None if request.POST.get("mode") == "role" else request.POST.getlist("rights")
    object_rights_set(obj=agent, membership=membership, rights=rights, actor=ctx.actor)
    messages.success(request, f"Rights of {membership.user.email} on {agent.name} saved.")
    return redirect("dashboard-agent", agent_id=agent.pk)


@require_POST
@tenant_page
def agent_watchers(request: HttpRequest, ctx: TenantContext, agent_id: Any) -> HttpResponse:
    agent = _agent_for(ctx, agent_id)
    if not object_allows(ctx, Action.AGENTS_BUILD, agent):
        raise Forbidden("You may not edit this agent.")
    users = [u for u in (parse_uuid(v) for v in request.POST.getlist("watchers")) if u != NO_ID]
    agent_services.watchers_set(agent=agent, user_ids=users, actor=ctx.actor)
    messages.success(request, "Watchers saved.")
    return redirect("dashboard-agent", agent_id=agent.pk)
