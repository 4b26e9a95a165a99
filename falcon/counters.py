"""Fixed-window counters in the cache, shared by the web processes (rate limits).

Django's cache API counts in three round trips on Redis (``add`` is a ``SET NX``; ``incr`` checks
that the key exists, then increments it); every webhook delivery counted this way. With Redis
(``FALCON_CACHE_URL``) a hit here is one ``MULTI``/``INCR``/``EXPIRE``/``EXEC`` exchange: the key
never exists without its lifetime, and it stays readable through ``cache.get`` (Django's Redis
serializer stores integers as they are). Elsewhere (the local-memory cache) the cache API's own
``add`` and ``incr``.
"""

from __future__ import annotations

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache


def hit(key: str, ttl_s: int) -> int:
    """Adds one to the counter ``key`` and returns its new value; a new counter lives ``ttl_s``
    seconds (on Redis, ``ttl_s`` after its latest hit: keys name their window, so either is fine)."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        made = backend.make_and_validate_key(key)
        # Django's own client for the key (its connection pool); not in django-stubs. Tested in
        # tests/test_counters.py against Redis, so an upgrade that moves it fails there.
        client = backend._cache.get_client(made, write=True)  # type: ignore[attr-defined]
        pipeline = client.pipeline(transaction=True)
        pipeline.incr(made)
        pipeline.expire(made, ttl_s)
        return int(pipeline.execute()[0])
    backend.add(key, 0, timeout=ttl_s)
    return int(backend.incr(key))
