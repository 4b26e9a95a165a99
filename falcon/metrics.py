"""Prometheus metrics: every metric Falcon exports, defined here and nowhere else.

Processes share one directory (``PROMETHEUS_MULTIPROC_DIR``, by default ``<FALCON_VAR_DIR>/metrics``,
set by ``falcon/__init__.py`` before anything imports prometheus-client): each gunicorn worker, Celery
worker and beat writes its own files there and a scrape of any web process adds them all up
(prometheus-client's multiprocess mode). Workers on machines without a web process serve the same sum on
``FALCON_WORKER_METRICS_PORT``.

Labels are bounded: no tenant, run or agent ids (per-tenant figures are in ``/api/v1/usage``); a model
is named only when the price table or LiteLLM knows it, anything a tenant typed is ``other``.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from falcon.errors import error_body

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LLM = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)

RUNS_STARTED = Counter("falcon_runs_started_total", "Runs created, by trigger.", ["trigger"])
RUNS_FINISHED = Counter(
    "falcon_runs_finished_total",
    "Runs that reached a final status, by status and trigger.",
    ["status", "trigger"],
)
RUN_DURATION = Histogram(
    "falcon_run_duration_seconds",
    "Execution time of a run's claim until it finished or waited, by status.",
    ["status"],
    buckets=_SECONDS,
)
STEP_DURATION = Histogram(
    "falcon_step_duration_seconds",
    "Duration of each step attempt, by step type and status.",
    ["type", "status"],
    buckets=_SECONDS,
)
QUEUE_WAIT = Histogram(
    "falcon_run_queue_wait_seconds",
    "Time from a run's enqueueing to its claim by a worker, by trigger.",
    ["trigger"],
    buckets=(*_FAST, 30, 60, 300),
)
LLM_CALLS = Counter(
    "falcon_llm_calls_total", "LLM calls, by provider, model and outcome.", ["provider", "model", "outcome"]
)
LLM_TOKENS = Counter(
    "falcon_llm_tokens_total",
    "Tokens of LLM calls, by provider, model and direction.",
    ["provider", "model", "direction"],
)
LLM_COST = Counter(
    "falcon_llm_cost_usd_total", "Cost of LLM calls in USD, by provider and model.", ["provider", "model"]
)
LLM_LATENCY = Histogram(
    "falcon_llm_latency_seconds",
    "Latency of LLM calls, by provider and model.",
    ["provider", "model"],
    buckets=_LLM,
)
QUOTA_REJECTIONS = Counter(
    "falcon_quota_rejections_total",
    "Requests refused by a quota or plan limit, by metric and plan.",
    ["metric", "plan"],
)
WEBHOOK_REQUESTS = Counter(
    "falcon_webhook_requests_total", "Webhook deliveries, by outcome (the answer's status).", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "falcon_webhook_acceptance_seconds",
    "Time to answer a webhook delivery, by outcome.",
    ["outcome"],
    buckets=_FAST,
)
CONNECTOR_CALLS = Counter(
    "falcon_connector_calls_total",
    "Outbound connector calls of steps, by kind and outcome.",
    ["kind", "outcome"],
)
SWEEPER_ACTIONS = Counter(
    "falcon_sweeper_actions_total",
    "What the run sweeper did: requeued orphans, failed ones out of claims, redispatched queued runs.",
    ["action"],
)
RUNS_HANDED_BACK = Counter(
    "falcon_runs_handed_back_total", "Runs a stopping worker put back in the queue at a step boundary."
)
NOTIFICATION_DELIVERIES = Counter(
    "falcon_notification_deliveries_total",
    "Notification deliveries, by channel kind and outcome.",
    ["kind", "outcome"],
)

_known_models: dict[str, bool] = {}
_known_lock = threading.Lock()
_MAX_KNOWN = 2048


def model_label(model: str, known: Callable[[str], bool]) -> str:
    """The model's name as a label when ``known`` says it is a real, priced model, else ``other``."""
    with _known_lock:
        verdict = _known_models.get(model)
    if verdict is None:
        verdict = bool(known(model))
        with _known_lock:
            if len(_known_models) < _MAX_KNOWN:
                _known_models[model] = verdict
    return model if verdict else "other"


class Counted:
    """An on-commit callback that only counts (tests tell it from the ones that enqueue work)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action

    def __call__(self) -> None:
        self.action()


def after_commit(action: Callable[[], None]) -> None:
    """Counts what a transaction did once it commits (at once outside one): a rolled-back run start is
    not a run start."""
    transaction.on_commit(Counted(action))


class _Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.started


def timer() -> _Timer:
    return _Timer()


# --- Collected at scrape time from the database: right across every process and machine -------------------

_gauges: list[Callable[[], Iterator[GaugeMetricFamily]]] = []


def gauge_source(source: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
    """Registers a function read at each scrape (the apps above register theirs: falcon imports none)."""
    _gauges.append(source)


class _Sources(Collector):
    def collect(self) -> Iterator[Any]:
        for source in _gauges:
            yield from source()


def registry() -> CollectorRegistry:
    """Every process's files in the shared directory, plus the database-backed gauges."""
    combined = CollectorRegistry()
    MultiProcessCollector(combined)
    combined.register(_Sources())
    return combined


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: off (404) unless ``FALCON_METRICS_TOKEN`` is set; then it needs
    ``Authorization: Bearer <token>``."""
    token = settings.FALCON_METRICS_TOKEN
    if not token:
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = JsonResponse(
            error_body("not_authenticated", "A valid metrics token is required."), status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def serve_worker_metrics() -> None:
    """A worker or beat process on a machine without a web process serves the same sum on its own port
    (``FALCON_WORKER_METRICS_PORT``; bind it to a private interface with ``FALCON_WORKER_METRICS_ADDR``)."""
    port = settings.FALCON_WORKER_METRICS_PORT
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=settings.FALCON_WORKER_METRICS_ADDR, registry=registry())
