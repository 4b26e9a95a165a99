"""Agents as files in the browser: export an agent (a download), import a bundle (upload, preview with
connector mapping, import, then what to fill in). Same services as the API's export and import."""

from __future__ import annotations

import json
import re
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from agents.ecosystem import bundles
from connectors.models import Connector
from dashboard.context import field_errors, frame, tenant_page
from dashboard.selectors import visible_agents
from falcon import jsonlimits
from falcon.errors import FalconError, InvalidInput, NotFound
from tenants.access import TenantContext
from tenants.object_access import object_allows
from tenants.permissions import Action

MAX_BUNDLE_BYTES = 2 * 1024 * 1024


@tenant_page
def agent_export(request: HttpRequest, ctx: TenantContext, agent_id: Any) -> HttpResponse:
    agent = visible_agents(ctx).filter(pk=agent_id).first()
    if agent is None or not object_allows(ctx, Action.AGENTS_READ, agent):
        raise NotFound("No such agent.")
    versions = "published" if request.GET.get("versions") == "published" else "all"
    bundle = bundles.bundle_export(ctx=ctx, agent=agent, versions=versions)
    filename = re.sub(r"[^A-Za-z0-9._-]+", "-", agent.name).strip("-") or "agent"
    response = JsonResponse(bundle, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="{filename}.falcon.json"'
    return response


def _read_bundle(request: HttpRequest) -> dict[str, Any]:
    upload = request.FILES.get("bundle_file")
    if upload is not None:
        if upload.size is not None and upload.size > MAX_BUNDLE_BYTES:
            raise InvalidInput("The file is larger than 2 MiB.", field="bundle_file")
        raw = upload.read()
    else:
        raw = request.POST.get("bundle", "").encode()
    if not raw.strip():
        raise InvalidInput(
            "Choose a bundle file (what Export gives), or paste its JSON.", field="bundle_file"
        )
    try:
        data = jsonlimits.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"Not JSON: {exc}", field="bundle_file") from exc
    try:
        bundles.bundle_parse(data)  # problems at the file's field before anything else
    except InvalidInput as exc:
        where = next(iter(exc.fields), "bundle")
        raise InvalidInput(f"{exc.message} ({where})", field="bundle_file") from exc
    return data


@tenant_page
def agent_import_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.AGENTS_BUILD)
    errors: dict[str, list[str]] = {}
    preview: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None
    if request.method == "POST":
        try:
            raw = _read_bundle(request)
            parsed = bundles.bundle_parse(raw)
            if request.POST.get("action") == "import":
                renames = {
                    key.removeprefix("connector."): str(value)
                    for key, value in request.POST.items()
                    if key.startswith("connector.") and value
                }
                report = bundles.bundle_import(
                    ctx=ctx, raw=raw, name=request.POST.get("name") or None, connectors=renames
                )
            else:
                preview = _preview(ctx, parsed)
        except FalconError as exc:
            errors = field_errors(exc)
            if raw is not None and "bundle_file" not in errors:
                preview = _preview(ctx, bundles.bundle_parse(raw))
    body = {
        "errors": errors,
        "preview": preview,
        "report": report,
        "bundle_json": json.dumps(raw) if raw is not None and report is None else "",
        "name": request.POST.get("name", ""),
    }
    status = 400 if errors else 201 if report else 200
    return render(request, "dashboard/agent_import.html", frame(ctx, **body), status=status)


def _preview(ctx: TenantContext, bundle: bundles.Bundle) -> dict[str, Any]:
    kinds = {c.name: c.kind for c in bundle.connectors}
    needed = sorted(set().union(*(bundles.named_connectors(v.definition) for v in bundle.versions)))
    have = list(Connector.objects.filter(tenant=ctx.tenant).values_list("name", "kind").order_by("name"))
    return {
        "agent": bundle.agent,
        "versions": len(bundle.versions),
        "published": next((v.number for v in bundle.versions if v.published), None),
        "connectors": [
            {
                "name": name,
                "kind": kinds.get(name),
                "choices": [n for n, k in have if kinds.get(name) in (None, k)],
            }
            for name in needed
        ],
        "prompts": [p.name for p in bundle.prompts],
        "variables": [v.name for v in bundle.variables],
        "triggers": [f"{t.name} ({t.kind})" for t in bundle.triggers],
    }
