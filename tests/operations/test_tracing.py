"""OpenTelemetry traces from a real web process (gunicorn) and a real worker process to a loopback
OTLP/HTTP receiver: one trace from the request through the Celery task, the run, its steps and the
LLM call (GenAI conventions) down to the provider's HTTP request and the database calls."""

from __future__ import annotations

import re
import sys

import httpx
import pytest

from tests import processes
from tests.agents.helpers import create_agent
from tests.agents.test_runs import wait_for
from tests.servers.llm import Reply
from tests.servers.otlp import OtlpReceiver

pytestmark = pytest.mark.django_db(transaction=True)

AGENT = {
    "steps": [
        {"id": "prep", "type": "transform", "value": "hello"},
        {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "{{ steps.prep.output }}"},
    ],
    "output": "{{ steps.ask.output }}",
}


@pytest.fixture
def receiver():
    server = OtlpReceiver()
    yield server
    server.stop()


def _env(llm, receiver) -> dict[str, str]:
    return processes.environment(
        **llm.provider_env(),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        FALCON_DB_POOL_MAX_SIZE="4",
    )


def test_one_trace_from_the_request_to_the_provider(world, alice_client, llm, receiver, make_key):
    from falcon.celery import app

    app.control.purge()
    llm.enqueue(Reply(text="hi there", prompt_tokens=7, completion_tokens=3))
    agent_id = create_agent(alice_client, AGENT)
    _, token = make_key(world.tenant_a, ["run", "read"])
    env = _env(llm, receiver)
    port = processes.free_port()
    web = processes.spawn(
        [sys.executable, "-m", "gunicorn", "falcon.wsgi", "-b", f"127.0.0.1:{port}", "--threads", "4"], env
    )
    worker = processes.spawn(processes.CELERY_WORKER, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: processes.answers(f"{base}/healthz"), timeout=60, what="gunicorn")
        response = httpx.post(
            f"{base}/api/v1/agents/{agent_id}/runs",
            json={"input": {}, "wait_s": 30},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        run = response.json()
        assert run["status"] == "succeeded", run
        trace_id = run["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id)

        def complete() -> bool:
            names = {s.name for s in receiver.of_trace(trace_id)}
            return {"invoke_agent greeter", "chat gpt-4o-mini", "step ask"} <= names and any(
                s.service == "falcon-web" for s in receiver.of_trace(trace_id)
            )

        wait_for(complete, timeout=30, what="the run's spans")
    finally:
        processes.stop(web, worker)

    spans = receiver.of_trace(trace_id)
    by_id = {s.span_id: s for s in spans}
    services = {s.service for s in spans}
    assert {"falcon-web", "falcon-worker"} <= services  # one trace across both processes

    server = [s for s in spans if s.service == "falcon-web" and s.kind == 2]  # SERVER: the request
    assert server
    assert server[0].attributes.get("http.request.method", server[0].attributes.get("http.method")) == "POST"
    task = [s for s in spans if s.service == "falcon-worker" and "run_execute_task" in s.name]
    assert task, [s.name for s in spans]

    run_span = next(s for s in spans if s.name == "invoke_agent greeter")
    assert run_span.attributes["falcon.run.id"] == run["id"]
    assert run_span.attributes["falcon.run.status"] == "succeeded"
    assert by_id[run_span.parent_span_id].service == "falcon-worker"  # inside the task's span

    steps = {s.attributes["falcon.step.key"]: s for s in spans if s.name.startswith("step ")}
    assert set(steps) == {"prep", "ask"}
    assert all(s.parent_span_id == run_span.span_id for s in steps.values())

    chat = next(s for s in spans if s.name == "chat gpt-4o-mini")
    assert chat.kind == 3  # CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 7
    assert chat.attributes["gen_ai.usage.output_tokens"] == 3
    assert chat.parent_span_id == run_span.span_id

    provider_calls = [s for s in spans if s.parent_span_id == chat.span_id]
    assert provider_calls, "the provider's HTTP request is a child of the chat span"
    assert (
        provider_calls[0].attributes.get(
            "http.request.method", provider_calls[0].attributes.get("http.method")
        )
        == "POST"
    )
    database = [
        s
        for s in spans
        if s.attributes.get("db.system") == "postgresql" or s.attributes.get("db.system.name") == "postgresql"
    ]
    assert database, "database calls are traced"

    # The dashboard and the API show the trace id stored on the run.
    page = alice_client.get(f"/runs/{run['id']}/")
    assert page.status_code == 200
    assert trace_id in page.content.decode()
