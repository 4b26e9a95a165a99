"""Executing runs on a worker: claim, run the engine with database-backed hooks, finish; and the sweepers.

Runs are I/O-bound. A worker runs the Celery *threads* pool with many threads (e.g. 128), and a thread
never holds a database connection across an LLM call: it closes it before the call and opens one
again for the next checkpoint. So hundreds of runs can wait on providers at once while PostgreSQL sees
only the few connections that are doing short writes (see docs/decisions/0005-run-execution.md).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import cache, partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from opentelemetry import context as otel_context
from opentelemetry import trace

from agents.engine.runner import Runner, RunOutcome
from agents.engine.spec import PURE_STEP_TYPES, provider_of, spec_for_version, version_uses_env
from agents.engine.types import LlmRequest, LlmResult, ResolvedPrompt, RunCancelled, StepFailure, StepRecord
from agents.engine.validate import input_problems
from agents.llm import gateway as llm
from agents.llm.gateway import Answer
from agents.prompts.services import prompt_resolve
from agents.runs import events
from agents.runs.models import Run, StepRun
from agents.runs.payloads import log_safe, public_error_of
from agents.runs.services import (
    deferred_query,
    run_enqueue_now,
    run_failure_notify,
    run_finished_message,
    runs_dispatch_tenant,
    runs_running_count,
)
from agents.workflows.models import Agent, AgentVersion, Variable
from billing.models import AgentSpendCap, Subscription
from billing.plans import Metric
from billing.quotas import (
    SUBSCRIPTION_FIELDS,
    UNREAD,
    AgentCap,
    Entitlement,
    Reservation,
    Settlement,
    concurrency_limit_sql,
    entitlement_of,
)
from connectors.errors import ConnectorError
from connectors.kinds import KINDS, LLM_PROVIDER_KINDS, LLM_PROVIDERS, Resolved
from connectors.models import Connector
from connectors.services import connector_find, connector_resolve, provider_connector
from falcon import genai_semconv, logs, metrics, sql, tracing
from falcon.errors import NotFound
from tenants.models import Tenant, tenant_lock

logger = logging.getLogger(__name__)


# --- Heartbeats -----------------------------------------------------------------------------------------


class HeartbeatMonitor:
    """One thread per worker process stamps ``heartbeat_at`` of every run it is executing.

    One UPDATE for all of them every few seconds, however many runs are in flight; the sweeper treats
    a run whose heartbeat is older than ``FALCON_RUN_HEARTBEAT_TIMEOUT_S`` as orphaned.
    """

    def __init__(self) -> None:
        self._runs: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, run_id: uuid.UUID) -> None:
        with self._lock:
            self._runs.add(run_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="falcon-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, run_id: uuid.UUID) -> None:
        with self._lock:
            self._runs.discard(run_id)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._runs)

    def _loop(self) -> None:
        while True:
            time.sleep(settings.FALCON_RUN_HEARTBEAT_INTERVAL_S)
            with self._lock:
                ids = list(self._runs)
            if not ids:
                continue
            try:
                Run.objects.filter(pk__in=ids, status=Run.Status.RUNNING).update(heartbeat_at=timezone.now())
            except Exception:
                logger.exception("Heartbeat update failed")
            finally:
                connection.close()


heartbeats = HeartbeatMonitor()
# Settles LLM calls a run stopped waiting for, once they answer (off the event loop: it writes rows).
_settlers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="falcon-llm-settle")


# --- Stopping a worker ---------------------------------------------------------------------------------


class WorkerStop:
    """A worker told to stop (SIGTERM: Celery's warm shutdown) finishes the steps in flight, then hands
    each run back to the queue at its next step boundary; a step still in flight when the grace period
    ends is dropped and the run handed back too (its next claim executes that step again)."""

    def __init__(self) -> None:
        self._deadline: float | None = None

    def begin(self, grace_s: float) -> None:
        if self._deadline is None:
            self._deadline = time.monotonic() + grace_s
            logger.info(
                "Stopping: runs are handed back at their next step, or in %.0f s at the latest", grace_s
            )

    @property
    def requested(self) -> bool:
        return self._deadline is not None

    def expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def reset(self) -> None:
        self._deadline = None


worker_stop = WorkerStop()
BOUNCE_PAUSE_S = 1.0


def worker_shutting_down(sender: Any = None, **_: Any) -> None:
    """Celery's ``worker_shutting_down`` (SIGTERM): start the grace period, and stop taking tasks.

    Celery keeps consuming while its tasks finish, so RabbitMQ would hand this worker the very runs it
    hands back: it cancels its own consumers (remote control, processed by its own event loop)."""
    worker_stop.begin(settings.FALCON_WORKER_GRACE_S)
    if not sender or not heartbeats.busy():
        return  # nothing in flight: the warm shutdown ends at once, no run can come back to it
    from falcon.celery import app
    from falcon.queues import ROUTES

    try:
        for queue in ROUTES:
            app.control.cancel_consumer(queue, destination=[str(sender)])
    except Exception:  # the grace period still applies; a run that arrives is bounced (run_execute)
        logger.exception("Could not stop consuming while shutting down")


# --- Claiming -------------------------------------------------------------------------------------------


@cache
def _claim_sql() -> str:
    columns = ", ".join(connection.ops.quote_name(f.column) for f in Run._meta.concrete_fields)
    agents = sql.table(Agent)
    versions = sql.table(AgentVersion)
    return (
        f"UPDATE {sql.table(Run)} SET status = %s, deferred = %s, claims = claims + 1, heartbeat_at = %s, "  # noqa: S608
        "started_at = COALESCE(started_at, %s) WHERE id = %s AND status = %s "
        f"RETURNING {columns}, (SELECT name FROM {agents} WHERE id = agent_id), "
        f"(SELECT number FROM {versions} WHERE id = version_id), "
        # The agent's spend cap, read with the plan: the run's LLM reservations use both for a while.
        f"(SELECT {sql.column(AgentSpendCap, 'monthly_usd')} FROM {sql.table(AgentSpendCap)} c "
        f"WHERE c.{sql.column(AgentSpendCap, 'agent')} = {sql.table(Run)}.{sql.column(Run, 'agent')})"
    )


@cache
def _state_sql() -> str:
    """The run's tenant and state, and its tenant's subscription (the plan sets the concurrency limit):
    one read before the claim."""
    subscription = ", ".join(f"s.{sql.column(Subscription, name)}" for name in SUBSCRIPTION_FIELDS)
    tenant, run_tenant = sql.column(Subscription, "tenant"), sql.column(Run, "tenant")
    return (
        f"SELECT r.{run_tenant}, r.{sql.column(Run, 'status')}, s.{tenant}, {subscription} "  # noqa: S608
        f"FROM {sql.table(Run)} r LEFT JOIN {sql.table(Subscription)} s ON s.{tenant} = r.{run_tenant} "
        "WHERE r.id = %s"
    )


def _trip_sql(tenant_row: str, tenant: str, limit: str, returning: str = "") -> tuple[str, str, str]:
    """The claim as one round trip (PostgreSQL): three statements sent as one string run as one implicit
    transaction, each with its own snapshot. The first locks the tenant row; the second, which sees
    every claim committed before the lock was granted, takes the run if the tenant is below its
    limit; the third marks the run deferred if it is not (a finishing run of the tenant dispatches
    it again). The tenant row stays locked for the server's few microseconds, not for Python's
    round trips between statements (with hundreds of threads waiting for the GIL, claims queued
    behind a lock whose holder was waiting for its turn to run). ``tenant_row``, ``tenant`` and
    ``limit``: SQL for the tenant's id (in the lock, then within the run's UPDATE) and its limit;
    ``returning``: more columns for the claim's RETURNING."""
    runs = sql.table(Run)
    running = (
        f"(SELECT COUNT(*) FROM {runs} busy WHERE busy.tenant_id = {tenant} AND busy.status = 'running')"  # noqa: S608
    )
    lock = connection.ops.for_update_sql(no_key=True)
    return (
        f"SELECT id FROM {sql.table(Tenant)} WHERE id = {tenant_row} {lock}",  # noqa: S608 - names from metadata
        _claim_sql().replace(
            "WHERE id = %s AND status = %s ", f"WHERE id = %s AND status = %s AND {running} < {limit} "
        )
        + returning,
        f"UPDATE {runs} SET deferred = true WHERE id = %s AND status = %s AND {running} >= {limit}",  # noqa: S608 - from metadata
    )


@cache
def _claim_trip_sql() -> tuple[str, str, str]:
    """The claim trip for a run whose tenant and limit the caller knows (parameters)."""
    return _trip_sql("%s", "%s", "%s")


def _claim_in_one_trip(run_param: Any, tenant_id: Any, limit: int, now: Any) -> Any:
    tenant_param = sql.param(Run, "tenant", tenant_id)
    queued = Run.Status.QUEUED
    params = [
        *[tenant_param],
        *[Run.Status.RUNNING, False, now, now, run_param, queued, tenant_param, limit],
        *[run_param, queued, tenant_param, limit],
    ]
    with connection.cursor() as cursor:
        sql.run(cursor, _claim_trip_sql(), params)
        cursor.nextset()  # the tenant lock's row
        return cursor.fetchone()


@cache
def _claim_by_id_sql() -> tuple[str, str, str]:
    """A worker's claim when it knows the run's id alone (PostgreSQL): the claim trip with the
    tenant and its concurrency limit found by the statements themselves (the limit from the plan and
    the subscription's override, ``billing.quotas.concurrency_limit_sql``), and the subscription's
    fields returned with the run for the plan the run's LLM calls are reserved under. One round trip
    where a state read came first."""
    runs = sql.table(Run)
    tenant = f"{runs}.{sql.column(Run, 'tenant')}"
    subscriptions = sql.table(Subscription)
    plan = "".join(
        f", (SELECT s.{sql.column(Subscription, name)} FROM {subscriptions} s "  # noqa: S608 - from metadata
        f"WHERE s.{sql.column(Subscription, 'tenant')} = {tenant})"
        for name in SUBSCRIPTION_FIELDS
    )
    run_tenant = f"(SELECT {sql.column(Run, 'tenant')} FROM {runs} WHERE id = %s)"  # noqa: S608
    return _trip_sql(run_tenant, tenant, concurrency_limit_sql(tenant), plan)


def _claim_by_id(run_param: Any, now: Any) -> Any:
    queued = Run.Status.QUEUED
    params = [run_param, Run.Status.RUNNING, False, now, now, run_param, queued, run_param, queued]
    with connection.cursor() as cursor:
        sql.run(cursor, _claim_by_id_sql(), params)
        cursor.nextset()  # the tenant lock's row
        return cursor.fetchone()


_RUN_FIELDS = tuple(f.name for f in Run._meta.concrete_fields)
_RUN_ATTNAMES = [f.attname for f in Run._meta.concrete_fields]


@dataclass(frozen=True)
class Claimed:
    """A run this worker now executes, with what the engine shows of its agent and version."""

    run: Run
    agent_name: str
    version_number: int
    inline: bool = False
    entitlement: Entitlement | None = None  # the tenant's plan as the claim read it
    agent_cap_usd: AgentCap = UNREAD  # and the agent's spend cap (None: none)


def run_claim(run_id: Any) -> Run | None:
    claimed = _claim(run_id)
    return None if claimed is None else claimed.run


def _claim(run_id: Any, handed: Run | None = None) -> Claimed | None:
    """Takes a queued run for this worker, or None (gone, already taken, or the tenant is at its limit).

    The tenant row is locked while counting its running runs, so concurrent claims cannot exceed the
    per-tenant concurrency limit; the conditional UPDATE makes a second delivery of the same task a no-op.
    Every claim takes this path: two round trips on PostgreSQL (the run's state with the tenant's
    plan, then lock, claim and deferral together: ``_claim_trip_sql``), the claimed run returned by the
    UPDATE itself with its agent's name and its version's number; on SQLite the same statements one by
    one under its database lock. ``handed``: the run as this process's ``run_start`` returned it,
    with the plan that start read (``Run.started_with``): one round trip, the claim trip alone.
    """
    run_param = sql.param(Run, "id", run_id)
    now = timezone.now()
    ent: Entitlement | None = None
    if connection.vendor == "postgresql":
        if handed is not None and handed.started_with is not None:
            # Started moments ago by this process (its plan just read): the claim trip alone, whose
            # UPDATE takes the run only if it is still queued.
            ent = handed.started_with
            row = _claim_in_one_trip(run_param, handed.tenant_id, ent.limit(Metric.CONCURRENT_RUNS), now)
        else:
            row = _claim_by_id(run_param, now)
    else:
        with connection.cursor() as cursor:
            cursor.execute(_state_sql(), [run_param])
            state = cursor.fetchone()
        if state is None or state[1] != Run.Status.QUEUED:
            return None
        tenant_id = sql.convert(Run, ("tenant",), state[:1])[0]
        # No subscription row (the join found none): the Free plan.
        subscription = None if state[2] is None else sql.convert(Subscription, SUBSCRIPTION_FIELDS, state[3:])
        ent = entitlement_of(tenant_id, subscription, now=now)
        with transaction.atomic():
            tenant_lock(tenant_id)
            if runs_running_count(tenant_id) >= ent.limit(Metric.CONCURRENT_RUNS):
                # Stays queued, marked so that a finishing run of this tenant dispatches it again.
                Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(deferred=True)
                return None
            row = sql.execute(
                _claim_sql(),
                [Run.Status.RUNNING, False, now, now, run_param, Run.Status.QUEUED],
            )
    if row is None:
        return None
    fields = len(_RUN_FIELDS)
    run = Run.from_db("default", _RUN_ATTNAMES, sql.convert(Run, _RUN_FIELDS, row[:fields]))
    if run.enqueued_at is not None:
        metrics.QUEUE_WAIT.labels(run.trigger).observe(max(0.0, (now - run.enqueued_at).total_seconds()))
    name, number, cap = row[fields : fields + 3]
    if cap is not None:
        cap = sql.convert(AgentSpendCap, ("monthly_usd",), [cap])[0]
    if ent is None:  # claimed by id: the subscription came back with the run (no plan: no row)
        plan = row[fields + 3 :]
        subscription = None if plan[0] is None else sql.convert(Subscription, SUBSCRIPTION_FIELDS, plan)
        ent = entitlement_of(run.tenant_id, subscription, now=now)
    return Claimed(run, name, int(number), entitlement=ent, agent_cap_usd=cap)


def _settle_when_done(reservation: Any, future: Future[Answer]) -> None:
    """Settles an LLM call the run stopped waiting for (cancelled, timed out) with what the provider
    really reported, once it answers: the tokens were spent even though the run dropped the answer."""
    _settlers.submit(_settle, reservation, future)


def _settle(reservation: Any, future: Future[Answer]) -> None:
    try:
        result = (
            None if future.cancelled() or future.exception() is not None else llm.llm_result(future.result())
        )
        llm.llm_budget_settle(reservation, result)
    except Exception:
        logger.exception("Could not settle an abandoned LLM call")
    finally:
        connection.close()


# --- Hooks: the engine's window on the database ---------------------------------------------------------


def _pure(row: StepRun) -> bool:
    """A step whose re-execution after a crash changes nothing outside the run."""
    return row.kind == StepRun.Kind.STEP and (row.step_type in PURE_STEP_TYPES or row.status == "skipped")


class DatabaseHooks:
    """Checkpoints to StepRun rows; LLM calls without holding a database connection; cancellation."""

    CANCEL_CHECK_INTERVAL_S = 1.0
    # The plan and the agent's spend cap the claim read serve the run's first LLM calls too (two
    # reads less per call); a plan or cap change reaches a run in flight within this many seconds.
    ENTITLEMENT_REUSE_S = 10.0

    def __init__(
        self, run: Run, entitlement: Entitlement | None = None, agent_cap_usd: AgentCap = UNREAD
    ) -> None:
        self.run = run
        self._entitlement = entitlement
        self._agent_cap_usd = agent_cap_usd
        self._entitlement_until = time.monotonic() + self.ENTITLEMENT_REUSE_S
        self.claim = run.claims
        self._secrets = llm.known_secrets()
        # The claim has just read the run's state: the first check is due a second from now.
        self._cancel_checked = time.monotonic()
        self._cancelled = False
        self.handback = False  # set when the worker stops: the run goes back to the queue, not cancelled
        self.trace_parent = tracing.current()  # the run's span: the parent of every step's
        self._lock = threading.Lock()
        self._pending: list[StepRun] = []
        self._effects = 0  # side effects in flight (LLM calls, connector calls, sleeps)
        # LLM calls answered whose reservations are not settled yet: the next call's reservation, or
        # the run's finishing statement, settles them (one round trip less per call).
        self._unsettled: list[tuple[Reservation, LlmResult]] = []
        self.prompts_used: list[dict[str, Any]] = []
        # What this claim recorded (prompt tokens, completion tokens, cost): the run's totals when it
        # is the run's first claim, without summing the rows back.
        self.totals: list[Any] = [0, 0, Decimal(0)]

    def step_started(self, key: str, step_type: str) -> None:
        # The engine's own threads (parallel branches, map items) log with the run's context too.
        logs.bind(tenant=self.run.tenant_id, run_id=self.run.pk, step=key)
        events.step_started_notify(self.run.pk, key, step_type)

    def checkpoint(self, record: StepRecord) -> None:
        """Step rows are batched and saved by the next statement that has to be sent anyway.

        Pure steps (transform, branch, skips) wait for the run's finishing statement; re-executing
        them after a crash changes nothing outside the run. A side-effect step's row (an LLM or
        connector call) waits only while no other side effect is in flight: the next effect saves it
        before it starts (``_effect``), else the finishing statement inserts it with the outcome. A
        crash therefore never repeats a side effect while another runs, and a run ending with its
        LLM call records the step and the outcome in one round trip.
        """
        row = StepRun(
            tenant_id=self.run.tenant_id,
            run_id=self.run.pk,
            key=record.key,
            step_id=record.step_id,
            step_type=record.step_type,
            kind=record.kind,
            parent_key=record.parent_key,
            attempt=record.attempt,
            claim=self.claim,
            status=record.status,
            input=log_safe(record.input, secrets=self._secrets),
            output=log_safe(record.output, secrets=self._secrets),
            error=log_safe(public_error_of(record.error, self._secrets), secrets=self._secrets),
            model=record.model,
            provider=record.provider,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cost_usd=Decimal(str(round(record.cost_usd, 8))),
            latency_ms=record.latency_ms,
            started_at=record.started_at,
            finished_at=record.finished_at,
        )
        if record.kind == StepRun.Kind.STEP:
            logs.drop("step")
        _trace_record(record, self.trace_parent)
        if record.started_at is not None and record.finished_at is not None:
            metrics.STEP_DURATION.labels(record.step_type, record.status).observe(
                max(0.0, (record.finished_at - record.started_at).total_seconds())
            )
        with self._lock:
            self._pending.append(row)
            if self._effects == 0 or _pure(row):
                return
            rows, self._pending = self._pending, []
        self._save(rows)

    @contextlib.contextmanager
    def _effect(self) -> Iterator[None]:
        """Around a side effect: the side-effect steps recorded but not saved are saved first, so a
        crash during this effect cannot repeat theirs (the count and the batch change under one lock:
        a step recorded meanwhile by another thread sees this effect in flight and is saved at once)."""
        with self._lock:
            self._effects += 1
            effectful = any(not _pure(row) for row in self._pending)
            rows, self._pending = (self._pending, []) if effectful else ([], self._pending)
        try:
            if rows:
                self._save(rows)
            yield
        finally:
            with self._lock:
                self._effects -= 1

    def settle_pending(self) -> None:
        """Settles the LLM calls answered so far (their reservations replaced by the real figures)."""
        with self._lock:
            unsettled, self._unsettled = self._unsettled, []
        for reservation, result in unsettled:
            llm.llm_budget_settle(reservation, result)

    def take_settlements(self) -> list[Settlement]:
        """The answered calls' settlements as statements for the finishing statement (settled here
        and now when one cannot be: see ``quota_settlement``)."""
        with self._lock:
            unsettled, self._unsettled = self._unsettled, []
        return [s for r, result in unsettled if (s := llm.llm_budget_settlement(r, result)) is not None]

    def flush(self) -> None:
        """Saves the batched pure steps now (a run handed back to the queue keeps them)."""
        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            self._save(rows, notify=False)

    def take_pending(self) -> list[StepRun]:
        """The batched pure steps, counted in the totals, for the run's finishing statement to insert
        with the outcome (one round trip; it wakes the streams)."""
        with self._lock:
            rows, self._pending = self._pending, []
            self._count(rows)
        return rows

    def _count(self, rows: list[StepRun]) -> None:
        for row in rows:
            self.totals[0] += row.prompt_tokens
            self.totals[1] += row.completion_tokens
            self.totals[2] += row.cost_usd

    def _save(self, rows: list[StepRun], notify: bool = True) -> None:
        try:
            # No savepoint: inside an inline delivery's transaction nothing else can conflict, and a
            # worker's claim is not inside one.
            # An inline run commits with its delivery: nobody can watch it.
            if notify and not connection.in_atomic_block:
                # One statement: the rows and the notification that wakes open streams to read them.
                sql.insert_notify(rows, *events.step_recorded_message(self.run.pk))
            else:
                sql.insert(rows)
        except IntegrityError as exc:
            # Another worker already recorded one of these steps as succeeded: this claim lost the run.
            raise RunCancelled() from exc
        with self._lock:
            self._count(rows)

    def cancelled(self) -> bool:
        """The engine asks at each step boundary: a stopping worker hands the run back here."""
        if worker_stop.requested:
            self.handback = True
            return True
        return self.cancel_requested()

    def _interrupted(self) -> bool:
        """Asked while a step is in flight (an LLM call, a sleep): it finishes unless the run was
        cancelled or the stopping worker's grace period is over."""
        if worker_stop.expired():
            self.handback = True
            return True
        return self.cancel_requested()

    def cancel_requested(self) -> bool:
        if self._cancelled:
            return True
        now = time.monotonic()
        with self._lock:
            if now - self._cancel_checked < self.CANCEL_CHECK_INTERVAL_S:
                return False
            self._cancel_checked = now
        state = (
            Run.objects.filter(pk=self.run.pk).values_list("status", "cancel_requested_at", "claims").first()
        )
        # Cancelled by a person, or taken over by another claim after the sweeper re-queued it.
        self._cancelled = (
            state is None or state[1] is not None or state[0] != Run.Status.RUNNING or state[2] != self.claim
        )
        return self._cancelled

    def _resolve(self, connector: Connector) -> Resolved:
        resolved = connector_resolve(connector)
        with self._lock:
            self._secrets.extend(v for v in resolved.secret_values() if v not in self._secrets)
        return resolved

    def _llm_credentials(self, request: LlmRequest) -> dict[str, Any] | None:
        return tenant_llm_credentials(self.run.tenant_id, request, self._resolve)

    def llm(self, request: LlmRequest) -> LlmResult:
        with self._effect():
            self.settle_pending()  # the previous calls' real figures, before this call's estimate
            return self._llm(request)

    def _llm(self, request: LlmRequest) -> LlmResult:
        credentials = self._llm_credentials(request)
        price = llm.price_of(request.model)  # the reservation and the answer priced alike, read once
        fresh = time.monotonic() < self._entitlement_until  # else both are read again
        reservation = llm.llm_budget_reserve(
            request,
            tenant_id=self.run.tenant_id,
            agent_id=self.run.agent_id,
            own_credentials=credentials is not None,
            price=price,
            entitlement=self._entitlement if fresh else None,
            agent_cap_usd=self._agent_cap_usd if fresh else UNREAD,
        )
        # Release the database connection for the seconds the provider takes (see the module docstring).
        if not connection.in_atomic_block:
            connection.close()
        try:
            with tracing.within(self.trace_parent):  # the chat span's parent, from any engine thread
                future = llm.llm_start(request, credentials, price)
        except BaseException:
            llm.llm_budget_settle(reservation, None)
            raise
        try:
            result = self._llm_wait(request, future)
        except (RunCancelled, StepFailure):
            # Still in flight (or just done): the provider's own figures settle it when they come.
            future.add_done_callback(partial(_settle_when_done, reservation))
            raise
        except BaseException:
            llm.llm_budget_settle(reservation, None)
            raise
        with self._lock:
            self._unsettled.append((reservation, result))  # settled with the next statement sent
        return result

    def _llm_wait(self, request: LlmRequest, future: Future[Answer]) -> LlmResult:
        deadline = time.monotonic() + request.timeout_s + 5
        while True:
            try:
                answer = future.result(timeout=self.CANCEL_CHECK_INTERVAL_S)
            except FutureTimeout:
                cancelled = self._interrupted()
                if not connection.in_atomic_block:
                    connection.close()  # back to the pool while the provider takes its time
                if cancelled:
                    raise RunCancelled() from None  # the answer is dropped; its usage is still settled
                if time.monotonic() > deadline:
                    raise StepFailure(
                        "the model did not answer in time", code="llm_timeout", retryable=True
                    ) from None
                continue
            return llm.llm_result(answer)

    def resolve_prompt(self, ref: Any, step_id: str) -> ResolvedPrompt:
        """The library version the step uses now (its label is read at call time), remembered on the run."""
        try:
            version = prompt_resolve(
                tenant_id=self.run.tenant_id, name=ref.name, label=ref.label, version=ref.version
            )
        except NotFound as exc:
            raise StepFailure(exc.message, code="prompt_not_found") from exc
        used = {
            "step": step_id,
            "prompt": ref.name,
            "label": None if ref.version is not None else (ref.label or "production"),
            "version": version.number,
            "version_id": str(version.pk),
        }
        with self._lock:
            if used not in self.prompts_used:
                self.prompts_used.append(used)
        return ResolvedPrompt(
            template=version.template,
            system=version.system,
            input_variables=tuple(version.input_variables),
            parameters=dict(version.model_parameters),
        )

    def run_agent(self, name: str, input: Any, depth: int) -> Any:
        agent = (
            Agent.objects.select_related("published_version")
            .filter(tenant_id=self.run.tenant_id, name__iexact=name, archived_at__isnull=True)
            .first()
        )
        if agent is None or agent.published_version is None:
            raise StepFailure(f"no published agent named {name!r}", code="unknown_agent")
        spec = spec_for_version(agent.published_version.pk, agent.published_version.definition)
        problems = input_problems(spec.inputs, input)
        if problems:
            raise StepFailure(
                f"input for {name!r} is not valid: {problems[0].path}: {problems[0].message}",
                code="invalid_tool_input",
            )
        runner = Runner(
            spec,
            input=input,
            hooks=self,
            run={"id": str(self.run.pk), "agent": name},
            depth=depth,
            key_prefix=f"@{name}.{uuid.uuid4().hex[:8]}.",
        )
        outcome = runner.run()
        if outcome.status != "succeeded":
            raise StepFailure(
                f"agent {name!r} {outcome.status}: {(outcome.error or {}).get('message', '')}",
                code="tool_agent_failed",
            )
        return outcome.output

    def agent_input_schema(self, name: str) -> dict[str, Any]:
        agent = (
            Agent.objects.select_related("published_version")
            .filter(tenant_id=self.run.tenant_id, name__iexact=name)
            .first()
        )
        if agent is None or agent.published_version is None:
            return {"type": "object"}
        schema = spec_for_version(agent.published_version.pk, agent.published_version.definition).inputs
        return schema if schema.get("type") == "object" else {"type": "object"}

    def mcp_tool(self, connector: str, tool: str) -> dict[str, Any]:
        """From the connector's catalogue (listed on save and by its test); asked of the server when the
        catalogue does not have the tool (it may have been added since)."""
        found = connector_find(tenant_id=self.run.tenant_id, name=connector)
        if found is None or found.kind != "mcp":
            raise StepFailure(f"no MCP server connector named {connector!r}", code="unknown_connector")
        offered = (found.catalogue or {}).get("tools") or []
        match = next((t for t in offered if isinstance(t, dict) and t.get("name") == tool), None)
        if match is None:
            listed = self.call_connector("mcp", connector, {"list_tools": True})
            match = next((t for t in listed if t.get("name") == tool), None)
        if match is None:
            raise StepFailure(f"the MCP server {connector!r} offers no tool {tool!r}", code="unknown_tool")
        return dict(match)

    def call_connector(self, step_type: str, connector: str, operation: dict[str, Any]) -> Any:
        found = connector_find(tenant_id=self.run.tenant_id, name=connector)
        if found is None:
            raise StepFailure(f"no connector named {connector!r}", code="unknown_connector")
        kind = KINDS[found.kind]
        if step_type not in kind.step_types:
            raise StepFailure(
                f"connector {connector!r} ({found.kind}) cannot serve a {step_type} step",
                code="connector_kind_mismatch",
            )
        resolved = self._resolve(found)
        with self._effect():
            if not connection.in_atomic_block:
                connection.close()  # the remote system may take seconds: do not hold a pooled connection
            return self._call(found, kind, resolved, step_type, operation)

    def _call(
        self, found: Connector, kind: Any, resolved: Resolved, step_type: str, operation: dict[str, Any]
    ) -> Any:
        try:
            with tracing.within(self.trace_parent):  # HTTP and database spans join the run's trace
                answer = kind.call(resolved, step_type, operation)
        except ConnectorError as exc:  # the engine knows step failures, not connectors
            metrics.CONNECTOR_CALLS.labels(found.kind, exc.code).inc()
            raise StepFailure(
                exc.message, code=exc.code, retryable=exc.retryable, status_code=exc.status_code
            ) from exc
        metrics.CONNECTOR_CALLS.labels(found.kind, "ok").inc()
        return answer

    def sleep(self, seconds: float) -> None:
        with self._effect():  # a wait (a retry's back-off, a short wait step) saves what it follows
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                if self._interrupted():
                    raise RunCancelled()
                time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    def thread_done(self) -> None:
        logs.fresh()
        connection.close()


# --- Executing ------------------------------------------------------------------------------------------


def tenant_llm_credentials(
    tenant_id: Any, request: LlmRequest, resolve: Callable[[Connector], Resolved] = connector_resolve
) -> dict[str, Any] | None:
    """The request's named provider connector, else the tenant's default one for the model's
    provider, else None (the platform's keys). The generator calls models the same way."""
    provider = provider_of(request.model)
    if provider == "sandbox":
        return None
    if request.connector:
        connector = connector_find(tenant_id=tenant_id, name=request.connector, kinds=LLM_PROVIDER_KINDS)
        if connector is None:
            raise StepFailure(
                f"no LLM provider connector named {request.connector!r}", code="unknown_connector"
            )
        if connector.kind != ("ollama" if provider == "ollama_chat" else provider):
            raise StepFailure(
                f"connector {connector.name!r} is for {connector.kind}, not {provider}",
                code="connector_kind_mismatch",
            )
    else:
        connector = provider_connector(tenant_id=tenant_id, provider=provider)
        if connector is None:
            return None
    return LLM_PROVIDERS[connector.kind].credentials(resolve(connector))


class NearbyRuns:
    """Runs executed in the process whose caller waits for them (a synchronous webhook's short run in
    a web process): claimed, heart-beaten, logged and finished exactly as on a worker, on a bounded
    pool; when the pool is busy the caller hands the run to the workers instead."""

    def __init__(self, size: int) -> None:
        self._free = threading.BoundedSemaphore(size)
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="falcon-nearby-run")

    def submit(self, run: Run) -> Future[Executed] | None:
        """``run``: as this process's ``run_start`` returned it (claimed with the plan it read)."""
        if not self._free.acquire(blocking=False):
            return None
        try:
            return self._pool.submit(self._execute, run)
        except BaseException:
            self._free.release()
            raise

    def _execute(self, run: Run) -> Executed:
        try:
            return _run_execute(run.pk, handed=run)
        finally:
            self._free.release()


nearby = NearbyRuns(settings.FALCON_SYNC_RUN_THREADS)


def _definition_of(version_id: Any) -> Callable[[], dict[str, Any]]:
    return lambda: AgentVersion.objects.values_list("definition", flat=True).get(pk=version_id)


@dataclass(frozen=True)
class Executed:
    """What executing a run recorded: its status (None: not claimed here, or another claim's), and
    for a finished run the output and error as stored (what a synchronous caller is answered)."""

    status: str | None
    output: Any = None
    error: Any = None


def run_execute(run_id: Any, *, run: Run | None = None) -> str | None:
    """Claims and executes a run to its end (or its next wait); returns the final status, or None.

    ``run``: a run ``run_start(claim=True)`` created already claimed, executed inline in the caller's
    transaction (a webhook delivery): nobody else can see it, so it needs no heartbeat and frees no
    concurrency slot when it ends.
    """
    return _run_execute(run_id, run=run).status


def _run_execute(run_id: Any, *, run: Run | None = None, handed: Run | None = None) -> Executed:
    if run is not None:
        if run.status != Run.Status.RUNNING:
            return Executed(None)
        claimed: Claimed | None = Claimed(run, run.agent.name, run.version.number, inline=True)
    elif worker_stop.requested:
        # Delivered to a worker that is stopping: not claimed here, handed on to one that stays (after a
        # pause: the broker may offer it to this worker again until its consumers are cancelled).
        time.sleep(BOUNCE_PAUSE_S)
        run_enqueue_now(run_id)
        return Executed(None)
    else:
        claimed = _claim(run_id, handed)
    if claimed is None:
        if not connection.in_atomic_block:
            connection.close()  # back to the pool, as after a run: nothing else may come for a while
        return Executed(None)
    run = claimed.run
    if not claimed.inline:
        heartbeats.add(run.pk)
    started = time.monotonic()
    context = logs.bind(tenant=run.tenant_id, run_id=run.pk)
    span = tracing.start(
        f"{genai_semconv.OPERATION_INVOKE_AGENT} {claimed.agent_name}",
        {
            genai_semconv.OPERATION_NAME: genai_semconv.OPERATION_INVOKE_AGENT,
            "gen_ai.agent.name": claimed.agent_name,
            "falcon.run.id": str(run.pk),
            "falcon.tenant.id": str(run.tenant_id),
            "falcon.run.trigger": run.trigger,
            "falcon.run.claim": run.claims,
            "falcon.agent.version": claimed.version_number,
        },
    )
    span_token = otel_context.attach(trace.set_span_in_context(span))
    hooks: DatabaseHooks | None = None
    try:
        spec = spec_for_version(run.version_id, _definition_of(run.version_id))
        # Every claim counts (crash re-queues and resumed waits too): the first has nothing to resume.
        done = (
            []
            if run.claims == 1
            else StepRun.objects.filter(run=run, kind=StepRun.Kind.STEP)
            .filter(Q(status=StepRun.Status.SUCCEEDED) | Q(status=StepRun.Status.SKIPPED))
            .values_list("key", "status", "output")
        )
        completed = {key: output for key, status, output in done if status == StepRun.Status.SUCCEEDED}
        skipped = {key for key, status, _ in done if status == StepRun.Status.SKIPPED}
        remaining = max(0.0, spec.timeout_s - run.active_seconds)
        hooks = DatabaseHooks(run, entitlement=claimed.entitlement, agent_cap_usd=claimed.agent_cap_usd)
        env = (
            dict(Variable.objects.filter(tenant_id=run.tenant_id).values_list("name", "value"))
            if version_uses_env(run.version_id)
            else {}
        )
        runner = Runner(
            spec,
            input=run.input,
            hooks=hooks,
            completed=completed,
            skipped=skipped,
            resume_values=run.resume_values,
            env=env,
            deadline=timezone.now() + timedelta(seconds=remaining),
            run={
                "id": str(run.pk),
                "agent": claimed.agent_name,
                "version": claimed.version_number,
                "trigger": run.trigger,
                "claim": run.claims,
            },
        )
        try:
            outcome = runner.run()  # the batched pure steps are inserted by the finishing statement
        except RunCancelled:
            outcome = RunOutcome(
                "cancelled", error={"code": "cancelled", "message": "The run was cancelled.", "step": ""}
            )
        except Exception as exc:  # a bug must fail the run, not leave it running
            logger.exception("Run %s crashed in the engine", run.pk)
            outcome = RunOutcome(
                "failed",
                error={
                    "code": "internal_error",
                    "step": "",
                    "message": f"internal error: {type(exc).__name__}",
                },
            )
        executed = _finish(claimed, outcome, time.monotonic() - started, hooks)
        status = executed.status
        span.set_attribute("falcon.run.status", status or "")
        if status in (Run.Status.FAILED, Run.Status.TIMED_OUT):
            tracing.failed(span, (outcome.error or {}).get("code") or status)
        return executed
    finally:
        if hooks is not None:
            _settle_rest(hooks)
        otel_context.detach(span_token)
        span.end()
        logs.unbind(context)
        if not claimed.inline:
            heartbeats.discard(run.pk)
        if not connection.in_atomic_block:
            connection.close()  # back to the pool: the thread may now wait a long time for its next task


def _settle_rest(hooks: DatabaseHooks) -> None:
    """The answered LLM calls a run ended without settling (it was handed back, lost to another
    claim, or crashed in the engine): their tokens were spent all the same."""
    try:
        hooks.settle_pending()
    except Exception:
        logger.exception("Could not settle the LLM calls of run %s", hooks.run.pk)


def _finish(claimed: Claimed, outcome: RunOutcome, elapsed: float, hooks: DatabaseHooks) -> Executed:
    """Records the outcome, the batched pure steps and (for a worker's run) the notification that wakes
    whoever waits for it, in one statement that also tells whether a run of the tenant waits for the
    slot this one frees."""
    run = claimed.run
    now = timezone.now()
    status = outcome.status
    if status == "cancelled" and hooks.handback:
        return Executed(_hand_back(claimed, elapsed, hooks))
    if status == "cancelled" and hooks.cancel_requested():
        state = Run.objects.filter(pk=run.pk).values_list("status", "claims").first()
        if state and (state[0] != Run.Status.RUNNING or state[1] != run.claims):
            return Executed(None)  # the sweeper handed the run to another claim: that claim finishes it
    steps = hooks.take_pending()
    if run.claims == 1:
        prompt, completion, cost = hooks.totals
    else:  # earlier claims recorded steps too
        totals = StepRun.objects.filter(run=run).aggregate(
            p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost_usd")
        )
        prompt = (totals["p"] or 0) + sum(row.prompt_tokens for row in steps)
        completion = (totals["c"] or 0) + sum(row.completion_tokens for row in steps)
        cost = (totals["cost"] or Decimal(0)) + sum((row.cost_usd for row in steps), Decimal(0))
    fields: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": cost}
    if hooks.prompts_used:
        fields["prompt_versions"] = [
            *[p for p in run.prompt_versions if p not in hooks.prompts_used],
            *hooks.prompts_used,
        ]
    if status == "waiting":
        fields.update(
            status=Run.Status.WAITING,
            waiting_step=outcome.waiting_step,
            wait_prompt=outcome.wait_prompt or "",
            resume_at=outcome.resume_at,
        )
    else:
        fields.update(
            status=status,
            finished_at=now,
            error=public_error_of(outcome.error, hooks._secrets),
            output=log_safe(outcome.output, secrets=hooks._secrets),
        )
    where = "id = %s AND status = %s AND claims = %s"
    where_params = [sql.param(Run, "id", run.pk), Run.Status.RUNNING, run.claims]
    told = status != "waiting" and not claimed.inline  # whoever waits for the run is woken
    # The LLM calls' quota settlements ride along: they apply even if the run is no longer this claim's.
    settlements = hooks.take_settlements()
    try:
        finished = sql.update_with(
            Run,
            fields,
            where,
            where_params,
            add={"active_seconds": elapsed},
            notify=run_finished_message(run.pk) if told else None,  # sent by the UPDATE itself
            insert_rows=steps,
            exists=deferred_query(run.tenant_id) if told else None,
            also=[(s.statement, s.params) for s in settlements],
        )
    except IntegrityError:
        # Another claim already recorded one of these steps as succeeded: the run is that claim's.
        for settlement in settlements:
            settlement.done(0)  # the statement changed nothing: settled on their own
        return Executed(None)
    for settlement, changed in zip(settlements, finished.also, strict=True):
        settlement.done(changed)
    updated, deferred = finished.changed, finished.found
    if updated:
        metrics.RUN_DURATION.labels(status).observe(elapsed)
        if status != "waiting":
            metrics.after_commit(metrics.RUNS_FINISHED.labels(status, run.trigger).inc)
        logger.info(
            "Run %s %s after %.0f ms",
            run.pk,
            status,
            elapsed * 1000,
            extra={"status": status, "duration_ms": round(elapsed * 1000, 1), "trigger": run.trigger},
        )
    if updated and deferred:  # an inline run never held a slot: it frees none
        runs_dispatch_tenant(run.tenant_id)
    if updated and status in (Run.Status.FAILED, Run.Status.TIMED_OUT):
        run.status, run.error = status, outcome.error
        try:
            run_failure_notify(run)
        except Exception:  # telling people must never undo the run's own record
            logger.exception("Could not raise the failure notification of run %s", run.pk)
    if not updated:
        return Executed(None)
    return Executed(status, fields.get("output"), fields.get("error"))


def _hand_back(claimed: Claimed, elapsed: float, hooks: DatabaseHooks) -> str | None:
    """Puts a run this stopping worker will not finish back in the queue: the steps it completed are
    kept (the next claim resumes after them), its concurrency slot is freed, its task sent again."""
    run = claimed.run
    try:
        hooks.flush()
    except RunCancelled:
        return None  # another claim owns the run already
    updated = sql.update(
        Run,
        {"status": Run.Status.QUEUED, "enqueued_at": timezone.now(), "deferred": False},
        "id = %s AND status = %s AND claims = %s",
        [sql.param(Run, "id", run.pk), Run.Status.RUNNING, run.claims],
        add={"active_seconds": elapsed},
    )
    if not updated:
        return None
    metrics.RUNS_HANDED_BACK.inc()
    logger.info("Run %s handed back to the queue: this worker is stopping", run.pk)
    run_enqueue_now(run.pk)
    runs_dispatch_tenant(run.tenant_id)
    return Run.Status.QUEUED


def _trace_record(record: StepRecord, parent: Any) -> None:
    """A span per step attempt and per tool call, with the times the engine recorded."""
    if not tracing.enabled_here():
        return
    attributes: dict[str, Any] = {
        "falcon.step.key": record.key,
        "falcon.step.id": record.step_id,
        "falcon.step.type": record.step_type,
        "falcon.step.attempt": record.attempt,
        "falcon.step.status": record.status,
    }
    if record.kind == StepRun.Kind.TOOL_CALL:
        tool = record.key.rsplit(".", 1)[-1]
        name = f"{genai_semconv.OPERATION_EXECUTE_TOOL} {tool}"
        attributes[genai_semconv.OPERATION_NAME] = genai_semconv.OPERATION_EXECUTE_TOOL
        attributes[genai_semconv.TOOL_NAME] = tool
    else:
        name = f"step {record.key}"
    if record.model:
        attributes[genai_semconv.REQUEST_MODEL] = record.model
    error = (record.error or {}).get("code") if record.status == "failed" else None
    if error:
        attributes[genai_semconv.ERROR_TYPE] = error
    tracing.record(
        name,
        parent=parent,
        started=record.started_at,
        finished=record.finished_at,
        attributes=attributes,
        error=error,
    )
