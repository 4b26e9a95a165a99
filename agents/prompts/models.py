"""The prompt library: prompts, immutable versions with review, labels and their history."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from tenants.models import Tenant


class Prompt(models.Model):
    """A governed prompt: immutable versions go through review; labels say which version is live."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="prompts")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="prompt_name_unique_per_tenant")
        ]
        indexes = [models.Index(fields=["tenant", "created_at"])]
        permissions = [
            ("prompt_view", "View this prompt"),
            ("prompt_edit", "Edit this prompt"),
            ("prompt_publish", "Publish this prompt"),
            ("prompt_run", "Use this prompt"),
            ("prompt_custom", "Has explicit rights on this prompt"),
        ]

    def __str__(self) -> str:
        return self.name


class PromptVersion(models.Model):
    """Template, variables and parameters never change; only the review status moves forward."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_REVIEW = "in_review", "In review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    template = models.TextField()
    system = models.TextField(blank=True)
    input_variables = models.JSONField(default=list, blank=True)
    model_parameters = models.JSONField(default=dict, blank=True)
    commit_message = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_label = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "number"], name="prompt_version_number_unique")
        ]
        indexes = [models.Index(fields=["tenant", "prompt", "number"])]

    def __str__(self) -> str:
        return f"{self.prompt_id} v{self.number}"


class PromptLabel(models.Model):
    """``production``, ``staging`` or a tenant's own: points at one version; moving it deploys."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=50)
    version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="labels")
    protected = models.BooleanField(default=False, help_text="Only approved versions may take it.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prompt", "name"], name="prompt_label_unique")]

    def __str__(self) -> str:
        return f"{self.prompt_id}@{self.name}"


class PromptLabelMove(models.Model):
    """The history of a label: who pointed it from which version to which, and when."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="label_moves")
    label = models.CharField(max_length=50)
    from_number = models.PositiveIntegerField(null=True, blank=True)
    to_number = models.PositiveIntegerField()
    moved_by = models.CharField(max_length=255)
    moved_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["prompt", "moved_at"])]

    def __str__(self) -> str:
        return f"{self.prompt_id}@{self.label}: {self.from_number} -> {self.to_number}"


# --- notifications ----------------------------------------------------------------------------------------
