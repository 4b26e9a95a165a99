"""Starting, cancelling, resuming and re-running runs. Execution itself is in ``agents.execution``."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.engine.spec import spec_for_version
from agents.engine.validate import input_problems
from agents.models import Agent, AgentVersion, Run
from billing.plans import Metric
from billing.quotas import quota_consume
from falcon.errors import Conflict, InvalidInput
from tenants.audit import Actor, audit_record

IDEMPOTENCY_WINDOW = timedelta(hours=24)


class RunInputInvalid(InvalidInput):
    def __init__(self, problems: list[Any]) -> None:
        super().__init__(
            f"The input does not match the agent's input schema: {problems[0].path}: {problems[0].message}",
            code="invalid_input",
        )
        self.problems = problems

    @property
    def fields(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for problem in self.problems:
            result.setdefault(problem.path, []).append(problem.message)
        return result


def run_enqueue(run_id: Any) -> None:
    """Hands the run to a worker once the surrounding transaction commits."""
    from agents.tasks import run_execute_task

    transaction.on_commit(lambda: run_execute_task.delay(str(run_id)))


def run_start(
    *,
    agent: Agent,
    input: Any,
    actor: Actor,
    trigger: str = Run.Trigger.API,
    trigger_ref: str = "",
    idempotency_key: str | None = None,
    version: AgentVersion | None = None,
    rerun_of: Run | None = None,
    enqueue: bool = True,
) -> tuple[Run, bool]:
    """A queued run of the published version (or ``version``), and whether it is new.

    The same idempotency key for the same agent within 24 h returns the first run instead.
    ``enqueue=False`` leaves the queued run for the caller to execute inline (``run_execute``); the
    sweeper dispatches it anyway if the caller dies first.
    """
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not idempotency_key or len(idempotency_key) > 200:
            raise InvalidInput("The idempotency key must be 1 to 200 characters.", field="idempotency_key")
        existing = _idempotent_match(agent, idempotency_key)
        if existing is not None:
            return existing, False
    if agent.archived_at:
        raise Conflict("The agent is archived.", code="agent_archived")
    version = version or agent.published_version
    if version is None:
        raise Conflict("The agent has no published version; publish one first.", code="agent_not_published")
    spec = spec_for_version(version.pk, version.definition)
    problems = input_problems(spec.inputs, input)
    if problems:
        raise RunInputInvalid(problems)
    try:
        with transaction.atomic():
            if idempotency_key is not None:
                # A key older than the window is released so it may be used again.
                Run.objects.filter(
                    agent=agent,
                    idempotency_key=idempotency_key,
                    created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW,
                ).update(idempotency_key=None)
            quota_consume(agent.tenant_id, Metric.RUNS)
            run = Run.objects.create(
                tenant_id=agent.tenant_id,
                agent=agent,
                version=version,
                trigger=trigger,
                trigger_ref=trigger_ref,
                idempotency_key=idempotency_key,
                input=input,
                actor_label=actor.label[:255],
                rerun_of=rerun_of,
            )
            audit_record(
                tenant=agent.tenant_id,
                actor=actor,
                action="run.started",
                target_type="run",
                target_id=run.pk,
                after={
                    "agent": agent.name,
                    "version": version.number,
                    "trigger": trigger,
                    "rerun_of": str(rerun_of.pk) if rerun_of else None,
                },
            )
            if enqueue:
                run_enqueue(run.pk)
    except IntegrityError:
        if idempotency_key is not None and (existing := _idempotent_match(agent, idempotency_key)):
            return existing, False  # a concurrent request with the same key won the race
        raise
    return run, True


def _idempotent_match(agent: Agent, key: str) -> Run | None:
    return (
        Run.objects.filter(
            agent=agent, idempotency_key=key, created_at__gte=timezone.now() - IDEMPOTENCY_WINDOW
        )
        .select_related("agent", "version")
        .first()
    )


@transaction.atomic
def run_cancel(*, run: Run, actor: Actor) -> Run:
    """Queued and waiting runs stop at once; a running one at its next step boundary (or in-flight call)."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.status in Run.FINISHED:
        raise Conflict(f"The run already finished ({run.status}).", code="run_finished")
    before = run.status
    now = timezone.now()
    run.cancel_requested_at = now
    fields = ["cancel_requested_at"]
    if run.status in (Run.Status.QUEUED, Run.Status.WAITING):
        run.status = Run.Status.CANCELLED
        run.finished_at = now
        run.error = {"code": "cancelled", "message": f"Cancelled by {actor.label}.", "step": run.waiting_step}
        fields += ["status", "finished_at", "error"]
    run.save(update_fields=fields)
    audit_record(
        tenant=run.tenant_id,
        actor=actor,
        action="run.cancelled",
        target_type="run",
        target_id=run.pk,
        before={"status": before},
        after={"status": run.status},
    )
    return run


@transaction.atomic
def run_resume(*, run: Run, decision: Any, comment: str, actor: Actor) -> Run:
    """Answers a waiting step (an approval, or ends a timed wait early); the run continues on a worker."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.status != Run.Status.WAITING:
        raise Conflict(f"The run is not waiting (it is {run.status}).", code="run_not_waiting")
    run.resume_values = {
        **run.resume_values,
        run.waiting_step: {
            "decision": decision,
            "comment": comment,
            "by": actor.label,
            "at": timezone.now().isoformat(),
        },
    }
    run.status = Run.Status.QUEUED
    run.enqueued_at = timezone.now()
    run.resume_at = None
    run.save(update_fields=["resume_values", "status", "enqueued_at", "resume_at"])
    audit_record(
        tenant=run.tenant_id,
        actor=actor,
        action="run.resumed",
        target_type="run",
        target_id=run.pk,
        before={"status": "waiting", "step": run.waiting_step},
        after={"status": "queued", "decision": decision},
    )
    run_enqueue(run.pk)
    return run


def run_rerun(*, run: Run, actor: Actor) -> Run:
    """A new run of the same version with the same input."""
    new_run, _ = run_start(
        agent=run.agent,
        input=run.input,
        actor=actor,
        trigger=Run.Trigger.RERUN,
        version=run.version,
        rerun_of=run,
    )
    return new_run


WAIT_POLL_S = 0.05


def run_wait(run_id: Any, wait_s: float) -> Run:
    """The run, once finished or when ``wait_s`` is up (a bounded long poll for synchronous callers)."""
    deadline = time.monotonic() + wait_s
    while True:
        run = Run.objects.select_related("agent", "version").get(pk=run_id)
        if run.status in Run.FINISHED or time.monotonic() >= deadline:
            return run
        time.sleep(WAIT_POLL_S)
