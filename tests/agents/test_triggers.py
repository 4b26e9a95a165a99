"""Triggers: webhook auth styles, replay and idempotency, sync mode, content types; schedules in beat."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask

from agents.models import Run, Trigger, TriggerEvent
from agents.triggers.services import trigger_fire_scheduled
from billing.services import plan_set
from falcon import metrics, sql
from tenants.audit import Actor
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent

ECHO = {
    "inputs": {"type": "object", "properties": {"order": {"type": "integer"}}, "required": ["order"]},
    "steps": [{"id": "t", "type": "transform", "value": "order {{ input.order }}"}],
}


def _make(client, agent_id: str, kind: str = "webhook", **extra):
    response = client.post(
        "/api/v1/triggers/",
        {"name": extra.pop("name", "hook"), "agent": agent_id, "kind": kind, **extra},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def _standard_headers(
    secret: str, body: bytes, msg_id: str = "msg_1", stamp: int | None = None
) -> dict[str, str]:
    stamp = stamp or int(time.time())
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signature = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
    return {
        "HTTP_WEBHOOK_ID": msg_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(stamp),
        "HTTP_WEBHOOK_SIGNATURE": f"v1,{signature.decode()}",
    }


def _post(client, url: str, body: bytes, content_type: str = "application/json", **headers):
    return client.generic("POST", url, body, content_type=content_type, **headers)


@pytest.mark.django_db
def test_standard_webhook_signature_replay_and_idempotency(world, alice_client, client):
    agent_id = create_agent(alice_client, ECHO)
    trigger = _make(alice_client, agent_id, input_mapping={"order": "{{ event.body.id }}"})
    secret = trigger["signing_secret"]
    assert secret.startswith("whsec_")
    url = f"/hooks/{trigger['public_id']}"
    body = json.dumps({"id": 7}).encode()
    accepted = _post(client, url, body, **_standard_headers(secret, body))
    assert accepted.status_code == 202, accepted.json()
    run = Run.objects.get(pk=accepted.json()["run_id"])
    assert run.input == {"order": 7}
    assert run.trigger == "webhook"
    # The same webhook-id again: acknowledged, no second run.
    again = _post(client, url, body, **_standard_headers(secret, body))
    assert again.json()["run_id"] == str(run.pk)
    assert Run.objects.count() == 1
    # Wrong signature, replay outside the tolerance: 401, recorded.
    forged = _standard_headers(secret, b'{"id": 8}', msg_id="msg_2")
    assert _post(client, url, body, **forged).status_code == 401
    stale = _post(
        client, url, body, **_standard_headers(secret, body, msg_id="msg_3", stamp=int(time.time()) - 600)
    )
    assert stale.status_code == 401
    assert "tolerance" in stale.json()["error"]["message"]
    # Refusals within a minute share one row: a flood of bad signatures is one line, with its count.
    codes = list(TriggerEvent.objects.order_by("received_at").values_list("accepted", "code", "count"))
    assert codes == [(True, "", 1), (True, "", 1), (False, "bad_signature", 2)]
    events = alice_client.get(f"/api/v1/triggers/{trigger['id']}/events").json()["results"]
    assert len(events) == 3
    # On a signed scheme the signed webhook-id is the identity: a captured message replayed with fresh
    # Idempotency-Key headers is still one run (regression: it made three).
    h = _standard_headers(secret, body, msg_id="msg_4")
    replays = {
        _post(client, url, body, HTTP_IDEMPOTENCY_KEY=f"k-{i}", **h).json()["run_id"] for i in range(3)
    }
    assert len(replays) == 1
    other = _post(
        client, url, body, HTTP_IDEMPOTENCY_KEY="k-0", **_standard_headers(secret, body, msg_id="msg_5")
    )
    assert other.json()["run_id"] not in replays


@pytest.mark.django_db
def test_secret_rotation_keeps_the_old_secret_valid_for_the_overlap(world, alice_client, client):
    agent_id = create_agent(alice_client, ECHO)
    trigger = _make(alice_client, agent_id, input_mapping={"order": 1})
    old = trigger["signing_secret"]
    new = alice_client.post(f"/api/v1/triggers/{trigger['id']}/rotate-secret").json()["signing_secret"]
    assert new != old
    url = f"/hooks/{trigger['public_id']}"
    for index, secret in enumerate([old, new]):
        assert (
            _post(client, url, b"{}", **_standard_headers(secret, b"{}", msg_id=f"m{index}")).status_code
            == 202
        )
    stored = Trigger.objects.get(pk=trigger["id"])
    assert old not in json.dumps(stored.secrets)
    assert new not in json.dumps(stored.secrets)
    assert AuditEvent.objects.filter(action="trigger.secret_rotated").exists()


@pytest.mark.django_db
def test_github_and_header_auth_and_content_types(world, alice_client, client):
    agent_id = create_agent(alice_client, ECHO)
    github = _make(alice_client, agent_id, name="gh", config={"auth": "github"}, input_mapping={"order": 3})
    body = b'{"action": "opened"}'
    digest = hmac.new(github["signing_secret"].encode(), body, hashlib.sha256).hexdigest()
    url = f"/hooks/{github['public_id']}"
    assert _post(client, url, body, HTTP_X_HUB_SIGNATURE_256=f"sha256={digest}").status_code == 202
    assert _post(client, url, body, HTTP_X_HUB_SIGNATURE_256="sha256=00").status_code == 401
    shared = _make(
        alice_client,
        agent_id,
        name="sh",
        config={"auth": "header", "header_name": "X-Token"},
        input_mapping={"order": "{{ event.body.n | int }}"},
    )
    url = f"/hooks/{shared['public_id']}"
    ok = _post(
        client,
        url,
        b"n=5",
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TOKEN=shared["signing_secret"],
    )
    assert ok.status_code == 202
    assert Run.objects.get(pk=ok.json()["run_id"]).input == {"order": 5}
    assert (
        _post(
            client, url, b"<x/>", content_type="application/xml", HTTP_X_TOKEN=shared["signing_secret"]
        ).status_code
        == 415
    )
    assert _post(client, url, b"{bad", HTTP_X_TOKEN=shared["signing_secret"]).status_code == 400
    invalid = _post(client, url, b"hello", content_type="text/plain", HTTP_X_TOKEN=shared["signing_secret"])
    assert invalid.status_code == 422
    assert TriggerEvent.objects.filter(
        trigger_id=shared["id"], accepted=False, code="input_mapping_failed"
    ).exists()


@pytest.mark.django_db
def test_unsigned_needs_explicit_consent_disabled_is_404_and_unpublished_cannot_enable(
    world, alice_client, client
):
    agent_id = create_agent(alice_client, ECHO)
    refused = alice_client.post(
        "/api/v1/triggers/",
        {"name": "open", "agent": agent_id, "kind": "webhook", "config": {"auth": "none"}},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unsigned_not_allowed"
    open_hook = _make(
        alice_client,
        agent_id,
        name="open",
        config={"auth": "none", "allow_unsigned": True},
        input_mapping={"order": 1},
    )
    url = f"/hooks/{open_hook['public_id']}"
    assert _post(client, url, b"{}").status_code == 202
    assert alice_client.post(f"/api/v1/triggers/{open_hook['id']}/disable").json()["enabled"] is False
    gone = _post(client, url, b"{}")
    assert gone.status_code == 404
    assert gone.json() == _post(client, "/hooks/trg_doesnotexist", b"{}").json()
    draft = create_agent(alice_client, ECHO, name="draft", publish=False)
    response = alice_client.post(
        "/api/v1/triggers/", {"name": "d", "agent": draft, "kind": "webhook"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "agent_not_published"


@pytest.mark.django_db
def test_other_tenants_agents_and_triggers(world, alice_client, charlie_client):
    agent_id = create_agent(alice_client, ECHO)
    response = charlie_client.post(
        "/api/v1/triggers/", {"name": "x", "agent": agent_id, "kind": "webhook"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"agent": ["No agent with this id."]}
    trigger = _make(alice_client, agent_id)
    assert charlie_client.get(f"/api/v1/triggers/{trigger['id']}").status_code == 404
    assert charlie_client.post(f"/api/v1/triggers/{trigger['id']}/disable").status_code == 404


@pytest.mark.django_db
def test_schedule_follows_the_trigger_in_celery_beat(world, alice_client, settings):
    plan_set(tenant=world.tenant_a, plan="team", actor=Actor.system("tests"))
    agent_id = create_agent(alice_client, ECHO)
    response = alice_client.post(
        "/api/v1/triggers/",
        {"name": "nightly", "agent": agent_id, "kind": "schedule", "config": {"interval_s": 5}},
        format="json",
    )
    # The plan's shortest interval (Team: 10 s) refuses a faster schedule, naming the limit.
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["code"], error["metric"], error["limit"], error["used"]) == (
        "plan_limit",
        "min_schedule_interval_s",
        10,
        5,
    )
    assert "config.interval_s" in error["fields"]
    trigger = _make(
        alice_client,
        agent_id,
        kind="schedule",
        name="nightly",
        config={"cron": "30 2 * * 1-5", "timezone": "Europe/Paris"},
        input_mapping={"order": 9},
    )
    task = PeriodicTask.objects.get(name=f"falcon-trigger-{trigger['id']}")
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week, str(task.crontab.timezone)) == (
        "30",
        "2",
        "1-5",
        "Europe/Paris",
    )
    assert task.task == "agents.tasks.trigger_fire_task"
    assert task.enabled is True
    alice_client.patch(f"/api/v1/triggers/{trigger['id']}", {"config": {"interval_s": 120}}, format="json")
    alice_client.post(f"/api/v1/triggers/{trigger['id']}/disable")
    task.refresh_from_db()
    assert task.interval.every == 120
    assert task.crontab is None
    assert task.enabled is False
    assert alice_client.delete(f"/api/v1/triggers/{trigger['id']}").status_code == 204
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


@pytest.mark.django_db
def test_schedule_overlap_policy(world, alice_client):
    agent_id = create_agent(alice_client, ECHO)
    trigger = _make(
        alice_client,
        agent_id,
        kind="schedule",
        name="s",
        config={"interval_s": 60},
        input_mapping={"order": 1},
    )
    from datetime import timedelta

    from django.utils import timezone

    def next_slot() -> None:  # as if the interval had passed
        Trigger.objects.filter(pk=trigger["id"]).update(last_fired_at=timezone.now() - timedelta(seconds=61))

    assert trigger_fire_scheduled(trigger["id"]) == "fired"
    assert trigger_fire_scheduled(trigger["id"]) == "duplicate"  # the same slot delivered twice by beat
    next_slot()
    assert trigger_fire_scheduled(trigger["id"]) == "skipped"  # the first run is still queued
    assert Run.objects.count() == 1
    alice_client.patch(f"/api/v1/triggers/{trigger['id']}", {"config": {"overlap": "queue"}}, format="json")
    next_slot()
    assert trigger_fire_scheduled(trigger["id"]) == "fired"
    assert Run.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_sync_mode_answers_with_the_output(world, alice_client, client, celery_worker, llm):
    agent_id = create_agent(alice_client, ECHO)
    trigger = _make(
        alice_client, agent_id, config={"sync_wait_s": 20}, input_mapping={"order": "{{ event.body.n }}"}
    )
    body = b'{"n": 42}'
    response = _post(
        client, f"/hooks/{trigger['public_id']}", body, **_standard_headers(trigger["signing_secret"], body)
    )
    assert response.status_code == 200, response.json()
    assert response.json()["output"] == "order 42"
    assert response.json()["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_synchronous_llm_webhook_runs_in_the_web_process_without_a_worker(world, alice_client, client, llm):
    """sync_wait_s on a short workflow of llm (and pure) steps: the web process that waits executes
    the run itself, claimed and logged like on a worker; no worker is running here."""
    from tests.servers.llm import Reply

    agent_id = create_agent(
        alice_client,
        {
            "inputs": {"type": "object", "properties": {"name": {"type": "string"}}},
            "steps": [
                {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "Hi {{ input.name }}"},
                {"id": "shape", "type": "transform", "value": {"said": "{{ steps.ask.output }}"}},
            ],
        },
    )
    trigger = _make(
        alice_client, agent_id, config={"sync_wait_s": 20}, input_mapping={"name": "{{ event.body.name }}"}
    )
    llm.enqueue(Reply(text="Hello Ada", prompt_tokens=12, completion_tokens=3))
    body = b'{"name": "Ada"}'
    with CaptureQueriesContext(connection) as request_thread:
        response = _post(
            client,
            f"/hooks/{trigger['public_id']}",
            body,
            **_standard_headers(trigger["signing_secret"], body),
        )
    assert response.status_code == 200, response.json()
    assert response.json()["output"] == {"said": "Hello Ada"}
    run = Run.objects.get(pk=response.json()["run_id"])
    assert (run.status, run.claims, run.prompt_tokens, run.completion_tokens) == ("succeeded", 1, 12, 3)
    # Answered with what the run stored, as the API shows it, without reading the run back.
    assert (response.json()["output"], response.json()["error"]) == (run.output, run.error)
    statements = [sql.readable(q["sql"]).split(";")[0] for q in request_thread.captured_queries]
    assert not [q for q in statements if q.startswith("SELECT") and '"output"' in q]
    assert [s.step_id for s in run.steps.order_by("created_at")] == ["ask", "shape"]
    assert llm.received[-1].last_user_text == "Hi Ada"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("why", ["pool busy", "tenant at its limit"])
def test_a_synchronous_webhook_whose_run_cannot_start_here_leaves_it_to_the_workers(
    world, alice_client, client, llm, monkeypatch, why
):
    """The web process executes a synchronous webhook's run only when its pool has a place (else the
    run is published to the workers at once) and the tenant is below its concurrency limit (else the
    run stays queued and deferred, for a finishing run to dispatch); the caller gets its 202 after
    sync_wait_s either way, and the pool's place is given back."""
    from agents.models import Agent
    from agents.runs import execution
    from agents.runs.execution import run_claim
    from agents.runs.services import run_start

    agent_id = create_agent(
        alice_client, {"steps": [{"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "Hi"}]}
    )
    trigger = _make(alice_client, agent_id, config={"sync_wait_s": 0.2})
    published: list[str] = []
    monkeypatch.setattr("agents.runs.services.enqueue", lambda name, run_id: published.append(run_id))
    pool = execution.NearbyRuns(1)
    monkeypatch.setattr(execution, "nearby", pool)
    if why == "pool busy":
        assert pool._free.acquire(blocking=False)  # its one place is taken (another delivery's run)
    else:
        plan_set(
            tenant=world.tenant_a,
            plan="enterprise",
            overrides={"concurrent_runs": 1},
            actor=Actor.system("t"),
        )
        busy, _ = run_start(
            agent=Agent.objects.get(pk=agent_id), input={}, actor=Actor.system("t"), enqueue=False
        )
        assert run_claim(busy.pk) is not None  # the tenant's one slot is taken
    body = b"{}"
    response = _post(
        client, f"/hooks/{trigger['public_id']}", body, **_standard_headers(trigger["signing_secret"], body)
    )
    assert response.status_code == 202, response.json()
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.status == "queued"
    assert run.claims == 0
    if why == "pool busy":
        assert published == [str(run.pk)]  # the workers' at once
    else:
        assert published == []
        assert run.deferred  # dispatched when the tenant's running run finishes
        assert pool._free.acquire(blocking=False)  # the place taken for the run was given back


def _in_thread(work):
    """A thread's work, closing the thread's own database connection when done."""

    def run() -> None:
        from django.db import connections

        try:
            work()
        finally:
            connections.close_all()

    return run


LLM_THEN_SHAPE = {
    "inputs": {"type": "object", "properties": {"name": {"type": "string"}}},
    "steps": [
        {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "Hi {{ input.name }}"},
        {"id": "shape", "type": "transform", "value": {"said": "{{ steps.ask.output }}"}},
    ],
}


@pytest.mark.django_db(transaction=True)
def test_deliveries_beyond_the_admission_bound_wait_their_turn(world, alice_client, monkeypatch):
    """One web process works on at most FALCON_WEBHOOK_ACTIVE deliveries at once; the next one waits
    for a slot, then is answered as usual."""
    import threading

    from django.test import Client

    from agents.triggers import webhooks
    from falcon.admission import Admission

    monkeypatch.setattr(webhooks, "ADMISSION", Admission(1))
    hook = _make(
        alice_client,
        create_agent(alice_client, ECHO),
        config={"auth": "none", "allow_unsigned": True},
        input_mapping={"order": "{{ event.body.id }}"},
    )
    answers: list = []
    with webhooks.ADMISSION.admitted():  # the process's one slot is taken
        delivery = threading.Thread(
            target=_in_thread(
                lambda: answers.append(_post(Client(), f"/hooks/{hook['public_id']}", b'{"id": 7}'))
            )
        )
        delivery.start()
        delivery.join(timeout=1.0)  # a negative check: nothing may happen while the slot is taken
        assert delivery.is_alive()
        assert answers == []
        assert not Run.objects.exists()
    delivery.join(timeout=30)
    assert (answers[0].status_code, answers[0].json()["status"]) == (202, "succeeded")


@pytest.mark.django_db(transaction=True)
def test_a_synchronous_webhook_waiting_for_its_run_holds_no_admission_slot(
    world, alice_client, client, llm, monkeypatch
):
    """A sync_wait_s delivery waiting for its provider steps out of the admission bound: with one
    slot, another delivery is answered while it waits; then it gets its own answer."""
    import threading

    from django.test import Client

    from agents.triggers import webhooks
    from falcon.admission import Admission
    from tests.servers.llm import Reply

    monkeypatch.setattr(webhooks, "ADMISSION", Admission(1))
    slow = _make(
        alice_client,
        create_agent(alice_client, LLM_THEN_SHAPE, name="slow"),
        name="slow",
        config={"sync_wait_s": 20},
        input_mapping={"name": "{{ event.body.name }}"},
    )
    quick = _make(
        alice_client,
        create_agent(alice_client, ECHO, name="quick"),
        name="quick",
        config={"auth": "none", "allow_unsigned": True},
        input_mapping={"order": "{{ event.body.id }}"},
    )
    arrived, release = threading.Event(), threading.Event()
    llm.enqueue(Reply(text="Hello Ada", arrived=arrived, hold=release))
    body = b'{"name": "Ada"}'
    headers = _standard_headers(slow["signing_secret"], body)
    answers: list = []
    waiting = threading.Thread(
        target=_in_thread(
            lambda: answers.append(_post(Client(), f"/hooks/{slow['public_id']}", body, **headers))
        )
    )
    waiting.start()
    try:
        assert arrived.wait(30)  # the synchronous delivery now waits for its provider
        other = _post(client, f"/hooks/{quick['public_id']}", b'{"id": 8}')
        assert (other.status_code, other.json()["status"]) == (202, "succeeded")
        assert answers == []  # still waiting
    finally:
        release.set()
        waiting.join(timeout=30)
    assert answers[0].status_code == 200, answers[0].json()
    assert answers[0].json()["output"] == {"said": "Hello Ada"}


@pytest.mark.django_db
def _work(callbacks: list) -> list:
    """On-commit callbacks that enqueue or send something (not the metrics' counts)."""
    return [c for c in callbacks if not isinstance(c, metrics.Counted)]


def test_short_pure_workflows_run_inline_in_the_webhook_request(
    world, alice_client, client, settings, django_capture_on_commit_callbacks
):
    pure = create_agent(alice_client, ECHO, name="pure")
    hook = _make(
        alice_client,
        pure,
        name="pure-hook",
        config={"auth": "none", "allow_unsigned": True},
        input_mapping={"order": "{{ event.body.id }}"},
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _post(client, f"/hooks/{hook['public_id']}", b'{"id": 5}')
    # Executed before the answer: no task was queued, the run is finished and logged step by step.
    assert (response.status_code, response.json()["status"]) == (202, "succeeded")
    assert _work(callbacks) == []
    run = Run.objects.get(pk=response.json()["run_id"])
    assert (run.status, run.output, run.claims) == ("succeeded", "order 5", 1)
    assert list(run.steps.values_list("step_id", "status")) == [("t", "succeeded")]

    # A workflow with I/O (an LLM step) is queued for a worker as before...
    io_agent = create_agent(
        alice_client,
        {"steps": [{"id": "ask", "type": "llm", "model": "sandbox/echo", "prompt": "hi"}]},
        name="io",
    )
    io_hook = _make(alice_client, io_agent, name="io-hook", config={"auth": "none", "allow_unsigned": True})
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        queued = _post(client, f"/hooks/{io_hook['public_id']}", b"{}")
    assert (queued.status_code, queued.json()["status"], len(_work(callbacks))) == (202, "queued", 1)
    # ...and so is every workflow when inline execution is turned off.
    settings.FALCON_WEBHOOK_INLINE_MAX_STEPS = 0
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        off = _post(client, f"/hooks/{hook['public_id']}", b'{"id": 6}')
    assert (off.json()["status"], len(_work(callbacks))) == ("queued", 1)


@pytest.mark.django_db
def test_malformed_signatures_are_401_and_a_flood_is_cut_before_verification(world, alice_client, client):
    agent_id = create_agent(alice_client, ECHO)
    standard = _make(alice_client, agent_id, input_mapping={"order": 1})
    header = _make(alice_client, agent_id, name="hdr", input_mapping={"order": 1}, config={"auth": "header"})
    github = _make(alice_client, agent_id, name="gh", input_mapping={"order": 1}, config={"auth": "github"})
    body = b"{}"
    now = str(int(time.time()))
    weird = {"HTTP_WEBHOOK_ID": "msg_é", "HTTP_WEBHOOK_TIMESTAMP": now, "HTTP_WEBHOOK_SIGNATURE": "v1,ñ=="}
    for url, headers in (
        (f"/hooks/{standard['public_id']}", weird),
        (
            f"/hooks/{standard['public_id']}",
            {**weird, "HTTP_WEBHOOK_ID": "msg_1", "HTTP_WEBHOOK_SIGNATURE": "v1,ñ"},
        ),
        (f"/hooks/{header['public_id']}", {"HTTP_X_WEBHOOK_SECRET": "sécret"}),
        (f"/hooks/{github['public_id']}", {"HTTP_X_HUB_SIGNATURE_256": "sha256=ü"}),
    ):
        response = _post(client, url, body, **headers)
        assert response.status_code == 401, (url, response.content)
        assert response.json()["error"]["code"] == "bad_signature"
    url = f"/hooks/{header['public_id']}"
    statuses = [_post(client, url, body, HTTP_X_WEBHOOK_SECRET="wrong").status_code for _ in range(70)]
    assert statuses.count(401) == 59
    assert statuses.count(429) == 11
    refused = TriggerEvent.objects.filter(trigger_id=header["id"], accepted=False)
    assert [(e.code, e.count) for e in refused] == [("bad_signature", 60)]


def test_schedule_preview_lists_the_next_five_firings_in_the_time_zone():
    from datetime import UTC, datetime

    from agents.triggers.services import schedule_preview

    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # a Friday
    weekdays_9am = schedule_preview({"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}, now=now)
    assert [t.isoformat() for t in weekdays_9am] == [
        "2026-11-30T09:00:00+01:00",
        "2026-12-01T09:00:00+01:00",
        "2026-12-02T09:00:00+01:00",
        "2026-12-03T09:00:00+01:00",
        "2026-12-04T09:00:00+01:00",
    ]
    quarter_hours = schedule_preview({"cron": "*/15 * * * *", "timezone": "UTC"}, now=now, count=2)
    assert [t.minute for t in quarter_hours] == [15, 30]
    every_hour = schedule_preview({"interval_s": 3600}, now=now, count=2)
    assert [t.hour for t in every_hour] == [11, 12]


@pytest.fixture(params=["local memory", "redis"])
def shared_cache(request):
    """Both caches the rate limits count in: the default local memory, and Redis (FALCON_CACHE_URL):
    None, or the Redis client."""
    return request.getfixturevalue("redis_cache") if request.param == "redis" else None


@pytest.mark.django_db
def test_deliveries_beyond_the_rate_per_minute_and_bad_signatures_beyond_the_budget_are_429(
    world, alice_client, client, shared_cache, monkeypatch
):
    from agents.triggers import webhooks

    agent_id = create_agent(alice_client, ECHO)
    trigger = _make(
        alice_client,
        agent_id,
        config={"auth": "header", "header_name": "X-Token", "rate_limit_per_minute": 2},
        input_mapping={"order": 1},
    )
    url = f"/hooks/{trigger['public_id']}"
    good = {"HTTP_X_TOKEN": trigger["signing_secret"]}
    codes = [_post(client, url, b"{}", **good).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert Run.objects.count() == 2
    if shared_cache is not None:  # counted in Redis itself, each counter with its lifetime
        (key,) = shared_cache.keys("*hook-rate*")
        assert (int(shared_cache.get(key)), 0 < shared_cache.ttl(key) <= 120) == (3, True)

    monkeypatch.setattr(webhooks, "REFUSALS_PER_MINUTE", 2)
    bad = [_post(client, url, b"{}", HTTP_X_TOKEN="wrong").status_code for _ in range(3)]
    assert bad == [401, 401, 429]  # the third is refused before its signature is checked
    assert Run.objects.count() == 2
