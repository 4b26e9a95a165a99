"""Real Falcon processes for the tests that need them (gunicorn, Celery workers, beat) on the test
database: their environment, their commands, and stopping them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]
CELERY_WORKER = [
    sys.executable,
    "-m",
    "celery",
    "-A",
    "falcon",
    "worker",
    "--pool=threads",
    "--concurrency=4",
]
CELERY_WORKER += ["--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"]


def environment(**extra: str) -> dict[str, str]:
    """This process's environment, pointed at the test database (pytest-django's, not the configured one)."""
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {**os.environ, "DATABASE_URL": url, **extra}


def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(*processes: subprocess.Popen[bytes]) -> None:
    """SIGTERM to every one still running, then wait (SIGKILL after 30 s)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
