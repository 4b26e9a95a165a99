"""A real celery beat process (DatabaseScheduler) and worker process fire a per-second schedule into runs."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from agents.models import Run
from tests import processes
from tests.agents.helpers import create_agent
from tests.agents.test_runs import wait_for
from tests.agents.test_triggers import ECHO

pytestmark = pytest.mark.django_db(transaction=True)


def _process(*args: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    return processes.spawn([sys.executable, "-m", "celery", "-A", "falcon", *args], processes.environment())


_stop = processes.stop


def test_beat_fires_a_per_second_schedule_and_a_long_downtime_fires_once(
    world, alice_client, settings, tmp_path
):
    from falcon.celery import app

    app.control.purge()
    agent_id = create_agent(alice_client, ECHO)
    response = alice_client.post(
        "/api/v1/triggers/",
        {
            "name": "tick",
            "agent": agent_id,
            "kind": "schedule",
            "config": {"interval_s": 1, "overlap": "queue"},
            "input_mapping": {"order": 1},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    # As if beat had been down for an hour: the schedule last ran 3600 slots ago.
    PeriodicTask.objects.filter(name=f"falcon-trigger-{response.json()['id']}").update(
        last_run_at=timezone.now() - timedelta(hours=1)
    )
    worker = _process("worker", "--pool=threads", "--concurrency=4", "--loglevel=WARNING", tmp_path=tmp_path)
    beat = _process("beat", "--loglevel=WARNING", "-s", str(tmp_path / "beat-schedule"), tmp_path=tmp_path)
    try:
        wait_for(
            lambda: Run.objects.filter(trigger="schedule", status="succeeded").count() >= 3,
            timeout=90,
            what="three scheduled runs",
        )
    finally:
        _stop(beat, worker)
    runs = list(
        Run.objects.filter(trigger="schedule").order_by("created_at").values_list("created_at", flat=True)
    )
    # Misfire: one catch-up firing, not one per missed second; then about one per second.
    assert 3 <= len(runs) < 30
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(runs)]
    assert all(gap > 0.3 for gap in gaps), gaps
