"""Every log line of the whole test session, as production writes it, searched for secrets at the end.

A session fixture adds a handler to the root logger with the project's own filter and JSON formatter
(``falcon.logs``) writing to ``test-artifacts/test-session-logs.jsonl``. Secrets the tests create are
collected as they are made: every value the connectors encrypt or decrypt (connector credentials,
trigger and channel signing secrets) and every API key minted. When the session ends, any of them
found in the file fails the session, naming the line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

LOG_FILE = Path(__file__).resolve().parent.parent / "test-artifacts" / "test-session-logs.jsonl"
created: set[str] = set()
_handler: logging.Handler | None = None


@pytest.fixture(scope="session", autouse=True)
def _session_log_file(django_test_environment: None) -> Any:
    from falcon import logs
    from tenants import services

    global _handler
    LOG_FILE.parent.mkdir(exist_ok=True)
    LOG_FILE.write_text("")
    # Appending: logging set-up run again (Celery's fix-up calls django.setup()) closes every handler,
    # and a closed handler in "w" mode never writes again; in "a" mode it reopens on the next record.
    handler = logging.FileHandler(LOG_FILE, mode="a", encoding="utf-8")
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    _handler = handler

    seen, generate = logs.secret_seen, services.api_key_generate

    def recording_seen(value: str | None) -> None:
        if value and len(value) >= 8:
            created.add(value)
        seen(value)

    def recording_generate() -> str:
        token = generate()
        created.add(token)
        return token

    logs.secret_seen = recording_seen
    services.api_key_generate = recording_generate
    yield
    logs.secret_seen, services.api_key_generate = seen, generate
    root.removeHandler(handler)
    handler.close()
    _handler = None


def attach() -> None:
    """Puts the session's file back on the root logger: Celery's Django fix-up runs ``django.setup()``
    when a test starts an in-process worker, which configures logging again and drops the handlers."""
    root = logging.getLogger()
    if _handler is not None and _handler not in root.handlers:
        root.addHandler(_handler)


@pytest.fixture(autouse=True)
def _session_log_file_attached(_session_log_file: None) -> None:
    attach()


def leaks(text: str, secrets: set[str]) -> list[str]:
    """The lines of ``text`` that carry one of ``secrets`` (the secret itself is never printed)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for secret in secrets:
            if secret in line:
                found.append(f"line {number}: a secret of {len(secret)} characters starting {secret[:4]!r}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not LOG_FILE.exists() or not created:
        return
    found = leaks(LOG_FILE.read_text(encoding="utf-8"), created)
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"{len(found)} log line(s) of this session carry a secret ({LOG_FILE}):\n" + "\n".join(
            found[:20]
        )
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
