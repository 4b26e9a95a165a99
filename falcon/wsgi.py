"""WSGI entry point (gunicorn falcon.wsgi; runserver loads it too)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from falcon import tracing
from falcon.signals import web_process_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "falcon.settings")

# Traces (when OTEL_EXPORTER_OTLP_ENDPOINT is set): Django's instrumentation must be in place before the
# handler loads its middleware.
tracing.configure("web", web=True)
application = get_wsgi_application()
# Import every view module now, not during the first request (a first look's first run would pay it).
_ = get_resolver().url_patterns

# Apps prepare what a web process's first request would otherwise pay for (agents: LiteLLM, in the
# background: a synchronous webhook's short run executes in the web process).
web_process_ready.send(sender=None)
