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


def _session_statements() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'falcon%%'")
        return dict(cursor.fetchall())


def _read_status(run: Run) -> list | None:
    return sql.select_one(Run, ("status", "claims"), "id = %s", [sql.param(Run, "id", run.pk)])


def test_a_hot_statement_is_prepared_once_per_session_and_sent_as_execute(run, django_assert_num_queries):
    """The server parses and plans the text once per session; each use after sends its name and the
    values (quoted on the client, as every statement). The PREPARE is the session's upkeep, not one
    of the caller's queries."""
    text = sql._select_sql(Run, ("status", "claims"), "id = %s")
    with django_assert_num_queries(1) as first:
        assert _read_status(run) == ["queued", 0]
    with django_assert_num_queries(1) as second:
        assert _read_status(run) == ["queued", 0]
    name = sql._by_text[text].name
    for captured in (first, second):
        assert captured.captured_queries[0]["sql"].startswith(f"EXECUTE {name}('"), captured.captured_queries
    prepared = _session_statements()
    assert prepared[name].startswith(f"PREPARE {name} AS SELECT")
    assert "WHERE id = $1" in prepared[name]
    # Tests and logs read the statement back from the name.
    assert sql.readable(second.captured_queries[0]["sql"]).startswith(f"{text} /* {name} */(")


def test_off_the_text_is_sent_as_it_is_with_the_same_answer(run, settings, django_assert_num_queries):
    """FALCON_DB_PREPARED_STATEMENTS=0 (a pooler in transaction mode hands each transaction another
    server session): the statement goes as text."""
    settings.FALCON_DB_PREPARED_STATEMENTS = False
    with django_assert_num_queries(1) as captured:
        assert _read_status(run) == ["queued", 0]
    assert captured.captured_queries[0]["sql"].startswith('SELECT "status", "claims" FROM "agents_run"')


def test_a_statement_prepared_in_a_rolled_back_transaction_stays_prepared(run):
    from django.db import transaction

    text = sql._select_sql(Run, ("status", "claims"), "id = %s")

    def read_then_fail() -> None:
        with transaction.atomic():
            _read_status(run)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        read_then_fail()
    assert sql._by_text[text].name in _session_statements()
    assert _read_status(run) == ["queued", 0]  # no second PREPARE: it would fail ("already exists")


def test_a_session_whose_statements_went_is_prepared_again(run):
    """Statements deallocated behind the process's back: the statement that finds its name missing
    fails (in its transaction, nothing else can be done), and the next one prepares afresh."""
    from django.db import DatabaseError, connection, transaction

    _read_status(run)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(DatabaseError, match="does not exist"), transaction.atomic():
        _read_status(run)
    assert _read_status(run) == ["queued", 0]
    assert _read_status(run) == ["queued", 0]


def test_past_the_registry_bound_texts_are_sent_as_they_are(run, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(sql, "PREPARED_MAX", len(sql._by_text))
    with django_assert_num_queries(1) as captured:
        assert sql.select_one(
            Run, ("claims",), "id = %s AND claims >= 0", [sql.param(Run, "id", run.pk)]
        ) == [0]
    assert captured.captured_queries[0]["sql"].startswith('SELECT "claims" FROM "agents_run"')


def test_several_statements_go_as_one_string_of_executes(run):
    """The claim's round trip: three statements, each prepared, sent as one string."""
    from django.db import connection

    texts = ("SELECT %s::int", "SELECT %s::int + 1", "SELECT %s::int + 2")
    with connection.cursor() as cursor:
        sql.run(cursor, texts, [1, 1, 1])
        answers = [cursor.fetchone()[0]]
        while cursor.nextset():
            answers.append(cursor.fetchone()[0])
    assert answers == [1, 2, 3]
    assert {sql._by_text[t].name for t in texts} <= set(_session_statements())
