"""Two tenants and three people: alice owns A, bob views A, charlie owns B (the outsider)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import stripe
from rest_framework.test import APIClient

from billing.services import plan_set
from connectors.models import NetworkAllowance
from tenants.audit import Actor
from tenants.models import ApiKey, Membership, Tenant, User
from tenants.permissions import Role
from tenants.services import api_key_create, tenant_create
from tests.factories import MembershipFactory, make_user
from tests.servers.http_api import HttpApiServer

SYSTEM = Actor.system("tests")

# Every log line of the session is written as production writes it and searched for secrets at the end.
pytest_plugins = ["tests.logscan"]


@dataclass
class World:
    tenant_a: Tenant
    tenant_b: Tenant
    alice: User
    bob: User
    charlie: User


@pytest.fixture(scope="session", autouse=True)
def _static_files(django_test_environment: None) -> None:
    """The hashed static files the dashboard's pages name (collectstatic, once per test session)."""
    from django.core.management import call_command

    call_command("collectstatic", "--noinput", verbosity=0)


@pytest.fixture(autouse=True)
def _no_lingering_listener() -> Any:
    """run_wait's LISTEN connection must not outlive a test (the test database is dropped at the end)."""
    yield
    from agents.runs.events import streams_stop
    from agents.runs.services import run_waiters_stop

    run_waiters_stop()
    streams_stop()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Rate-limit counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()


REDIS_CACHE_URL = "redis://127.0.0.1:6379/9"


@pytest.fixture
def redis_cache(settings: Any) -> Any:
    """The cache on Redis, as FALCON_CACHE_URL sets it in production (emptied before and after); the
    Redis client on the same database."""
    import redis
    from django.core.cache import caches

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_CACHE_URL}
    }
    caches["default"].clear()
    yield redis.Redis.from_url(REDIS_CACHE_URL)
    caches["default"].clear()


@pytest.fixture
def world(db: None) -> World:
    alice = make_user(email="alice@a.example")
    bob = make_user(email="bob@a.example")
    charlie = make_user(email="charlie@b.example")
    tenant_a = tenant_create(slug="tenant-a", name="Tenant A", owner=alice, actor=SYSTEM)
    tenant_b = tenant_create(slug="tenant-b", name="Tenant B", owner=charlie, actor=SYSTEM)
    MembershipFactory(tenant=tenant_a, user=bob, role=Role.VIEWER)
    # Enterprise: tests of other features do not meet plan limits; billing tests pick their plans.
    plan_set(tenant=tenant_a, plan="enterprise", actor=SYSTEM)
    plan_set(tenant=tenant_b, plan="enterprise", actor=SYSTEM)
    return World(tenant_a, tenant_b, alice, bob, charlie)


def session_client(user: User, tenant: Tenant | None = None) -> APIClient:
    """A signed-in browser session naming ``tenant`` in the X-Falcon-Tenant header."""
    client = APIClient()
    client.force_login(user)
    if tenant is not None:
        client.credentials(HTTP_X_FALCON_TENANT=tenant.slug)
    return client


def key_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def make_key() -> Callable[..., tuple[ApiKey, str]]:
    def make(tenant: Tenant, scopes: list[str], name: str = "test key") -> tuple[ApiKey, str]:
        return api_key_create(
            tenant=tenant, name=name, scopes=scopes, actor=SYSTEM, acting_role=None, created_by=None
        )

    return make


@pytest.fixture
def alice_client(world: World) -> APIClient:
    return session_client(world.alice, world.tenant_a)


@pytest.fixture
def bob_client(world: World) -> APIClient:
    return session_client(world.bob, world.tenant_a)


@pytest.fixture
def charlie_client(world: World) -> APIClient:
    return session_client(world.charlie, world.tenant_b)


def member(tenant: Tenant, role: str, email: str | None = None) -> User:
    user = make_user(**({"email": email} if email else {}))
    Membership.objects.create(tenant=tenant, user=user, role=role)
    return user


# --- Agents: a loopback LLM provider and a real Celery worker -------------------------------------------


@pytest.fixture(scope="session")
def llm_server() -> Any:
    from tests.servers.llm import LlmServer

    server = LlmServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm(llm_server: Any, settings: Any) -> Any:
    """The loopback provider, reset, with every provider's base URL pointing at it."""
    llm_server.reset()
    settings.FALCON_LLM_PROVIDERS = llm_server.provider_settings()
    return llm_server


@pytest.fixture
def celery_worker(transactional_db: None) -> Any:
    """A real Celery worker (threads pool) consuming from Redis inside this process."""
    from celery.contrib.testing.worker import start_worker

    from falcon.celery import app

    app.control.purge()
    with start_worker(
        app, pool="threads", concurrency=8, perform_ping_check=False, shutdown_timeout=30, loglevel="INFO"
    ) as worker:
        from tests import logscan

        logscan.attach()  # the worker's start configured logging again
        yield worker
    _close_other_sessions()


def _close_other_sessions() -> None:
    """Worker threads may still hold connections to the test database; end them so it can be dropped."""
    from django.db import connection

    if hasattr(connection, "close_pool"):
        connection.close_pool()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def loopback_allowed(world: World, settings: Any) -> None:
    """Both tenants may reach 127.0.0.0/8 (an operator's allowance inside the platform's ceiling), for the
    loopback servers that stand in for tenants' systems. The platform's own services stay refused."""
    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.0/8"]
    for tenant in (world.tenant_a, world.tenant_b):
        NetworkAllowance.objects.get_or_create(tenant=tenant, cidr="127.0.0.0/8")


@pytest.fixture
def loopback(loopback_allowed: None) -> Any:
    """An HTTP server on 127.0.0.1 that records requests, reachable by both tenants' connectors."""
    server = HttpApiServer()
    yield server
    server.stop()


# --- Stripe: localstripe (a separate process) behind the loopback front ---------------------------------

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
PRICES = {
    ("pro", "month"): "price_pro_month",
    ("pro", "year"): "price_pro_year",
    ("team", "month"): "price_team_month",
}


@pytest.fixture(scope="session")
def stripe_servers() -> Any:
    from tests.servers.stripe_front import StripeServers

    servers = StripeServers()
    yield servers
    servers.stop()


@pytest.fixture
def stripe_env(stripe_servers: Any, settings: Any) -> Any:
    """Stripe configured against the front; localstripe emptied and given Falcon's two prices."""
    stripe_servers.reset()
    settings.STRIPE_SECRET_KEY = "sk_test_falcon"
    settings.STRIPE_API_BASE = stripe_servers.base
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_PRICES = {**{key: "" for key in settings.STRIPE_PRICES}, **PRICES}
    client = stripe.StripeClient("sk_test_falcon", base_addresses={"api": stripe_servers.localstripe})
    for plan in ("pro", "team"):
        client.v1.products.create(params={"id": f"prod_{plan}", "name": plan})
    for plan, interval, amount in (("pro", "month", 4900), ("pro", "year", 49000), ("team", "month", 29900)):
        client.v1.plans.create(
            params={
                "id": f"price_{plan}_{interval}",
                "product": f"prod_{plan}",
                "amount": amount,
                "currency": "usd",
                "interval": interval,
            }
        )
    return client
