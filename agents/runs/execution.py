"""Executing runs on a worker: claim, run the engine with database-backed hooks, finish; and the sweepers.

Runs are I/O-bound. A worker runs the Celery *threads* pool with many threads (e.g. 128), and a thread
never holds a database connection across an LLM call: it closes it before the call and opens one
again for the next checkpoint. So hundreds of runs can wait on providers at once while PostgreSQL sees
only the few connections that are doing short writes (see docs/decisions/0005-run-execution.md).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.engine.runner import Runner, RunOutcome
from agents.engine.spec import PURE_STEP_TYPES, provider_of, spec_for_version
from agents.engine.types import LlmRequest, LlmResult, ResolvedPrompt, RunCancelled, StepFailure, StepRecord
from agents.engine.validate import input_problems
from agents.llm import gateway as llm
from agents.prompts.services import prompt_resolve
from agents.runs.models import Run, StepRun
from agents.runs.payloads import log_safe, public_error_of
from agents.runs.services import run_failure_notify, runs_dispatch_tenant, runs_running_count
from agents.workflows.models import Agent, Variable
from billing.plans import Metric
from billing.quotas import plan_limit
from connectors.errors import ConnectorError
from connectors.kinds import KINDS, LLM_PROVIDER_KINDS, LLM_PROVIDERS, Resolved
from connectors.models import Connector
from connectors.services import connector_find, connector_resolve, provider_connector
from falcon.errors import NotFound
from tenants.models import tenant_lock

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
_llm_pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="falcon-llm")


# --- Claiming -------------------------------------------------------------------------------------------


def run_claim(run_id: Any) -> Run | None:
    """Takes a queued run for this worker, or None (gone, already taken, or the tenant is at its limit).

    The tenant row is locked while counting its running runs, so concurrent claims cannot exceed the
    per-tenant concurrency limit; the conditional UPDATE makes a second delivery of the same task a no-op.
    """
    run = Run.objects.filter(pk=run_id).only("tenant_id", "status").first()
    if run is None or run.status != Run.Status.QUEUED:
        return None
    now = timezone.now()
    with transaction.atomic():
        tenant_lock(run.tenant_id)
        running = runs_running_count(run.tenant_id)
        if running >= plan_limit(run.tenant_id, Metric.CONCURRENT_RUNS):
            # Stays queued, marked so that a finishing run of this tenant dispatches it again.
            Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(deferred=True)
            return None
        claimed = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(
            status=Run.Status.RUNNING,
            deferred=False,
            claims=F("claims") + 1,
            heartbeat_at=now,
            started_at=Coalesce(F("started_at"), now),
        )
    if not claimed:
        return None
    return Run.objects.select_related("version", "agent", "tenant").get(pk=run_id)


def _settle_when_done(reservation: Any, future: Future[LlmResult]) -> None:
    """Settles an LLM call the run stopped waiting for (cancelled, timed out) with what the provider
    really reported, once it answers: the tokens were spent even though the run dropped the answer."""
    try:
        result = None if future.cancelled() or future.exception() is not None else future.result()
        llm.llm_budget_settle(reservation, result)
    except Exception:
        logger.exception("Could not settle an abandoned LLM call")
    finally:
        connection.close()


def _llm_call(request: LlmRequest, credentials: dict[str, Any] | None) -> LlmResult:
    """Runs in the LLM thread pool; pricing may read the price table, so the connection is closed after."""
    try:
        return llm.llm_complete(request, credentials)
    finally:
        connection.close()


# --- Hooks: the engine's window on the database ---------------------------------------------------------


class DatabaseHooks:
    """Checkpoints to StepRun rows; LLM calls without holding a database connection; cancellation."""

    CANCEL_CHECK_INTERVAL_S = 1.0

    def __init__(self, run: Run) -> None:
        self.run = run
        self.claim = run.claims
        self._secrets = llm.known_secrets()
        self._cancel_checked = 0.0
        self._cancelled = False
        self._lock = threading.Lock()
        self._pending: list[StepRun] = []
        self.prompts_used: list[dict[str, Any]] = []

    def step_started(self, key: str) -> None:
        return None

    def checkpoint(self, record: StepRecord) -> None:
        """Side-effect steps are saved at once; pure ones (transform, branch, skips) are batched.

        A crash loses at most the batched pure steps since the last side effect, and re-executing those
        changes nothing outside the run: one INSERT per LLM/HTTP/DB step instead of one per step.
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
        pure = record.kind == StepRun.Kind.STEP and (
            record.step_type in PURE_STEP_TYPES or record.status == "skipped"
        )
        with self._lock:
            self._pending.append(row)
            if pure:
                return
            rows, self._pending = self._pending, []
        self._save(rows)

    def flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            self._save(rows)

    def _save(self, rows: list[StepRun]) -> None:
        try:
            with transaction.atomic():
                StepRun.objects.bulk_create(rows)
        except IntegrityError as exc:
            # Another worker already recorded one of these steps as succeeded: this claim lost the run.
            raise RunCancelled() from exc

    def cancelled(self) -> bool:
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
        credentials = self._llm_credentials(request)
        reservation = llm.llm_budget_reserve(
            request,
            tenant_id=self.run.tenant_id,
            agent_id=self.run.agent_id,
            own_credentials=credentials is not None,
        )
        # Release the database connection for the seconds the provider takes (see the module docstring).
        if not connection.in_atomic_block:
            connection.close()
        future = _llm_pool.submit(_llm_call, request, credentials)
        try:
            result = self._llm_wait(request, future)
        except (RunCancelled, StepFailure):
            if future.cancel():  # never started: nothing was spent
                llm.llm_budget_settle(reservation, None)
            else:
                # Still in flight (or just done): the provider's own figures settle it when they come.
                future.add_done_callback(partial(_settle_when_done, reservation))
            raise
        except BaseException:
            llm.llm_budget_settle(reservation, None)
            raise
        llm.llm_budget_settle(reservation, result)
        return result

    def _llm_wait(self, request: LlmRequest, future: Future[LlmResult]) -> LlmResult:
        deadline = time.monotonic() + request.timeout_s + 5
        while True:
            try:
                return future.result(timeout=0.25)
            except FutureTimeout:
                if self.cancelled():
                    raise RunCancelled() from None  # the answer is dropped; its usage is still settled
                if time.monotonic() > deadline:
                    raise StepFailure(
                        "the model did not answer in time", code="llm_timeout", retryable=True
                    ) from None
            finally:
                if not connection.in_atomic_block:
                    connection.close()

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
        if not connection.in_atomic_block:
            connection.close()  # the remote system may take seconds: do not hold a pooled connection
        try:
            return kind.call(resolved, step_type, operation)
        except ConnectorError as exc:  # the engine knows step failures, not connectors
            raise StepFailure(
                exc.message, code=exc.code, retryable=exc.retryable, status_code=exc.status_code
            ) from exc

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.cancelled():
                raise RunCancelled()
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    def thread_done(self) -> None:
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


def run_execute(run_id: Any) -> str | None:
    """Claims and executes a run to its end (or its next wait); returns the final status, or None."""
    run = run_claim(run_id)
    if run is None:
        return None
    heartbeats.add(run.pk)
    started = time.monotonic()
    try:
        spec = spec_for_version(run.version_id, run.version.definition)
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
        hooks = DatabaseHooks(run)
        runner = Runner(
            spec,
            input=run.input,
            hooks=hooks,
            completed=completed,
            skipped=skipped,
            resume_values=run.resume_values,
            env=dict(Variable.objects.filter(tenant_id=run.tenant_id).values_list("name", "value")),
            deadline=timezone.now() + timedelta(seconds=remaining),
            run={
                "id": str(run.pk),
                "agent": run.agent.name,
                "version": run.version.number,
                "trigger": run.trigger,
                "claim": run.claims,
            },
        )
        try:
            outcome = runner.run()
            hooks.flush()
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
        return _finish(run, outcome, time.monotonic() - started, hooks)
    finally:
        heartbeats.discard(run.pk)
        if not connection.in_atomic_block:
            connection.close()  # back to the pool: the thread may now wait a long time for its next task


def _finish(run: Run, outcome: RunOutcome, elapsed: float, hooks: DatabaseHooks) -> str | None:
    now = timezone.now()
    totals = StepRun.objects.filter(run=run).aggregate(
        p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost_usd")
    )
    fields: dict[str, Any] = {
        "active_seconds": F("active_seconds") + elapsed,
        "prompt_tokens": totals["p"] or 0,
        "completion_tokens": totals["c"] or 0,
        "cost_usd": totals["cost"] or Decimal(0),
    }
    if hooks.prompts_used:
        fields["prompt_versions"] = [
            *[p for p in run.prompt_versions if p not in hooks.prompts_used],
            *hooks.prompts_used,
        ]
    status = outcome.status
    if status == "cancelled" and hooks.cancelled():
        state = Run.objects.filter(pk=run.pk).values_list("status", "claims").first()
        if state and (state[0] != Run.Status.RUNNING or state[1] != run.claims):
            return None  # the sweeper handed the run to another claim: that claim finishes it
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
    updated = Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING, claims=run.claims).update(**fields)
    if updated and status != "waiting":
        runs_dispatch_tenant(run.tenant_id)
    if updated and status in (Run.Status.FAILED, Run.Status.TIMED_OUT):
        run.status, run.error = status, outcome.error
        try:
            run_failure_notify(run)
        except Exception:  # telling people must never undo the run's own record
            logger.exception("Could not raise the failure notification of run %s", run.pk)
    return status if updated else None
