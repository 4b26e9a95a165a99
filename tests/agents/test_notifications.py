"""Notifications: a real SMTP sink receives the failure mail; Slack and signed-webhook channels hit a
loopback server; bursts collapse per window; a failing channel is retried and its record kept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from agents.errors import DeliveryFailed
from agents.models import Notification, NotificationDelivery
from agents.notifications.services import notification_deliver, notification_digest
from agents.runs.execution import run_execute
from tests.agents.helpers import create_agent
from tests.servers.smtp_sink import SmtpSink

pytestmark = pytest.mark.django_db(transaction=True)

FAILING = {
    "inputs": {"type": "object"},
    "steps": [{"id": "boom", "type": "transform", "value": "{{ input.missing.deeper }}"}],
}


@pytest.fixture
def smtp_sink(settings):
    sink = SmtpSink()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield sink.received
    sink.stop()


def _fail_once(client, agent_id: str) -> str:
    run_id = client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()["id"]
    run_execute(run_id)
    return run_id


def _deliver_all() -> None:
    for delivery in NotificationDelivery.objects.filter(status="pending"):
        notification_deliver(delivery.pk)


def test_watchers_get_the_failure_mail_through_a_real_smtp_server(world, alice_client, smtp_sink):
    agent_id = create_agent(alice_client, FAILING, name="fragile")
    watched = alice_client.put(
        f"/api/v1/agents/{agent_id}/watchers", {"members": [str(world.bob.pk)]}, format="json"
    )
    assert watched.json() == {"watchers": ["bob@a.example"]}
    assert (
        alice_client.put(
            f"/api/v1/agents/{agent_id}/watchers", {"members": [str(world.charlie.pk)]}, format="json"
        ).status_code
        == 400
    )  # not a member of this tenant

    run_id = _fail_once(alice_client, agent_id)
    _deliver_all()

    assert len(smtp_sink) == 1
    mail = smtp_sink[0]
    assert mail["To"] == "bob@a.example"
    assert mail["Subject"] == "[Falcon] fragile: run failed"
    assert run_id in mail.get_payload()
    listed = alice_client.get("/api/v1/notifications/").json()["results"]
    assert [(n["event"], n["count"], n["deliveries"][0]["status"]) for n in listed] == [
        ("run.failed", 1, "sent")
    ]


def test_slack_and_signed_webhook_channels(world, alice_client, loopback):
    connector = alice_client.post(
        "/api/v1/connectors/",
        {
            "name": "ops-slack",
            "kind": "slack_webhook",
            "config": {},
            "secrets": {"url": f"{loopback.base}/slack/T0"},
        },
        format="json",
    )
    assert connector.status_code == 201, connector.json()
    slack = alice_client.post(
        "/api/v1/notification-channels/",
        {"name": "slack", "kind": "slack", "config": {"connector": "ops-slack"}, "events": ["run.failed"]},
        format="json",
    )
    hook = alice_client.post(
        "/api/v1/notification-channels/",
        {"name": "pager", "kind": "webhook", "config": {"url": f"{loopback.base}/pager"}},
        format="json",
    ).json()
    assert slack.status_code == 201
    secret = hook["signing_secret"]
    assert secret.startswith("whsec_")
    assert "signing_secret" not in alice_client.get(f"/api/v1/notification-channels/{hook['id']}").json()
    assert (
        alice_client.post(
            "/api/v1/notification-channels/",
            {"name": "x", "kind": "webhook", "config": {"url": "ftp://x"}},
            format="json",
        ).status_code
        == 400
    )

    agent_id = create_agent(alice_client, FAILING, name="fragile")
    _fail_once(alice_client, agent_id)
    _deliver_all()

    by_path = {r["path"]: r for r in loopback.received}
    assert "fragile: run failed" in json.loads(by_path["/slack/T0"]["body"])["text"]
    posted = by_path["/pager"]
    payload = json.loads(posted["body"])
    assert (payload["event"], payload["count"]) == ("run.failed", 1)
    headers = posted["headers"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(
            key,
            f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + posted["body"],
            hashlib.sha256,
        ).digest()
    ).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_a_burst_of_failures_collapses_into_one_message_per_window(world, alice_client, smtp_sink):
    agent_id = create_agent(alice_client, FAILING, name="fragile")
    alice_client.put(f"/api/v1/agents/{agent_id}/watchers", {"members": [str(world.alice.pk)]}, format="json")

    runs = [_fail_once(alice_client, agent_id) for _ in range(3)]
    _deliver_all()

    first = Notification.objects.get()
    assert (first.count, first.runs) == (3, runs)
    assert len(smtp_sink) == 1  # the first failure, at once
    # When the window closes, one follow-up names the others.
    digest = notification_digest(first.pk)
    _deliver_all()
    assert digest is not None
    assert digest.subject == "2 more run failed of fragile"
    assert len(smtp_sink) == 2
    assert all(run in smtp_sink[1].get_payload() for run in runs[1:])


def test_a_failing_channel_is_retried_and_its_record_kept(world, alice_client, loopback):
    alice_client.post(
        "/api/v1/notification-channels/",
        {"name": "broken", "kind": "webhook", "config": {"url": f"{loopback.base}/status/503"}},
        format="json",
    )
    agent_id = create_agent(alice_client, FAILING, name="fragile")
    _fail_once(alice_client, agent_id)
    delivery = NotificationDelivery.objects.get()

    with pytest.raises(DeliveryFailed, match="503"):
        notification_deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    with pytest.raises(DeliveryFailed):
        notification_deliver(delivery.pk, final=True)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("failed", 2, "the webhook answered 503")
    listed = alice_client.get("/api/v1/notifications/").json()["results"][0]["deliveries"]
    assert listed == [{**listed[0], "channel": "broken", "status": "failed", "attempts": 2}]


def test_prompt_reviews_notify_approvers_and_the_author(world, alice_client, smtp_sink):
    from tenants.permissions import Role
    from tests.conftest import member, session_client

    admin = member(world.tenant_a, Role.ADMIN, email="ada@a.example")
    builder = member(world.tenant_a, Role.BUILDER, email="bea@a.example")
    bea = session_client(builder, world.tenant_a)
    created = bea.post("/api/v1/prompts/", {"name": "p", "version": {"template": "hi"}}, format="json").json()
    bea.post(f"/api/v1/prompts/{created['id']}/versions/1/submit")
    _deliver_all()
    assert sorted(m["To"] for m in smtp_sink) == ["ada@a.example", "alice@a.example"]
    session_client(admin, world.tenant_a).post(
        f"/api/v1/prompts/{created['id']}/versions/1/reject", {"comment": "needs a greeting"}, format="json"
    )
    _deliver_all()
    assert smtp_sink[-1]["To"] == "bea@a.example"
    assert "rejected" in smtp_sink[-1]["Subject"]
