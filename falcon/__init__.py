"""The Falcon Django project."""

import os

# litellm fetches its model price map from the internet at import time unless told otherwise; this must
# happen before anything imports it, in the web server, the worker, beat and the tests alike.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .celery import app as celery_app

__all__ = ["celery_app"]
