"""Runs and the per-step log."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.utils import timezone

from agents.workflows.models import Agent, AgentVersion
from billing.quotas import Entitlement
from tenants.models import Tenant


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
        MCP = "mcp", "MCP"

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
    # Who started it (a data event recorded on the run itself; the audit chain is for configuration
    # and access, unless the tenant turns on audit_run_starts).
    actor_label = models.CharField(max_length=255, blank=True)
    actor_type = models.CharField(max_length=16, blank=True)
    actor_id = models.CharField(max_length=64, blank=True, help_text="The user's or the API key's id.")
    input = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # The OpenTelemetry trace of the request or task that started it ("" when tracing is off).
    trace_id = models.CharField(max_length=32, blank=True, default="")
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

    # In memory only: the tenant's plan as the run's start read it (``run_start``), so that the
    # process which executes the run at once (a synchronous webhook's) claims it without reading
    # the plan again. None on a run read from the database.
    started_with: Entitlement | None = None

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
