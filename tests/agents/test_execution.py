"""Claiming, the per-tenant concurrency limit and the sweeper, without a worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Run, StepRun
from agents.runs.execution import DatabaseHooks, run_claim, run_execute
from agents.runs.services import run_start, runs_sweep
from agents.workflows.services import agent_create, version_publish
from billing.models import UsageCounter
from billing.services import plan_set
from falcon import sql
from tenants.audit import Actor
from tests.agents.helpers import published_agent

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


@pytest.fixture
def agent(world):
    return published_agent(
        world.tenant_a, {"steps": [{"id": "s", "type": "transform", "value": "{{ 6 * 7 }}"}]}
    )


def test_a_run_is_claimed_once(agent):
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_claim(run.pk) is not None
    assert run_claim(run.pk) is None  # a second delivery of the same task finds nothing to claim
    assert Run.objects.get(pk=run.pk).claims == 1


def test_per_tenant_concurrency_keeps_excess_runs_queued(agent, world):
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"concurrent_runs": 1}, actor=SYSTEM)
    first, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    second, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_claim(first.pk) is not None
    assert run_claim(second.pk) is None
    refused = Run.objects.get(pk=second.pk)
    assert refused.status == "queued"
    assert refused.deferred  # a finishing run of the tenant dispatches it again
    Run.objects.filter(pk=first.pk).update(status="succeeded")
    assert run_execute(second.pk) == "succeeded"
    assert Run.objects.get(pk=second.pk).output == 42


@pytest.mark.django_db(transaction=True)
def test_a_claim_counts_the_runs_claimed_while_it_waited_for_the_tenant_lock(agent, world):
    """Another claim holds the tenant's lock and takes the last slot; the claim waiting for the lock
    must see that slot taken once the lock is granted (counted after the lock, not before), and
    leave its run queued and deferred."""
    import threading

    import psycopg
    from django.db import connection, transaction

    from tenants.models import tenant_lock

    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"concurrent_runs": 1}, actor=SYSTEM)
    waiting, _ = run_start(agent=agent, input={}, actor=SYSTEM, enqueue=False)
    other, _ = run_start(agent=agent, input={}, actor=SYSTEM, enqueue=False)
    outcome: list = []

    def claim() -> None:
        try:
            outcome.append(run_claim(waiting.pk))
        finally:
            connection.close()

    settings = connection.settings_dict
    observer = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"],
        autocommit=True,
    )  # fmt: skip
    thread = threading.Thread(target=claim)
    with transaction.atomic():
        tenant_lock(world.tenant_a.pk)
        Run.objects.filter(pk=other.pk).update(status="running")
        thread.start()
        while not observer.execute(  # the claim is now waiting for the tenant row
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = %s",
            [settings["NAME"]],
        ).fetchone():
            assert thread.is_alive(), outcome
    thread.join(timeout=30)
    observer.close()
    assert outcome == [None]
    refused = Run.objects.get(pk=waiting.pk)
    assert (refused.status, refused.deferred) == ("queued", True)


def test_sweeper_requeues_orphans_then_gives_up(agent, settings):
    settings.FALCON_RUN_MAX_CLAIMS = 2
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_claim(run.pk) is not None
    stale = timezone.now() - timedelta(seconds=settings.FALCON_RUN_HEARTBEAT_TIMEOUT_S + 1)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    assert runs_sweep()["requeued"] == 1
    assert Run.objects.get(pk=run.pk).status == "queued"
    assert run_claim(run.pk) is not None
    Run.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    assert runs_sweep()["failed"] == 1
    failed = Run.objects.get(pk=run.pk)
    assert failed.status == "failed"
    assert failed.error["code"] == "worker_lost"


def test_fresh_heartbeats_are_left_alone(agent):
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_claim(run.pk) is not None
    assert runs_sweep() == {"requeued": 0, "failed": 0, "redispatched": 0}
    assert Run.objects.get(pk=run.pk).status == "running"


def test_tenant_variables_reach_templates_as_env(world, alice_client, bob_client):
    response = alice_client.post(
        "/api/v1/variables/", {"name": "greeting", "value": {"text": "Bonjour"}}, format="json"
    )
    assert response.status_code == 201
    variable_id = response.json()["id"]
    assert bob_client.post("/api/v1/variables/", {"name": "x", "value": 1}, format="json").status_code == 403
    assert (
        alice_client.post("/api/v1/variables/", {"name": "9bad", "value": 1}, format="json").status_code
        == 400
    )
    assert (
        alice_client.post("/api/v1/variables/", {"name": "greeting", "value": 1}, format="json").status_code
        == 409
    )
    created = agent_create(
        tenant=world.tenant_a,
        name="env-user",
        description="",
        actor=SYSTEM,
        created_by=None,
        definition={"steps": [{"id": "s", "type": "transform", "value": "{{ env.greeting.text }}!"}]},
    )
    version_publish(version=created.versions.get(), actor=SYSTEM)
    created.refresh_from_db()
    run, _ = run_start(agent=created, input={}, actor=SYSTEM)
    assert run_execute(run.pk) == "succeeded"
    assert Run.objects.get(pk=run.pk).output == "Bonjour!"
    updated = alice_client.patch(
        f"/api/v1/variables/{variable_id}", {"value": {"text": "Hallo"}}, format="json"
    )
    assert updated.json()["value"] == {"text": "Hallo"}
    assert alice_client.delete(f"/api/v1/variables/{variable_id}").status_code == 204
    from tenants.models import AuditEvent

    assert list(
        AuditEvent.objects.filter(target_id=variable_id).order_by("seq").values_list("action", flat=True)
    ) == ["variable.created", "variable.updated", "variable.deleted"]


@pytest.mark.django_db(transaction=True)
def test_run_wait_wakes_when_the_finishing_transaction_commits(agent):
    """A waiter sleeps on PostgreSQL's LISTEN (one connection per process for every waiter) and wakes
    when the finishing transaction's NOTIFY commits: well before its once-a-second re-read."""
    import threading
    import time

    from django.db import connection, transaction

    from agents.runs import services

    run, _ = run_start(agent=agent, input={}, actor=Actor.system("t"), enqueue=False)
    finished_at: list[float] = []

    def finish_later() -> None:
        time.sleep(0.2)  # the run's work; the waiter learns of its end only through NOTIFY
        with transaction.atomic():
            Run.objects.filter(pk=run.pk).update(status="succeeded", output={"ok": 1})
            services.run_finished_notify(run.pk)
            finished_at.append(time.monotonic())
        connection.close()

    worker = threading.Thread(target=finish_later)
    started = time.monotonic()
    worker.start()
    waited = services.run_wait(run.pk, 10)
    woke = time.monotonic()
    worker.join()
    assert waited.status == "succeeded"
    assert waited.output == {"ok": 1}
    assert services._finished.listening
    # Woken by the notification, not by the fallback re-read a second after registering.
    assert woke - finished_at[0] < 0.5
    assert woke - started < 0.95


THREE_PURE_STEPS = {
    "steps": [
        {"id": "a", "type": "transform", "value": "{{ input.n }}"},
        {"id": "b", "type": "transform", "value": "{{ steps.a.output * 2 }}"},
        {"id": "c", "type": "transform", "value": {"result": "{{ steps.b.output + 1 }}"}},
    ]
}


@pytest.fixture
def three_steps(world):
    return published_agent(world.tenant_a, THREE_PURE_STEPS, name="three")


def test_a_worker_executes_a_run_of_pure_steps_in_two_statements(three_steps, django_assert_num_queries):
    """The claim (the tenant's lock, its limit and its plan found by the statement from the run's
    id), then the steps, the outcome and the question whether a run waits for the freed slot: one
    statement each (decision 0013)."""
    run_execute(run_start(agent=three_steps, input={"n": 1}, actor=SYSTEM)[0].pk)  # parses the spec once
    run, _ = run_start(agent=three_steps, input={"n": 20}, actor=SYSTEM)
    with django_assert_num_queries(2):
        assert run_execute(run.pk) == "succeeded"
    done = Run.objects.get(pk=run.pk)
    assert (done.status, done.output, done.claims) == ("succeeded", {"result": 41}, 1)
    steps = list(done.steps.order_by("key").values_list("key", "status", "output"))
    assert steps == [("a", "succeeded", 20), ("b", "succeeded", 40), ("c", "succeeded", {"result": 41})]


def test_an_llm_run_takes_its_plan_and_its_agents_spend_cap_from_the_claim(
    world, llm, django_assert_num_queries
):
    """Five statements: the claim (its UPDATE returns the agent's spend cap and the tenant's
    subscription); the tenant's provider connector; the price; the reservation; the outcome, which
    also inserts the step and settles the reservation (on a worker, outside the test's transaction, a
    sixth: the step's start notice for event streams). No read of the cap or of the plan per LLM
    call."""
    from billing.services import agent_spend_cap_set
    from tests.servers.llm import Reply

    agent = published_agent(
        world.tenant_a,
        {"steps": [{"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "hi"}]},
        name="asks",
    )
    agent_spend_cap_set(tenant_id=world.tenant_a.pk, agent_id=agent.pk, monthly_usd="12.34", actor=SYSTEM)
    run_execute(run_start(agent=agent, input={}, actor=SYSTEM)[0].pk)  # parses the spec once
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    llm.enqueue(Reply(text="hello"))
    with django_assert_num_queries(5) as captured:
        assert run_execute(run.pk) == "succeeded"
    assert not any("billing_agentspendcap" in sql.readable(q["sql"]).split("RETURNING")[0] for q in captured)
    assert Run.objects.get(pk=run.pk).output == "hello"
    step = StepRun.objects.get(run=run)
    # The counters hold both runs' real figures, not the estimates: the settlement rode along.
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in StepRun.objects.filter(run__agent=agent))
    assert step.prompt_tokens + step.completion_tokens > 0
    used = UsageCounter.objects.filter(tenant=world.tenant_a, metric="llm_tokens", scope="")
    assert used.values_list("used", flat=True).get() == tokens


def test_a_run_handed_over_by_its_start_is_claimed_in_one_round_trip(agent, django_assert_num_queries):
    """A synchronous webhook's run is executed by the process that started it, which has just read
    the tenant's plan: the claim does not read the run's state and the plan again. A run read back
    from the database carries no plan and is claimed as a worker claims it."""
    from agents.runs.execution import _claim

    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run.started_with is not None
    assert run.started_with.tenant_id == agent.tenant_id
    with django_assert_num_queries(1):
        claimed = _claim(run.pk, run)
    assert claimed is not None
    assert (claimed.run.status, claimed.run.claims) == ("running", 1)
    assert claimed.entitlement is run.started_with
    with django_assert_num_queries(1):
        assert _claim(run.pk, run) is None  # already running: the claim trip's UPDATE takes nothing

    read_back = Run.objects.get(pk=run_start(agent=agent, input={}, actor=SYSTEM)[0].pk)
    assert read_back.started_with is None
    with django_assert_num_queries(1):  # claimed as a worker claims it: by id, its plan read with it
        claimed = _claim(read_back.pk, read_back)
    assert claimed is not None
    assert claimed.entitlement is not None
    assert claimed.entitlement.plan.code == run.started_with.plan.code


def test_an_agent_spend_cap_lowered_after_the_claim_binds_once_the_reuse_window_ends(world, llm, monkeypatch):
    """With the window at zero the cap is read at the call: a cap lowered between claim and call
    refuses the call; within the window the claim's figure is used."""
    from billing.services import agent_spend_cap_set
    from tests.servers.llm import Reply

    agent = published_agent(
        world.tenant_a,
        {
            "steps": [
                {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "hi", "max_tokens": 50}
            ]
        },
        name="capped-later",
    )
    agent_spend_cap_set(tenant_id=world.tenant_a.pk, agent_id=agent.pk, monthly_usd="100", actor=SYSTEM)
    from agents.models import ModelPrice

    ModelPrice.objects.create(model="openai/gpt-4o-mini", input_usd_per_mtok=1000, output_usd_per_mtok=10_000)
    original = DatabaseHooks.llm

    def lowered_first(self, request):  # the cap changes after the claim, before the call
        agent_spend_cap_set(tenant_id=world.tenant_a.pk, agent_id=agent.pk, monthly_usd="0.01", actor=SYSTEM)
        return original(self, request)

    monkeypatch.setattr(DatabaseHooks, "llm", lowered_first)
    llm.enqueue(Reply(text="ok"))
    within, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_execute(within.pk) == "succeeded"  # the claim's $100 still applies

    monkeypatch.setattr(DatabaseHooks, "ENTITLEMENT_REUSE_S", 0.0)
    after, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_execute(after.pk) == "failed"
    assert Run.objects.get(pk=after.pk).error["code"] == "quota_exceeded"


def test_a_finishing_run_dispatches_the_run_waiting_for_its_slot(three_steps, world, monkeypatch):
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"concurrent_runs": 1}, actor=SYSTEM)
    first, _ = run_start(agent=three_steps, input={"n": 1}, actor=SYSTEM)
    waiting, _ = run_start(agent=three_steps, input={"n": 2}, actor=SYSTEM)
    Run.objects.filter(pk=waiting.pk).update(deferred=True)  # a claim found the tenant at its limit
    sent: list[str] = []
    monkeypatch.setattr("agents.runs.services.run_enqueue_now", lambda run_id: sent.append(str(run_id)))
    assert run_execute(first.pk) == "succeeded"
    assert sent == [str(waiting.pk)]
    assert Run.objects.get(pk=waiting.pk).deferred is False
    sent.clear()
    assert run_execute(waiting.pk) == "succeeded"
    assert sent == []  # nobody waits: nothing dispatched


@pytest.mark.django_db(transaction=True)
def test_a_claim_that_lost_its_run_records_neither_its_steps_nor_an_outcome(three_steps, monkeypatch):
    """Another claim recorded one of the run's steps as succeeded meanwhile (the sweeper had handed the
    run on): the finishing statement fails as a whole, no duplicate step, no outcome written."""
    run, _ = run_start(agent=three_steps, input={"n": 3}, actor=SYSTEM)
    take_pending = DatabaseHooks.take_pending

    def raced(hooks: DatabaseHooks) -> list[StepRun]:
        StepRun.objects.create(
            tenant_id=run.tenant_id, run=run, key="b", step_id="b", step_type="transform", kind="step",
            attempt=1, claim=hooks.claim + 1, status="succeeded", output=6,
        )  # fmt: skip
        return take_pending(hooks)

    monkeypatch.setattr(DatabaseHooks, "take_pending", raced)
    assert run_execute(run.pk) is None
    assert Run.objects.get(pk=run.pk).status == "running"  # not finished by the claim that lost it
    assert list(StepRun.objects.filter(run=run).values_list("key", "claim")) == [("b", 2)]


def test_a_side_effect_step_is_saved_before_the_next_effect_or_at_once_while_one_is_in_flight(agent):
    """A step that called out (an LLM, a connector) is never left unsaved while another side effect
    runs: a crash then would repeat it. With nothing in flight its row waits for the next effect (which
    saves it first) or for the run's finishing statement; pure steps wait for the finish either way."""
    from agents.engine.types import StepRecord

    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    hooks = DatabaseHooks(run)

    def saved() -> list[str]:
        return sorted(StepRun.objects.filter(run=run).values_list("key", flat=True))

    hooks.checkpoint(StepRecord(key="ask", step_id="ask", step_type="llm"))
    hooks.checkpoint(StepRecord(key="shape", step_id="shape", step_type="transform"))
    assert saved() == []  # nothing in flight: both wait
    with hooks._effect():  # the next call starts: what called out before it is saved first
        assert saved() == ["ask", "shape"]
        # Recorded while this effect is in flight (another branch of a map): saved at once.
        hooks.checkpoint(StepRecord(key="other", step_id="other", step_type="http"))
        assert saved() == ["ask", "other", "shape"]
        hooks.checkpoint(StepRecord(key="pure", step_id="pure", step_type="transform"))
        assert saved() == ["ask", "other", "shape"]  # a pure step still waits
    hooks.checkpoint(StepRecord(key="tail", step_id="tail", step_type="transform"))
    with hooks._effect():  # only pure steps wait: nothing to save before this effect
        assert saved() == ["ask", "other", "shape"]
    assert [row.key for row in hooks.take_pending()] == ["pure", "tail"]
