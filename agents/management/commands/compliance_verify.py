"""``manage.py compliance_verify FILE``: checks an evidence bundle offline; exits 1 naming each problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.compliance.verify import bundle_verify


class Command(BaseCommand):
    help = (
        "Verify an evidence bundle (no database needed): file hashes against the manifest, event hash chain."
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")

    def handle(self, *args: Any, file: str, **options: Any) -> None:
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"No such file: {file}")
        problems = bundle_verify(path.read_bytes())
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError(f"The bundle is not intact: {len(problems)} problem(s).", returncode=1)
        self.stdout.write(f"{file}: intact (every file matches the manifest; the audit events chain).")
