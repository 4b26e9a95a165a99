"""Connectors through the API and from published agents: secrets stay secret, kinds work end to end."""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import quote

import pytest

from connectors.errors import ConnectorError
from connectors.kinds.http import HttpKind, guarded_request
from connectors.models import Connector, NetworkAllowance
from connectors.netguard import PUBLIC_ONLY, NetPolicy
from connectors.services import connector_create, connector_resolve, network_policy
from tenants.audit import Actor
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent
from tests.agents.test_runs import run_now, steps_of
from tests.conftest import key_client, session_client
from tests.servers.http_api import HttpApiServer
from tests.servers.llm import Reply
from tests.servers.tcp_forward import TcpForwarder

TOKEN = "tok-secret-0123456789abcdef"
SYSTEM_ACTOR = Actor.system("tests")


@pytest.fixture
def tenant_postgres(settings):
    """The test PostgreSQL seen as a tenant's own database: through a forwarder on another port, since
    the platform's database host and port are refused to every tenant."""
    db = settings.DATABASES["default"]
    forwarder = TcpForwarder(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    yield {"host": "127.0.0.1", "port": forwarder.port, "database": db["NAME"], "sslmode": "disable"}
    forwarder.stop()


@pytest.fixture
def api_server():
    server = HttpApiServer()
    yield server
    server.stop()


def _create(client, name: str, kind: str, config: dict, secrets: dict):
    return client.post(
        "/api/v1/connectors/",
        {"name": name, "kind": kind, "config": config, "secrets": secrets},
        format="json",
    )


@pytest.mark.django_db
def test_secrets_are_write_only_and_never_audited(world, alice_client, caplog):
    caplog.set_level(logging.DEBUG)
    response = _create(
        alice_client,
        "crm",
        "http",
        {"base_url": "https://api.example.com", "auth": "bearer"},
        {"token": TOKEN},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["secrets"] == {"token": {"configured": True, "last4": "cdef"}}
    connector_id = body["id"]
    for payload in [
        response.content,
        alice_client.get(f"/api/v1/connectors/{connector_id}").content,
        alice_client.get("/api/v1/connectors/").content,
    ]:
        assert TOKEN.encode() not in payload
    assert TOKEN not in str(list(AuditEvent.objects.values_list("changes", flat=True)))
    assert TOKEN not in caplog.text
    updated = alice_client.patch(
        f"/api/v1/connectors/{connector_id}", {"secrets": {"token": "short"}}, format="json"
    )
    assert updated.json()["secrets"] == {"token": {"configured": True, "last4": ""}}  # too short to hint
    event = AuditEvent.objects.get(action="connector.updated")
    assert event.changes["after"]["write_only_fields_changed"] == ["token"]
    assert "short" not in str(event.changes)


@pytest.mark.django_db
def test_bad_connector_input(world, alice_client):
    response = _create(alice_client, "x", "ftp", {}, {})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["kind"]
    response = _create(
        alice_client, "x", "http", {"base_url": "ftp://x", "auth": "magic", "colour": 1}, {"nope": "x"}
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert {"config.base_url", "config.auth", "config.colour", "secrets.nope"} <= set(fields)
    response = _create(alice_client, "llm", "openai", {}, {})
    assert response.json()["error"]["fields"] == {"secrets.api_key": ["This field is required."]}


@pytest.mark.django_db
def test_roles_and_kinds(world, bob_client, alice_client):
    assert bob_client.get("/api/v1/connectors/").status_code == 200
    assert _create(bob_client, "x", "http", {"base_url": "https://x.example"}, {}).status_code == 403
    kinds = {k["kind"]: k for k in alice_client.get("/api/v1/connector-kinds/").json()["results"]}
    assert {"http", "postgres", "openai", "anthropic", "gemini", "ollama"} <= set(kinds)
    assert kinds["http"]["secrets"]["properties"]["token"]["writeOnly"] is True


@pytest.mark.django_db
def test_network_guard_blocks_loopback_metadata_and_redirects(world, settings, api_server):
    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = []
    for url in [
        f"{api_server.base}/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
        "http://localhost/",
    ]:
        with pytest.raises(ConnectorError) as raised:
            guarded_request("GET", url, policy=PUBLIC_ONLY, timeout_s=2)
        assert raised.value.code == "destination_blocked", url
    # Allowed to reach 127.0.0.2 only: its redirect to 127.0.0.1 is checked again and refused.
    redirector = HttpApiServer(host="127.0.0.2")
    try:
        settings.FALCON_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.0/8"]
        only_2 = NetPolicy(allowed=(ipaddress.ip_network("127.0.0.2/32"),))
        status, _, _ = guarded_request("GET", f"{redirector.base}/hello", policy=only_2, timeout_s=2)
        assert status == 200
        with pytest.raises(ConnectorError) as raised:
            guarded_request(
                "GET", f"{redirector.base}/redirect?to={api_server.base}/x", policy=only_2, timeout_s=2
            )
        assert raised.value.code == "destination_blocked"
        assert api_server.received == []
        # The platform-wide ceiling alone opens nothing: a tenant needs its own allowance.
        with pytest.raises(ConnectorError):
            guarded_request("GET", f"{redirector.base}/hello", policy=PUBLIC_ONLY, timeout_s=2)
        # An allowance outside the ceiling does not count.
        settings.FALCON_ALLOWED_PRIVATE_NETWORKS = ["10.0.0.0/8"]
        with pytest.raises(ConnectorError):
            guarded_request("GET", f"{redirector.base}/hello", policy=only_2, timeout_s=2)
    finally:
        redirector.stop()


@pytest.mark.django_db
def test_redirects_leave_credentials_behind_and_stop_after_five_hops(world, api_server, loopback_allowed):
    """Authorization, the connector's API-key header and its API-key query parameter go to the origin
    they were configured for, never to another origin a redirect points at; at most five hops."""
    redirector = HttpApiServer(host="127.0.0.2")
    try:
        for auth, secrets, sent in (
            ({"auth": "bearer"}, {"token": TOKEN}, "authorization"),
            ({"auth": "api_key_header", "api_key_name": "X-Api-Key"}, {"api_key": TOKEN}, "x-api-key"),
            ({"auth": "api_key_query", "api_key_name": "key"}, {"api_key": TOKEN}, "key"),
        ):
            created = connector_create(
                tenant=world.tenant_a,
                name=f"r-{auth['auth']}",
                kind="http",
                config={"base_url": redirector.base, **auth},
                secrets=secrets,
                actor=SYSTEM_ACTOR,
                created_by=None,
            )
            resolved = connector_resolve(created)
            # Same origin: the credentials follow.
            same = f"{redirector.base}/same?key={TOKEN}" if sent == "key" else f"{redirector.base}/same"
            HttpKind.request(resolved, {"path": "/redirect", "query": {"to": same}})
            landed = redirector.received[-1]
            assert landed["path"] == "/same"
            assert TOKEN in str(landed["headers"]) + str(landed["query"]), auth
            # Another origin (another address): they stay behind, the rest of the URL goes.
            elsewhere = f"{api_server.base}/other?keep=1&key={TOKEN}"
            HttpKind.request(resolved, {"path": "/redirect", "query": {"to": elsewhere}})
            other = api_server.received[-1]
            assert other["path"] == "/other"
            assert other["query"] == {"keep": "1"} if sent == "key" else other["query"]["keep"] == "1"
            assert sent not in other["headers"], auth
            assert TOKEN not in str(other["headers"]), auth
        policy = network_policy(world.tenant_a.pk)
        chain = f"{redirector.base}/end"
        for _ in range(5):
            chain = f"{redirector.base}/redirect?to={quote(chain, safe='')}"
        assert guarded_request("GET", chain, policy=policy, timeout_s=5)[0] == 200
        with pytest.raises(ConnectorError) as raised:
            guarded_request(
                "GET", f"{redirector.base}/redirect?to={quote(chain, safe='')}", policy=policy, timeout_s=5
            )
        assert raised.value.code == "too_many_redirects"
    finally:
        redirector.stop()


@pytest.mark.django_db
def test_http_auth_styles_oauth_refresh_size_cap_and_timeout(
    world, alice_client, api_server, loopback_allowed
):
    cases = [
        ({"auth": "bearer"}, {"token": TOKEN}, lambda r: r["headers"]["authorization"] == f"Bearer {TOKEN}"),
        (
            {"auth": "basic", "username": "u"},
            {"password": "p"},
            lambda r: r["headers"]["authorization"] == "Basic dTpw",
        ),
        (
            {"auth": "api_key_header", "api_key_name": "X-Key"},
            {"api_key": "k1"},
            lambda r: r["headers"]["x-key"] == "k1",
        ),
        (
            {"auth": "api_key_query", "api_key_name": "key"},
            {"api_key": "k2"},
            lambda r: r["query"]["key"] == "k2",
        ),
    ]
    for index, (config, secrets, check) in enumerate(cases):
        response = _create(
            alice_client, f"c{index}", "http", {"base_url": api_server.base, **config}, secrets
        )
        resolved = connector_resolve(Connector.objects.get(pk=response.json()["id"]))
        result = HttpKind.request(resolved, {"method": "GET", "path": "/echo", "query": {"a": "1"}})
        assert result["status"] == 200
        assert check(api_server.received[-1]), api_server.received[-1]
    oauth = _create(
        alice_client,
        "oauth",
        "http",
        {
            "base_url": api_server.base,
            "auth": "oauth2_client_credentials",
            "token_url": f"{api_server.base}/oauth/token",
            "client_id": "c",
        },
        {"client_secret": "cs-0123456789abcdef"},
    )
    resolved = connector_resolve(Connector.objects.get(pk=oauth.json()["id"]))
    assert HttpKind.request(resolved, {"path": "/protected"})["body"] == {"ok": True}
    assert HttpKind.request(resolved, {"path": "/protected"})["body"] == {"ok": True}
    assert api_server.tokens_issued == 1  # cached
    api_server.tokens_issued += 1  # the server rotates its token: the next call gets 401 and refreshes
    assert HttpKind.request(resolved, {"path": "/protected"})["body"] == {"ok": True}
    plain = _create(alice_client, "plain", "http", {"base_url": api_server.base}, {})
    resolved = connector_resolve(Connector.objects.get(pk=plain.json()["id"]))
    form = HttpKind.request(
        resolved,
        {
            "method": "POST",
            "path": "/form",
            "body": "a=1&b=2",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    )
    assert form["body"]["json"] == "a=1&b=2"
    assert api_server.received[-1]["headers"]["content-type"] == "application/x-www-form-urlencoded"
    capped = _create(
        alice_client,
        "capped",
        "http",
        {"base_url": api_server.base, "max_response_bytes": 1000, "timeout_s": 1},
        {},
    )
    resolved = connector_resolve(Connector.objects.get(pk=capped.json()["id"]))
    with pytest.raises(ConnectorError, match="larger than 1000 bytes"):
        HttpKind.request(resolved, {"path": "/big", "query": {"n": "5000"}})
    with pytest.raises(ConnectorError) as raised:
        HttpKind.request(resolved, {"path": "/slow", "query": {"s": "3"}})
    assert raised.value.retryable is True


@pytest.mark.django_db
def test_postgres_kind_read_only_parameters_and_timeout(
    world, alice_client, loopback_allowed, settings, tenant_postgres
):
    db = settings.DATABASES["default"]
    response = _create(
        alice_client,
        "warehouse",
        "postgres",
        {**tenant_postgres, "user": db["USER"], "statement_timeout_ms": 200},
        {"password": "unused-password"},
    )
    assert response.status_code == 201, response.json()
    from connectors.kinds.postgres import PostgresKind

    resolved = connector_resolve(Connector.objects.get(pk=response.json()["id"]))
    result = PostgresKind.query(
        resolved, "SELECT %s::int + 1 AS n, %s::numeric AS price, now()::date AS d", [41, "9.99"]
    )
    assert result["rows"][0]["n"] == 42
    assert result["rows"][0]["price"] == "9.99"
    with pytest.raises(ConnectorError) as raised:
        PostgresKind.query(resolved, "CREATE TEMP TABLE t (x int)", [])
    assert raised.value.code == "db_read_only"
    with pytest.raises(ConnectorError) as raised:
        PostgresKind.query(resolved, "SELECT pg_sleep(2)", [])
    assert raised.value.code == "db_timeout"
    injection = PostgresKind.query(resolved, "SELECT %s AS v", ["1; DROP TABLE tenants_tenant"])
    assert injection["rows"] == [{"v": "1; DROP TABLE tenants_tenant"}]
    # One statement per call: "COMMIT; <write>" cannot leave the read-only transaction.
    for sql in ("COMMIT; CREATE TABLE escaped (x int)", "SELECT 1; SELECT 2"):
        with pytest.raises(ConnectorError) as raised:
            PostgresKind.query(resolved, sql, [])
        assert raised.value.code == "db_one_statement", sql
    assert PostgresKind.query(resolved, "SELECT to_regclass('escaped') AS t", [])["rows"] == [{"t": None}]
    # The role owns tables: the Test button says it can write although allow_writes is off.
    tested = alice_client.post(f"/api/v1/connectors/{response.json()['id']}/test").json()
    assert tested["ok"] is True
    assert "can change data although allow_writes is off" in tested["warnings"][0]


@pytest.mark.django_db
def test_the_platforms_own_services_are_refused_whatever_is_allowed(
    world, alice_client, loopback_allowed, settings, tenant_postgres
):
    """Regression: a postgres connector pointed at the platform's database host (127.0.0.0/8 allowed, as
    self-hosters do) read every tenant's rows; and a superuser role was accepted."""
    db = settings.DATABASES["default"]
    platform_db = {**tenant_postgres, "port": int(db["PORT"] or 5432), "user": db["USER"]}
    created = _create(alice_client, "platform-db", "postgres", platform_db, {})
    failed = alice_client.post(f"/api/v1/connectors/{created.json()['id']}/test").json()
    assert (failed["ok"], failed["code"]) == (False, "destination_blocked")
    assert "the platform's own database" in failed["detail"]
    for url in ("http://127.0.0.1:6379/", "http://localhost:6379/", "http://[::ffff:127.0.0.1]:6379/"):
        with pytest.raises(ConnectorError) as raised:
            guarded_request("GET", url, policy=network_policy(world.tenant_a.pk), timeout_s=2)
        assert "the platform's own" in raised.value.message, url
    # Cloud metadata stays refused even inside an allowed network.
    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = ["0.0.0.0/0"]
    NetworkAllowance.objects.create(tenant=world.tenant_a, cidr="169.254.0.0/16")
    with pytest.raises(ConnectorError) as raised:
        guarded_request("GET", "http://169.254.169.254/latest/", policy=network_policy(world.tenant_a.pk))
    assert raised.value.code == "destination_blocked"
    # A superuser role is refused on connect, and the Test button says why.
    superuser = _create(alice_client, "as-postgres", "postgres", {**tenant_postgres, "user": "postgres"}, {})
    refused = alice_client.post(f"/api/v1/connectors/{superuser.json()['id']}/test").json()
    assert (refused["ok"], refused["code"]) == (False, "db_superuser_refused")
    assert "superuser" in refused["detail"]


@pytest.mark.django_db(transaction=True)
def test_published_agent_uses_http_db_and_provider_connectors(
    world, alice_client, celery_worker, llm, api_server, loopback_allowed, settings, tenant_postgres
):
    db = settings.DATABASES["default"]
    assert (
        _create(
            alice_client, "api", "http", {"base_url": api_server.base, "auth": "bearer"}, {"token": TOKEN}
        ).status_code
        == 201
    )
    assert (
        _create(alice_client, "db", "postgres", {**tenant_postgres, "user": db["USER"]}, {}).status_code
        == 201
    )
    tenant_key = "sk-tenant-own-key-0123456789"
    assert (
        _create(
            alice_client, "my-openai", "openai", {"base_url": f"{llm.base}/v1"}, {"api_key": tenant_key}
        ).status_code
        == 201
    )
    definition = {
        "steps": [
            {
                "id": "call",
                "type": "http",
                "connector": "api",
                "method": "POST",
                "path": "/orders",
                "json": {"token_seen": TOKEN},
            },
            {
                "id": "count",
                "type": "db_query",
                "connector": "db",
                "sql": "SELECT count(*) AS n FROM tenants_tenant",
                "params": [],
            },
            {
                "id": "ask",
                "type": "llm",
                "model": "openai/gpt-4o-mini",
                "prompt": "orders: {{ steps.call.output.status }}",
            },
        ],
        "output": {
            "api": "{{ steps.call.output.body.path }}",
            "tenants": "{{ steps.count.output.rows[0].n }}",
            "llm": "{{ steps.ask.output }}",
        },
    }
    agent_id = create_agent(alice_client, definition, name="integrator")
    llm.enqueue(Reply(text="noted"))
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "succeeded", run
    assert run["output"] == {"api": "/orders", "tenants": 2, "llm": "noted"}
    assert api_server.received[-1]["headers"]["authorization"] == f"Bearer {TOKEN}"
    # The tenant's own provider key was used, not the platform's.
    assert llm.received[-1].headers["authorization"] == f"Bearer {tenant_key}"
    # The decrypted secret that reached a payload is redacted in the run log.
    call = steps_of(run)[0]
    assert TOKEN not in str(call)
    assert "[redacted]" in str(call["input"])
    # Deleting a connector a published agent uses is refused, naming the agent.
    listed = alice_client.get("/api/v1/connectors/").json()["results"]
    connector_id = next(c["id"] for c in listed if c["name"] == "api")
    response = alice_client.delete(f"/api/v1/connectors/{connector_id}")
    assert response.status_code == 409
    assert "integrator" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_connector_test_endpoint_reports_without_secrets(
    world, alice_client, api_server, loopback_allowed, make_key
):
    response = _create(
        alice_client, "api", "http", {"base_url": api_server.base, "auth": "bearer"}, {"token": TOKEN}
    )
    result = alice_client.post(f"/api/v1/connectors/{response.json()['id']}/test").json()
    assert result["ok"] is True
    assert result["latency_ms"] >= 0
    bad = _create(alice_client, "bad", "http", {"base_url": "http://169.254.169.254"}, {})
    failed = alice_client.post(f"/api/v1/connectors/{bad.json()['id']}/test").json()
    assert failed["ok"] is False
    assert failed["code"] == "destination_blocked"
    assert AuditEvent.objects.filter(action="connector.tested").count() == 2
    _, read_key = make_key(world.tenant_a, ["read"])
    assert key_client(read_key).post(f"/api/v1/connectors/{response.json()['id']}/test").status_code == 403
    assert (
        session_client(world.charlie, world.tenant_b)
        .get(f"/api/v1/connectors/{response.json()['id']}")
        .status_code
        == 404
    )


@pytest.mark.django_db
def test_admin_pages_show_no_secret_or_ciphertext(world, alice_client):
    from django.test import Client

    from tests.factories import make_user

    response = _create(
        alice_client,
        "crm",
        "http",
        {"base_url": "https://api.example.com", "auth": "bearer"},
        {"token": TOKEN},
    )
    connector = Connector.objects.get(pk=response.json()["id"])
    staff = make_user(email="root@falcon.example", is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(staff)
    for url in [
        "/admin/connectors/connector/",
        f"/admin/connectors/connector/{connector.pk}/change/",
        "/admin/connectors/tenantkey/",
    ]:
        page = browser.get(url)
        assert page.status_code == 200, url
        assert TOKEN.encode() not in page.content
        assert connector.secrets["token"].encode() not in page.content


@pytest.mark.django_db
def test_provider_connector_allowed_models(world, llm, loopback_allowed):
    from agents.engine.types import LlmError, LlmRequest
    from agents.llm.gateway import llm_complete
    from connectors.kinds import KINDS
    from connectors.services import connector_create

    connector = connector_create(
        tenant=world.tenant_a,
        name="oa",
        kind="openai",
        actor=SYSTEM_ACTOR,
        created_by=None,
        config={"base_url": f"{llm.base}/v1", "allowed_models": ["openai/gpt-4o-mini"]},
        secrets={"api_key": "sk-tenant-abcdefghijkl"},
    )
    credentials = KINDS["openai"].credentials(connector_resolve(Connector.objects.get(pk=connector.pk)))
    ok = llm_complete(
        LlmRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}]), credentials
    )
    assert ok.text == "echo: x"
    with pytest.raises(LlmError) as raised:
        llm_complete(
            LlmRequest(model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}]), credentials
        )
    assert raised.value.code == "model_not_allowed"
    assert llm.received[-1].headers["authorization"] == "Bearer sk-tenant-abcdefghijkl"


@pytest.mark.django_db
def test_a_failing_connector_call_fails_its_step_with_the_connectors_code_and_is_retried(
    world, alice_client, api_server, loopback_allowed, celery_worker
):
    """Given an http connector whose API answers 503, when a step calls it with a retry policy, then each
    attempt is logged with the connector's code and the run fails with it (not an internal error)."""
    assert _create(alice_client, "flaky", "http", {"base_url": api_server.base}, {}).status_code == 201
    definition = {
        "steps": [
            {
                "id": "call",
                "type": "http",
                "connector": "flaky",
                "method": "GET",
                "path": "/status/503",
                "retry": {"max_attempts": 2, "backoff_s": 0},
            }
        ]
    }
    agent_id = create_agent(alice_client, definition, name="flaky-caller")
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "http_503"
    attempts = steps_of(run)
    assert [(s["attempt"], s["status"], s["error"]["code"]) for s in attempts] == [
        (1, "failed", "http_503"),
        (2, "failed", "http_503"),
    ]
    assert attempts[0]["error"]["retryable"] is True
    assert attempts[0]["error"]["status_code"] == 503


@pytest.mark.django_db(transaction=True)
def test_the_model_fills_declared_parameters_never_the_operation(
    world, alice_client, celery_worker, llm, api_server, loopback_allowed, settings, tenant_postgres
):
    """Regression: a db_query tool merged the model's arguments over the author's operation, so the model
    replaced a fixed ``SELECT 1`` with its own SQL. Now fixed fields win, undeclared or fixed fields are
    refused back to the model as a tool error, and declared parameters land where the author put them."""
    db = settings.DATABASES["default"]
    assert (
        _create(alice_client, "db", "postgres", {**tenant_postgres, "user": db["USER"]}, {}).status_code
        == 201
    )
    assert _create(alice_client, "api", "http", {"base_url": api_server.base}, {}).status_code == 201
    definition = {
        "steps": [
            {
                "id": "work",
                "type": "agent",
                "model": "openai/gpt-4o-mini",
                "prompt": "Look things up.",
                "max_iterations": 5,
                "tools": [
                    {
                        "type": "db_query",
                        "name": "add_one",
                        "connector": "db",
                        "operation": {"sql": "SELECT %s::int + 1 AS n"},
                    },
                    {
                        "type": "http",
                        "name": "company",
                        "connector": "api",
                        "operation": {
                            "method": "GET",
                            "path": "/companies/{{ args.domain }}",
                            "query": {"fields": "name"},
                        },
                        "parameters": {
                            "properties": {"domain": {"type": "string", "pattern": "^[a-z.]+$"}},
                            "required": ["domain"],
                        },
                    },
                ],
            }
        ]
    }
    agent_id = create_agent(alice_client, definition, name="tool-user")
    llm.enqueue(
        Reply(tool_calls=[("add_one", {"sql": "SELECT count(*) FROM tenants_tenant", "params": [1]})]),
        Reply(
            tool_calls=[
                ("add_one", {"params": [41]}),
                ("company", {"domain": "acme.example", "method": "DELETE"}),
            ]
        ),
        Reply(tool_calls=[("company", {"domain": "acme.example"})]),
        Reply(text="done"),
    )
    run = run_now(alice_client, agent_id, {})
    assert run["status"] == "succeeded", run
    calls = steps_of(run, "tool_call")
    refused = [c for c in calls if c["status"] == "failed"]
    assert [c["error"]["code"] for c in refused] == ["invalid_tool_arguments", "invalid_tool_arguments"]
    assert "sql" in refused[0]["error"]["message"]
    assert "method" in refused[1]["error"]["message"]
    succeeded = [c for c in calls if c["status"] == "succeeded"]
    assert succeeded[0]["output"]["rows"] == [{"n": 42}]  # the author's SQL with the model's parameter
    assert [r["method"] for r in api_server.received] == ["GET"]
    assert api_server.received[0]["path"] == "/companies/acme.example"
    assert api_server.received[0]["query"] == {"fields": "name"}
    # The model was told which parameters exist, and only those.
    offered = {t["function"]["name"]: t["function"]["parameters"] for t in llm.received[0].body["tools"]}
    assert offered["add_one"]["properties"] == {"params": {"type": ["array", "object"]}}
    assert offered["company"]["additionalProperties"] is False


@pytest.mark.django_db
def test_a_tools_parameters_must_be_an_object_schema(world, alice_client, api_server, loopback_allowed):
    assert _create(alice_client, "api", "http", {"base_url": api_server.base}, {}).status_code == 201
    tool = {"type": "http", "name": "t", "connector": "api", "parameters": {"type": "array"}}
    definition = {
        "steps": [{"id": "a", "type": "agent", "model": "sandbox/echo", "prompt": "x", "tools": [tool]}]
    }
    response = alice_client.post(
        "/api/v1/agents/", {"name": "bad-tool", "definition": definition}, format="json"
    )
    assert response.status_code == 400
    assert "definition.steps[0].tools[0].parameters" in response.json()["error"]["fields"]


@pytest.mark.django_db
def test_connector_limits_have_platform_ceilings(world, alice_client):
    for config, field in (
        ({"base_url": "https://api.example.com", "timeout_s": 3600}, "config.timeout_s"),
        ({"base_url": "https://api.example.com", "max_response_bytes": 10**10}, "config.max_response_bytes"),
    ):
        response = _create(alice_client, "big", "http", config, {})
        assert response.status_code == 400, config
        assert field in response.json()["error"]["fields"]
    db = {"host": "db.example.com", "database": "x", "user": "u", "max_rows": 10**7}
    response = _create(alice_client, "bigdb", "postgres", db, {})
    assert response.status_code == 400
    assert "config.max_rows" in response.json()["error"]["fields"]
