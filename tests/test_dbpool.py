"""The connection pool hands out a connection given back moments ago unchecked, checks an older one,
and replaces an older one that died (falcon.dbpool)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import connection as default_connection
from psycopg_pool import ConnectionPool

from falcon import dbpool

pytestmark = pytest.mark.django_db(transaction=True)

connection: Any = default_connection  # the PostgreSQL backend's pool is not in django-stubs


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every real liveness check the pool makes (each is one round trip to PostgreSQL)."""
    made: list[Any] = []
    real = ConnectionPool.check_connection

    def spy(conn: Any) -> None:
        made.append(conn)
        real(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(spy))
    return made


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_the_pool_uses_falcons_check() -> None:
    assert connection.vendor == "postgresql"
    assert connection.pool is not None
    assert connection.pool._check is dbpool.check_unless_recent


@pytest.fixture(autouse=True)
def _own_pool() -> Any:
    """A fresh pool, closed afterwards (its connections would keep the test database busy)."""
    connection.close()
    connection.close_pool()
    yield
    connection.close()
    connection.close_pool()


def _cycle() -> None:
    """Takes and gives back each pooled connection once: every one is then freshly given back.

    The pool is opened with its minimum of connections before anything asks for one: a first
    request on an empty pool would wait and make the pool grow by one more connection, which could
    arrive in the middle of the cycle and be handed out afterwards never given back (CI saw it)."""
    connection.pool.open(wait=True, timeout=10)
    stats = connection.pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"]  # nothing on its way in
    for _ in range(stats["pool_size"] + 1):
        _backend_pid()
        connection.close()


def test_a_connection_given_back_moments_ago_is_not_checked_again(
    checks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Moments" made long enough that a loaded machine pausing the test cannot outlast them; the
    # next test shows the same hand-out checked once the window has passed.
    monkeypatch.setattr(dbpool, "ALIVE_BYPASS_S", 60.0)
    _cycle()
    checks.clear()
    _backend_pid()  # one of them again, without a round trip to check it
    assert checks == []


def test_an_older_connection_is_checked(checks: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _cycle()
    checks.clear()
    monkeypatch.setattr(dbpool, "ALIVE_BYPASS_S", 0.0)  # every stamp is now too old
    _backend_pid()
    assert len(checks) == 1


def test_a_dead_connection_is_replaced_when_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    _cycle()
    pid = _backend_pid()
    connection.close()
    db = connection.settings_dict
    with psycopg.connect(  # from outside the pool, as a restart or an administrator would
        dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"], autocommit=True
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    monkeypatch.setattr(dbpool, "ALIVE_BYPASS_S", 0.0)
    found = set()
    for _ in range(connection.pool.get_stats()["pool_size"] + 1):  # each pooled one in turn
        found.add(_backend_pid())
        connection.close()
    assert pid not in found
