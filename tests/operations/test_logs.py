"""Structured logs: JSON lines carrying the request's, task's and run's context, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from falcon import logs
from tests.agents.helpers import SANDBOX_ECHO, create_agent
from tests.logscan import leaks


@pytest.fixture
def json_lines() -> Any:
    """The root logger's records as production writes them (the project's filter and formatter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)  # production's level (a test worker may have set it to ERROR)

    def read() -> list[dict[str, Any]]:
        handler.flush()
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield read
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.django_db(transaction=True)
def test_a_runs_log_line_carries_the_task_the_tenant_and_the_run(
    world, alice_client, celery_worker, json_lines
):
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    response = alice_client.post(
        f"/api/v1/agents/{agent_id}/runs",
        {"input": {"name": "Ada"}, "wait_s": 30},
        format="json",
        HTTP_X_REQUEST_ID="req-logs-0001",
    )
    run = response.json()
    assert run["status"] == "succeeded", run
    finished = [line for line in json_lines() if line.get("run_id") == run["id"] and "status" in line]
    assert len(finished) == 1, json_lines()
    line = finished[0]
    assert line["level"] == "INFO"
    assert line["logger"] == "agents.runs.execution"
    assert line["status"] == "succeeded"
    assert line["tenant"] == str(world.tenant_a.pk)
    assert line["task"] == "agents.tasks.run_execute_task"
    assert line["task_id"]
    assert line["duration_ms"] >= 0
    assert "request_id" not in line  # the worker's task does not inherit a request's context


@pytest.mark.django_db
def test_a_requests_log_lines_carry_its_id_and_tenant_and_end_with_it(
    world, alice_client, json_lines, monkeypatch
):
    from tenants.api import views

    def noisy(*args: Any, **kwargs: Any) -> Any:
        logging.getLogger("tests.noisy").warning("looking at the tenant")
        raise RuntimeError("boom")

    monkeypatch.setattr(views.CurrentTenantViewSet, "retrieve", noisy)
    response = alice_client.get("/api/v1/tenant", HTTP_X_REQUEST_ID="req-logs-0002")
    assert response.status_code == 500
    lines = json_lines()
    noisy_line = next(line for line in lines if line["logger"] == "tests.noisy")
    assert noisy_line["request_id"] == "req-logs-0002"
    assert noisy_line["tenant"] == str(world.tenant_a.pk)
    crash = next(line for line in lines if line["level"] == "ERROR")
    assert crash["request_id"] == "req-logs-0002"
    assert "RuntimeError: boom" in crash["exception"]
    logging.getLogger("tests.noisy").warning("after the request")
    assert "request_id" not in json_lines()[-1]
    assert "tenant" not in json_lines()[-1]


@pytest.mark.django_db
def test_secrets_never_reach_a_log_line(world, alice_client, json_lines, make_key):
    response = alice_client.post(
        "/api/v1/connectors/",
        {
            "name": "crm",
            "kind": "http",
            "config": {"base_url": "https://crm.example.com", "auth": "bearer"},
            "secrets": {"token": "crm-secret-value-123456"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    _, token = make_key(world.tenant_a, ["read"])
    log = logging.getLogger("tests.careless")
    log.error("calling with crm-secret-value-123456 and key %s", token)
    log.warning("header", extra={"authorization": "Bearer abcdefghijkl", "detail": "crm-secret-value-123456"})
    try:
        raise ValueError("postgres://falcon:hunter2-db-password@db:5432/x failed")
    except ValueError:
        log.exception("connect failed")
    text = "\n".join(json.dumps(line) for line in json_lines())
    assert leaks(text, {"crm-secret-value-123456", token, "abcdefghijkl", "hunter2-db-password"}) == []
    assert text.count("[redacted]") >= 5


def test_text_format_for_development(settings):
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    with logs.bound(run_id="r-1"):
        logs.ContextFilter().filter(record)
    assert logs.TextFormatter().format(record).endswith("[- - r-1] hello world")


def test_the_scan_finds_a_leak():
    assert leaks('{"message": "x"}\n{"message": "sk-live-123"}', {"sk-live-123"}) == [
        "line 2: a secret of 11 characters starting 'sk-l'"
    ]


def test_a_line_written_inside_a_trace_carries_its_trace_id():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    span = TracerProvider().get_tracer("tests").start_span("work")  # a local provider: nothing exported
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "inside", None, None)
    with trace.use_span(span, end_on_exit=True):
        logs.ContextFilter().filter(record)
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
