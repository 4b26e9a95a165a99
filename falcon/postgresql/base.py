"""Django's PostgreSQL backend, its connection pool checking connections as ``falcon.dbpool`` says."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base

from falcon import dbpool


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool  # type: ignore[misc]  # not in django-stubs
        if pool is not None:
            # Django hands psycopg_pool its plain check (CONN_HEALTH_CHECKS); psycopg_pool keeps the
            # callback here and calls it on every hand-out (tests/test_dbpool.py sees it used).
            pool._check = dbpool.check_unless_recent
        return pool

    def _close(self) -> None:
        if self.connection is not None and self.pool is not None:
            # Stamped here, not by a pool ``reset`` callback: with one, psycopg_pool gives every
            # connection back through its worker thread, later, instead of at once.
            dbpool.stamp_returned(self.connection)
        super()._close()  # type: ignore[misc]  # not in django-stubs
