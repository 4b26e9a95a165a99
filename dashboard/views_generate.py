"""The Agent Generator in the browser: describe an agent, watch the generation, review the plan, the
graph, the problems, the dry run and the tests, then create the agent (it opens in the builder) or,
for a refinement, apply it as a new version after seeing the diff."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from agents.generator import services as generator
from agents.generator.models import Generation
from agents.llm.catalogue import models_for_tenant
from dashboard.context import field_errors, frame, tenant_page
from dashboard.graph import layout
from dashboard.selectors import visible_agents
from falcon.errors import FalconError, Forbidden, NotFound
from tenants.access import TenantContext
from tenants.object_access import object_allows
from tenants.permissions import Action

EXAMPLES = (
    "Triage incoming support tickets: classify category and priority, and route urgent ones to on-call.",
    "When our webhook receives a deploy event, write a one-line summary and post it to the team's Slack.",
    "Every morning, query yesterday's orders from our database and e-mail a short report to ops.",
    "Summarize each incoming e-mail into a two-sentence gist and a list of action items.",
    "For each new lead, look the company up in our CRM over HTTP and score the lead from 0 to 100.",
)


@tenant_page
def describe_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.AGENTS_BUILD)
    errors: dict[str, list[str]] = {}
    form: dict[str, Any] = {"description": "", "trigger": "api", "model": "", "approval": True}
    if request.method == "POST":
        form = {
            "description": request.POST.get("description", ""),
            "trigger": request.POST.get("trigger", "api"),
            "model": request.POST.get("model", "").strip(),
            "approval": request.POST.get("approval") == "on",
        }
        try:
            generation = generator.generation_request(
                tenant=ctx.tenant,
                description=form["description"],
                actor=ctx.actor,
                created_by=ctx.user,
                trigger=form["trigger"],
                model=form["model"] or None,
                require_approval_for_writes=form["approval"],
            )
            return redirect("dashboard-generation", generation_id=generation.pk)
        except FalconError as exc:
            errors = field_errors(exc)
    elif request.GET.get("example", "").isdigit() and int(request.GET["example"]) < len(EXAMPLES):
        form["description"] = EXAMPLES[int(request.GET["example"])]
    body = {
        "form": form,
        "errors": errors,
        "examples": list(enumerate(EXAMPLES)),
        "models": models_for_tenant(ctx.tenant.pk),
        "triggers": generator.TRIGGERS,
        "recent": list(Generation.objects.filter(tenant=ctx.tenant).order_by("-created_at")[:8]),
    }
    return render(request, "dashboard/describe.html", frame(ctx, **body), status=400 if errors else 200)


def _generation_for(ctx: TenantContext, generation_id: Any) -> Generation:
    generation = (
        Generation.objects.filter(tenant=ctx.tenant, pk=generation_id)
        .select_related("base_version__agent", "accepted_agent")
        .first()
    )
    if generation is None:
        raise NotFound("No such generation.")
    return generation


@tenant_page
def generation_page(request: HttpRequest, ctx: TenantContext, generation_id: Any) -> HttpResponse:
    ctx.require(Action.AGENTS_BUILD)
    generation = _generation_for(ctx, generation_id)
    definition = generation.definition or {}
    body = {
        "g": generation,
        "active": generation.status not in Generation.FINISHED,
        "graph": layout(definition),
        "errors_": [p for p in generation.problems if p.get("severity") == "error"],
        "warnings": [p for p in generation.problems if p.get("severity") != "error"],
        "diff_lines": generation.diff.splitlines(),
    }
    template = (
        "dashboard/_generation_body.html"
        if request.headers.get("HX-Request")
        else "dashboard/generation.html"
    )
    return render(request, template, frame(ctx, **body))


@require_POST
@tenant_page
def generation_accept(request: HttpRequest, ctx: TenantContext, generation_id: Any) -> HttpResponse:
    ctx.require(Action.AGENTS_BUILD)
    generation = _generation_for(ctx, generation_id)
    agent = generation.base_version.agent if generation.base_version else None
    if agent is not None and (
        not visible_agents(ctx).filter(pk=agent.pk).exists()
        or not object_allows(ctx, Action.AGENTS_BUILD, agent)
    ):
        raise Forbidden("You may not edit this agent.")
    try:
        version = generator.generation_accept(
            generation=generation, actor=ctx.actor, created_by=ctx.user, member=ctx.membership, agent=agent
        )
    except FalconError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard-generation", generation_id=generation.pk)
    if agent is not None:
        messages.success(request, f"Applied as version {version.number} (not published yet).")
        return redirect("dashboard-agent", agent_id=agent.pk)
    messages.success(request, "Agent created with version 1 from the generation. Review it, then publish.")
    return redirect(reverse("dashboard-agent-build", kwargs={"agent_id": version.agent_id}))


@require_POST
@tenant_page
def agent_refine(request: HttpRequest, ctx: TenantContext, agent_id: Any) -> HttpResponse:
    agent = visible_agents(ctx).filter(pk=agent_id).first()
    if agent is None:
        raise NotFound("No such agent.")
    if not object_allows(ctx, Action.AGENTS_BUILD, agent):
        raise Forbidden("You may not edit this agent.")
    try:
        generation = generator.agent_refine(
            agent=agent, instruction=request.POST.get("instruction", ""), actor=ctx.actor, created_by=ctx.user
        )
    except FalconError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard-agent", agent_id=agent.pk)
    return redirect("dashboard-generation", generation_id=generation.pk)
