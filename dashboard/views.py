"""The dashboard's pages: they parse the request, check the role and object rights, call the same
services as the API and render. Live parts poll with htmx and stop once a run has ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from agents.engine.spec import spec_for_version
from agents.runs import services as run_services
from agents.runs.models import Run, StepRun
from agents.triggers.models import Trigger
from agents.workflows.models import AgentWatcher
from dashboard.context import frame, tenant_page
from dashboard.selectors import overview, timeline, visible_agents, visible_runs
from falcon import jsonlimits
from falcon.errors import FalconError, Forbidden, NotFound
from tenants.access import TenantContext
from tenants.models import Membership
from tenants.object_access import RIGHTS, object_allows, rights_listing
from tenants.permissions import Action

RUN_FILTERS = ("agent", "status", "trigger", "within")
WITHIN = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
PAGE_SIZE = 50


@tenant_page
def overview_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.RUNS_READ)
    return render(request, "dashboard/overview.html", frame(ctx, **overview(ctx)))


@tenant_page
def agents_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.AGENTS_READ)
    agents = visible_agents(ctx).select_related("published_version").order_by("name")
    query = request.GET.get("q", "").strip()[:100]
    state = request.GET.get("state", "")
    if query:
        agents = agents.filter(name__icontains=query)
    if state == "published":
        agents = agents.filter(published_version__isnull=False, archived_at__isnull=True)
    elif state == "draft":
        agents = agents.filter(published_version__isnull=True, archived_at__isnull=True)
    elif state == "archived":
        agents = agents.filter(archived_at__isnull=False)
    else:
        agents = agents.filter(archived_at__isnull=True)
    return render(
        request,
        "dashboard/agents.html",
        frame(
            ctx,
            agents=list(agents[:200]),
            q=query,
            state=state,
            may_build=ctx.allows(Action.AGENTS_BUILD),
        ),
    )


@dataclass(frozen=True)
class InputField:
    """One field of the "Run now" form, generated from the agent's input schema."""

    name: str
    kind: str  # text | number | integer | checkbox | json
    required: bool
    description: str
    value: str = ""
    errors: tuple[str, ...] = ()


def _input_fields(
    schema: dict[str, Any], values: dict[str, str], errors: dict[str, list[str]]
) -> list[InputField]:
    required = set(schema.get("required") or [])
    fields = []
    # Required fields first, in the schema's "required" order (JSONB does not keep key order).
    order = {name: i for i, name in enumerate(schema.get("required") or [])}
    properties = sorted((schema.get("properties") or {}).items(), key=lambda kv: order.get(kv[0], len(order)))
    for name, prop in properties:
        kind = {"string": "text", "number": "number", "integer": "integer", "boolean": "checkbox"}.get(
            str(prop.get("type")), "json"
        )
        fields.append(
            InputField(
                name,
                kind,
                name in required,
                str(prop.get("description", "")),
                values.get(name, ""),
                tuple(errors.get(f"input.{name}", [])),
            )
        )
    return fields


def _parse_input(fields: list[InputField], form: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The run input from the form, and the fields that could not be read (before schema validation)."""
    value: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for field in fields:
        raw = form.get(field.name, "")
        if field.kind == "checkbox":
            value[field.name] = raw == "on"
            continue
        if raw == "" and not field.required:
            continue
        try:
            if field.kind == "integer":
                value[field.name] = int(raw)
            elif field.kind == "number":
                value[field.name] = float(raw)
            elif field.kind == "json":
                value[field.name] = jsonlimits.loads(raw) if raw else None
            else:
                value[field.name] = raw
        except ValueError:
            problems[f"input.{field.name}"] = [f"Not a valid {field.kind}."]
    return value, problems


@tenant_page
def agent_page(request: HttpRequest, ctx: TenantContext, agent_id: Any) -> HttpResponse:
    """An agent: its versions, and "Run now" with a form generated from the published input schema."""
    agent = visible_agents(ctx).select_related("published_version").filter(pk=agent_id).first()
    if agent is None:
        raise NotFound("No such agent.")
    ctx.require(Action.AGENTS_READ)
    version = agent.published_version
    schema = spec_for_version(version.pk, version.definition).inputs if version else {}
    may_run = version is not None and object_allows(ctx, Action.AGENTS_RUN, agent)
    errors: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    if request.method == "POST":
        if not may_run:
            raise Forbidden("You may not run this agent.")
        values = {k: str(v) for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
        run_input, errors = _parse_input(_input_fields(schema, {}, {}), request.POST)
        if not errors:
            try:
                run, _ = run_services.run_start(
                    agent=agent, input=run_input, actor=ctx.actor, trigger=Run.Trigger.MANUAL
                )
                return redirect("dashboard-run", run_id=run.pk)
            except FalconError as exc:
                if not exc.fields:
                    raise
                errors = dict(exc.fields)
    versions = list(agent.versions.select_related("created_by").order_by("-number")[:20])
    recent = list(
        visible_runs(ctx).filter(agent=agent).select_related("agent", "version").order_by("-created_at")[:10]
    )
    members = list(
        Membership.objects.filter(tenant=ctx.tenant).select_related("user").order_by("user__email")
    )
    watching = set(AgentWatcher.objects.filter(agent=agent).values_list("user_id", flat=True))
    body = {
        "agent": agent,
        "versions": versions,
        "may_build": object_allows(ctx, Action.AGENTS_BUILD, agent),
        "may_publish": object_allows(ctx, Action.AGENTS_PUBLISH, agent),
        "may_manage_rights": ctx.allows(Action.MEMBERS_MANAGE),
        "rights": rights_listing(agent) if ctx.allows(Action.MEMBERS_READ) else [],
        "all_rights": RIGHTS,
        "watchers": [(m.user, m.user_id in watching) for m in members],
        "triggers": list(Trigger.objects.filter(agent=agent).order_by("created_at")),
        "fields": _input_fields(schema, values, errors),
        "form_errors": [m for path, ms in errors.items() if not path.startswith("input.") for m in ms],
        "may_run": may_run,
        "runs": recent,
    }
    status = 400 if errors else 200
    return render(request, "dashboard/agent.html", frame(ctx, **body), status=status)


def _runs(ctx: TenantContext, request: HttpRequest) -> tuple[list[Run], dict[str, str]]:
    runs = visible_runs(ctx).select_related("agent", "version").order_by("-created_at")
    filters = {name: request.GET.get(name, "").strip()[:64] for name in RUN_FILTERS}
    if filters["agent"]:
        runs = runs.filter(agent__name__iexact=filters["agent"])
    if filters["status"] in Run.Status.values:
        runs = runs.filter(status=filters["status"])
    if filters["trigger"] in Run.Trigger.values:
        runs = runs.filter(trigger=filters["trigger"])
    if filters["within"] in WITHIN:
        runs = runs.filter(created_at__gte=timezone.now() - WITHIN[filters["within"]])
    return list(runs[:PAGE_SIZE]), filters


@tenant_page
def runs_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.RUNS_READ)
    runs, filters = _runs(ctx, request)
    template = "dashboard/_runs_table.html" if request.headers.get("HX-Request") else "dashboard/runs.html"
    return render(
        request,
        template,
        frame(
            ctx,
            runs=runs,
            filters=filters,
            statuses=Run.Status.values,
            triggers=Run.Trigger.values,
            windows=[
                ("1h", "last hour"),
                ("24h", "last 24 hours"),
                ("7d", "last 7 days"),
                ("30d", "last 30 days"),
            ],
        ),
    )


def _run_for(ctx: TenantContext, run_id: Any) -> Run:
    run = visible_runs(ctx).select_related("agent", "version").filter(pk=run_id).first()
    if run is None:
        raise NotFound("No such run.")
    return run


@tenant_page
def run_page(request: HttpRequest, ctx: TenantContext, run_id: Any) -> HttpResponse:
    ctx.require(Action.RUNS_READ)
    run = _run_for(ctx, run_id)
    steps = list(StepRun.objects.filter(run=run).order_by("started_at", "key"))
    children: dict[str, list[StepRun]] = {}
    for s in steps:
        if s.parent_key:
            children.setdefault(s.parent_key, []).append(s)
    body = {
        "run": run,
        "steps": [(s, children.get(s.key, [])) for s in steps if s.kind == StepRun.Kind.STEP],
        "bars": timeline(run, steps),
        "active": run.status not in Run.FINISHED,
        "may_run": object_allows(ctx, Action.AGENTS_RUN, run.agent),
    }
    template = "dashboard/_run_body.html" if request.headers.get("HX-Request") else "dashboard/run.html"
    return render(request, template, frame(ctx, **body))


@require_POST
@tenant_page
def run_action(request: HttpRequest, ctx: TenantContext, run_id: Any, what: str) -> HttpResponse:
    run = _run_for(ctx, run_id)
    if not object_allows(ctx, Action.AGENTS_RUN, run.agent):
        raise Forbidden("You may not run this agent.")
    if what == "cancel":
        run_services.run_cancel(run=run, actor=ctx.actor)
    elif what == "rerun":
        run = run_services.run_rerun(run=run, actor=ctx.actor)
    elif what in ("approve", "reject"):
        run_services.run_resume(
            run=run,
            decision=what == "approve",
            comment=request.POST.get("comment", "")[:500],
            actor=ctx.actor,
        )
    else:
        raise NotFound()
    return redirect("dashboard-run", run_id=run.pk)


@require_http_methods(["GET"])
@tenant_page
def switch_tenant(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    return redirect("dashboard-overview")


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page, allauth's too."""
    return redirect(static("dashboard/favicon.svg"))
