"""Django settings for Falcon. Every value comes from the environment through ``falcon.env``.

With no ``DATABASE_URL`` set, Falcon runs in *first-look mode*: SQLite and a file-system Celery broker
under ``FALCON_VAR_DIR``, with a secret key and an encryption key generated there on first start. Any
real deployment sets ``DATABASE_URL`` and then must provide its secrets explicitly.
"""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from falcon import queues
from falcon.env import (
    email_settings_from_url,
    env_bool,
    env_int,
    env_is_set,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FALCON_VAR_DIR", str(BASE_DIR / "var"))).resolve()

FIRST_LOOK = not env_is_set("DATABASE_URL")


def _first_look_secret(filename: str, generate: str) -> str:
    """A secret kept in ``VAR_DIR`` so that first-look restarts keep sessions and ciphertexts valid."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / filename
    if not path.exists():
        path.write_text(generate, encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


DEBUG = env_bool("FALCON_DEBUG", FIRST_LOOK)

if FIRST_LOOK and not env_is_set("FALCON_SECRET_KEY"):
    SECRET_KEY = _first_look_secret("secret_key", secrets.token_urlsafe(50))
else:
    SECRET_KEY = env_str("FALCON_SECRET_KEY")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("FALCON_SECRET_KEY must be at least 50 characters long.")


def _parse_encryption_keys(raw: list[str]) -> list[tuple[str, bytes]]:
    """``id:base64`` items, each a 32-byte AES-256 master key; the first one encrypts."""
    keys: list[tuple[str, bytes]] = []
    for item in raw:
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id or not key_id.isalnum():
            raise ImproperlyConfigured(
                "FALCON_ENCRYPTION_KEYS items must look like '<alphanumeric id>:<base64 of 32 bytes>'."
            )
        try:
            material = base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise ImproperlyConfigured(f"FALCON_ENCRYPTION_KEYS key {key_id!r} is not valid base64.") from exc
        if len(material) != 32:
            raise ImproperlyConfigured(
                f"FALCON_ENCRYPTION_KEYS key {key_id!r} must decode to 32 bytes, not {len(material)}."
            )
        if key_id in {existing for existing, _ in keys}:
            raise ImproperlyConfigured(f"FALCON_ENCRYPTION_KEYS lists key id {key_id!r} twice.")
        keys.append((key_id, material))
    if not keys:
        raise ImproperlyConfigured("FALCON_ENCRYPTION_KEYS must list at least one key.")
    return keys


if FIRST_LOOK and not env_is_set("FALCON_ENCRYPTION_KEYS"):
    if not (VAR_DIR / "encryption_keys").exists():
        sys.stderr.write(
            f"First-look mode: generated an encryption master key in {VAR_DIR / 'encryption_keys'}.\n"
        )
    _generated = "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    FALCON_ENCRYPTION_KEYS = _parse_encryption_keys([_first_look_secret("encryption_keys", _generated)])
else:
    FALCON_ENCRYPTION_KEYS = _parse_encryption_keys(env_list("FALCON_ENCRYPTION_KEYS"))

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if FIRST_LOOK else None)
if ALLOWED_HOSTS is None:
    raise ImproperlyConfigured("The environment variable ALLOWED_HOSTS is required.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
FALCON_BASE_URL = env_str("FALCON_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",  # make run's server leaves static files to WhiteNoise (hashed names)
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "guardian",
    "django_celery_beat",
    "django_htmx",
    "tenants",
    "agents",
    "connectors",
    "billing",
    "dashboard",
]

MIDDLEWARE = [
    "falcon.middleware.ProbeMiddleware",
    "falcon.middleware.RequestIdMiddleware",
    "falcon.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files with hashed names, from the app server
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "falcon.urls"
WSGI_APPLICATION = "falcon.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
DATABASES: dict[str, Any]
if FIRST_LOOK:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "falcon.sqlite3"),
            # Web, worker and beat share the file; wait for a writer instead of failing at once.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
else:
    # A connection pool per process (psycopg_pool): a thread returns its connection to the pool when it
    # closes it, e.g. before an LLM call, so a worker with 100+ threads needs only a few connections.
    _pool_max = env_int("FALCON_DB_POOL_MAX_SIZE", 20, minimum=0)
    _database = dj_database_url.parse(
        env_str("DATABASE_URL"),
        conn_max_age=0 if _pool_max else env_int("FALCON_DB_CONN_MAX_AGE", 60, minimum=0),
        # With the pool, Django turns this into psycopg_pool's check: a dropped connection is replaced
        # (falcon.dbpool: not one given back moments ago).
        conn_health_checks=True,
    )
    if _pool_max and _database["ENGINE"] == "django.db.backends.postgresql":
        _database.setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(2, _pool_max),
            "max_size": _pool_max,
            "timeout": env_int("FALCON_DB_POOL_TIMEOUT_S", 30),
        }
        _database["ENGINE"] = "falcon.postgresql"
    DATABASES = {"default": _database}

# The hot paths' statements are prepared once per PostgreSQL session (falcon.sql.prepared); off for a
# pooler in transaction mode (PgBouncer), which gives each transaction another server session.
FALCON_DB_PREPARED_STATEMENTS = env_bool("FALCON_DB_PREPARED_STATEMENTS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "tenants.User"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
with contextlib.suppress(OSError):  # WhiteNoise looks for it when the app starts (read-only disks: skip)
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Hashed, compressed file names (collectstatic builds the manifest; make run and the tests run it).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

CSRF_FAILURE_VIEW = "falcon.api.csrf_failure"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# --- Cache (API rate limits) ------------------------------------------------------------------------------
# Counters must be shared by every web process in production: point this at Redis there.
FALCON_CACHE_URL = env_str("FALCON_CACHE_URL", "")
_cache_url = FALCON_CACHE_URL
if _cache_url.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}}
elif _cache_url:
    raise ImproperlyConfigured("FALCON_CACHE_URL must be a redis:// or rediss:// URL.")
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- E-mail ---------------------------------------------------------------------------------------------
_email_url = env_str("EMAIL_URL", "console://" if FIRST_LOOK else "")
if not _email_url:
    raise ImproperlyConfigured("The environment variable EMAIL_URL is required (e.g. smtp://host:587?tls=1).")
globals().update(email_settings_from_url(_email_url))
DEFAULT_FROM_EMAIL = env_str("FALCON_FROM_EMAIL", "Falcon <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- django-allauth -------------------------------------------------------------------------------------
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Falcon] "
ACCOUNT_ADAPTER = "tenants.adapters.FalconAccountAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Falcon"

# --- django-guardian: object rights inside a tenant, never the tenant boundary --------------------------
ANONYMOUS_USER_NAME = None
GUARDIAN_MONKEY_PATCH_USER = False

# --- REST API -------------------------------------------------------------------------------------------
FALCON_MAX_BODY_BYTES = env_int("FALCON_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = FALCON_MAX_BODY_BYTES

FALCON_API_RATE = env_str("FALCON_API_RATE", "1200/min")
if not re.fullmatch(r"\d+/(s|sec|m|min|h|hour|d|day)", FALCON_API_RATE):
    raise ImproperlyConfigured("FALCON_API_RATE must look like '1200/min' (per s, min, hour or day).")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["falcon.parsers.BoundedJSONParser"],
    # No OPTIONS metadata: the OpenAPI schema describes the API; OPTIONS answers 405 in the error shape.
    "DEFAULT_METADATA_CLASS": None,
    "DEFAULT_PAGINATION_CLASS": "falcon.api.FalconCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "falcon.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["billing.throttling.ApiRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # ``format`` is a real query parameter of the audit export, not DRF's renderer override.
    "URL_FORMAT_OVERRIDE": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Falcon API",
    "DESCRIPTION": "Build, deploy and run AI agents and workflows in production.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "falcon.openapi.error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "agents.runs.models.Run.Status",
        "PromptVersionStatusEnum": "agents.prompts.models.PromptVersion.Status",
        "TriggerKindEnum": "agents.triggers.models.Trigger.Kind",
        "TriggerEnum": "agents.runs.models.Run.Trigger",  # the name it had before generations came
        "GenerationTriggerEnum": ["api", "webhook", "schedule", "email"],
        "NotificationChannelKindEnum": "agents.notifications.models.NotificationChannel.Kind",
    },
}

# --- Celery ---------------------------------------------------------------------------------------------
if FIRST_LOOK and not env_is_set("CELERY_BROKER_URL"):
    _broker_dir = VAR_DIR / "broker"
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # kombu's exchange table; its default is ./control in whatever folder the process started in
        "control_folder": str(_broker_dir / "control"),
        # kombu lists the folder once a second by default: a first run would wait up to that long.
        "polling_interval": 0.02,
    }
else:
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
    # Longer than any task's hard time limit, or Redis re-delivers running tasks (kombu#337).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 60 * 60}
    if CELERY_BROKER_URL.split("://", 1)[0] == "redis":
        # kombu's Redis transport with one client per channel, not one per message (falcon.broker).
        CELERY_BROKER_TRANSPORT = "falcon.broker:Transport"
# Only tasks that declare ignore_result=False store results, and only when a backend is configured.
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 60 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 55 * 60
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# django-celery-beat's DatabaseScheduler behind a lock: a second beat started by mistake waits, then
# takes over when the active one dies (falcon/beat.py); each firing is saved at once for that hand-over.
CELERY_BEAT_SCHEDULER = "falcon.beat:SingleBeatScheduler"
CELERY_BEAT_SYNC_EVERY = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The worker logs through Django's LOGGING (JSON lines with the task's context), not its own handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Queues by kind of work, routed in one place (falcon/queues.py); a task left out would go to "runs".
CELERY_TASK_QUEUES = queues.TASK_QUEUES
CELERY_TASK_ROUTES = queues.TASK_ROUTES
CELERY_TASK_DEFAULT_QUEUE = queues.RUNS
CELERY_BEAT_SCHEDULE = {
    "audit-verify-nightly": {"task": "tenants.tasks.audit_verify_all_task", "schedule": 24 * 60 * 60},
    # Runs whose worker died (stale heartbeat) are re-queued or failed; due waits are resumed.
    "runs-sweep": {"task": "agents.tasks.runs_sweep_task", "schedule": 15},
    "runs-resume-due": {"task": "agents.tasks.runs_resume_due_task", "schedule": 5},
    # Billing: past-due grace periods, overage to Stripe meters, run-log retention per plan.
    "billing-grace-expire": {"task": "billing.tasks.grace_expire_task", "schedule": 15 * 60},
    "billing-meter-report": {"task": "billing.tasks.meter_report_task", "schedule": 60 * 60},
    "billing-retention-prune": {"task": "billing.tasks.retention_prune_task", "schedule": 6 * 60 * 60},
}

# --- Security -------------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the dashboard's scripts read it to call the API with a session
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("FALCON_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("FALCON_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    if env_bool("FALCON_TRUST_X_FORWARDED_PROTO", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The SSL redirect is the proxy's job when it is off; the deploy check should not flag it then.
    SILENCED_SYSTEM_CHECKS = [] if SECURE_SSL_REDIRECT else ["security.W008"]

# --- Agents: LLM providers and the run engine -----------------------------------------------------------
# Platform-wide provider credentials (tenants' own provider connectors come with the connectors app).
FALCON_LLM_PROVIDERS = {
    "openai": {"api_key": env_str("OPENAI_API_KEY", ""), "api_base": env_str("OPENAI_BASE_URL", "")},
    "anthropic": {"api_key": env_str("ANTHROPIC_API_KEY", ""), "api_base": env_str("ANTHROPIC_BASE_URL", "")},
    "gemini": {"api_key": env_str("GEMINI_API_KEY", ""), "api_base": env_str("GEMINI_API_BASE", "")},
    "ollama": {"api_key": "", "api_base": env_str("OLLAMA_API_BASE", "")},
}
# The Agent Generator's model (any the gateway supports; sandbox/… answers offline from the gallery).
FALCON_GENERATOR_MODEL = env_str("FALCON_GENERATOR_MODEL", "sandbox/generator")
FALCON_RUN_HEARTBEAT_INTERVAL_S = env_int("FALCON_RUN_HEARTBEAT_INTERVAL_S", 10, minimum=1)
FALCON_RUN_HEARTBEAT_TIMEOUT_S = env_int("FALCON_RUN_HEARTBEAT_TIMEOUT_S", 120, minimum=2)
FALCON_RUN_MAX_CLAIMS = env_int("FALCON_RUN_MAX_CLAIMS", 3, minimum=1)
FALCON_RUN_PAYLOAD_LIMIT_BYTES = env_int("FALCON_RUN_PAYLOAD_LIMIT_BYTES", 256 * 1024, minimum=1024)
FALCON_INBOUND_EMAIL_DOMAIN = env_str("FALCON_INBOUND_EMAIL_DOMAIN", "inbound.localhost")
FALCON_INBOUND_EMAIL_MAX_BYTES = env_int("FALCON_INBOUND_EMAIL_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
FALCON_SMTP_INBOUND_PORT = env_int("FALCON_SMTP_INBOUND_PORT", 2525, minimum=1)
# Live run events (GET /api/v1/runs/{id}/events): each open stream holds a web thread.
FALCON_EVENT_STREAMS = env_int("FALCON_EVENT_STREAMS", 8, minimum=1)
FALCON_EVENT_STREAMS_PER_TENANT = env_int("FALCON_EVENT_STREAMS_PER_TENANT", 4, minimum=1)
FALCON_EVENT_STREAM_MAX_S = env_int("FALCON_EVENT_STREAM_MAX_S", 60, minimum=1)
# The OpenAI-compatible endpoint waits this long for a run (then 504 with the run id to follow).
FALCON_OPENAI_WAIT_S = env_int("FALCON_OPENAI_WAIT_S", 60, minimum=1)
FALCON_MCP_WAIT_S = env_int("FALCON_MCP_WAIT_S", 300, minimum=1)
# A worker told to stop hands its runs back at their next step, or after this long at the latest.
FALCON_WORKER_GRACE_S = env_int("FALCON_WORKER_GRACE_S", 25, minimum=0)
FALCON_RUN_QUEUED_REDISPATCH_S = env_int("FALCON_RUN_QUEUED_REDISPATCH_S", 60, minimum=1)
# Webhooks execute short pure workflows (transforms, branches) in the request: no queue hop (0 = never).
FALCON_WEBHOOK_INLINE_MAX_STEPS = env_int("FALCON_WEBHOOK_INLINE_MAX_STEPS", 10, minimum=0)
FALCON_SYNC_RUN_THREADS = env_int("FALCON_SYNC_RUN_THREADS", 32, minimum=1)
# Webhook deliveries doing their work at once in one web process (falcon/admission.py); waiting ones
# (sync_wait_s) do not count.
FALCON_WEBHOOK_ACTIVE = env_int("FALCON_WEBHOOK_ACTIVE", 4, minimum=1)
# A burst of one event of one agent (run failures) collapses into one message per window.
FALCON_NOTIFY_COLLAPSE_S = env_int("FALCON_NOTIFY_COLLAPSE_S", 600, minimum=0)

# --- Billing: Stripe decides the plan, the plan decides the limits (billing/plans.py) --------------------
# Without STRIPE_SECRET_KEY billing endpoints answer "billing not configured" and operators place
# tenants on plans with `manage.py plan_set` (self-hosting).
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "").rstrip("/")  # e.g. a local Stripe stand-in
STRIPE_PRICES = {
    (plan, interval): env_str(f"STRIPE_PRICE_{plan.upper()}_{interval.upper()}", "")
    for plan in ("pro", "team", "enterprise")
    for interval in ("month", "year")
}
FALCON_BILLING_GRACE_DAYS = env_int("FALCON_BILLING_GRACE_DAYS", 7, minimum=0)

# --- Connectors -----------------------------------------------------------------------------------------
# The most an operator may allow tenants to reach beyond public addresses (CIDRs); each tenant needs its own
# allowance inside it (manage.py tenant_network_allow). The platform's own services are never reachable.
FALCON_ALLOWED_PRIVATE_NETWORKS = env_list("FALCON_ALLOWED_PRIVATE_NETWORKS", [])
# Other services of this installation that tenants must never reach (host:port or URLs), beyond the
# database, broker, result backend, cache and web server, which are refused already.
FALCON_PLATFORM_ADDRESSES = env_list("FALCON_PLATFORM_ADDRESSES", [])

# --- Tenancy --------------------------------------------------------------------------------------------
FALCON_INVITATION_TTL_DAYS = env_int("FALCON_INVITATION_TTL_DAYS", 7, minimum=1)
# Organizations one person may create for themselves (sign-up's personal one included).
FALCON_MAX_TENANTS_PER_USER = env_int("FALCON_MAX_TENANTS_PER_USER", 5, minimum=1)
FALCON_API_KEY_ENVIRONMENT = "live"

# --- Metrics (falcon/metrics.py): GET /metrics answers 404 unless a token is set ---------------------------
FALCON_METRICS_TOKEN = env_str("FALCON_METRICS_TOKEN", "")
# A worker or beat process on a machine without a web process serves the metrics on its own port (0 = off).
FALCON_WORKER_METRICS_PORT = env_int("FALCON_WORKER_METRICS_PORT", 0, minimum=0)
FALCON_WORKER_METRICS_ADDR = env_str("FALCON_WORKER_METRICS_ADDR", "127.0.0.1")

# --- Logging --------------------------------------------------------------------------------------------
# JSON lines by default; text for a first look and debugging (FALCON_LOG_FORMAT=text). Every handler's
# filter binds the request/task/run context and redacts secrets (falcon/logs.py).
FALCON_LOG_FORMAT = env_str("FALCON_LOG_FORMAT", "text" if FIRST_LOOK or DEBUG else "json").lower()
if FALCON_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("FALCON_LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "falcon.logs.JsonFormatter"},
        "text": {"()": "falcon.logs.TextFormatter"},
    },
    "filters": {"context": {"()": "falcon.logs.ContextFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": FALCON_LOG_FORMAT, "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": env_str("FALCON_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # litellm logs every call at INFO; request bodies must never reach logs.
        "LiteLLM": {"level": "WARNING"},
        "LiteLLM Router": {"level": "WARNING"},
        "LiteLLM Proxy": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
