"""The price table's changes (platform staff, in the console): each one on the platform's audit chain."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents.llm.models import ModelPrice
from tenants.audit import Actor, audit_record


def _view(price: ModelPrice) -> dict[str, Any]:
    return {
        "model": price.model,
        "input_usd_per_mtok": str(price.input_usd_per_mtok),
        "output_usd_per_mtok": str(price.output_usd_per_mtok),
    }


@transaction.atomic
def model_price_save(*, price: ModelPrice, actor: Actor) -> ModelPrice:
    previous = ModelPrice.objects.filter(pk=price.pk).first() if price.pk else None
    price.save()
    audit_record(
        tenant=None,
        actor=actor,
        action="model_price.changed" if previous else "model_price.created",
        target_type="model_price",
        target_id=price.pk,
        before=_view(previous) if previous else None,
        after=_view(price),
    )
    return price


@transaction.atomic
def model_price_delete(*, price: ModelPrice, actor: Actor) -> None:
    before = _view(price)
    target = price.pk
    price.delete()
    audit_record(
        tenant=None, actor=actor, action="model_price.deleted", target_type="model_price", target_id=target,
        before=before,
    )  # fmt: skip
