"""Starting a run with an idempotency key: a key taken within 24 h answers with the first run, a key
older than that is released for the new run, two concurrent starts with one key make one run, and a
webhook delivery starts its run inside its transaction without a savepoint."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Run
from agents.runs.services import IDEMPOTENCY_WINDOW, run_start
from billing.models import UsageCounter
from falcon import sql
from tenants.audit import Actor
from tests.agents.helpers import published_agent
from tests.agents.test_runs import wait_for

SYSTEM = Actor.system("tests")
PURE = {"steps": [{"id": "s", "type": "transform", "value": "{{ 6 * 7 }}"}]}


def _runs_used(tenant: Any) -> int:
    return UsageCounter.objects.filter(tenant=tenant, metric="runs", scope="").get().used


@pytest.mark.django_db
def test_a_key_older_than_the_window_is_released_for_a_new_run(world):
    agent = published_agent(world.tenant_a, PURE)
    old, _ = run_start(agent=agent, input={}, actor=SYSTEM, idempotency_key="order-1")
    again, new = run_start(agent=agent, input={}, actor=SYSTEM, idempotency_key="order-1")
    assert (again.pk, new) == (old.pk, False)
    assert _runs_used(world.tenant_a) == 1  # the repeat is not charged

    Run.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - IDEMPOTENCY_WINDOW - timedelta(minutes=1)
    )
    fresh, new = run_start(agent=agent, input={}, actor=SYSTEM, idempotency_key="order-1")

    assert new
    assert fresh.pk != old.pk
    assert Run.objects.get(pk=fresh.pk).idempotency_key == "order-1"
    assert Run.objects.get(pk=old.pk).idempotency_key is None
    assert _runs_used(world.tenant_a) == 2


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_starts_with_one_key_make_one_run(world):
    agent = published_agent(world.tenant_a, PURE)
    second: dict[str, Any] = {}

    def start_second() -> None:
        try:
            second["run"], second["new"] = run_start(
                agent=agent, input={}, actor=SYSTEM, idempotency_key="order-9", enqueue=False
            )
        finally:
            connections.close_all()

    with transaction.atomic():
        first, new = run_start(agent=agent, input={}, actor=SYSTEM, idempotency_key="order-9", enqueue=False)
        thread = threading.Thread(target=start_second)
        thread.start()
        # The second start's INSERT waits on the first's uncommitted key (PostgreSQL's unique index).
        wait_for(
            lambda: _waiting_on_a_lock(exclude=connection.connection.info.backend_pid),
            what="the second start to wait for the first's key",
        )
    thread.join(timeout=30)
    assert not thread.is_alive()

    assert new
    assert (second["run"].pk, second["new"]) == (first.pk, False)
    assert Run.objects.filter(agent=agent).count() == 1
    assert _runs_used(world.tenant_a) == 1


def _waiting_on_a_lock(*, exclude: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> %s",
            [exclude],
        )
        return bool(cursor.fetchone()[0])


def _echo_webhook(alice_client: Any) -> tuple[str, str]:
    """A signed (Standard Webhooks) trigger on the echo agent: its address and signing secret."""
    from tests.agents.helpers import create_agent
    from tests.agents.test_triggers import ECHO, _make

    agent_id = create_agent(alice_client, ECHO)
    trigger = _make(alice_client, agent_id, input_mapping={"order": "{{ event.body.id }}"})
    return f"/hooks/{trigger['public_id']}", trigger["signing_secret"]


@pytest.mark.django_db
def test_a_webhook_delivery_starts_its_run_without_a_savepoint(world, alice_client, client):
    from tests.agents.test_triggers import _post, _standard_headers

    url, secret = _echo_webhook(alice_client)
    body = b'{"id": 7}'
    headers = _standard_headers(secret, body)

    with CaptureQueriesContext(connection) as first:
        accepted = _post(client, url, body, **headers)
    with CaptureQueriesContext(connection) as repeat:
        again = _post(client, url, body, **headers)  # the same webhook-id: the same run

    assert accepted.status_code == 202, accepted.json()
    assert again.json()["run_id"] == accepted.json()["run_id"]
    assert Run.objects.count() == 1
    for captured in (first, repeat):
        statements = [sql.readable(q["sql"]) for q in captured.captured_queries]
        assert [s for s in statements if "INSERT INTO" in s and '"agents_run"' in s], statements
        # The test's own transaction makes the delivery's atomic block a savepoint; inside it, no more.
        assert sum(s.startswith("SAVEPOINT") for s in statements) == 1, statements
        # The tenant's plan comes with the trigger's lookup, not from a read of its own.
        assert not [s for s in statements if 'FROM "billing_subscription"' in s], statements
        assert sum('LEFT JOIN "billing_subscription"' in s for s in statements) == 1, statements


@pytest.mark.django_db
@pytest.mark.parametrize("inline_max_steps", [0, 5], ids=["queued", "inline"])
def test_a_webhook_delivery_writes_the_run_counter_last(
    world, alice_client, client, settings, inline_max_steps
):
    """The run counter's row is shared by every delivery of the tenant and stays locked until the
    delivery commits: it is the transaction's last write, after the run and the delivery's record."""
    from tests.agents.test_triggers import _post, _standard_headers

    settings.FALCON_WEBHOOK_INLINE_MAX_STEPS = inline_max_steps
    url, secret = _echo_webhook(alice_client)
    body = b'{"id": 8}'
    with CaptureQueriesContext(connection) as captured:
        accepted = _post(client, url, body, **_standard_headers(secret, body))

    assert accepted.status_code == 202, accepted.json()
    assert accepted.json()["status"] == ("queued" if inline_max_steps == 0 else "succeeded")
    statements = [sql.readable(q["sql"]) for q in captured.captured_queries]
    release = next(i for i, s in enumerate(statements) if s.startswith("RELEASE SAVEPOINT"))
    assert statements[release - 1].startswith(f"UPDATE {UsageCounter._meta.db_table} SET used = used +"), (
        statements
    )
    assert any('INSERT INTO "agents_triggerevent"' in s for s in statements[: release - 1]), statements
    assert _runs_used(world.tenant_a) == 1
