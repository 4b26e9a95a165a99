"""The connection pool's liveness check, skipped for a connection the pool had back moments ago.

psycopg_pool checks a connection (one round trip) each time it hands one out. A worker thread gives
its connection back before every LLM call and takes one again when the answer comes, so at load the
check was two of a run's dozen round trips, on connections that had answered a statement
milliseconds before. As HikariCP's ``aliveBypassWindowMs`` does, a connection given back within the
last half second is handed out unchecked; an older one is checked (and replaced when dead). A
connection that broke while in use is not given back: psycopg_pool discards it on return.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from weakref import WeakKeyDictionary

from psycopg_pool import ConnectionPool

ALIVE_BYPASS_S = 0.5

_returned: WeakKeyDictionary[Any, float] = WeakKeyDictionary()
_lock = threading.Lock()


def stamp_returned(connection: Any) -> None:
    """The connection is being given back to the pool now (``falcon.postgresql``'s close)."""
    with _lock:
        _returned[connection] = time.monotonic()


def check_unless_recent(connection: Any) -> None:
    """psycopg_pool's ``check`` callback: the usual check, unless the connection was given back
    less than ``ALIVE_BYPASS_S`` ago."""
    with _lock:
        returned = _returned.get(connection)
    if returned is not None and time.monotonic() - returned < ALIVE_BYPASS_S:
        return
    ConnectionPool.check_connection(connection)
