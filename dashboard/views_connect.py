"""Connectors (forms generated from the kinds, secrets write-only, Test) and triggers (webhook,
schedule, e-mail; the signing secret shown once with a ready example; deliveries; enable, disable,
rotate). The same services and checks as ``/api/v1/connectors`` and ``/api/v1/triggers``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agents.triggers import services as trigger_services
from agents.triggers.models import Trigger, TriggerEvent
from agents.triggers.services import WEBHOOK_AUTH
from connectors import services as connector_services
from connectors.kinds import KINDS
from connectors.kinds.base import Field
from connectors.models import Connector
from dashboard.context import field_errors, frame, tenant_page
from dashboard.selectors import visible_agents
from falcon.errors import FalconError, Forbidden, InvalidInput, NotFound
from tenants.access import TenantContext
from tenants.object_access import object_allows
from tenants.permissions import Action

# --- connectors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorField:
    field: Field
    name: str  # config.<name> or secrets.<name>: the keys the services report problems under
    value: str
    hint: str  # a secret's last four characters, when set
    is_set: bool
    errors: list[str]


def _connector_fields(
    kind: str, connector: Connector | None, values: dict[str, str], errors: dict[str, list[str]]
) -> list[ConnectorField]:
    rows = []
    for f in KINDS[kind].fields:
        name = f"{'secrets' if f.secret else 'config'}.{f.name}"
        if f.secret:
            value = ""  # write-only: never sent back to the browser
        elif name in values:
            value = values[name]
        elif connector is not None and f.name in connector.config:
            raw = connector.config[f.name]
            value = (
                ", ".join(map(str, raw))
                if isinstance(raw, list)
                else json.dumps(raw)
                if isinstance(raw, dict)
                else str(raw)
            )
        else:
            value = (
                ""
                if f.default is None
                else str(f.default).lower()
                if isinstance(f.default, bool)
                else str(f.default)
            )
        hints = connector.secret_hints if connector is not None else {}
        is_set = connector is not None and f.name in connector.secrets
        rows.append(ConnectorField(f, name, value, str(hints.get(f.name, "")), is_set, errors.get(name, [])))
    return rows


def _read_connector_form(kind: str, post: Any, *, editing: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, secrets) from the form; problems raise ``InvalidInput`` at their field."""
    config: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for f in KINDS[kind].fields:
        if f.secret:
            value = post.get(f"secrets.{f.name}", "")
            if value:
                secrets[f.name] = value
            elif editing and post.get(f"clear.{f.name}") == "on":
                secrets[f.name] = None
            continue
        raw = post.get(f"config.{f.name}", "").strip()
        name = f"config.{f.name}"
        if f.type == "boolean":
            config[f.name] = post.get(name) == "on"
        elif raw == "":
            continue
        elif f.type == "integer":
            try:
                config[f.name] = int(raw)
            except ValueError as exc:
                raise InvalidInput("Not a whole number.", field=name) from exc
        elif f.type == "array":
            config[f.name] = [part.strip() for part in raw.split(",") if part.strip()]
        elif f.type == "object":
            try:
                config[f.name] = json.loads(raw)
            except ValueError as exc:
                raise InvalidInput("Not valid JSON.", field=name) from exc
        else:
            config[f.name] = raw
    return config, secrets


@tenant_page
def connectors_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.AGENTS_READ)
    connectors = list(Connector.objects.filter(tenant=ctx.tenant).order_by("name"))
    body = {
        "connectors": [(c, KINDS[c.kind].label if c.kind in KINDS else c.kind) for c in connectors],
        "kinds": sorted(KINDS.values(), key=lambda k: k.label),
        "may_manage": ctx.allows(Action.CONNECTORS_MANAGE),
    }
    return render(request, "dashboard/connectors.html", frame(ctx, **body))


@tenant_page
def connector_new_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.CONNECTORS_MANAGE)
    kind = request.GET.get("kind") or request.POST.get("kind", "")
    if kind not in KINDS:
        raise InvalidInput("Pick a kind of connector.", field="kind")
    errors: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    name = ""
    if request.method == "POST":
        name = request.POST.get("name", "").strip()[:64]
        values = {k: str(v) for k, v in request.POST.items() if k.startswith("config.")}
        try:
            if not name:
                raise InvalidInput("Give the connector a name.", field="name")
            config, secrets = _read_connector_form(kind, request.POST, editing=False)
            connector = connector_services.connector_create(
                tenant=ctx.tenant, name=name, kind=kind, config=config, secrets=secrets, actor=ctx.actor,
                created_by=ctx.user,
            )  # fmt: skip
            connector_services.connector_discover(connector)
            messages.success(
                request, f"Connector {connector.name!r} saved. Its secrets are stored encrypted."
            )
            return redirect("dashboard-connector", connector_id=connector.pk)
        except FalconError as exc:
            errors = field_errors(exc)
    body = {
        "kind": KINDS[kind],
        "name": name,
        "fields": _connector_fields(kind, None, values, errors),
        "errors": errors,
        "connector": None,
    }
    return render(request, "dashboard/connector.html", frame(ctx, **body), status=400 if errors else 200)


def _connector_for(ctx: TenantContext, connector_id: Any) -> Connector:
    connector = Connector.objects.filter(tenant=ctx.tenant, pk=connector_id).first()
    if connector is None:
        raise NotFound("No such connector.")
    return connector


@tenant_page
def connector_page(request: HttpRequest, ctx: TenantContext, connector_id: Any) -> HttpResponse:
    ctx.require(Action.AGENTS_READ)
    connector = _connector_for(ctx, connector_id)
    errors: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    test_result = None
    if request.method == "POST":
        ctx.require(Action.CONNECTORS_MANAGE)
        action = request.POST.get("action", "save")
        try:
            if action == "test":
                test_result = connector_services.connector_test(connector=connector, actor=ctx.actor)
            elif action == "delete":
                connector_services.connector_delete(connector=connector, actor=ctx.actor)
                messages.success(request, f"Connector {connector.name!r} deleted.")
                return redirect("dashboard-connectors")
            else:
                values = {k: str(v) for k, v in request.POST.items() if k.startswith("config.")}
                config, secrets = _read_connector_form(connector.kind, request.POST, editing=True)
                connector = connector_services.connector_update(
                    connector=connector, actor=ctx.actor, name=request.POST.get("name", connector.name)[:64],
                    config=config, secrets=secrets,
                )  # fmt: skip
                connector_services.connector_discover(connector)
                messages.success(request, "Saved.")
                return redirect("dashboard-connector", connector_id=connector.pk)
        except FalconError as exc:
            errors = field_errors(exc)
        connector.refresh_from_db()
    body = {
        "kind": KINDS[connector.kind],
        "name": connector.name,
        "connector": connector,
        "fields": _connector_fields(connector.kind, connector, values, errors),
        "errors": errors,
        "test_result": test_result,
        "used_by": connector_services.connector_users(connector),
        "may_manage": ctx.allows(Action.CONNECTORS_MANAGE),
    }
    return render(request, "dashboard/connector.html", frame(ctx, **body), status=400 if errors else 200)


# --- triggers --------------------------------------------------------------------------------------------


def _visible_triggers(ctx: TenantContext) -> Any:
    return Trigger.objects.filter(tenant=ctx.tenant, agent__in=visible_agents(ctx))


def _schedule_config(post: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"timezone": post.get("timezone", "UTC").strip() or "UTC"}
    if post.get("schedule_mode") == "interval":
        raw = post.get("interval_s", "").strip()
        if not raw.isdigit():
            raise InvalidInput("Give the interval in whole seconds.", field="config.interval_s")
        config = {"interval_s": int(raw)}
    else:
        config["cron"] = post.get("cron", "").strip()
    config["overlap"] = post.get("overlap", "skip")
    return config


def _trigger_config(kind: str, post: Any) -> dict[str, Any]:
    if kind == Trigger.Kind.WEBHOOK:
        return {"auth": post.get("auth", "standard"), "allow_unsigned": post.get("allow_unsigned") == "on"}
    if kind == Trigger.Kind.SCHEDULE:
        return _schedule_config(post)
    senders = [s.strip() for s in post.get("allowed_senders", "").split(",") if s.strip()]
    return {"allowed_senders": senders}


@tenant_page
def triggers_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.AGENTS_READ)
    agents = list(visible_agents(ctx).filter(archived_at__isnull=True).order_by("name"))
    buildable = [a for a in agents if object_allows(ctx, Action.AGENTS_BUILD, a)]
    errors: dict[str, list[str]] = {}
    form = {"kind": request.GET.get("kind", "webhook"), "agent": request.GET.get("agent", "")}
    preview: list[Any] = []
    if request.method == "POST":
        form = {k: str(v) for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
        kind = form.get("kind", "")
        agent = next((a for a in buildable if str(a.pk) == form.get("agent")), None)
        try:
            if agent is None:
                raise InvalidInput("Pick an agent you may build.", field="agent")
            config = _trigger_config(kind, request.POST)
            if request.POST.get("action") == "preview":
                checked = trigger_services.schedule_config_check(config, ctx.tenant.pk)
                preview = _firings(checked)
            else:
                trigger, secret = trigger_services.trigger_create(
                    agent=agent, name=form.get("name", "")[:100] or f"{kind} of {agent.name}", kind=kind,
                    config=config, input_mapping=None, enabled=agent.published_version_id is not None,
                    actor=ctx.actor, created_by=ctx.user,
                )  # fmt: skip
                return _trigger_detail(request, ctx, trigger, secret=secret, status=201)
        except FalconError as exc:
            errors = field_errors(exc)
    triggers = list(_visible_triggers(ctx).select_related("agent").order_by("agent__name", "name"))
    if agent_filter := request.GET.get("agent"):
        triggers = [t for t in triggers if str(t.agent_id) == agent_filter]
    body = {
        "triggers": triggers,
        "agents": buildable,
        "may_build": bool(buildable) and ctx.allows(Action.AGENTS_BUILD),
        "form": form,
        "errors": errors,
        "auth_schemes": WEBHOOK_AUTH,
        "preview": preview,
    }
    return render(request, "dashboard/triggers.html", frame(ctx, **body), status=400 if errors else 200)


def _firings(config: dict[str, Any]) -> list[str]:
    """The next five firings as the schedule's own time zone reads them."""
    return [t.strftime("%a %d %b %Y, %H:%M %Z") for t in trigger_services.schedule_preview(config)]


def _trigger_for(ctx: TenantContext, trigger_id: Any) -> Trigger:
    trigger = _visible_triggers(ctx).select_related("agent").filter(pk=trigger_id).first()
    if trigger is None:
        raise NotFound("No such trigger.")
    return trigger


def _examples(trigger: Trigger, url: str, secret: str) -> dict[str, str]:
    """Ready-to-run ways to deliver a signed test event (Standard Webhooks signature)."""
    body = '{"hello": "world"}'
    if trigger.config.get("auth") != "standard":
        return {}
    shell = (
        f"SECRET='{secret}'\nBODY='{body}'\nID=msg_$(date +%s%N); TS=$(date +%s)\n"
        'KEY=$(printf %s "${SECRET#whsec_}" | base64 -d | od -An -tx1 | tr -d " \\n")\n'
        'SIG=$(printf %s "$ID.$TS.$BODY" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY -binary '
        "| base64)\n"
        f"curl -sS -X POST '{url}' -H 'content-type: application/json' \\\n"
        '  -H "webhook-id: $ID" -H "webhook-timestamp: $TS" -H "webhook-signature: v1,$SIG" -d "$BODY"'
    )
    python = (
        "import base64, hashlib, hmac, json, time, urllib.request, uuid\n"
        f"secret, url = '{secret}', '{url}'\n"
        f"body = json.dumps({json.loads(body)!r}).encode()\n"
        "msg_id, stamp = f'msg_{uuid.uuid4().hex}', str(int(time.time()))\n"
        "key = base64.b64decode(secret.removeprefix('whsec_'))\n"
        "mac = hmac.new(key, f'{msg_id}.{stamp}.'.encode() + body, hashlib.sha256).digest()\n"
        "headers = {'content-type': 'application/json', 'webhook-id': msg_id, 'webhook-timestamp': stamp,\n"
        "           'webhook-signature': 'v1,' + base64.b64encode(mac).decode()}\n"
        "request = urllib.request.Request(url, data=body, headers=headers, method='POST')\n"
        "print(urllib.request.urlopen(request).read().decode())"
    )
    return {"curl": shell, "python": python}


def _trigger_detail(
    request: HttpRequest,
    ctx: TenantContext,
    trigger: Trigger,
    *,
    secret: str | None = None,
    status: int = 200,
) -> HttpResponse:
    url = trigger_services.trigger_url(trigger)
    events = list(
        TriggerEvent.objects.filter(trigger=trigger).select_related("run").order_by("-received_at")[:50]
    )
    body = {
        "trigger": trigger,
        "url": url,
        "address": trigger_services.trigger_address(trigger),
        "secret": secret,
        "examples": _examples(trigger, url, secret) if secret and url else {},
        "events": events,
        "preview": _firings(trigger.config) if trigger.kind == Trigger.Kind.SCHEDULE else [],
        "may_build": object_allows(ctx, Action.AGENTS_BUILD, trigger.agent),
    }
    return render(request, "dashboard/trigger.html", frame(ctx, **body), status=status)


@tenant_page
def trigger_page(request: HttpRequest, ctx: TenantContext, trigger_id: Any) -> HttpResponse:
    ctx.require(Action.AGENTS_READ)
    return _trigger_detail(request, ctx, _trigger_for(ctx, trigger_id))


@require_POST
@tenant_page
def trigger_action(request: HttpRequest, ctx: TenantContext, trigger_id: Any, what: str) -> HttpResponse:
    ctx.require(Action.AGENTS_BUILD)
    trigger = _trigger_for(ctx, trigger_id)
    if not object_allows(ctx, Action.AGENTS_BUILD, trigger.agent):
        raise Forbidden("You may not change this agent's triggers.")
    if what in ("enable", "disable"):
        trigger_services.trigger_update(trigger=trigger, actor=ctx.actor, enabled=what == "enable")
    elif what == "rotate":
        secret = trigger_services.trigger_rotate_secret(trigger=trigger, actor=ctx.actor)
        messages.success(request, "New secret made; the previous one keeps working for 24 hours.")
        return _trigger_detail(request, ctx, _trigger_for(ctx, trigger_id), secret=secret)
    elif what == "delete":
        trigger_services.trigger_delete(trigger=trigger, actor=ctx.actor)
        messages.success(request, f"Trigger {trigger.name!r} deleted.")
        return redirect("dashboard-triggers")
    else:
        raise NotFound()
    return redirect("dashboard-trigger", trigger_id=trigger.pk)
