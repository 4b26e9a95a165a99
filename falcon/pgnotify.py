"""Waiting for a row to change without polling: PostgreSQL ``LISTEN``/``NOTIFY``.

A writer calls ``notify(channel, key)`` inside its transaction (PostgreSQL delivers the notification
when, and only if, it commits). A process that has callers waiting keeps one listening connection
and one thread, whatever the number of waiters, and wakes the waiter of each key it hears. With no
PostgreSQL (the embedded first-look mode) ``supported()`` is False and callers poll instead.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any

import psycopg
from django.db import connection

logger = logging.getLogger(__name__)
IDLE_S = 2.0  # a listener with no waiters closes its connection after this long
LIBPQ_OPTIONS = frozenset(
    {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "options", "connect_timeout"}
    | {"application_name", "target_session_attrs", "service", "passfile", "gssencmode"}
)


def connection_params(**extra: Any) -> dict[str, Any]:
    """libpq parameters of a dedicated connection to Django's database (outside its pool): the same
    server, credentials and TLS options (``OPTIONS`` keys that are libpq's, not Django's or the pool's)."""
    settings = connection.settings_dict
    params: dict[str, Any] = {
        "dbname": settings["NAME"],
        "user": settings.get("USER") or None,
        "password": settings.get("PASSWORD") or None,
        "host": settings.get("HOST") or None,
        "port": settings.get("PORT") or None,
        **{k: v for k, v in (settings.get("OPTIONS") or {}).items() if k in LIBPQ_OPTIONS},
        **extra,
    }
    return {k: v for k, v in params.items() if v}


def supported() -> bool:
    return connection.vendor == "postgresql"


def notify(channel: str, key: str) -> None:
    """Wakes the waiters of ``key`` once the current transaction commits (at once in autocommit)."""
    if supported():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [channel, key])


class Wake(threading.Event):
    """An event that also keeps what notifications said past their key (``"<key> <detail>"``)."""

    def __init__(self) -> None:
        super().__init__()
        self._details: list[str] = []
        self._details_lock = threading.Lock()

    def notified(self, detail: str) -> None:
        if detail:
            with self._details_lock:
                if len(self._details) < 1000:
                    self._details.append(detail)
        self.set()

    def take(self) -> list[str]:
        """The details heard since the last call; clears the event."""
        with self._details_lock:
            details, self._details = self._details, []
            self.clear()
        return details


class Listener:
    """One ``LISTEN`` connection per process and channel, started by the first waiter.

    A notification's payload is a key, optionally followed by a space and a detail; the waiters of the
    key wake (a ``Wake`` keeps the details)."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._lock = threading.Lock()
        self._waiters: dict[str, list[threading.Event]] = defaultdict(list)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._listening = False

    def register(self, key: str, event: threading.Event | None = None) -> threading.Event:
        """An event set when ``key`` is notified (``event`` when given: one event may wait on several
        channels). Register *before* reading the state you wait on, so that a change committed in
        between is not missed."""
        event = event if event is not None else threading.Event()
        with self._lock:
            self._waiters[key].append(event)
            if self._thread is None or not self._thread.is_alive():
                self._ready.clear()
                self._thread = threading.Thread(
                    target=self._listen, name=f"listen-{self.channel}", daemon=True
                )
                self._thread.start()
        self._ready.wait(timeout=5)  # LISTEN is in place (or the listener failed: callers poll too)
        return event

    def unregister(self, key: str, event: threading.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(key, [])
            if event in waiters:
                waiters.remove(event)
            if not waiters:
                self._waiters.pop(key, None)

    @property
    def listening(self) -> bool:
        """Whether notifications are being received now (if not, waiters should poll briskly)."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive() and self._listening

    def stop(self) -> None:
        """Ends the listening connection (within ``IDLE_S``): for shutdowns and test teardown."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout=IDLE_S + 1)
        with self._lock:
            self._stopping = False

    def _listen(self) -> None:
        try:
            with psycopg.connect(autocommit=True, **connection_params()) as conn:
                conn.execute(f"LISTEN {self.channel}")
                self._listening = True
                self._ready.set()
                while True:
                    for note in conn.notifies(timeout=IDLE_S):
                        key, _, detail = note.payload.partition(" ")
                        with self._lock:
                            events = list(self._waiters.get(key, ()))
                        for event in events:
                            if isinstance(event, Wake):
                                event.notified(detail)
                            else:
                                event.set()
                    with self._lock:
                        if not self._waiters or self._stopping:
                            return  # nobody waits: the next waiter starts a listener again
        except Exception:
            logger.exception("The %s listener stopped; waiters fall back to polling", self.channel)
        finally:
            self._ready.set()
            with self._lock:
                self._thread = None
                self._listening = False
