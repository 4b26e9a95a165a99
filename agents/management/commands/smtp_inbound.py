"""``manage.py smtp_inbound [--host H] [--port P]``: the SMTP listener of e-mail triggers."""

from __future__ import annotations

import signal
import threading
from typing import Any

from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from agents.triggers.inbound_email import InboundHandler


class Command(BaseCommand):
    help = "Accept e-mail for e-mail triggers (known addresses only) and start their runs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.FALCON_SMTP_INBOUND_PORT)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        controller = Controller(
            InboundHandler(),
            hostname=host,
            port=port,
            data_size_limit=settings.FALCON_INBOUND_EMAIL_MAX_BYTES,
        )
        controller.start()
        self.stdout.write(f"Receiving mail for *@{settings.FALCON_INBOUND_EMAIL_DOMAIN} on {host}:{port}.")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
        controller.stop()
