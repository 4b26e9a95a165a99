"""Liveness and readiness: what an orchestrator and a load balancer see."""

from __future__ import annotations

import pytest
from django.test import Client

from falcon import views


@pytest.fixture
def client() -> Client:
    return Client()


def test_healthz_answers_without_touching_the_database(client):
    # no database mark: pytest-django refuses any query, which would make this a 500
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_each_check_with_its_latency(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "cache"}
    for check in body["checks"].values():
        assert check["status"] == "up"
        assert check["latency_ms"] >= 0


@pytest.mark.django_db
def test_probes_ignore_the_host_check_and_the_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["falcon.example.com"]
    for path in ("/healthz", "/readyz"):
        response = client.get(path, HTTP_HOST="10.1.2.3:8000")
        assert response.status_code == 200, (path, response.status_code)
    # everything else still gets both
    assert client.get("/api/v1/tenant", HTTP_HOST="10.1.2.3:8000").status_code == 400


@pytest.mark.django_db
def test_readyz_names_an_unreachable_broker(client, settings, monkeypatch):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(views, "READY_TIMEOUT_S", 1)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "up"
    assert "127.0.0.1" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_names_unapplied_migrations(client, monkeypatch):
    class Pending:
        def __init__(self, connection):
            self.loader = type("L", (), {"graph": type("G", (), {"leaf_nodes": lambda self: []})()})()

        def migration_plan(self, targets):
            return [("agents", "9999_future")]

    monkeypatch.setattr(views, "_migrated_once", False)
    monkeypatch.setattr(views, "MigrationExecutor", Pending)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
    assert response.json()["checks"]["database"]["error"] == "RuntimeError"


@pytest.mark.django_db
def test_readyz_names_a_cache_that_loses_writes(client, monkeypatch):
    monkeypatch.setattr(views.django_cache, "get", lambda key, default=None: None)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["cache"]
