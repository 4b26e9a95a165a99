"""One active ``celery beat`` per installation, however many are started.

``SingleBeatScheduler`` is django-celery-beat's ``DatabaseScheduler`` behind a lock: a PostgreSQL
advisory lock held by a dedicated connection (a file lock with the embedded SQLite of a first look).
The beat that holds it fires schedules; any other beat waits, trying again every ``RETRY_S``, and takes
over when the active one dies (its connection closes, PostgreSQL releases the lock), re-reading every
schedule's last run from the database first. Each firing is written back at once
(``CELERY_BEAT_SYNC_EVERY = 1``), so the beat that takes over does not fire again what the dead one fired.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from typing import IO, Any

import psycopg
from django.conf import settings
from django.db import connection
from django_celery_beat.schedulers import DatabaseScheduler

from falcon.pgnotify import connection_params

logger = logging.getLogger(__name__)
RETRY_S = 1.0
# pg_try_advisory_lock's key: any 64-bit number no other part of the installation uses.
LOCK_KEY = 0x46414C434F4E4254  # "FALCONBT"


class _Lock:
    """Held while a connection lives (PostgreSQL) or a file stays locked (SQLite)."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection[Any] | None = None
        self._file: IO[str] | None = None

    def held(self) -> bool:
        if self._file is not None:
            return True
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")  # the lock lives as long as this connection
            return True
        except psycopg.Error:
            logger.warning("The beat lock's database connection was lost; this beat stops firing")
            self.release()
            return False

    def acquire(self) -> bool:
        if connection.vendor != "postgresql":
            return self._acquire_file()
        try:
            # Operators (and the tests) see which process is the active beat in pg_stat_activity.
            params = connection_params(application_name=f"falcon-beat-{os.getpid()}")
            conn = psycopg.connect(autocommit=True, **params)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()
        except psycopg.Error:
            logger.exception("Could not ask for the beat lock")
            return False
        if row and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def _acquire_file(self) -> bool:
        handle = open(settings.VAR_DIR / "beat.lock", "a")  # noqa: SIM115 - held open while active
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.close()
            self._file = None


class SingleBeatScheduler(DatabaseScheduler):
    """``DatabaseScheduler`` that fires only while it holds the installation's beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock = _Lock()
        self._waiting_logged = False
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._lock.held():
            if not self._lock.acquire():
                if not self._waiting_logged:
                    logger.info("Another beat is active; this one waits to take over")
                    self._waiting_logged = True
                return RETRY_S
            logger.info("This beat is now the active scheduler")
            self._waiting_logged = False
            # Schedules and their last runs as the previous active beat left them in the database.
            self._initial_read = True
            self._heap = None
        return float(super().tick(*args, **kwargs))

    def close(self) -> None:
        try:
            if self._lock.held():
                super().close()  # writes what this beat fired; a waiting beat has nothing to write
        finally:
            self._lock.release()
