"""The prompt library: list, a prompt's versions, new version, submit, review (approve or reject with a
comment), labels and their history, side-by-side diff, render preview and where it is used. The same
services and object rights as ``/api/v1/prompts``."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from agents.prompts import services as prompt_services
from agents.prompts.models import Prompt, PromptLabel, PromptVersion
from agents.workflows.models import Agent
from dashboard.context import field_errors, frame, tenant_page
from falcon.errors import FalconError, Forbidden, InvalidInput, NotFound
from tenants.access import TenantContext
from tenants.object_access import object_allows, visible_filter
from tenants.permissions import Action


def _visible(ctx: TenantContext) -> Any:
    prompts = Prompt.objects.filter(tenant=ctx.tenant)
    narrowing = visible_filter(ctx, Prompt)
    return prompts.filter(narrowing) if narrowing is not None else prompts


@tenant_page
def prompts_page(request: HttpRequest, ctx: TenantContext) -> HttpResponse:
    ctx.require(Action.PROMPTS_READ)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        ctx.require(Action.PROMPTS_EDIT)
        try:
            prompt = prompt_services.prompt_create(
                tenant=ctx.tenant, name=request.POST.get("name", ""),
                description=request.POST.get("description", "")[:500],
                actor=ctx.actor, created_by=ctx.user,
            )  # fmt: skip
            return redirect("dashboard-prompt", prompt_id=prompt.pk)
        except FalconError as exc:
            errors = field_errors(exc)
    prompts = list(_visible(ctx).order_by("name"))
    labels: dict[Any, list[PromptLabel]] = {}
    for label in PromptLabel.objects.filter(prompt__in=prompts).select_related("version").order_by("name"):
        labels.setdefault(label.prompt_id, []).append(label)
    queue = list(
        PromptVersion.objects.filter(prompt__in=prompts, status=PromptVersion.Status.IN_REVIEW)
        .select_related("prompt", "author")
        .order_by("submitted_at")
    )
    body = {
        "prompts": [(p, labels.get(p.pk, [])) for p in prompts],
        "queue": queue,
        "may_create": ctx.allows(Action.PROMPTS_EDIT),
        "errors": errors,
    }
    return render(request, "dashboard/prompts.html", frame(ctx, **body), status=400 if errors else 200)


def _prompt_for(ctx: TenantContext, prompt_id: Any) -> Prompt:
    prompt = _visible(ctx).filter(pk=prompt_id).first()
    if prompt is None:
        raise NotFound("No such prompt.")
    return prompt


def _version(prompt: Prompt, number: Any) -> PromptVersion:
    version = prompt.versions.select_related("author", "reviewed_by").filter(number=number).first()
    if version is None:
        raise NotFound("No such version of this prompt.")
    return version


def _side_by_side(old: PromptVersion, new: PromptVersion) -> list[tuple[str, str, str]]:
    """Rows of (kind, left, right) for the template + system text of two versions."""

    def text(v: PromptVersion) -> list[str]:
        return [
            *f"# system\n{v.system}".splitlines(),
            *f"# template\n{v.template}".splitlines(),
            f"# variables: {', '.join(v.input_variables)}",
            f"# parameters: {json.dumps(v.model_parameters, sort_keys=True)}",
        ]

    a, b = text(old), text(new)
    rows: list[tuple[str, str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b).get_opcodes():
        left, right = a[i1:i2], b[j1:j2]
        for k in range(max(len(left), len(right))):
            rows.append((tag, left[k] if k < len(left) else "", right[k] if k < len(right) else ""))
    return rows


def _used_by(ctx: TenantContext, prompt: Prompt) -> list[str]:
    """Agents whose published version names this prompt (one query)."""
    agents = Agent.objects.filter(tenant=ctx.tenant, published_version__isnull=False).values_list(
        "name", "published_version__definition"
    )
    needle = json.dumps(prompt.name)
    return [name for name, definition in agents if f'"name": {needle}' in json.dumps(definition)]


@tenant_page
def prompt_page(request: HttpRequest, ctx: TenantContext, prompt_id: Any) -> HttpResponse:
    prompt = _prompt_for(ctx, prompt_id)
    if not object_allows(ctx, Action.PROMPTS_READ, prompt):
        raise NotFound("No such prompt.")
    may_edit = object_allows(ctx, Action.PROMPTS_EDIT, prompt)
    may_publish = object_allows(ctx, Action.PROMPTS_PUBLISH, prompt)
    errors: dict[str, list[str]] = {}
    rendered = None
    status = 200
    form = request.POST if request.method == "POST" else {}
    if request.method == "POST":
        try:
            outcome = _prompt_action(request, ctx, prompt, may_edit=may_edit, may_publish=may_publish)
            if isinstance(outcome, dict):
                rendered = outcome
            else:
                return redirect("dashboard-prompt", prompt_id=prompt.pk)
        except FalconError as exc:  # four eyes, a wrong state, a bad field: said on the page
            errors = field_errors(exc)
            status = exc.status_code
    versions = list(prompt.versions.select_related("author", "reviewed_by").order_by("-number"))
    labels = list(PromptLabel.objects.filter(prompt=prompt).select_related("version").order_by("name"))
    history = list(prompt.label_moves.select_related().order_by("-moved_at")[:30])
    diff: dict[str, Any] | None = None
    if request.GET.get("from", "").isdigit() and request.GET.get("to", "").isdigit():
        old, new = _version(prompt, int(request.GET["from"])), _version(prompt, int(request.GET["to"]))
        diff = {"old": old, "new": new, "rows": _side_by_side(old, new)}
    latest = versions[0] if versions else None
    body = {
        "prompt": prompt,
        "versions": versions,
        "labels": labels,
        "history": history,
        "diff": diff,
        "rendered": rendered,
        "latest": latest,
        "may_edit": may_edit,
        "may_publish": may_publish,
        "errors": errors,
        "form": form,
        "used_by": _used_by(ctx, prompt),
        "four_eyes": ctx.tenant.prompt_four_eyes,
    }
    return render(request, "dashboard/prompt.html", frame(ctx, **body), status=status)


def _prompt_action(
    request: HttpRequest, ctx: TenantContext, prompt: Prompt, *, may_edit: bool, may_publish: bool
) -> dict[str, str] | None:
    post = request.POST
    action = post.get("action", "")
    if action == "render":
        version = _version(prompt, _number(post.get("version")))
        try:
            variables = json.loads(post.get("variables") or "{}")
        except ValueError as exc:
            raise InvalidInput("Sample variables must be a JSON object.", field="variables") from exc
        if not isinstance(variables, dict):
            raise InvalidInput("Sample variables must be a JSON object.", field="variables")
        return prompt_services.prompt_render(version=version, variables=variables)
    if action in ("new", "submit") and not may_edit:
        raise Forbidden("You may not edit this prompt.")
    if action in ("approve", "reject", "label") and not may_publish:
        raise Forbidden("You may not publish this prompt.")
    person = ctx.user
    if action == "new":
        variables = [v.strip() for v in post.get("input_variables", "").split(",") if v.strip()]
        version = prompt_services.prompt_version_create(
            prompt=prompt, template=post.get("template", ""), system=post.get("system", ""),
            input_variables=variables, commit_message=post.get("commit_message", "")[:500],
            actor=ctx.actor, author=person,
        )  # fmt: skip
        messages.success(request, f"Version {version.number} saved as a draft.")
    elif action == "submit":
        prompt_services.prompt_version_submit(
            version=_version(prompt, _number(post.get("version"))), actor=ctx.actor
        )
        messages.success(request, "Submitted for review.")
    elif action in ("approve", "reject"):
        prompt_services.prompt_version_review(
            version=_version(prompt, _number(post.get("version"))), approve=action == "approve",
            comment=post.get("comment", "")[:2000], actor=ctx.actor, reviewer=person,
        )  # fmt: skip
        messages.success(request, "Approved." if action == "approve" else "Rejected.")
    elif action == "label":
        label = post.get("label", "").strip()
        prompt_services.prompt_label_move(
            prompt=prompt,
            label=label,
            version=_version(prompt, _number(post.get("version"))),
            actor=ctx.actor,
        )
        messages.success(request, f"Label {label!r} moved.")
    else:
        raise NotFound()
    return None


def _number(value: Any) -> int:
    if not str(value).isdigit():
        raise InvalidInput("Pick a version.", field="version")
    return int(str(value))
