"""Connectors to a tenant's systems, and the tenant data keys their secrets are encrypted with."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.models import Tenant


class TenantKey(models.Model):
    """A tenant's AES-256 data key, stored only wrapped (encrypted) by a master key."""

    tenant = models.OneToOneField(Tenant, on_delete=models.PROTECT, primary_key=True, related_name="data_key")
    generation = models.PositiveIntegerField(default=1, help_text="Bumped when the data key is replaced.")
    master_key_id = models.CharField(max_length=32, db_index=True, help_text="Which master key wraps it.")
    wrapped = models.TextField()
    previous_wrapped = models.TextField(
        blank=True,
        help_text="The generation before (wrapped): a value read just before a rekey still decrypts.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"data key g{self.generation} of {self.tenant_id} (wrapped by {self.master_key_id})"


class Connector(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="connectors")
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=32)
    config = models.JSONField(default=dict, help_text="Non-secret settings.")
    secrets = models.JSONField(default=dict, help_text="Field -> ciphertext (never plaintext).")
    secret_hints = models.JSONField(default=dict, help_text="Field -> last 4 characters, for display.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    catalogue = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the remote system offers, as last seen (an MCP server's tools).",
    )
    catalogue_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="connector_name_unique_per_tenant")
        ]
        indexes = [models.Index(fields=["tenant", "kind"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class NetworkAllowance(models.Model):
    """A private network one tenant may reach (an operator's decision, inside the platform's ceiling)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="network_allowances")
    cidr = models.CharField(max_length=64)
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "cidr"], name="network_allowance_unique")]
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.cidr}"
