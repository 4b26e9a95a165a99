"""The prompt library: immutable versions, review (draft -> in_review -> approved | rejected), labels.

Moving a label is how a prompt is deployed or rolled back: runs resolve ``{name, label}`` when they
call the model, so the next runs use the new version without republishing any agent. Protected
labels (``production`` by default) only take approved versions; with the tenant's four-eyes setting
the author of a version cannot approve it. Every change is audited with before and after.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from agents.engine import templates
from agents.notifications.services import notify
from agents.prompts.models import Prompt, PromptLabel, PromptLabelMove, PromptVersion
from falcon.errors import Conflict, Forbidden, InvalidInput, NotFound
from tenants.audit import Actor, audit_record
from tenants.models import Membership, Tenant, User
from tenants.object_access import member_allows, rights_listing
from tenants.permissions import Action

DEFAULT_LABEL = "production"
PROTECTED_BY_DEFAULT = frozenset({"production"})
LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")
VARIABLE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
PARAMETERS = {"temperature": (float, 0, 2), "max_tokens": (int, 1, 200_000)}


def _version_view(version: PromptVersion) -> dict[str, Any]:
    return {"prompt": version.prompt.name, "version": version.number, "status": version.status}


@transaction.atomic
def prompt_create(
    *, tenant: Tenant, name: str, description: str, actor: Actor, created_by: User | None
) -> Prompt:
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("The name must be 1 to 100 characters.", field="name")
    try:
        with transaction.atomic():
            prompt = Prompt.objects.create(
                tenant=tenant, name=name, description=description, created_by=created_by
            )
    except IntegrityError as exc:
        raise Conflict(f"A prompt named {name!r} exists.", code="name_taken", field="name") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="prompt.created",
        target_type="prompt",
        target_id=prompt.pk,
        after={"name": name, "description": description},
    )
    return prompt


@transaction.atomic
def prompt_update(*, prompt: Prompt, description: str, actor: Actor) -> Prompt:
    prompt = Prompt.objects.select_for_update().get(pk=prompt.pk)
    if description != prompt.description:
        before = {"description": prompt.description}
        prompt.description = description
        prompt.updated_at = timezone.now()
        prompt.save(update_fields=["description", "updated_at"])
        audit_record(
            tenant=prompt.tenant_id,
            actor=actor,
            action="prompt.updated",
            target_type="prompt",
            target_id=prompt.pk,
            before=before,
            after={"description": description},
        )
    return prompt


def _check_version_fields(template: str, system: str, variables: Any, parameters: Any) -> None:
    if not isinstance(template, str) or not template.strip():
        raise InvalidInput("The template cannot be empty.", field="template")
    for field, source in (("template", template), ("system", system)):
        problems = templates.parse_errors(source)
        if problems:
            raise InvalidInput(problems[0], code="template_syntax", field=field)
    if not isinstance(variables, list) or not all(
        isinstance(v, str) and VARIABLE_PATTERN.match(v) for v in variables
    ):
        raise InvalidInput("input_variables is a list of identifiers.", field="input_variables")
    if not isinstance(parameters, dict):
        raise InvalidInput("model_parameters is an object.", field="model_parameters")
    for key, value in parameters.items():
        if key not in PARAMETERS:
            raise InvalidInput(
                f"Unknown model parameter {key!r}; use {', '.join(PARAMETERS)}.", field="model_parameters"
            )
        kind, low, high = PARAMETERS[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise InvalidInput(f"{key} must be a number from {low} to {high}.", field="model_parameters")
        if kind is int and not isinstance(value, int):
            raise InvalidInput(f"{key} must be a whole number.", field="model_parameters")


@transaction.atomic
def prompt_version_create(
    *,
    prompt: Prompt,
    template: str,
    system: str = "",
    input_variables: list[str] | None = None,
    model_parameters: dict[str, Any] | None = None,
    commit_message: str = "",
    actor: Actor,
    author: User | None,
) -> PromptVersion:
    """A new draft version numbered after the last one (versions are never edited: make a new one)."""
    variables = list(input_variables or [])
    parameters = dict(model_parameters or {})
    _check_version_fields(template, system, variables, parameters)
    locked = Prompt.objects.select_for_update().get(pk=prompt.pk)
    number = (PromptVersion.objects.filter(prompt=locked).aggregate(n=Max("number"))["n"] or 0) + 1
    version = PromptVersion.objects.create(
        tenant_id=locked.tenant_id,
        prompt=locked,
        number=number,
        template=template,
        system=system,
        input_variables=variables,
        model_parameters=parameters,
        commit_message=commit_message[:500],
        author=author,
        author_label=actor.label[:255],
    )
    audit_record(
        tenant=locked.tenant_id,
        actor=actor,
        action="prompt.version_created",
        target_type="prompt",
        target_id=locked.pk,
        after={**_version_view(version), "commit_message": version.commit_message},
    )
    return version


@transaction.atomic
def prompt_version_submit(*, version: PromptVersion, actor: Actor) -> PromptVersion:
    version = PromptVersion.objects.select_for_update().select_related("prompt").get(pk=version.pk)
    if version.status != PromptVersion.Status.DRAFT:
        raise Conflict(f"Only a draft can be submitted; this version is {version.status}.", code="not_draft")
    before = _version_view(version)
    version.status = PromptVersion.Status.IN_REVIEW
    version.submitted_at = timezone.now()
    version.save(update_fields=["status", "submitted_at"])
    audit_record(
        tenant=version.tenant_id,
        actor=actor,
        action="prompt.version_submitted",
        target_type="prompt",
        target_id=version.prompt_id,
        before=before,
        after=_version_view(version),
    )

    approvers = [row["email"] for row in rights_listing(version.prompt) if "publish" in row["effective"]]
    notify(
        tenant_id=version.tenant_id,
        event="prompt.submitted",
        subject=f"Review requested: {version.prompt.name} v{version.number}",
        body=f"{version.author_label} submitted v{version.number} of {version.prompt.name} for review: "
        f"{version.commit_message}",
        recipients=approvers,
        data={"prompt": str(version.prompt_id), "version": version.number},
    )
    return version


@transaction.atomic
def prompt_version_review(
    *, version: PromptVersion, approve: bool, comment: str, actor: Actor, reviewer: User | None
) -> PromptVersion:
    """Approves or rejects a version in review; four eyes (a tenant setting) bars its author."""
    version = (
        PromptVersion.objects.select_for_update(of=("self",))
        .select_related("prompt__tenant")
        .get(pk=version.pk)
    )
    if version.status != PromptVersion.Status.IN_REVIEW:
        raise Conflict(
            f"Only a version in review can be approved or rejected; this one is {version.status}.",
            code="not_in_review",
        )
    if not approve and not comment.strip():
        raise InvalidInput("Say why the version is rejected.", field="comment")
    if reviewer is not None:
        membership = Membership.objects.filter(tenant_id=version.tenant_id, user=reviewer).first()
        if membership is None or not member_allows(membership, Action.PROMPTS_PUBLISH, version.prompt):
            raise Forbidden(f"{reviewer.email} may not publish the prompt {version.prompt.name!r}.")
    if version.prompt.tenant.prompt_four_eyes:
        if reviewer is None:
            raise Forbidden(
                "Four eyes are required: a person must review (not a key without one).", code="four_eyes"
            )
        if version.author_id is not None and reviewer.pk == version.author_id:
            raise Forbidden(
                "Four eyes are required: the author cannot approve their own version.", code="four_eyes"
            )
    before = _version_view(version)
    version.status = PromptVersion.Status.APPROVED if approve else PromptVersion.Status.REJECTED
    version.reviewed_by = reviewer
    version.reviewed_at = timezone.now()
    version.review_comment = comment
    version.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_comment"])
    audit_record(
        tenant=version.tenant_id,
        actor=actor,
        action="prompt.version_approved" if approve else "prompt.version_rejected",
        target_type="prompt",
        target_id=version.prompt_id,
        before=before,
        after={**_version_view(version), "comment": comment},
    )

    verdict = "approved" if approve else "rejected"
    notify(
        tenant_id=version.tenant_id,
        event="prompt.reviewed",
        subject=f"{version.prompt.name} v{version.number} was {verdict}",
        body=f"{actor.label} {verdict} v{version.number} of {version.prompt.name}. {comment}".strip(),
        recipients=[version.author.email] if version.author else [],
        data={"prompt": str(version.prompt_id), "version": version.number, "verdict": verdict},
    )
    return version


@transaction.atomic
def prompt_label_move(
    *, prompt: Prompt, label: str, version: PromptVersion, actor: Actor, protected: bool | None = None
) -> PromptLabel:
    """Points ``label`` at ``version`` (creating the label); protected labels take approved versions only."""
    if not LABEL_PATTERN.match(label):
        raise InvalidInput("A label is lowercase letters, digits, - and _ (up to 50).", field="label")
    if version.prompt_id != prompt.pk:
        raise NotFound("No such version of this prompt.", field="version")
    Prompt.objects.select_for_update().get(pk=prompt.pk)
    current = PromptLabel.objects.filter(prompt=prompt, name=label).select_related("version").first()
    is_protected = (
        protected
        if protected is not None
        else (current.protected if current else label in PROTECTED_BY_DEFAULT)
    )
    if label in PROTECTED_BY_DEFAULT and protected is False:
        raise InvalidInput(f"{label!r} is always protected.", field="protected")
    if is_protected and version.status != PromptVersion.Status.APPROVED:
        raise Conflict(
            f"The {label!r} label is protected: only an approved version may take it (v{version.number} is "
            f"{version.status}).",
            code="not_approved",
        )
    before = {"label": label, "version": current.version.number if current else None}
    if current is None:
        current = PromptLabel.objects.create(
            tenant_id=prompt.tenant_id, prompt=prompt, name=label, version=version, protected=is_protected
        )
    else:
        current.version = version
        current.protected = is_protected
        current.updated_at = timezone.now()
        current.save(update_fields=["version", "protected", "updated_at"])
    PromptLabelMove.objects.create(
        tenant_id=prompt.tenant_id,
        prompt=prompt,
        label=label,
        from_number=before["version"],
        to_number=version.number,
        moved_by=actor.label[:255],
    )
    audit_record(
        tenant=prompt.tenant_id,
        actor=actor,
        action="prompt.label_moved",
        target_type="prompt",
        target_id=prompt.pk,
        before=before,
        after={"label": label, "version": version.number, "protected": is_protected},
    )
    return current


def prompt_find(*, tenant_id: Any, name: str) -> Prompt | None:
    return Prompt.objects.filter(tenant_id=tenant_id, name=name).first()


def prompt_resolve(*, tenant_id: Any, name: str, label: str | None, version: int | None) -> PromptVersion:
    """The version a step uses now: a fixed number, or whatever its label (default production) points at."""
    if version is not None:
        found = (
            PromptVersion.objects.select_related("prompt")
            .filter(prompt__tenant_id=tenant_id, prompt__name=name, number=version)
            .first()
        )
        if found is None:
            raise NotFound(f"prompt {name!r} has no version {version}")
        return found
    wanted = label or DEFAULT_LABEL
    pointer = (
        PromptLabel.objects.select_related("version__prompt")
        .filter(prompt__tenant_id=tenant_id, prompt__name=name, name=wanted)
        .first()
    )
    if pointer is None:
        raise NotFound(f"prompt {name!r} has no {wanted!r} label")
    return pointer.version


def prompt_render(*, version: PromptVersion, variables: dict[str, Any]) -> dict[str, str]:
    """A preview of the version with sample variables (no model call); missing ones are named."""
    missing = [name for name in version.input_variables if name not in variables]
    if missing:
        raise InvalidInput(
            f"Missing variables: {', '.join(missing)}.", code="missing_variables", field="variables"
        )
    try:
        rendered = {
            "system": str(templates.render(version.system, variables)) if version.system else "",
            "prompt": str(templates.render(version.template, variables)),
        }
    except templates.TemplateError as exc:
        raise InvalidInput(f"The template failed: {exc}", code=exc.code, field="variables") from exc
    return rendered


def prompt_diff(*, old: PromptVersion, new: PromptVersion) -> str:
    """Unified diff of template, system prompt, variables and parameters."""

    def lines(version: PromptVersion) -> list[str]:
        text = (
            f"# system\n{version.system}\n# template\n{version.template}\n"
            f"# input_variables\n{json.dumps(version.input_variables)}\n"
            f"# model_parameters\n{json.dumps(version.model_parameters, sort_keys=True, indent=2)}\n"
        )
        return text.splitlines(keepends=True)

    return "".join(
        difflib.unified_diff(lines(old), lines(new), fromfile=f"v{old.number}", tofile=f"v{new.number}")
    )
