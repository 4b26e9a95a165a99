"""A bound on how many requests of one kind do their CPU work at once in one process.

A web process runs Python on one core at a time (the GIL). Past a few requests working at once, more
threads only take turns on that core: each request's database transaction stays open for as long as
its thread waits for its turn, row locks shared by every request (a tenant's counters) are held that
much longer, and throughput falls while latency grows (decision 0013, session 9: 2 processes x 16
threads answered 15-20 % fewer webhook deliveries at c=32 than 2 x 4, with a p99 3x as long). Threads
are still needed for requests that *wait* (a synchronous webhook waiting for its run): those step out
of the bound while they wait, and back in to answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Admission:
    """At most ``size`` callers inside ``admitted()`` at once; the others wait their turn."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an admission bound admits at least one caller")
        self.size = size
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def admitted(self) -> Iterator[None]:
        self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    @contextmanager
    def stepped_out(self) -> Iterator[None]:
        """Within ``admitted()``: gives the slot back for a wait that uses no CPU, then takes one again."""
        self._slots.release()  # ValueError (bounded) when the caller was not admitted
        try:
            yield
        finally:
            self._slots.acquire()
