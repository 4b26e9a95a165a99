"""OpenTelemetry traces: on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) is set.

The standard OTel environment variables apply (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_PROTOCOL`` is http/protobuf, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*``). Each process calls ``configure`` once at start (``falcon/wsgi.py`` for web processes,
Celery's ``worker_init`` and ``beat_init`` for workers and beat): spans go through a batch processor to
the OTLP/HTTP exporter. Instrumented: Django requests, Celery tasks (the context travels in the
message, so a run's task joins the trace of the request that started it), psycopg (database calls),
httpx and aiohttp (outbound HTTP: connectors, LiteLLM's provider calls); Falcon adds a span per run, per step
attempt and per tool call (``agents/runs/execution.py``) and one per LLM call following the GenAI
conventions (``agents/llm/gateway.py``, names in ``falcon/genai_semconv.py``).

Off, every helper here is a cheap no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

tracer = trace.get_tracer("falcon")
_configured = False


def enabled() -> bool:
    return (
        bool(
            os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
        and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true"
    )


def configure(service: str, *, web: bool = False) -> bool:
    """Sets up the tracer provider, the exporter and the instrumentations, once per process.

    ``web``: also instrument Django (before the WSGI handler loads its middleware)."""
    global _configured
    if _configured or not enabled():
        return _configured
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: f"falcon-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if web:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    PsycopgInstrumentor().instrument(skip_dep_check=True)
    HTTPXClientInstrumentor().instrument()
    AioHttpClientInstrumentor().instrument()  # LiteLLM's async provider calls use an aiohttp transport
    _configured = True
    return True


def enabled_here() -> bool:
    """Whether this process exports spans (``configure`` succeeded)."""
    return _configured


def flush(timeout_ms: int = 5000) -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(timeout_ms)


def trace_id() -> str:
    """The current trace's id (32 hex digits), or "" outside a recorded trace."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def current() -> otel_context.Context:
    return otel_context.get_current()


@contextlib.contextmanager
def within(parent: otel_context.Context | None) -> Iterator[None]:
    """Makes ``parent`` the current context in this thread (an engine thread working for a run)."""
    if parent is None:
        yield
        return
    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)


def start(name: str, attributes: Mapping[str, Any] | None = None, parent: Any = None, **kwargs: Any) -> Span:
    return tracer.start_span(name, context=parent, attributes=attributes, **kwargs)


def _ns(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1_000_000_000) if moment is not None else None


def record(
    name: str,
    *,
    parent: otel_context.Context | None,
    started: datetime | None,
    finished: datetime | None,
    attributes: Mapping[str, Any],
    error: str | None = None,
) -> None:
    """A span for something that already happened (a step attempt the engine recorded), with its times."""
    if not _configured:
        return
    span = tracer.start_span(name, context=parent, attributes=attributes, start_time=_ns(started))
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end(end_time=_ns(finished))


def failed(span: Span, error_type: str, message: str = "") -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message or error_type))
