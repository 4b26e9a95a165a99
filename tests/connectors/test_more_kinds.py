"""MySQL/MariaDB, SMTP and Slack webhook kinds against real servers on loopback."""

from __future__ import annotations

import pymysql
import pytest

from connectors.errors import ConnectorError
from connectors.kinds import KINDS
from connectors.models import Connector
from connectors.services import connector_create, connector_resolve
from tenants.audit import Actor
from tests.agents.helpers import create_agent
from tests.agents.test_runs import run_now, steps_of
from tests.servers.http_api import HttpApiServer
from tests.servers.llm import Reply
from tests.servers.smtp_sink import SmtpSink

SYSTEM = Actor.system("tests")
MARIADB_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root"}
# Connectors refuse administrative users: the tests connect as one that may read and insert in one database.
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "falcon_conn"}
MARIADB_PASSWORD = "conn-pw-0123456789"


@pytest.fixture
def mariadb():
    try:
        admin = pymysql.connect(**MARIADB_ADMIN, autocommit=True)
    except pymysql.err.OperationalError:
        pytest.skip("no MySQL/MariaDB server on 127.0.0.1:3306 (.ci/services starts one where installed)")
    with admin.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS falcon_conn_test")
        cursor.execute("CREATE DATABASE falcon_conn_test")
        cursor.execute(
            "CREATE TABLE falcon_conn_test.orders (id INT PRIMARY KEY, total DECIMAL(10,2), at DATE)"
        )
        cursor.execute(
            "INSERT INTO falcon_conn_test.orders VALUES (1, 19.90, '2026-01-02'), (2, 5.00, '2026-01-03')"
        )
        cursor.execute("DROP USER IF EXISTS 'falcon_conn'@'%'")
        cursor.execute(f"CREATE USER 'falcon_conn'@'%' IDENTIFIED BY '{MARIADB_PASSWORD}'")
        cursor.execute("GRANT SELECT, INSERT ON falcon_conn_test.* TO 'falcon_conn'@'%'")
    yield
    with admin.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS falcon_conn_test")
        cursor.execute("DROP USER IF EXISTS 'falcon_conn'@'%'")
    admin.close()


def _resolved(tenant, name: str, kind: str, config: dict, secrets: dict):
    connector = connector_create(
        tenant=tenant, name=name, kind=kind, config=config, secrets=secrets, actor=SYSTEM, created_by=None
    )
    return connector_resolve(Connector.objects.get(pk=connector.pk))


@pytest.mark.django_db
def test_mysql_kind(world, mariadb, loopback_allowed):
    config = {**MARIADB, "database": "falcon_conn_test", "statement_timeout_ms": 300}
    connector = _resolved(world.tenant_a, "shop", "mysql", config, {"password": MARIADB_PASSWORD})
    mysql = KINDS["mysql"]
    result = mysql.query(connector, "SELECT id, total, at FROM orders WHERE total > %s ORDER BY id", [1])
    assert result["rows"] == [
        {"id": 1, "total": "19.90", "at": "2026-01-02"},
        {"id": 2, "total": "5.00", "at": "2026-01-03"},
    ]
    with pytest.raises(ConnectorError) as raised:
        mysql.query(connector, "INSERT INTO orders VALUES (3, 1, '2026-01-04')", [])
    assert raised.value.code == "db_read_only"
    with pytest.raises(ConnectorError) as raised:
        mysql.query(connector, "SELECT SLEEP(2)", [])
    assert raised.value.code == "db_timeout"
    assert mysql.query(connector, "SELECT %s AS v", ["'; DROP TABLE orders; --"])["rows"] == [
        {"v": "'; DROP TABLE orders; --"}
    ]
    writer = _resolved(
        world.tenant_a, "shop-rw", "mysql", {**config, "allow_writes": True}, {"password": MARIADB_PASSWORD}
    )
    assert mysql.query(writer, "INSERT INTO orders VALUES (3, 1, '2026-01-04')", [])["row_count"] == 1
    tested = mysql.test(connector)
    assert tested["ok"] is True
    assert "can change data although allow_writes is off" in tested["warnings"][0]
    assert "warnings" not in mysql.test(writer)
    # One statement per call, refused before it reaches the server.
    with pytest.raises(ConnectorError) as raised:
        mysql.query(writer, "SELECT 1; INSERT INTO orders VALUES (4, 1, '2026-01-05')", [])
    assert raised.value.code == "db_one_statement"
    assert mysql.query(connector, "SELECT COUNT(*) AS n FROM orders", [])["rows"] == [{"n": 3}]
    # An administrative user is refused on connect.
    root = _resolved(
        world.tenant_a, "shop-root", "mysql", {**MARIADB_ADMIN, "database": "falcon_conn_test"}, {}
    )
    with pytest.raises(ConnectorError) as raised:
        mysql.query(root, "SELECT 1", [])
    assert raised.value.code == "db_superuser_refused"


@pytest.mark.django_db
def test_smtp_kind_sends_through_a_real_server(world, loopback_allowed):
    sink = SmtpSink()
    received, port = sink.received, sink.port
    try:
        connector = _resolved(
            world.tenant_a,
            "mail",
            "smtp",
            {"host": "127.0.0.1", "port": port, "tls": "none", "from_address": "bot@acme.example"},
            {},
        )
        result = KINDS["smtp"].call(
            connector,
            "send",
            {"to": ["ops@acme.example"], "subject": "Run failed", "body": "Details inside."},
        )
        assert result == {"sent_to": ["ops@acme.example"], "refused": []}
        assert received[0]["Subject"] == "Run failed"
        assert received[0]["From"] == "bot@acme.example"
        assert KINDS["smtp"].test(connector)["ok"] is True
    finally:
        sink.stop()


@pytest.mark.django_db(transaction=True)
def test_agent_posts_to_slack_through_a_tool(world, alice_client, celery_worker, llm, loopback_allowed):
    slack = HttpApiServer()
    try:
        url = f"{slack.base}/services/T000/B000/XXXXSECRETXXXX"
        response = alice_client.post(
            "/api/v1/connectors/",
            {"name": "alerts", "kind": "slack_webhook", "secrets": {"url": url}},
            format="json",
        )
        assert response.status_code == 201
        assert response.json()["secrets"]["url"]["last4"] == "XXXX"
        definition = {
            "steps": [
                {
                    "id": "notify",
                    "type": "agent",
                    "model": "openai/gpt-4o-mini",
                    "prompt": "Tell the team the deploy finished.",
                    "tools": [
                        {
                            "type": "send",
                            "name": "post_to_slack",
                            "connector": "alerts",
                            "description": "Post a message to the team channel",
                        }
                    ],
                }
            ]
        }
        agent_id = create_agent(alice_client, definition, name="notifier")
        llm.enqueue(Reply(tool_calls=[("post_to_slack", {"text": "Deploy finished"})]), Reply(text="Posted."))
        run = run_now(alice_client, agent_id, {})
        assert run["status"] == "succeeded", run
        assert slack.received[-1]["path"] == "/services/T000/B000/XXXXSECRETXXXX"
        assert b"Deploy finished" in slack.received[-1]["body"]
        tool_call = steps_of(run, "tool_call")[0]
        assert tool_call["status"] == "succeeded"
        assert "XXXXSECRETXXXX" not in str(run)
    finally:
        slack.stop()


@pytest.mark.django_db(transaction=True)
def test_send_steps_post_to_slack_and_mail_once(world, alice_client, celery_worker, loopback_allowed):
    slack, sink = HttpApiServer(), SmtpSink()
    try:
        for body in (
            {"name": "team", "kind": "slack_webhook", "secrets": {"url": f"{slack.base}/hooks/SECRET1234"}},
            {
                "name": "mail",
                "kind": "smtp",
                "config": {
                    "host": "127.0.0.1",
                    "port": sink.port,
                    "tls": "none",
                    "from_address": "b@a.example",
                },
            },
        ):
            assert alice_client.post("/api/v1/connectors/", body, format="json").status_code == 201
        definition = {
            "steps": [
                {"id": "chat", "type": "send", "connector": "team", "text": "Hello {{ input.who }}"},
                {
                    "id": "email",
                    "type": "send",
                    "connector": "mail",
                    "to": "{{ input.who }}@a.example",
                    "subject": "Report for {{ input.who }}",
                    "body": "All good.",
                },
            ]
        }
        agent_id = create_agent(alice_client, definition, name="sender")
        run = run_now(alice_client, agent_id, {"who": "ops"})
        assert run["status"] == "succeeded", run
        assert b'"text": "Hello ops"' in slack.received[-1]["body"]
        assert sink.received[-1]["To"] == "ops@a.example"
        assert sink.received[-1]["Subject"] == "Report for ops"
        assert steps_of(run, "step")[1]["output"] == {"sent_to": ["ops@a.example"], "refused": []}
        assert len(slack.received) == 1
        assert len(sink.received) == 1
    finally:
        slack.stop()
        sink.stop()
