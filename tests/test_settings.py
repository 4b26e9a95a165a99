"""Settings from the environment only: readers, first-look mode, the deploy check, the demo seed."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from falcon.env import email_settings_from_url, env_bool, env_int, env_list, env_str

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "FALCON_SECRET_KEY",
    "FALCON_ENCRYPTION_KEYS",
    "ALLOWED_HOSTS",
    "EMAIL_URL",
    "FALCON_DEBUG",
    "FALCON_SSL_REDIRECT",
)
KEY_SHAPE = re.compile(r"flk_live_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}")


def test_env_readers(monkeypatch, tmp_path):
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_BOOL", "off")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env_int("X_INT") == 42
    assert env_bool("X_BOOL") is False
    assert env_list("X_LIST") == ["a", "b", "c"]
    assert env_str("X_MISSING", "fallback") == "fallback"
    with pytest.raises(ImproperlyConfigured, match="X_MISSING is required"):
        env_str("X_MISSING")
    monkeypatch.setenv("X_INT", "forty")
    with pytest.raises(ImproperlyConfigured, match="X_INT is invalid"):
        env_int("X_INT")
    monkeypatch.setenv("X_BOOL", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL is invalid"):
        env_bool("X_BOOL")


def test_file_variant_reads_secrets_from_files(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env_str("X_SECRET") == "from-a-file"
    monkeypatch.setenv("X_SECRET", "also-set")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_str("X_SECRET")
    monkeypatch.delenv("X_SECRET")
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env_str("X_SECRET")


def test_email_urls():
    smtp = email_settings_from_url("smtp://user%40x:p%2Fw@mail.example:587?tls=1")
    assert smtp["EMAIL_HOST"] == "mail.example"
    assert smtp["EMAIL_PORT"] == 587
    assert smtp["EMAIL_HOST_USER"] == "user@x"
    assert smtp["EMAIL_HOST_PASSWORD"] == "p/w"
    assert smtp["EMAIL_USE_TLS"] is True
    assert email_settings_from_url("smtps://mail.example")["EMAIL_PORT"] == 465
    assert email_settings_from_url("console://")["EMAIL_BACKEND"].endswith("console.EmailBackend")
    with pytest.raises(ImproperlyConfigured, match="unknown scheme"):
        email_settings_from_url("carrier-pigeon://coop")


def _env(**overrides: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in PRODUCTION_VARIABLES and not k.startswith("DJANGO")
    }
    env.update(overrides)
    return env


def _manage(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
    )


def test_missing_required_variables_stop_start_up_with_a_clear_message(tmp_path):
    env = _env(FALCON_VAR_DIR=str(tmp_path), DATABASE_URL="postgres://falcon@127.0.0.1:5432/falcon")
    result = _manage("check", env=env, check=False)
    assert result.returncode != 0
    assert "FALCON_SECRET_KEY is required" in result.stderr
    env["FALCON_SECRET_KEY"] = "x" * 60
    env["FALCON_ENCRYPTION_KEYS"] = "k1:not-base64!"
    result = _manage("check", env=env, check=False)
    assert "FALCON_ENCRYPTION_KEYS key 'k1' is not valid base64" in result.stderr


def test_deploy_check_is_clean_with_debug_off(tmp_path):
    env = _env(
        FALCON_VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://falcon@127.0.0.1:5432/falcon",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/15",
        FALCON_SECRET_KEY="k" * 20 + "-deploy-check-secret-0123456789abcdef",
        FALCON_ENCRYPTION_KEYS="k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        FALCON_DEBUG="0",
        ALLOWED_HOSTS="falcon.example",
        EMAIL_URL="smtp://mail.example:587?tls=1",
    )
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_first_look_mode_migrates_seeds_idempotently_and_runs_tasks_without_servers(tmp_path):
    env = _env(FALCON_VAR_DIR=str(tmp_path))
    _manage("migrate", "--noinput", env=env)
    first = _manage("seed_demo", env=env).stdout
    second = _manage("seed_demo", env=env).stdout
    key = KEY_SHAPE.search(first).group(0)
    password = re.search(r"owner@acme\.example / (\S+)\)", first).group(1)
    assert key in second
    assert password in second
    assert (tmp_path / "falcon.sqlite3").exists()
    for secret_file in ("secret_key", "encryption_keys", "demo-credentials.json"):
        assert stat.S_IMODE((tmp_path / secret_file).stat().st_mode) == 0o600
    assert json.loads((tmp_path / "demo-credentials.json").read_text())["api_key"] == key

    check = (
        _manage(
            "shell",
            "-c",
            (
                "from django.conf import settings; from tenants.models import *\n"
                "from tenants.services import api_key_authenticate\n"
                f"k = api_key_authenticate('{key}')\n"
                "print(settings.FIRST_LOOK, settings.DATABASES['default']['ENGINE'],\n"
                "      settings.CELERY_BROKER_URL, k.tenant.slug, sorted(k.scopes), Tenant.objects.count(),\n"
                "      Membership.objects.count(), ApiKey.objects.count())"
            ),
            env=env,
        )
        .stdout.strip()
        .splitlines()[-1]
        .split()
    )
    assert check == [
        "True",
        "django.db.backends.sqlite3",
        "filesystem://",
        "acme",
        "['admin',",
        "'audit',",
        "'read',",
        "'run',",
        "'write']",
        "1",
        "1",
        "1",
    ]

    # A task goes through the file-system broker to a real worker process.
    _manage(
        "shell",
        "-c",
        "from tenants.tasks import audit_verify_all_task; audit_verify_all_task.delay()",
        env=env,
    )
    assert len(list((tmp_path / "broker" / "queue").iterdir())) == 1
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "falcon", "worker", "--pool=solo", "--loglevel=INFO"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while time.monotonic() < deadline:
            line = worker.stdout.readline()
            seen += line
            if "audit_verify_all_task" in line and "succeeded" in line:
                break
        assert "succeeded" in seen, seen[-3000:]
        assert "'acme': 'ok'" in seen, seen[-3000:]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert list((tmp_path / "broker" / "queue").iterdir()) == []


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_devstack_serves_and_ctrl_c_stops_everything(tmp_path):
    import signal
    import urllib.request

    env = _env(FALCON_VAR_DIR=str(tmp_path), FALCON_SMTP_INBOUND_PORT=str(_free_port()))
    _manage("migrate", "--noinput", env=env)
    port = _free_port()
    stack = subprocess.Popen(
        [sys.executable, "-m", "falcon.devstack", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.2)  # polling for readiness, bounded by the deadline
        assert body["status"] == "ok"
        assert {name: check["status"] for name, check in body["checks"].items()} == {
            "database": "up",
            "broker": "up",
            "cache": "up",
        }
    finally:
        stack.send_signal(signal.SIGINT)
        output, _ = stack.communicate(timeout=60)
    assert stack.returncode == 0, output[-3000:]
    assert "Stopped." in output
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_litellm_is_kept_offline_before_anything_imports_it():
    import falcon  # noqa: F401 - importing the project package is what sets it

    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
