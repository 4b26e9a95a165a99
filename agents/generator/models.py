"""A generation: one request to the Agent Generator, its model calls, checks, dry run and result."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.workflows.models import Agent, AgentVersion
from tenants.models import Tenant


class Generation(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    description = models.TextField(help_text="What the agent should do, in the builder's words.")
    examples = models.JSONField(default=list, blank=True)
    trigger = models.CharField(max_length=16, blank=True)
    require_approval_for_writes = models.BooleanField(default=True)
    # A refinement starts from a version and says what to change.
    base_version = models.ForeignKey(
        AgentVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    instruction = models.TextField(blank=True)
    model = models.CharField(max_length=200)
    prompt_version = models.PositiveIntegerField(null=True, blank=True, help_text="Of the generator prompt.")
    # The result.
    name = models.CharField(max_length=100, blank=True)
    agent_description = models.TextField(blank=True)
    plan = models.JSONField(default=list, blank=True)
    definition = models.JSONField(null=True, blank=True)
    problems = models.JSONField(default=list, blank=True)
    dry_run = models.JSONField(null=True, blank=True)
    tests = models.JSONField(default=list, blank=True)
    attempts = models.JSONField(default=list, blank=True)
    diff = models.TextField(blank=True)
    error = models.JSONField(null=True, blank=True)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    accepted_agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_version = models.PositiveIntegerField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return f"generation {self.pk} ({self.status})"

    @property
    def blocking(self) -> list[dict[str, str]]:
        return [p for p in self.problems if p.get("severity") == "error"]
