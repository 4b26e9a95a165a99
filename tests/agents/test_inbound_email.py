"""Inbound e-mail triggers: a real aiosmtpd listener fed by smtplib, and the HTTP variant."""

from __future__ import annotations

import smtplib
import socket
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from agents.models import Run, TriggerEvent
from agents.triggers.inbound_email import InboundHandler, html_to_text
from tests.agents.helpers import create_agent

SUMMARY = {
    "inputs": {"type": "object"},
    "steps": [{"id": "t", "type": "transform", "value": "{{ input.subject }} from {{ input.from }}"}],
}


def _message(
    to: str,
    subject: str = "Invoice 42",
    sender: str = "billing@vendor.example",
    message_id: str = "<m1@vendor.example>",
    attach: bool = True,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Vendor <{sender}>"
    message["To"] = to
    message["Cc"] = "boss@acme.example"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("Please pay invoice 42.")
    message.add_alternative("<p>Please <b>pay</b> invoice 42.</p><script>alert(1)</script>", subtype="html")
    if attach:
        message.add_attachment(
            b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="invoice.pdf"
        )
    return message


@pytest.fixture
def smtp_listener(settings):
    settings.FALCON_INBOUND_EMAIL_MAX_BYTES = 20_000
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        InboundHandler(),
        hostname="127.0.0.1",
        port=port,
        data_size_limit=settings.FALCON_INBOUND_EMAIL_MAX_BYTES,
    )
    controller.start()
    yield port
    controller.stop()


def _trigger(client, agent_id: str, **config):
    response = client.post(
        "/api/v1/triggers/",
        {"name": "inbox", "agent": agent_id, "kind": "email", "config": config},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_mail_to_a_trigger_address_starts_a_run_with_the_parsed_fields(world, alice_client, smtp_listener):
    agent_id = create_agent(alice_client, SUMMARY)
    trigger = _trigger(alice_client, agent_id, store_attachments=True)
    assert trigger["address"].endswith("@inbound.localhost")
    with smtplib.SMTP("127.0.0.1", smtp_listener) as smtp:
        smtp.send_message(_message(trigger["address"]))
        smtp.send_message(_message(trigger["address"]))  # the same Message-ID: no second run
    run = Run.objects.get()
    assert run.trigger == "email"
    event = run.input
    assert event["from"] == "billing@vendor.example"
    assert event["subject"] == "Invoice 42"
    assert event["cc"] == ["boss@acme.example"]
    assert event["message_id"] == "<m1@vendor.example>"
    assert event["text"].strip() == "Please pay invoice 42."
    assert event["html_text"] == "Please pay invoice 42."
    assert event["attachments"][0]["filename"] == "invoice.pdf"
    assert event["attachments"][0]["size"] == 13
    assert "content_base64" in event["attachments"][0]
    assert TriggerEvent.objects.filter(accepted=True).count() == 2


@pytest.mark.django_db(transaction=True)
def test_unknown_recipients_oversize_and_senders_not_allowed(world, alice_client, smtp_listener):
    agent_id = create_agent(alice_client, SUMMARY)
    trigger = _trigger(alice_client, agent_id, allowed_senders=["@trusted.example"])
    with smtplib.SMTP("127.0.0.1", smtp_listener) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.send_message(_message("nobody@inbound.localhost"))
        big = _message(trigger["address"], message_id="<big@x>")
        big.add_attachment(b"x" * 30_000, maintype="application", subtype="octet-stream", filename="big.bin")
        # The listener advertises its SIZE limit: the message is refused with 552 before or after DATA.
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as raised:
            smtp.send_message(big)
        assert raised.value.smtp_code == 552
        smtp.send_message(_message(trigger["address"], message_id="<m2@x>"))
    assert Run.objects.count() == 0
    assert TriggerEvent.objects.get().code == "sender_not_allowed"


@pytest.mark.django_db
def test_http_variant(world, alice_client, client):
    agent_id = create_agent(alice_client, SUMMARY)
    trigger = _trigger(alice_client, agent_id)
    raw = _message(trigger["address"], attach=False).as_bytes()
    url = f"/hooks/email/{trigger['public_id']}"
    assert client.generic("POST", url, raw, content_type="message/rfc822").status_code == 401
    accepted = client.generic(
        "POST", url, raw, content_type="message/rfc822", HTTP_X_FALCON_EMAIL_SECRET=trigger["signing_secret"]
    )
    assert accepted.status_code == 202, accepted.json()
    assert Run.objects.get(pk=accepted.json()["run_id"]).input["subject"] == "Invoice 42"


def test_html_is_reduced_to_text_without_scripts():
    assert html_to_text("<h1>Hi</h1><p>a &amp; b</p><style>p{}</style><script>x()</script>") == "Hi\na & b"
