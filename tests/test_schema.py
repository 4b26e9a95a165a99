"""The OpenAPI 3 schema and its docs page."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_schema_generates_without_warnings_and_lists_every_endpoint():
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = yaml.safe_load(out.getvalue())
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for expected in [
        "/api/v1/tenant",
        "/api/v1/tenants/",
        "/api/v1/members/",
        "/api/v1/members/{id}/",
        "/api/v1/invitations/",
        "/api/v1/invitations/accept",
        "/api/v1/api-keys/",
        "/api/v1/api-keys/{id}/",
        "/api/v1/audit-events/",
        "/api/v1/audit-events/export/",
    ]:
        assert expected in paths, sorted(paths)
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_schema_and_docs_are_served(db):
    client = Client()
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/schema/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


SNAPSHOT = Path(__file__).parent / "snapshots" / "openapi.json"


def test_schema_matches_the_committed_snapshot():
    """The API's contract changes only on purpose: regenerate the snapshot with
    ``manage.py spectacular --format openapi-json --file tests/snapshots/openapi.json`` and commit it."""
    out = StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    assert json.loads(out.getvalue()) == json.loads(SNAPSHOT.read_text())
