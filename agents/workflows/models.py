"""Agents, their immutable versions, the tenant's variables and who watches an agent."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from tenants.models import Tenant


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="agents")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)
    published_version = models.ForeignKey(
        "AgentVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint("tenant", Lower("name"), name="agent_name_unique_per_tenant")]
        indexes = [models.Index(fields=["tenant", "created_at"])]
        # Per-object rights (django-guardian); "custom" marks a member whose rights here are set explicitly.
        permissions = [
            ("agent_view", "View this agent"),
            ("agent_edit", "Edit this agent"),
            ("agent_publish", "Publish this agent"),
            ("agent_run", "Run this agent"),
            ("agent_custom", "Has explicit rights on this agent"),
        ]

    def __str__(self) -> str:
        return self.name


class AgentVersion(models.Model):
    """An immutable definition: never updated after creation, except the publish timestamp."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    note = models.CharField(max_length=500, blank=True)
    tests = models.JSONField(
        default=list, blank=True, help_text="Test cases: input and JMESPath checks on the output."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(
        null=True, blank=True, help_text="When it last became the published one."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="agent_version_number_unique")
        ]
        indexes = [models.Index(fields=["tenant", "agent", "number"])]

    def __str__(self) -> str:
        return f"{self.agent_id} v{self.number}"


class Variable(models.Model):
    """A tenant-defined value templates read as ``env.<name>`` (not for secrets: those go in connectors)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="variables")
    name = models.CharField(max_length=64)
    value = models.JSONField()
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="variable_name_unique_per_tenant")
        ]

    def __str__(self) -> str:
        return self.name


class AgentWatcher(models.Model):
    """A member told when this agent's runs fail or time out."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="watchers")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "user"], name="agent_watcher_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} watches {self.agent_id}"
