"""Tenant variables for templates (``env.<name>``), audited like every change."""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.workflows.models import Variable
from falcon.errors import Conflict, InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import Tenant

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@transaction.atomic
def variable_create(*, tenant: Tenant, name: str, value: Any, description: str, actor: Actor) -> Variable:
    if not NAME.match(name):
        raise InvalidInput("Use letters, digits and underscores, not starting with a digit.", field="name")
    try:
        with transaction.atomic():
            variable = Variable.objects.create(tenant=tenant, name=name, value=value, description=description)
    except IntegrityError as exc:
        raise Conflict(f"A variable named {name!r} exists.", code="name_taken", field="name") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="variable.created",
        target_type="variable",
        target_id=variable.pk,
        after={"name": name, "value": value},
    )
    return variable


@transaction.atomic
def variable_update(
    *, variable: Variable, actor: Actor, value: Any = ..., description: str | None = None
) -> Variable:
    variable = Variable.objects.select_for_update().get(pk=variable.pk)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if value is not ... and value != variable.value:
        before["value"], after["value"] = variable.value, value
        variable.value = value
    if description is not None and description != variable.description:
        before["description"], after["description"] = variable.description, description
        variable.description = description
    if after:
        variable.updated_at = timezone.now()
        variable.save(update_fields=[*after, "updated_at"])
        audit_record(
            tenant=variable.tenant_id,
            actor=actor,
            action="variable.updated",
            target_type="variable",
            target_id=variable.pk,
            before={"name": variable.name, **before},
            after=after,
        )
    return variable


@transaction.atomic
def variable_delete(*, variable: Variable, actor: Actor) -> None:
    audit_record(
        tenant=variable.tenant_id,
        actor=actor,
        action="variable.deleted",
        target_type="variable",
        target_id=variable.pk,
        before={"name": variable.name, "value": variable.value},
    )
    variable.delete()
