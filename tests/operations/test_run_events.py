"""Live run events: GET /api/v1/runs/{id}/events as server-sent events, through a live server and a
real worker; resumable with Last-Event-ID; tenant walls; bounded; no database connection held."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from agents.models import AgentVersion, Run, StepRun
from tests.agents.helpers import create_agent
from tests.servers.llm import Reply

SLOW = {
    "steps": [
        {"id": "prep", "type": "transform", "value": "hi"},
        {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "{{ steps.prep.output }}"},
        {"id": "again", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "{{ steps.ask.output }}"},
        {"id": "done", "type": "transform", "value": "{{ steps.again.output }}!"},
    ],
    "output": "{{ steps.done.output }}",
}


def parse(lines: list[str]) -> list[dict[str, Any]]:
    """SSE lines into events (``id``, ``event``, ``data``); comments and ``retry`` are dropped."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "event" in current:
                events.append(current)
            current = {}
        elif line.startswith(":") or line.startswith("retry:"):
            continue
        else:
            name, _, value = line.partition(": ")
            current[name] = json.loads(value) if name == "data" else value
    return events


@pytest.mark.django_db(transaction=True)
def test_a_run_streams_its_steps_and_output_live(
    world, alice_client, celery_worker, llm, live_server, make_key
):
    # The stream connects while the first call is in flight and sees the second one start.
    llm.enqueue(Reply(text="thinking", delay_s=1.5), Reply(text="hello", delay_s=0.5))
    agent_id = create_agent(alice_client, SLOW)
    _, token = make_key(world.tenant_a, ["read"])
    run_id = alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()["id"]
    lines = []
    with httpx.stream(
        "GET",
        f"{live_server.url}/api/v1/runs/{run_id}/events",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            lines.append(line)
    events = parse(lines)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status"
    assert kinds[-1] == "end"
    assert events[-1]["data"] == {"status": "succeeded", "output": "hello!", "error": None}
    started = [e["data"] for e in events if e["event"] == "step.started"]
    assert {"key": "again", "step_type": "llm"} in started  # live, before its record
    steps = [e for e in events if e["event"] == "step"]
    assert [s["data"]["step_id"] for s in steps] == ["prep", "ask", "again", "done"]
    ask = steps[1]["data"]
    assert (ask["status"], ask["model"], ask["prompt_tokens"]) == ("succeeded", "openai/gpt-4o-mini", 10)
    assert ask["cost_usd"] == "0.00000450"
    assert ask["started_at"] < ask["finished_at"]
    assert all(s["id"] for s in steps)  # resumable: each record has an event id
    assert "running" in [e["data"]["status"] for e in events if e["event"] == "status"]


def _run(world, alice_client, **fields: Any) -> Run:
    agent_id = create_agent(alice_client, {"steps": [{"id": "t", "type": "transform", "value": "x"}]})
    version_id = AgentVersion.objects.get(agent_id=agent_id).pk
    return Run.objects.create(tenant=world.tenant_a, agent_id=agent_id, version_id=version_id, **fields)


def _finished_run_with_three_steps(world, alice_client) -> tuple[Run, list[StepRun]]:
    run = _run(world, alice_client, status=Run.Status.SUCCEEDED, output={"ok": True})
    base = timezone.now() - timedelta(hours=1)
    rows = [
        StepRun.objects.create(
            tenant=world.tenant_a,
            run=run,
            key=f"s{n}",
            step_id=f"s{n}",
            step_type="transform",
            status="succeeded",
            created_at=base + timedelta(minutes=n),
        )
        for n in range(3)
    ]
    return run, rows


def _read(response) -> list[dict[str, Any]]:
    body = b"".join(response.streaming_content).decode()
    return parse(body.split("\n"))


@pytest.mark.django_db
def test_last_event_id_resumes_after_the_records_already_seen(world, alice_client):
    run, _ = _finished_run_with_three_steps(world, alice_client)
    everything = _read(alice_client.get(f"/api/v1/runs/{run.pk}/events"))
    assert [e["data"]["key"] for e in everything if e["event"] == "step"] == ["s0", "s1", "s2"]
    resumed = _read(alice_client.get(f"/api/v1/runs/{run.pk}/events", HTTP_LAST_EVENT_ID=everything[1]["id"]))
    assert [e["data"]["key"] for e in resumed if e["event"] == "step"] == ["s1", "s2"]
    assert resumed[-1] == {
        "event": "end",
        "data": {"status": "succeeded", "output": {"ok": True}, "error": None},
    }


@pytest.mark.django_db
def test_another_tenants_run_is_not_found(world, alice_client, charlie_client):
    run, _ = _finished_run_with_three_steps(world, alice_client)
    response = charlie_client.get(f"/api/v1/runs/{run.pk}/events")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db(transaction=True)
def test_streams_are_bounded_per_tenant(world, alice_client, settings):
    settings.FALCON_EVENT_STREAMS_PER_TENANT = 1
    run, _ = _finished_run_with_three_steps(world, alice_client)
    first = alice_client.get(f"/api/v1/runs/{run.pk}/events")  # open, not read yet: holds its slot
    refused = alice_client.get(f"/api/v1/runs/{run.pk}/events")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    first.close()
    again = alice_client.get(f"/api/v1/runs/{run.pk}/events")
    assert again.status_code == 200
    _read(again)  # read to the end: the slot is released too
    assert alice_client.get(f"/api/v1/runs/{run.pk}/events").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_waiting_stream_holds_no_database_connection(world, alice_client):
    run = _run(world, alice_client, status=Run.Status.QUEUED)
    response = alice_client.get(f"/api/v1/runs/{run.pk}/events")
    chunks = iter(response.streaming_content)
    assert next(chunks).startswith(b"retry:")
    assert b"event: status" in next(chunks)
    assert connection.connection is None  # given back before the stream sleeps
    response.close()
