"""The Falcon Django project."""

import os

# litellm fetches its model price map from the internet at import time unless told otherwise; this must
# happen before anything imports it, in the web server, the worker, beat and the tests alike.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _metrics_dir() -> None:
    """prometheus-client's multiprocess mode is chosen by this variable before the first metric exists:
    every process of an installation on one machine writes its figures under one directory."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        base = os.environ.get("FALCON_VAR_DIR") or os.path.join(
            os.path.dirname(os.path.dirname(__file__)), "var"
        )
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(os.path.abspath(base), "metrics")
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


_metrics_dir()

from .celery import app as celery_app  # noqa: E402  (after the environment above)

__all__ = ["celery_app"]
