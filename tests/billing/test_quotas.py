"""Quotas: exact under concurrency, periods, reservations, alerts, and the limits of every kind."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection

from agents.models import Run
from agents.runs.execution import run_execute
from agents.runs.services import run_start
from agents.workflows.services import agent_create, version_publish
from billing.errors import QuotaExceeded
from billing.models import Subscription, UsageCounter
from billing.plans import FREE, Metric
from billing.quotas import (
    entitlement,
    quota_consume,
    quota_reserve,
    quota_settle,
    quota_settlement,
    usage_period,
    usage_summary,
)
from billing.services import agent_spend_cap_set, plan_set, spend_cap_set
from tenants.audit import Actor
from tenants.models import AuditEvent
from tests.agents.helpers import published_agent

SYSTEM = Actor.system("tests")


def _race(threads: int, work) -> list[object]:
    """Runs ``work`` in ``threads`` threads released together; returns each one's result or exception."""
    barrier = threading.Barrier(threads)
    results: list[object] = [None] * threads

    def body(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_a_hundred_threads_racing_for_a_quota_of_fifty_get_exactly_fifty(world):
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"runs": 50}, actor=SYSTEM)

    results = _race(100, lambda: quota_consume(world.tenant_a, Metric.RUNS))

    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    granted = [r for r in results if isinstance(r, int)]
    assert (len(granted), len(refused)) == (50, 50), [
        r for r in results if not isinstance(r, int | QuotaExceeded)
    ]
    assert sorted(granted) == list(range(1, 51))  # every unit handed out once
    assert UsageCounter.objects.get(tenant=world.tenant_a, metric="runs").used == 50
    assert {(e.metric, e.limit, e.used) for e in refused} == {("runs", 50, 50)}


@pytest.mark.django_db(transaction=True)
def test_a_hundred_threads_reserving_spend_never_overrun_the_cap(world):
    spend_cap_set(tenant=world.tenant_a, monthly_usd="0.50", actor=SYSTEM)

    def reserve() -> object:
        return quota_reserve(world.tenant_a, tokens=10, cost_usd=Decimal("0.01"), platform=True)

    results = _race(100, reserve)

    granted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert (len(granted), len(refused)) == (50, 50)
    counters = dict(
        UsageCounter.objects.filter(tenant=world.tenant_a, scope="").values_list("metric", "used")
    )
    # All or nothing: a refused reservation left no tokens or platform spend behind either.
    assert counters == {"llm_cost_usd": 500_000, "llm_spend_usd": 500_000, "llm_tokens": 500}


def test_usage_periods_follow_the_billing_anchor_and_clamp_short_months():
    anchor = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert usage_period(anchor, datetime(2026, 2, 15, tzinfo=UTC)) == (
        datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        datetime(2026, 2, 28, 12, 0, tzinfo=UTC),
    )
    assert usage_period(anchor, datetime(2026, 3, 30, tzinfo=UTC)) == (
        datetime(2026, 2, 28, 12, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 12, 0, tzinfo=UTC),
    )
    calendar = datetime(2000, 1, 1, tzinfo=UTC)
    assert usage_period(calendar, datetime(2026, 11, 25, 23, 59, tzinfo=UTC)) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )


@pytest.mark.django_db
def test_free_uses_calendar_months_and_paid_plans_their_billing_period(world):
    Subscription.objects.filter(tenant=world.tenant_a).delete()
    ent = entitlement(world.tenant_a, now=datetime(2026, 11, 25, tzinfo=UTC))
    assert (ent.plan, ent.period_start, ent.period_end) == (
        FREE,
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    Subscription.objects.create(
        tenant=world.tenant_a, plan="pro", current_period_start=datetime(2026, 11, 10, 8, tzinfo=UTC)
    )
    ent = entitlement(world.tenant_a, now=datetime(2026, 11, 25, tzinfo=UTC))
    assert (ent.plan.code, ent.period_start, ent.period_end) == (
        "pro",
        datetime(2026, 11, 10, 8, tzinfo=UTC),
        datetime(2026, 12, 10, 8, tzinfo=UTC),
    )


@pytest.mark.django_db
def test_settling_replaces_the_estimate_with_the_real_figures(world):
    reservation = quota_reserve(world.tenant_a, tokens=1000, cost_usd=Decimal("0.50"), platform=False)
    quota_settle(reservation, tokens=42, cost_usd=Decimal("0.001"))
    quota_settle(reservation, tokens=42, cost_usd=Decimal("0.001"))  # a second settle changes nothing
    counters = dict(UsageCounter.objects.filter(tenant=world.tenant_a).values_list("metric", "used"))
    # Own credentials: no platform spend, but tokens and the cost caps count.
    assert counters == {"llm_tokens": 42, "llm_cost_usd": 1000}


@pytest.mark.django_db
def test_a_settlement_rides_in_the_callers_statement_and_falls_back_when_it_changed_nothing(world):
    """``quota_settlement``: a call that stayed within its estimate is settled by a statement the
    caller sends with its own (a run's finishing statement); one that overshot is settled at once
    (it may cross an alert); a settlement whose statement changed nothing is settled the slow way."""
    from falcon import sql

    def used() -> dict[str, int]:
        counters = UsageCounter.objects.filter(tenant=world.tenant_a, metric__startswith="llm_")
        return dict(counters.values_list("metric", "used"))

    within = quota_reserve(world.tenant_a, tokens=1000, cost_usd=Decimal("0.50"), platform=False)
    settlement = quota_settlement(within, tokens=42, cost_usd=Decimal("0.001"))
    assert settlement is not None
    assert settlement.changed == 2
    assert used() == {"llm_tokens": 1000, "llm_cost_usd": 500_000}  # nothing sent yet
    agent = published_agent(world.tenant_a, {"steps": [{"id": "s", "type": "transform", "value": 1}]})
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM, enqueue=False)
    finished = sql.update_with(
        Run, {"status": "succeeded"}, "id = %s", [sql.param(Run, "id", run.pk)],
        also=[(settlement.statement, settlement.params)],
    )  # fmt: skip
    assert (finished.changed, finished.also) == (1, (2,))
    settlement.done(finished.also[0])
    assert used() == {"llm_tokens": 42, "llm_cost_usd": 1000}
    assert quota_settlement(within, tokens=42, cost_usd=Decimal("0.001")) is None  # settled once

    over = quota_reserve(world.tenant_a, tokens=10, cost_usd=Decimal("0.001"), platform=False)
    assert quota_settlement(over, tokens=50, cost_usd=Decimal("0.002")) is None  # settled now
    assert used() == {"llm_tokens": 92, "llm_cost_usd": 3000}

    lost = quota_reserve(world.tenant_a, tokens=1000, cost_usd=Decimal("0.50"), platform=False)
    settlement = quota_settlement(lost, tokens=8, cost_usd=Decimal("0.001"))
    assert settlement is not None
    settlement.done(0)  # the caller's statement failed (or a counter had vanished): settled alone
    assert used() == {"llm_tokens": 100, "llm_cost_usd": 4000}


@pytest.mark.django_db
@pytest.mark.parametrize("plan", ["free", "pro", "team", "enterprise", None])
@pytest.mark.parametrize(
    "overrides", [{}, {"concurrent_runs": 3}, {"concurrent_runs": "7"}, {"concurrent_runs": 4.9}, {"runs": 5}]
)
def test_the_concurrency_limit_in_sql_is_the_plans(world, plan, overrides):
    """A worker's claim computes the tenant's concurrent-run limit in its own statement
    (``concurrency_limit_sql``): it must be the figure the plan and its overrides give in Python."""
    from billing.quotas import concurrency_limit_sql, entitlement

    subscription = Subscription.objects.filter(tenant=world.tenant_a)
    if plan is None:
        subscription.delete()  # no row at all: the Free plan
    else:
        subscription.update(plan=plan, overrides=overrides)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {concurrency_limit_sql('%s')}", [world.tenant_a.pk])
        (in_sql,) = cursor.fetchone()
    assert in_sql == entitlement(world.tenant_a).limit(Metric.CONCURRENT_RUNS)


# --- the run quota through the API and triggers -----------------------------------------------------------


@pytest.fixture
def published(world):
    return published_agent(
        world.tenant_a, {"steps": [{"id": "s", "type": "transform", "value": "{{ 6 * 7 }}"}]}
    )


@pytest.mark.django_db
def test_the_run_that_crosses_the_quota_gets_429_naming_it_and_creates_nothing(
    world, published, alice_client
):
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"runs": 2}, actor=SYSTEM)
    url = f"/api/v1/agents/{published.pk}/runs"
    assert alice_client.post(url, {"input": {}}, format="json").status_code == 202
    first_key = alice_client.post(url, {"input": {}}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first_key.status_code == 202
    audit_before = AuditEvent.objects.filter(tenant=world.tenant_a).count()

    response = alice_client.post(url, {"input": {}}, format="json")

    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["code"], error["metric"], error["limit"], error["used"]) == ("quota_exceeded", "runs", 2, 2)
    assert Run.objects.filter(tenant=world.tenant_a).count() == 2
    assert AuditEvent.objects.filter(tenant=world.tenant_a).count() == audit_before
    # A repeat of an accepted request is answered from the first run and consumes nothing.
    again = alice_client.post(url, {"input": {}}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert (again.status_code, again.json()["id"]) == (202, first_key.json()["id"])
    assert UsageCounter.objects.get(tenant=world.tenant_a, metric="runs").used == 2


@pytest.mark.django_db
def test_a_webhook_over_the_run_quota_is_429_and_recorded(world, published, alice_client):
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"runs": 1}, actor=SYSTEM)
    created = alice_client.post(
        "/api/v1/triggers/",
        {
            "name": "hook",
            "agent": str(published.pk),
            "kind": "webhook",
            "config": {"auth": "none", "allow_unsigned": True},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    url = created.json()["url"].split("://", 1)[1].split("/", 1)[1]
    assert alice_client.post(f"/{url}", {"a": 1}, format="json").status_code == 202

    response = alice_client.post(f"/{url}", {"a": 2}, format="json")

    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["code"], error["metric"], error["limit"]) == ("quota_exceeded", "runs", 1)
    refused = published.triggers.get().events.filter(accepted=False).get()
    assert refused.code == "quota_exceeded"
    assert Run.objects.filter(tenant=world.tenant_a).count() == 1


# --- LLM tokens and spend in real runs --------------------------------------------------------------------

LLM_AGENT = {
    "steps": [{"id": "ask", "type": "llm", "model": "sandbox/echo", "prompt": "hi", "max_tokens": 50}]
}


def _llm_run(world, name: str = "asker"):
    agent = agent_create(
        tenant=world.tenant_a, name=name, description="", actor=SYSTEM, created_by=None, definition=LLM_AGENT
    )
    version_publish(version=agent.versions.get(), actor=SYSTEM)
    agent.refresh_from_db()
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    return agent, run


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_token_reservation_fails_stops_with_quota_exceeded(world):
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"llm_tokens": 20}, actor=SYSTEM)
    _, run = _llm_run(world)

    run_execute(run.pk)

    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error["code"] == "quota_exceeded"
    assert "llm_tokens" in run.error["message"]
    assert not UsageCounter.objects.filter(tenant=world.tenant_a, metric="llm_tokens", used__gt=0).exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_settles_the_real_token_count(world):
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"llm_tokens": 1000}, actor=SYSTEM)
    _, run = _llm_run(world)

    run_execute(run.pk)

    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    step = run.steps.get(step_id="ask")
    assert UsageCounter.objects.get(tenant=world.tenant_a, metric="llm_tokens").used == (
        step.prompt_tokens + step.completion_tokens
    )


@pytest.mark.django_db(transaction=True)
def test_an_agent_spend_cap_stops_that_agent_only_and_real_costs_are_settled(world, llm):
    from agents.models import ModelPrice
    from tests.servers.llm import Reply

    # $10 per thousand output tokens: the 50-token budget of a call is estimated at about $0.50.
    ModelPrice.objects.create(model="openai/gpt-4o-mini", input_usd_per_mtok=1000, output_usd_per_mtok=10_000)
    spend_cap_set(tenant=world.tenant_a, monthly_usd="100", actor=SYSTEM)
    definition = {
        "steps": [
            {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "hi", "max_tokens": 50}
        ]
    }
    agents = {}
    for name in ("capped", "free-running"):
        agents[name] = agent_create(
            tenant=world.tenant_a,
            name=name,
            description="",
            actor=SYSTEM,
            created_by=None,
            definition=definition,
        )
        version_publish(version=agents[name].versions.get(), actor=SYSTEM)
        agents[name].refresh_from_db()
    agent_spend_cap_set(
        tenant_id=world.tenant_a.pk, agent_id=agents["capped"].pk, monthly_usd="0.10", actor=SYSTEM
    )
    llm.enqueue(Reply(text="ok", prompt_tokens=100, completion_tokens=20))

    capped, _ = run_start(agent=agents["capped"], input={}, actor=SYSTEM)
    run_execute(capped.pk)
    other, _ = run_start(agent=agents["free-running"], input={}, actor=SYSTEM)
    run_execute(other.pk)

    capped.refresh_from_db()
    other.refresh_from_db()
    assert (capped.status, capped.error["code"]) == (Run.Status.FAILED, "quota_exceeded")
    assert f"agent:{agents['capped'].pk}" in capped.error["message"]
    assert other.status == Run.Status.SUCCEEDED, other.error
    assert len(llm.received) == 1  # the capped run never reached the provider
    # Settled at the real price: 100 x $1000/M + 20 x $10000/M = $0.30; platform keys, so plan spend too.
    counters = dict(
        UsageCounter.objects.filter(tenant=world.tenant_a, scope="").values_list("metric", "used")
    )
    assert counters["llm_cost_usd"] == counters["llm_spend_usd"] == 300_000
    assert counters["llm_tokens"] == 120


@pytest.mark.django_db
def test_alerts_go_out_once_at_80_and_100_percent_with_an_audit_event(
    world, django_capture_on_commit_callbacks
):
    from tenants.permissions import Role
    from tests.conftest import member

    member(world.tenant_a, Role.ADMIN, email="admin@a.example")
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"runs": 10}, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for _ in range(7):
            quota_consume(world.tenant_a, Metric.RUNS)
    assert callbacks == []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        quota_consume(world.tenant_a, Metric.RUNS)  # 8 of 10
        quota_consume(world.tenant_a, Metric.RUNS)  # 9: no second 80 % alert
        quota_consume(world.tenant_a, Metric.RUNS)  # 10 of 10
    assert len(callbacks) == 2
    alerts = AuditEvent.objects.filter(tenant=world.tenant_a, action="billing.usage_alert").order_by("seq")
    assert [(a.changes["after"]["metric"], a.changes["after"]["percent"]) for a in alerts] == [
        ("runs", 80),
        ("runs", 100),
    ]
    from billing.alerts import billing_notify

    billing_notify(world.tenant_a.pk, "subject", "body")
    assert sorted(mail.outbox[-1].to) == ["admin@a.example", "alice@a.example"]


@pytest.mark.django_db
def test_a_period_counter_starts_fresh_next_period(world):
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"runs": 1}, actor=SYSTEM)
    quota_consume(world.tenant_a, Metric.RUNS)
    with pytest.raises(QuotaExceeded):
        quota_consume(world.tenant_a, Metric.RUNS)
    counter = UsageCounter.objects.get(tenant=world.tenant_a, metric="runs")
    UsageCounter.objects.filter(pk=counter.pk).update(
        period_start=counter.period_start - timedelta(days=40), period_end=counter.period_start
    )
    assert quota_consume(world.tenant_a, Metric.RUNS) == 1


@pytest.mark.django_db
def test_free_platform_credit_is_per_verified_person_not_per_tenant(world):
    """Regression: every new Free tenant minted fresh platform LLM credit for the same person."""
    from allauth.account.models import EmailAddress

    from tenants.services import tenant_create

    plan_set(tenant=world.tenant_a, plan="free", actor=SYSTEM)
    second = tenant_create(slug="alice-second", name="Second", owner=world.alice, actor=SYSTEM)
    EmailAddress.objects.filter(user=world.alice).update(verified=False)
    with pytest.raises(QuotaExceeded) as raised:
        quota_reserve(world.tenant_a, tokens=10, cost_usd=Decimal("0.01"), platform=True)
    assert "verified e-mail" in raised.value.message
    # Own provider keys need no verification: the credit is only for Falcon's keys.
    quota_settle(
        quota_reserve(world.tenant_a, tokens=10, cost_usd=Decimal("0.01"), platform=False),
        tokens=10,
        cost_usd=0,
    )

    EmailAddress.objects.filter(user=world.alice).update(verified=True)
    held = quota_reserve(world.tenant_a, tokens=10, cost_usd=Decimal("4.00"), platform=True)
    quota_settle(held, tokens=10, cost_usd=Decimal("4.00"))
    # The second Free tenant of the same person draws on the same $5: $1 left, not $5.
    with pytest.raises(QuotaExceeded):
        quota_reserve(second, tokens=10, cost_usd=Decimal("1.50"), platform=True)
    quota_reserve(second, tokens=10, cost_usd=Decimal("1.00"), platform=True)
    assert entitlement(second).plan.code == "free"
    usage = usage_summary(second)["metrics"]["llm_spend_usd"]
    assert (usage["used"], usage["limit"]) == ("5.000000", "5")
