"""One beat, always: two `celery beat` processes against one database fire a schedule once per slot;
the waiting one takes over when the active one is killed."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from django.db import connection

from tests.agents.helpers import create_agent
from tests.agents.test_runs import wait_for
from tests.agents.test_schedule_beat import _process, _stop
from tests.agents.test_triggers import ECHO

pytestmark = pytest.mark.django_db(transaction=True)


def _active_beats() -> list[int]:
    """Process ids of the beats holding the lock (their lock connection names them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'falcon-beat-%%'"
        )
        return [int(name.removeprefix("falcon-beat-")) for (name,) in cursor.fetchall()]


def _firings() -> int:
    """Schedule firings beat has published: no worker runs, and nothing but schedule firings goes to
    the runs queue in this test, so they are its messages (counted the same way on Redis and RabbitMQ)."""
    from falcon.celery import app

    with app.connection_for_write() as conn:
        try:
            channel: Any = conn.default_channel
            return int(channel.queue_declare("runs", passive=True).message_count)
        except conn.channel_errors:
            return 0  # not declared yet: nothing published


def _seconds_for_eight_more() -> float:
    """How long the next eight firings take: about eight seconds for one beat firing a 1 s schedule,
    much less if two beats fired it (about 4.7 s measured with two plain DatabaseSchedulers)."""
    start, count = time.monotonic(), _firings()
    wait_for(lambda: _firings() >= count + 8, timeout=60, what="eight more firings")
    return time.monotonic() - start


def test_a_second_beat_waits_and_takes_over_when_the_first_is_killed(world, alice_client, tmp_path):
    from falcon.celery import app

    app.control.purge()
    agent_id = create_agent(alice_client, ECHO)
    response = alice_client.post(
        "/api/v1/triggers/",
        {"name": "tick", "agent": agent_id, "kind": "schedule", "config": {"interval_s": 1}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    beats = [
        _process("beat", "--loglevel=WARNING", "-s", str(tmp_path / f"beat-{n}"), tmp_path=tmp_path)
        for n in (1, 2)
    ]
    try:
        wait_for(lambda: _firings() >= 2, timeout=90, what="the first firings")
        active = _active_beats()
        assert len(active) == 1, active
        first = next(beat for beat in beats if beat.pid == active[0])
        second = next(beat for beat in beats if beat is not first)
        assert second.poll() is None  # started, alive, and not firing
        assert _seconds_for_eight_more() > 6.5

        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        wait_for(lambda: _active_beats() == [second.pid], timeout=30, what="the second beat to take over")
        # Its first firing may catch up a slot the killed beat had not saved: time the steady rate after it.
        after_takeover = _firings()
        wait_for(lambda: _firings() >= after_takeover + 2, timeout=30, what="the second beat's first firings")
        assert _seconds_for_eight_more() > 6.5
    finally:
        _stop(*beats)
        app.control.purge()
