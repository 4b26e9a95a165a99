"""falcon.sql: the hand-written hot-path statements."""

from __future__ import annotations

import pytest
from psycopg import _queries as psycopg_queries

from agents.models import Run, StepRun
from agents.runs.services import deferred_query, run_start
from falcon import sql
from tenants.audit import Actor
from tests.agents.helpers import published_agent

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


@pytest.fixture
def run(world):
    agent = published_agent(
        world.tenant_a, {"steps": [{"id": "s", "type": "transform", "value": "{{ 6 * 7 }}"}]}
    )
    return run_start(agent=agent, input={}, actor=SYSTEM)[0]


def _steps(run: Run, *keys: str) -> list[StepRun]:
    return [
        StepRun(
            tenant_id=run.tenant_id, run_id=run.pk, key=key, step_id=key, step_type="transform", kind="step",
            attempt=1, claim=1, status="succeeded", output={"key": key},
        )
        for key in keys
    ]  # fmt: skip


def _finish(run: Run, *keys: str) -> tuple[int, bool]:
    updated = sql.update_with(
        Run,
        {"status": "succeeded", "output": 42},
        "id = %s AND status = %s",
        [sql.param(Run, "id", run.pk), "queued"],
        add={"active_seconds": 0.5},
        notify=("falcon_test", str(run.pk)),
        insert_rows=_steps(run, *keys),
        exists=deferred_query(run.tenant_id),
    )
    return updated.changed, updated.found


def test_update_with_inserts_updates_and_answers_in_one_statement(run, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert _finish(run, "a", "b", "c") == (1, False)
    done = Run.objects.get(pk=run.pk)
    assert (done.status, done.output, done.active_seconds) == ("succeeded", 42, 0.5)
    assert sorted(StepRun.objects.filter(run=run).values_list("key", flat=True)) == ["a", "b", "c"]
    Run.objects.filter(pk=run.pk).update(status="queued", deferred=True)  # now a run waits for a slot
    assert _finish(run, "d") == (1, True)
    assert _finish(run, "e") == (0, False)  # no longer queued: nothing changed; the steps are still written
    assert StepRun.objects.filter(run=run).count() == 5


def test_a_finishing_statement_is_parsed_once_not_on_every_run(run):
    """psycopg caches its parse of statements with up to STATEMENT_CACHE_MAX_PARAMS parameters (its
    own default stops at 50): the second run's finishing statement (~80 parameters) is a cache hit."""
    _finish(run, "a", "b", "c")
    Run.objects.filter(pk=run.pk).update(status="queued")
    before = psycopg_queries._query2pg_client.cache_info()
    _finish(run, "d", "e", "f")
    after = psycopg_queries._query2pg_client.cache_info()
    assert after.hits > before.hits
    assert after.misses == before.misses
