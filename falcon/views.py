"""The project's own pages: liveness and readiness (the dashboard's pages live in the apps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.core.cache import cache as django_cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from falcon.celery import app as celery_app

READY_TIMEOUT_S = 2


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. It touches nothing else, so a database outage does not make an
    orchestrator restart every healthy web process (that is what ``/readyz`` is for)."""
    return JsonResponse({"status": "ok"})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    if not _migrated():
        raise RuntimeError("migrations not applied")


_migrated_once = False


def _migrated() -> bool:
    """True when no migration of this code is unapplied; once true it stays true for the process."""
    global _migrated_once
    if not _migrated_once:
        executor = MigrationExecutor(connection)
        _migrated_once = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrated_once


def _broker() -> None:
    with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=0, timeout=READY_TIMEOUT_S)


def _cache() -> None:
    django_cache.set("falcon:readyz", "1", timeout=10)
    if django_cache.get("falcon:readyz") != "1":
        raise RuntimeError("the cache did not return what was written")


@cache
def _checks() -> dict[str, Callable[[], None]]:
    return {"database": _database, "broker": _broker, "cache": _cache}


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database is reachable and migrated, the broker and the cache answer.

    Each check reports its latency; a failed one makes the answer 503 and names itself (the error's
    class only: connection errors can carry host names and user names).
    """
    checks: dict[str, dict[str, object]] = {}
    failed: list[str] = []
    for name, check in _checks().items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:
            failed.append(name)
            checks[name] = {"status": "down", "error": type(exc).__name__}
        else:
            checks[name] = {"status": "up"}
        checks[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
