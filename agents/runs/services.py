"""The run lifecycle outside the engine: start, cancel, resume, re-run, wait, dispatch, sweep, retention.

Execution on a worker (claim, the engine's database hooks, finish) is in ``agents.runs.execution``; this
package is the only place that changes a run's status.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from agents.engine.spec import spec_for_version
from agents.engine.validate import input_problems
from agents.errors import RunInputInvalid
from agents.notifications.services import notify, run_link
from agents.runs.models import Run, StepRun
from agents.workflows.models import Agent, AgentVersion
from agents.workflows.services import watcher_emails
from billing.plans import Metric
from billing.quotas import Entitlement, entitlement, plan_limit, quota_consume
from falcon import metrics, pgnotify, sql, tracing
from falcon.celery import enqueue
from falcon.errors import Conflict, InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import Tenant

RUN_EXECUTE_TASK = "agents.tasks.run_execute_task"

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def run_enqueue_now(run_id: Any) -> None:
    """Hands the run to a worker now (by task name: this module never imports the task module)."""
    enqueue(RUN_EXECUTE_TASK, str(run_id))


def run_enqueue(run_id: Any) -> None:
    """Hands the run to a worker once the surrounding transaction commits."""
    transaction.on_commit(lambda: run_enqueue_now(run_id))


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
    claim: bool = False,
    charge: bool = True,
    savepoint: bool = True,
    plan: Entitlement | None = None,
) -> tuple[Run, bool]:
    """A queued run of the published version (or ``version``), and whether it is new.

    The same idempotency key for the same agent within 24 h returns the first run instead.
    ``enqueue=False`` leaves the queued run for the caller to execute inline (``run_execute``); the
    sweeper dispatches it anyway if the caller dies first. ``claim=True`` (inline execution in the
    caller's transaction) creates it already claimed when the tenant is below its concurrency limit.
    ``charge=False``: the caller consumes the run's quota unit itself, later in the same transaction
    (``quota_consume(tenant, Metric.RUNS)``), so that the shared counter row is locked only briefly.
    ``savepoint=False``: inside the caller's transaction no savepoint is taken (two round trips), so
    a refusal (the run quota) fails the caller's whole transaction: for a caller that answers it
    only after rolling back (a webhook delivery). A repeated idempotency key never fails.
    ``plan``: the tenant's plan as the caller read it moments ago (else read here).
    """
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not idempotency_key or len(idempotency_key) > 200:
            raise InvalidInput("The idempotency key must be 1 to 200 characters.", field="idempotency_key")
    if agent.archived_at:
        raise Conflict("The agent is archived.", code="agent_archived")
    version = version or agent.published_version
    if version is None:
        raise Conflict("The agent has no published version; publish one first.", code="agent_not_published")
    spec = spec_for_version(version.pk, lambda: version.definition)
    problems = input_problems(spec.inputs, input)
    if problems:
        raise RunInputInvalid(problems)
    for attempt in range(2):
        run = _run_insert(
            agent,
            version,
            input,
            actor,
            trigger,
            trigger_ref,
            idempotency_key,
            rerun_of,
            enqueue=enqueue,
            claim=claim,
            charge=charge,
            savepoint=savepoint,
            plan=plan,
        )
        if run is not None:
            return run, True
        # The key is taken (the INSERT did nothing, nothing was charged): by a run within the
        # window (the answer to a repeated delivery, not charged again), or by an older one whose
        # key is released so that it may be used again (then one more try).
        assert idempotency_key is not None
        if existing := _idempotent_match(agent, idempotency_key):
            return existing, False
        if attempt:
            raise IntegrityError(f"the idempotency key of agent {agent.pk} stays taken")
        Run.objects.filter(
            agent=agent,
            idempotency_key=idempotency_key,
            created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW,
        ).update(idempotency_key=None)
    raise AssertionError("unreachable")


# A run whose idempotency key is taken is not inserted (no row back) rather than failing: a
# repeated delivery needs no savepoint to be answered inside the caller's transaction (a webhook's).
_KEY = sql.column(Run, "idempotency_key")
_INSERT_SUFFIX = (  # names from metadata
    f" ON CONFLICT ({sql.column(Run, 'agent')}, {_KEY}) WHERE {_KEY} IS NOT NULL DO NOTHING"  # noqa: S608
    f" RETURNING (SELECT audit_run_starts FROM {sql.table(Tenant)} WHERE id = %s)"
)


def _idempotent_match(agent: Agent, key: str) -> Run | None:
    return (
        Run.objects.filter(
            agent=agent, idempotency_key=key, created_at__gte=timezone.now() - IDEMPOTENCY_WINDOW
        )
        .select_related("agent", "version")
        .first()
    )


def _run_insert(
    agent: Agent,
    version: AgentVersion,
    input: Any,
    actor: Actor,
    trigger: str,
    trigger_ref: str,
    idempotency_key: str | None,
    rerun_of: Run | None,
    *,
    enqueue: bool,
    claim: bool,
    charge: bool,
    savepoint: bool,
    plan: Entitlement | None,
) -> Run | None:
    """The run's row, its run-quota unit and (when the tenant chains run starts) its audit event, in
    one transaction of three statements: this is every API, webhook and schedule run's path. None:
    the idempotency key is taken (nothing written)."""
    now = timezone.now()
    with transaction.atomic(savepoint=savepoint):
        ent = plan or entitlement(agent.tenant_id, now=now)
        run = Run(
            tenant_id=agent.tenant_id,
            agent=agent,
            version=version,
            trigger=trigger,
            trigger_ref=trigger_ref,
            idempotency_key=idempotency_key,
            input=input,
            actor_label=actor.label[:255],
            actor_type=actor.type,
            actor_id=str(actor.id)[:64],
            rerun_of=rerun_of,
            trace_id=tracing.trace_id(),
            created_at=now,
            enqueued_at=now,
        )
        if claim and runs_running_count(agent.tenant_id) < ent.limit(Metric.CONCURRENT_RUNS):
            # Executed inline within the caller's transaction: nobody else sees it until it has
            # finished, so it never holds one of the tenant's concurrency slots.
            run.status, run.claims, run.started_at, run.heartbeat_at = Run.Status.RUNNING, 1, now, now
        elif claim:
            run.deferred = True  # at the limit: queued, dispatched when one of its runs finishes
        inserted = sql.insert([run], _INSERT_SUFFIX, [sql.param(Run, "tenant", agent.tenant_id)])
        if inserted is None:
            return None
        (audited,) = inserted
        run._state.adding = False
        run.started_with = ent
        metrics.after_commit(metrics.RUNS_STARTED.labels(trigger).inc)
        if charge:  # after the INSERT: the counter row every run start shares is locked until commit
            quota_consume(agent.tenant_id, Metric.RUNS, ent=ent)
        # A run start is a data event, recorded on the run (who, which key, which trigger): runs
        # do not queue on the tenant's audit chain unless the tenant asks for every start chained.
        if audited:
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
    return run


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
    if run.status == Run.Status.CANCELLED:
        run_finished_notify(run.pk)
        metrics.after_commit(metrics.RUNS_FINISHED.labels(run.status, run.trigger).inc)
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


RUN_FINISHED_CHANNEL = "falcon_run_finished"
_finished = pgnotify.Listener(RUN_FINISHED_CHANNEL)


def run_wait(run_id: Any, wait_s: float) -> Run:
    """The run, once finished or when ``wait_s`` is up (a bounded long poll for synchronous callers).

    On PostgreSQL the caller sleeps until the worker's finishing transaction notifies it (one
    listening connection per process for every waiter); it re-reads the run at least every second
    in case a notification was lost. Elsewhere it polls.
    """
    deadline = time.monotonic() + wait_s
    if not pgnotify.supported():
        while True:
            run = Run.objects.select_related("agent", "version").get(pk=run_id)
            if run.status in Run.FINISHED or time.monotonic() >= deadline:
                return run
            time.sleep(WAIT_POLL_S)
    run = Run.objects.select_related("agent", "version").get(pk=run_id)
    if run.status in Run.FINISHED or wait_s <= 0:
        return run
    key = str(run_id)
    event = _finished.register(key)
    try:
        while True:
            run = Run.objects.select_related("agent", "version").get(pk=run_id)
            left = deadline - time.monotonic()
            if run.status in Run.FINISHED or left <= 0:
                return run
            # Woken by the notification; without a listener (it failed), poll as on SQLite.
            event.wait(timeout=min(1.0 if _finished.listening else WAIT_POLL_S, left))
            event.clear()
    finally:
        _finished.unregister(key, event)


def run_waiters_stop() -> None:
    """Closes this process's listening connection (shutdown, test teardown)."""
    _finished.stop()


def finished_listener() -> pgnotify.Listener:
    """The process's listener of finished runs (run_wait and the event streams share it)."""
    return _finished


def run_finished_notify(run_id: Any) -> None:
    """Wakes whoever waits for this run (``run_wait``), when the caller's transaction commits."""
    pgnotify.notify(*run_finished_message(run_id))


def run_finished_message(run_id: Any) -> tuple[str, str]:
    """(channel, payload) of the notification that a run finished (``sql.update(notify=…)`` sends it)."""
    return RUN_FINISHED_CHANNEL, str(run_id)


def run_failure_notify(run: Run) -> None:
    """A run failed or timed out: its agent's watchers and the tenant's channels are told."""
    event = "run.timed_out" if run.status == "timed_out" else "run.failed"
    watchers = watcher_emails(run.agent)
    error = run.error or {}
    notify(
        tenant_id=run.tenant_id,
        event=event,
        subject=f"{run.agent.name}: run {run.status.replace('_', ' ')}",
        body=f"Run {run.pk} of {run.agent.name} ended {run.status}: {error.get('code', '')} "
        f"{error.get('message', '')}\n{run_link(run.pk)}",
        recipients=watchers,
        agent_id=run.agent_id,
        run_id=run.pk,
        data={"run": str(run.pk), "agent": str(run.agent_id), "error": error},
    )


# --- dispatch and sweepers (Celery beat) -------------------------------------------------------------


def runs_running_count(tenant_id: Any) -> int:
    """How many of a tenant's runs hold a slot of its concurrency limit now."""
    row = sql.execute(_RUNNING_SQL, [sql.param(Run, "tenant", tenant_id)])
    return int(row[0])


_DEFERRED_SQL = (
    f"SELECT 1 FROM {Run._meta.db_table} WHERE tenant_id = %s AND status = 'queued' AND deferred = %s LIMIT 1"  # noqa: S608
)
_RUNNING_SQL = f"SELECT COUNT(*) FROM {Run._meta.db_table} WHERE tenant_id = %s AND status = 'running'"  # noqa: S608


def deferred_query(tenant_id: Any) -> tuple[str, list[Any]]:
    """(query, params) finding a run of the tenant that waits for a concurrency slot: a finishing run
    asks it in its own statement (``sql.update_with``) and dispatches only when it finds one."""
    return _DEFERRED_SQL, [sql.param(Run, "tenant", tenant_id), True]


def runs_dispatch_tenant(tenant_id: Any, *, lost_before: Any = None) -> int:
    """Enqueues a tenant's queued runs that have no task on the way, as far as its limit allows.

    Those are the runs the concurrency limit deferred, and (from the sweeper, with ``lost_before``)
    runs queued so long ago that their task must have been lost. Fresh queued runs already have a task:
    dispatching them again would only make claims fail (and flood the broker under a backlog).
    """
    if lost_before is None and not sql.execute(*deferred_query(tenant_id)):
        return 0  # the common case after a run finishes: nobody is waiting for its slot
    running = runs_running_count(tenant_id)
    room = plan_limit(tenant_id, Metric.CONCURRENT_RUNS) - running
    if room <= 0:
        return 0
    waiting = Q(deferred=True)
    if lost_before is not None:
        waiting |= Q(enqueued_at__lt=lost_before)
    ids = list(
        Run.objects.filter(waiting, tenant_id=tenant_id, status=Run.Status.QUEUED)
        .order_by("enqueued_at")
        .values_list("pk", flat=True)[:room]
    )
    if ids:
        Run.objects.filter(pk__in=ids).update(enqueued_at=timezone.now(), deferred=False)
        for run_id in ids:
            run_enqueue_now(run_id)
    return len(ids)


# --- Sweepers (Celery beat) -----------------------------------------------------------------------------


def runs_in_progress_gauge() -> Iterator[GaugeMetricFamily]:
    """``falcon_runs_in_progress{status}``, read from the database at each scrape: right whichever
    process or machine holds the runs (one grouped count over the status index)."""
    family = GaugeMetricFamily(
        "falcon_runs_in_progress",
        "Runs not finished yet, by status (queued, running, waiting).",
        labels=["status"],
    )
    counts = dict(
        Run.objects.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.WAITING])
        .order_by()
        .values("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    for status in (Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.WAITING):
        family.add_metric([status.value], counts.get(status, 0))
    yield family


def runs_sweep() -> dict[str, int]:
    """Re-queues runs whose worker died (stale heartbeat), or fails them after too many claims; and
    re-dispatches queued runs whose task was lost or deferred by the concurrency limit."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.FALCON_RUN_HEARTBEAT_TIMEOUT_S)
    requeued = failed = 0
    with transaction.atomic():
        orphans = list(
            Run.objects.select_for_update(skip_locked=True).filter(
                status=Run.Status.RUNNING, heartbeat_at__lt=stale_before
            )
        )
        for run in orphans:
            if run.claims < settings.FALCON_RUN_MAX_CLAIMS:
                Run.objects.filter(pk=run.pk).update(status=Run.Status.QUEUED, enqueued_at=now)
                run_enqueue(run.pk)
                requeued += 1
            else:
                Run.objects.filter(pk=run.pk).update(
                    status=Run.Status.FAILED,
                    finished_at=now,
                    error={
                        "code": "worker_lost",
                        "step": "",
                        "message": (
                            f"The worker executing this run stopped responding {run.claims} times; giving up."
                        ),
                    },
                )
                failed += 1
                metrics.RUNS_FINISHED.labels(Run.Status.FAILED, run.trigger).inc()
    redispatch_before = now - timedelta(seconds=settings.FALCON_RUN_QUEUED_REDISPATCH_S)
    tenants = (
        Run.objects.filter(status=Run.Status.QUEUED, enqueued_at__lt=redispatch_before)
        .values("tenant_id")
        .annotate(n=Count("pk"))
    )
    redispatched = sum(
        runs_dispatch_tenant(row["tenant_id"], lost_before=redispatch_before) for row in tenants
    )
    for action, count in (("requeued", requeued), ("failed", failed), ("redispatched", redispatched)):
        if count:
            metrics.SWEEPER_ACTIONS.labels(action).inc(count)
    return {"requeued": requeued, "failed": failed, "redispatched": redispatched}


def runs_resume_due() -> int:
    """Wakes runs whose timed wait is over."""
    now = timezone.now()
    resumed = 0
    with transaction.atomic():
        due = list(
            Run.objects.select_for_update(skip_locked=True).filter(
                status=Run.Status.WAITING, resume_at__lte=now
            )
        )
        for run in due:
            values = {**run.resume_values, run.waiting_step: {"resumed_by": "timer", "at": now.isoformat()}}
            Run.objects.filter(pk=run.pk).update(
                status=Run.Status.QUEUED, resume_values=values, resume_at=None, enqueued_at=now
            )
            run_enqueue(run.pk)
            resumed += 1
    return resumed


# --- retention (billing's retention task calls it through its pruner registry) -------------------------

PRUNE_BATCH = 500


def runs_tenant_ids() -> list[Any]:
    return list(Run.objects.values_list("tenant_id", flat=True).distinct())


def runs_prune(tenant_id: Any, cutoff: Any) -> dict[str, int]:
    """Deletes a tenant's finished runs created before ``cutoff``, with their steps, in batches."""
    pruned = {"runs": 0, "steps": 0}
    while True:
        ids = list(
            Run.objects.filter(tenant_id=tenant_id, status__in=Run.FINISHED, created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("pk", flat=True)[:PRUNE_BATCH]
        )
        if not ids:
            return pruned
        with transaction.atomic():
            pruned["steps"] += StepRun.objects.filter(run_id__in=ids).delete()[0]
            Run.objects.filter(rerun_of_id__in=ids).update(rerun_of=None)
            pruned["runs"] += Run.objects.filter(pk__in=ids).delete()[0]
