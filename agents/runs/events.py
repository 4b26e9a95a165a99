"""Live run events: ``GET /api/v1/runs/{id}/events`` as server-sent events.

The stream reads the run and its new step records, gives its database connection back, then sleeps
until the run's progress is notified (PostgreSQL ``NOTIFY``: a step started or was recorded, the run
finished) or two seconds pass; it ends with the run, or after ``FALCON_EVENT_STREAM_MAX_S`` (clients
reconnect by themselves with ``Last-Event-ID``). A process serves at most ``FALCON_EVENT_STREAMS``
streams at once and a tenant at most ``FALCON_EVENT_STREAMS_PER_TENANT`` of them: each open stream
holds a web thread, so no tenant can take a process's threads.

Events:
- ``status``: ``{"status": …}`` whenever the run's status differs from the last one sent (first event).
- ``step.started``: ``{"key", "step_type"}`` when a step with side effects (LLM, HTTP, database, …)
  starts; live only, not replayed after a reconnect.
- ``step``: one per recorded step attempt (pure steps are recorded in batches): key, step id, type,
  kind, attempt, status, error, model, provider, tokens, cost, latency, started and finished times.
  Its ``id`` is the record's time: a reconnect with ``Last-Event-ID`` resumes from there (records
  of the last few seconds may come again: de-duplicate by ``data.id``).
- ``end``: ``{"status", "output", "error"}``, then the stream closes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from agents.engine.spec import PURE_STEP_TYPES
from agents.runs import services
from agents.runs.models import Run, StepRun
from agents.runs.serializers import StepRunSerializer
from falcon import pgnotify

PROGRESS_CHANNEL = "falcon_run_progress"
_progress = pgnotify.Listener(PROGRESS_CHANNEL)
POLL_S = 2.0
# Records written by concurrent branches can land slightly out of time order: a reconnect and each
# read look this far behind the newest record seen (duplicates are skipped within a connection).
OVERLAP = timedelta(seconds=5)
# What the API shows of a step, but its payloads (GET /api/v1/runs/{id} has them), and the record's time.
STEP_FIELDS = (*(f for f in StepRunSerializer.Meta.fields if f not in ("input", "output")), "created_at")


def step_started_notify(run_id: Any, key: str, step_type: str) -> None:
    """Tells open streams that a step with side effects started (outside a transaction only: an inline
    run's steps commit with the delivery, nobody could watch them)."""
    if step_type not in PURE_STEP_TYPES and not connection.in_atomic_block:
        pgnotify.notify(PROGRESS_CHANNEL, f"{run_id} {json.dumps([key, step_type])}")


def step_recorded_notify(run_id: Any) -> None:
    pgnotify.notify(*step_recorded_message(run_id))


def step_recorded_message(run_id: Any) -> tuple[str, str]:
    """(channel, payload) of the notification that a run recorded steps (sent by the INSERT itself)."""
    return PROGRESS_CHANNEL, str(run_id)


def streams_stop() -> None:
    _progress.stop()


class StreamLimits:
    """How many streams this process and each tenant hold open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()

    def acquire(self, tenant_id: Any) -> str | None:
        """None when a stream may open (then ``release`` it), else the limit that refused it."""
        with self._lock:
            if sum(self._open.values()) >= settings.FALCON_EVENT_STREAMS:
                return "process"
            if self._open[str(tenant_id)] >= settings.FALCON_EVENT_STREAMS_PER_TENANT:
                return "tenant"
            self._open[str(tenant_id)] += 1
            return None

    def release(self, tenant_id: Any) -> None:
        with self._lock:
            self._open[str(tenant_id)] -= 1
            if self._open[str(tenant_id)] <= 0:
                del self._open[str(tenant_id)]


limits = StreamLimits()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")  # as the API writes amounts: "0.00000450", never "0E-8"
    return str(value)


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.insert(0, f"id: {event_id}")
    lines.append("data: " + json.dumps(data, default=_json_default, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def parse_last_event_id(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class RunEventStream:
    """The response body: an iterator that releases its stream slot when closed, started or not."""

    def __init__(self, run: Run, since: datetime | None) -> None:
        self.run_id = run.pk
        self.tenant_id = run.tenant_id
        self.since = since - OVERLAP if since is not None else None
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            limits.release(self.tenant_id)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._events()
        finally:
            self.close()

    def _events(self) -> Iterator[bytes]:
        yield b"retry: 1000\n\n"
        deadline = time.monotonic() + settings.FALCON_EVENT_STREAM_MAX_S
        for kind, data, event_id in follow(self.run_id, deadline, since=self.since):
            if kind == "idle":
                yield b": keep-alive\n\n"
            else:
                yield _sse(kind, data, event_id)


def follow(
    run_id: Any, deadline: float, *, since: datetime | None = None
) -> Iterator[tuple[str, Any, str | None]]:
    """The run's events as ``(kind, data, event id)`` until it ends or ``deadline`` (monotonic) passes:
    ``status``, ``step.started``, ``step``, ``end``, and ``idle`` when nothing happened for a while.
    Between reads the database connection is given back; NOTIFY (or a 2 s poll) wakes it."""
    key = str(run_id)
    listening = pgnotify.supported()
    wake = pgnotify.Wake()
    if listening:
        _progress.register(key, wake)
        services.finished_listener().register(key, wake)
    sent: set[Any] = set()
    newest: datetime | None = since
    last_status = None
    try:
        while True:
            state = Run.objects.filter(pk=run_id).values_list("status", "output", "error").first()
            query = StepRun.objects.filter(run_id=run_id)
            if newest is not None:
                query = query.filter(created_at__gte=newest - OVERLAP)
            rows = list(query.order_by("created_at", "id").values(*STEP_FIELDS))
            if not connection.in_atomic_block:
                connection.close()  # back to the pool while this stream sleeps
            for row in rows:
                if row["id"] in sent:
                    continue
                sent.add(row["id"])
                newest = row["created_at"] if newest is None else max(newest, row["created_at"])
                yield "step", row, row["created_at"].isoformat()
            if state is None:
                return
            status, output, error = state
            if status != last_status:
                last_status = status
                yield "status", {"status": status}, None
            if status in Run.FINISHED:
                yield "end", {"status": status, "output": output, "error": error}, None
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return  # the client reconnects with Last-Event-ID
            woken = wake.wait(timeout=min(POLL_S, left))
            for detail in wake.take():
                try:
                    step_key, step_type = json.loads(detail)
                except (ValueError, TypeError):
                    continue
                yield "step.started", {"key": step_key, "step_type": step_type}, None
            if not woken:
                yield "idle", None, None
    finally:
        if listening:
            _progress.unregister(key, wake)
            services.finished_listener().unregister(key, wake)
