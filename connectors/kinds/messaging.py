"""Sending messages out: e-mail over SMTP and Slack incoming webhooks (used by tools and notifications)."""

from __future__ import annotations

import json
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any, ClassVar

from connectors.errors import Blocked, ConnectorError
from connectors.kinds.base import Field, Kind, Resolved
from connectors.kinds.http import guarded_request


class SmtpKind(Kind):
    name = "smtp"
    label = "E-mail (SMTP)"
    step_types = ("send",)
    fields: ClassVar[tuple[Field, ...]] = (
        Field("host", required=True),
        Field("port", "integer", default=587),
        Field("tls", choices=("starttls", "ssl", "none"), default="starttls"),
        Field("user"),
        Field("from_address", required=True, description="e.g. Acme Bot <bot@acme.example>"),
        Field("password", secret=True),
    )

    @classmethod
    def send(cls, connector: Resolved, operation: dict[str, Any]) -> dict[str, Any]:
        config = connector.config
        to = operation.get("to")
        recipients = [to] if isinstance(to, str) else list(to or [])
        if not recipients:
            raise ConnectorError("an e-mail needs at least one recipient ('to')", code="invalid_message")
        message = EmailMessage()
        message["From"] = config["from_address"]
        message["To"] = ", ".join(recipients)
        message["Subject"] = str(operation.get("subject", ""))
        message.set_content(str(operation.get("body", "")))
        host, port = str(config["host"]), int(config.get("port") or 587)
        try:
            address = str(connector.policy.resolve(host, port))
        except Blocked as exc:
            raise ConnectorError(str(exc), code="destination_blocked") from exc
        tls = config.get("tls") or "starttls"
        context = ssl.create_default_context()
        try:
            client: smtplib.SMTP
            if tls == "ssl":
                client = smtplib.SMTP_SSL(timeout=20, context=context)
            else:
                client = smtplib.SMTP(timeout=20)
            client.connect(address, port)
            client._host = host  # type: ignore[attr-defined]  # TLS checks the name, not the checked IP
            with client:
                client.ehlo()
                if tls == "starttls":
                    client.starttls(context=context)
                    client.ehlo()
                if config.get("user"):
                    client.login(str(config["user"]), connector.secrets.get("password", ""))
                refused = client.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise ConnectorError(
                f"sending failed: {type(exc).__name__}: {exc}"[:300],
                code="smtp_failed",
                retryable=isinstance(exc, OSError | smtplib.SMTPServerDisconnected),
            ) from exc
        return {"sent_to": [r for r in recipients if r not in refused], "refused": sorted(refused)}

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        config = connector.config
        host, port = str(config["host"]), int(config.get("port") or 587)
        try:
            address = str(connector.policy.resolve(host, port))
            with smtplib.SMTP(timeout=10) as client:
                client.connect(address, port)
                code, _banner = client.ehlo()
        except Blocked as exc:
            raise ConnectorError(str(exc), code="destination_blocked") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise ConnectorError(
                f"cannot reach {host}:{port}: {type(exc).__name__}", code="smtp_failed"
            ) from exc
        return {"ok": code == 250, "detail": f"EHLO {code}"}

    @classmethod
    def call(cls, connector: Resolved, step_type: str, operation: dict[str, Any]) -> Any:
        if step_type != "send":
            return super().call(connector, step_type, operation)
        return cls.send(connector, operation)


class SlackWebhookKind(Kind):
    name = "slack_webhook"
    label = "Slack incoming webhook"
    step_types = ("send",)
    fields: ClassVar[tuple[Field, ...]] = (
        Field("url", secret=True, required=True, description="The webhook URL is the secret."),
    )

    @classmethod
    def send(cls, connector: Resolved, operation: dict[str, Any]) -> dict[str, Any]:
        payload = {"text": str(operation.get("text", ""))}
        if operation.get("blocks"):
            payload["blocks"] = operation["blocks"]
        status, _, _body = guarded_request(
            "POST",
            connector.secrets["url"],
            policy=connector.policy,
            content=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            timeout_s=15,
        )
        if status >= 400:
            raise ConnectorError(
                f"Slack answered {status}",
                code=f"http_{status}",
                retryable=status == 429 or status >= 500,
                status_code=status,
            )
        # Not the body: some gateways echo the request path, and for a webhook the path is the secret.
        return {"status": status, "ok": True}

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        result = cls.send(connector, {"text": "Falcon connection test"})
        return {"ok": True, "detail": f"posted a test message ({result['status']})"}

    @classmethod
    def call(cls, connector: Resolved, step_type: str, operation: dict[str, Any]) -> Any:
        if step_type != "send":
            return super().call(connector, step_type, operation)
        return cls.send(connector, operation)
