"""Signals of the project's own process lifecycle (the apps above connect to them; falcon imports none)."""

from django.dispatch import Signal

# Sent by falcon.wsgi once the application is loaded in a web process, before its first request.
web_process_ready = Signal()
