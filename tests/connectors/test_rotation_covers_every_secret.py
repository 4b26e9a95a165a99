"""``encryption_rotate --rekey-data`` re-encrypts every registered secret, not only connectors'.

Regression: the rotation once walked connectors only, so after a rekey every webhook of the tenant
answered 500 ("unknown key id"): trigger signing secrets and channel secrets were left under the retired
data key. Rotation now walks the secret-holder registry that each app fills.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from io import StringIO

import pytest
from django.core.management import call_command

from agents.models import NotificationDelivery, Run
from agents.notifications.services import notification_deliver, notify
from connectors import registry
from connectors.models import TenantKey
from falcon import signing
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent

pytestmark = pytest.mark.django_db

ECHO = {"inputs": {"type": "object"}, "steps": [{"id": "t", "type": "transform", "value": "ok"}]}


def _trigger(client, agent_id: str, name: str, kind: str = "webhook", **config) -> dict:
    response = client.post(
        "/api/v1/triggers/",
        {"name": name, "agent": agent_id, "kind": kind, "config": config, "input_mapping": {}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def _deliver(client, trigger: dict, body: bytes, **headers):
    return client.generic(
        "POST", f"/hooks/{trigger['public_id']}", body, content_type="application/json", **headers
    )


def test_every_app_registers_its_secret_holders():
    assert {h.name for h in registry.secret_holders()} >= {"connectors", "triggers", "notification-channels"}


def test_after_a_rekey_every_webhook_scheme_email_and_channel_still_verify(
    world, alice_client, client, loopback
):
    agent_id = create_agent(alice_client, ECHO)
    standard = _trigger(alice_client, agent_id, "std")
    github = _trigger(alice_client, agent_id, "gh", auth="github")
    header = _trigger(alice_client, agent_id, "hdr", auth="header", header_name="X-Token")
    email = _trigger(alice_client, agent_id, "mail", kind="email")
    channel = alice_client.post(
        "/api/v1/notification-channels/",
        {"name": "pager", "kind": "webhook", "config": {"url": f"{loopback.base}/pager"}},
        format="json",
    ).json()
    generation = TenantKey.objects.get(tenant=world.tenant_a).generation

    out = StringIO()
    call_command("encryption_rotate", "--rekey-data", stdout=out)

    assert TenantKey.objects.get(tenant=world.tenant_a).generation == generation + 1
    assert "re-encrypted 5 secret(s)" in out.getvalue(), out.getvalue()  # 4 triggers + 1 channel
    replaced = AuditEvent.objects.get(tenant=world.tenant_a, action="tenant.data_key_replaced")
    assert replaced.changes["after"]["values_reencrypted"] == 5
    body = json.dumps({"n": 1}).encode()
    std_headers = signing.standard_headers(standard["signing_secret"], "msg_rekey", body)
    answers = [
        _deliver(
            client,
            standard,
            body,
            **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in std_headers.items()},
        ),
        _deliver(
            client,
            github,
            body,
            HTTP_X_HUB_SIGNATURE_256="sha256="
            + hmac.new(github["signing_secret"].encode(), body, hashlib.sha256).hexdigest(),
        ),
        _deliver(client, header, body, HTTP_X_TOKEN=header["signing_secret"]),
        client.generic(
            "POST",
            f"/hooks/email/{email['public_id']}",
            b"From: a@example.com\r\nTo: x@example.com\r\nSubject: hi\r\n\r\nhello\r\n",
            content_type="message/rfc822",
            HTTP_X_FALCON_EMAIL_SECRET=email["signing_secret"],
        ),
    ]
    assert [a.status_code for a in answers] == [202, 202, 202, 202], [a.content for a in answers]
    assert Run.objects.filter(tenant=world.tenant_a).count() == 4

    notify(tenant_id=world.tenant_a.pk, event="quota.alert", subject="s", body="b", recipients=[])
    for delivery in NotificationDelivery.objects.filter(status="pending"):
        notification_deliver(delivery.pk)
    posted = next(r for r in loopback.received if r["path"] == "/pager")
    key = base64.b64decode(channel["signing_secret"].removeprefix("whsec_"))
    stamp, msg_id = posted["headers"]["webhook-timestamp"], posted["headers"]["webhook-id"]
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + posted["body"], hashlib.sha256).digest()
    assert posted["headers"]["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
