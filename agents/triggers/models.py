"""Triggers (webhook, schedule, e-mail) and the record of each delivery."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.runs.models import Run
from agents.workflows.models import Agent
from tenants.models import Tenant


class Trigger(models.Model):
    """What starts runs of an agent's published version without a person: webhook, schedule, e-mail."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        SCHEDULE = "schedule", "Schedule"
        EMAIL = "email", "E-mail"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="triggers")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="triggers")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True, help_text="Why the system disabled it.")
    public_id = models.CharField(max_length=48, unique=True)
    config = models.JSONField(default=dict)
    input_mapping = models.JSONField(default=dict, blank=True, help_text="Template(s) over `event`.")
    secrets = models.JSONField(
        default=list, blank=True, help_text="Encrypted signing secrets (newest first)."
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    last_fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="trigger_name_unique_per_tenant")
        ]
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class TriggerEvent(models.Model):
    """One delivery to a trigger: accepted (with its run) or refused (with why)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="events")
    received_at = models.DateTimeField(default=timezone.now)
    accepted = models.BooleanField()
    code = models.CharField(max_length=64, blank=True)
    message = models.CharField(max_length=500, blank=True)
    delivery_id = models.CharField(max_length=200, blank=True)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    count = models.PositiveIntegerField(
        default=1, help_text="Refusals of the same kind within a minute share one row (a flood is one line)."
    )

    class Meta:
        indexes = [models.Index(fields=["trigger", "received_at"])]

    def __str__(self) -> str:
        return f"{self.trigger_id} {'accepted' if self.accepted else self.code}"


# --- the prompt library -----------------------------------------------------------------------------------
