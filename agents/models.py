"""Agents, their immutable versions, runs and the per-step log."""

from __future__ import annotations

import uuid
from decimal import Decimal

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


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        WAITING = "waiting", "Waiting"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"

    class Trigger(models.TextChoices):
        API = "api", "API"
        MANUAL = "manual", "Dashboard"
        RERUN = "rerun", "Re-run"
        WEBHOOK = "webhook", "Webhook"
        SCHEDULE = "schedule", "Schedule"
        EMAIL = "email", "E-mail"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="runs")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="runs")
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.API)
    trigger_ref = models.CharField(max_length=64, blank=True)
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # NULL, not '', means "no key": the unique constraint only covers runs that have one.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    actor_label = models.CharField(max_length=255, blank=True)
    input = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    claims = models.PositiveIntegerField(
        default=0, help_text="Times a worker claimed it (crash re-queues count)."
    )
    deferred = models.BooleanField(default=False, help_text="Left queued by the tenant's concurrency limit.")
    active_seconds = models.FloatField(default=0, help_text="Execution time so far, waits excluded.")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    waiting_step = models.CharField(max_length=300, blank=True)
    wait_prompt = models.TextField(blank=True)
    resume_at = models.DateTimeField(null=True, blank=True)
    resume_values = models.JSONField(default=dict, blank=True)
    prompt_versions = models.JSONField(
        default=list,
        blank=True,
        help_text="Governed prompt versions the run used: step, name, label, version.",
    )
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="run_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["tenant", "status"]),
            models.Index(fields=["tenant", "agent", "created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "resume_at"]),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"


class StepRun(models.Model):
    """One attempt of one step, or one iteration / tool call of an agent step, with what it cost."""

    class Kind(models.TextChoices):
        STEP = "step", "Step"
        ITERATION = "iteration", "Agent iteration"
        TOOL_CALL = "tool_call", "Tool call"

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        WAITING = "waiting", "Waiting"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=300, help_text="Step id, prefixed for map items (m[2].sub).")
    step_id = models.CharField(max_length=64)
    step_type = models.CharField(max_length=16)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.STEP)
    parent_key = models.CharField(max_length=300, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    claim = models.PositiveIntegerField(default=1, help_text="Which worker claim of the run executed it.")
    status = models.CharField(max_length=16, choices=Status.choices)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=32, blank=True)
    prompt_tokens = models.IntegerField(default=0)
    completion_tokens = models.IntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    latency_ms = models.IntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # A step that succeeded is never executed (and recorded) a second time, even after a crash.
            models.UniqueConstraint(
                fields=["run", "key"],
                condition=models.Q(status="succeeded", kind="step"),
                name="step_run_succeeded_once",
            ),
        ]
        indexes = [models.Index(fields=["run", "created_at"])]

    def __str__(self) -> str:
        return f"{self.key} #{self.attempt} {self.status}"


class ModelPrice(models.Model):
    """Prices for models LiteLLM's cost map lacks (or an override); edited by platform staff in the admin."""

    model = models.CharField(
        max_length=200, unique=True, help_text="As written in steps, e.g. ollama/llama3.2."
    )
    input_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    output_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.model


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

    class Meta:
        indexes = [models.Index(fields=["trigger", "received_at"])]

    def __str__(self) -> str:
        return f"{self.trigger_id} {'accepted' if self.accepted else self.code}"


# --- the prompt library -----------------------------------------------------------------------------------


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


class NotificationChannel(models.Model):
    """A tenant-wide destination: e-mail addresses, a Slack webhook connector, or a signed webhook."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        SLACK = "slack", "Slack (connector)"
        WEBHOOK = "webhook", "Signed webhook"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    config = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True, help_text="Events it receives; empty: all.")
    secret = models.TextField(blank=True, help_text="Encrypted signing secret (webhook channels).")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="notification_channel_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Notification(models.Model):
    """One message about an event; a burst of the same event of one agent collapses into it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    event = models.CharField(max_length=50)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject = models.CharField(max_length=300)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    count = models.PositiveIntegerField(default=1)
    runs = models.JSONField(default=list, blank=True)
    window_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["tenant", "event", "agent", "window_until"]),
        ]

    def __str__(self) -> str:
        return self.subject


class NotificationDelivery(models.Model):
    """One attempt to bring a notification to one recipient or channel, with its outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipient = models.CharField(max_length=255, blank=True, help_text="E-mail address of a person.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.notification_id} -> {self.recipient or self.channel_id}: {self.status}"
