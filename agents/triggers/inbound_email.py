"""Inbound e-mail triggers: parse an RFC 822 message into run input, and the SMTP listener's handler."""

from __future__ import annotations

import base64
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from agents.runs.models import Run
from agents.triggers.models import Trigger, TriggerEvent
from agents.triggers.services import trigger_fire
from billing.errors import QuotaExceeded


class _TextOnly(HTMLParser):
    """HTML to plain text: tags dropped, script/style content dropped, block elements as line breaks."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOnly()
    parser.feed(html)
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts)).strip()


def trigger_for_address(address: str) -> Trigger | None:
    local, _, domain = address.strip("<>").lower().rpartition("@")
    if domain != settings.FALCON_INBOUND_EMAIL_DOMAIN.lower():
        return None
    return Trigger.objects.filter(public_id=local, kind=Trigger.Kind.EMAIL, enabled=True).first()


def message_event(raw: bytes, *, store_attachments: bool, attachment_cap: int) -> dict[str, Any]:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    html = html_part.get_content() if html_part is not None else ""
    attachments = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        payload = payload if isinstance(payload, bytes) else b""
        item: dict[str, Any] = {
            "filename": part.get_filename() or "",
            "content_type": part.get_content_type(),
            "size": len(payload),
        }
        if store_attachments and len(payload) <= attachment_cap:
            item["content_base64"] = base64.b64encode(payload).decode()
        attachments.append(item)
    return {
        "from": parseaddr(str(message.get("From", "")))[1].lower(),
        "to": [a for _, a in getaddresses([str(v) for v in message.get_all("To", [])])],
        "cc": [a for _, a in getaddresses([str(v) for v in message.get_all("Cc", [])])],
        "subject": str(message.get("Subject", "")),
        "date": str(message.get("Date", "")),
        "message_id": str(message.get("Message-ID", "")).strip(),
        "text": text_part.get_content() if text_part is not None else html_to_text(html),
        "html": html,
        "html_text": html_to_text(html) if html else "",
        "attachments": attachments,
    }


def _sender_allowed(trigger: Trigger, sender: str) -> bool:
    allowed = [entry.lower() for entry in trigger.config.get("allowed_senders") or []]
    if not allowed:
        return True
    return any(sender == entry or (entry.startswith("@") and sender.endswith(entry)) for entry in allowed)


def email_receive(trigger: Trigger, raw: bytes) -> tuple[TriggerEvent, Run | None]:
    """One message to one e-mail trigger: a run, or a recorded refusal. A repeated Message-ID is a no-op."""
    event = message_event(
        raw,
        store_attachments=bool(trigger.config.get("store_attachments")),
        attachment_cap=int(trigger.config.get("max_attachment_bytes") or 1024 * 1024),
    )
    if not _sender_allowed(trigger, event["from"]):
        refused = TriggerEvent.objects.create(
            tenant_id=trigger.tenant_id,
            trigger=trigger,
            accepted=False,
            code="sender_not_allowed",
            message=f"{event['from']} is not allowed",
            delivery_id=event["message_id"][:200],
        )
        return refused, None
    key = f"trigger:{trigger.pk}:message-id:{event['message_id']}" if event["message_id"] else None
    return trigger_fire(trigger=trigger, event=event, delivery_id=event["message_id"], idempotency_key=key)


def _then_close(function: Any) -> Any:
    """Runs ``function`` in a worker thread of the listener, returning its connection to the pool after."""

    def wrapped(*args: Any) -> Any:
        try:
            return function(*args)
        finally:
            connection.close()

    return sync_to_async(wrapped, thread_sensitive=False)


class InboundHandler:
    """aiosmtpd handler: known addresses only (refused at RCPT time), then one run per recipient trigger."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        trigger = await _then_close(trigger_for_address)(address)
        if trigger is None:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        def deliver() -> int:
            started = 0
            for address in envelope.rcpt_tos:
                trigger = trigger_for_address(address)
                if (
                    trigger is not None
                    and email_receive(trigger, envelope.original_content or envelope.content)[1]
                ):
                    started += 1
            return started

        try:
            await _then_close(deliver)()
        except QuotaExceeded as exc:
            # A temporary failure: the sending server retries later, when the quota may have renewed.
            return f"452 4.2.2 Quota exceeded ({exc.metric})"
        return "250 Message accepted"
