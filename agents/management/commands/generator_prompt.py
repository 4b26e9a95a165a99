"""Shows or publishes the Agent Generator's system prompt (a governed prompt of the platform tenant).

manage.py generator_prompt                  # the production version's number and text
manage.py generator_prompt --file new.txt --note "shorter rules"   # a new version, approved, in production
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.generator.prompting import generator_prompt, publish_generator_prompt
from tenants.audit import Actor


class Command(BaseCommand):
    help = "Show or publish the Agent Generator's system prompt (versioned, labelled, audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--file", help="A text file with the new prompt ({{ feedback }} marks where problems go)."
        )
        parser.add_argument("--note", default="", help="What changed (kept with the version).")

    def handle(self, *args: Any, **options: Any) -> None:
        current = generator_prompt()
        if not options["file"]:
            self.stdout.write(f"production: v{current.version}\n\n{current.system}")
            return
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise CommandError("The prompt is empty.")
        version = publish_generator_prompt(
            text, note=options["note"] or path.name, actor=Actor.system("operator")
        )
        self.stdout.write(
            self.style.SUCCESS(f"Published v{version.number} as production (was v{current.version}).")
        )
