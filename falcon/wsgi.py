"""WSGI entry point (gunicorn falcon.wsgi; runserver loads it too)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "falcon.settings")

application = get_wsgi_application()
# Import every view module now, not during the first request (a first look's first run would pay it).
_ = get_resolver().url_patterns
