"""Rate-limit counters (falcon.counters): one exchange per hit on Redis, readable through the cache
API, never left without a lifetime; the local-memory cache counts through the cache API."""

from __future__ import annotations

from typing import Any

import redis
from django.core.cache import cache

from falcon import counters


def test_counts_on_the_local_memory_cache() -> None:
    assert [counters.hit("falcon:t:a", 60) for _ in range(3)] == [1, 2, 3]
    assert cache.get("falcon:t:a") == 3


def test_counts_on_redis_in_one_exchange_with_a_lifetime(redis_cache: Any, monkeypatch: Any) -> None:
    exchanges: list[list[Any]] = []
    alone: list[Any] = []
    real = redis.client.Pipeline.execute

    def exchange(self: Any, *args: Any, **kwargs: Any) -> Any:
        exchanges.append([command[0][0] for command in self.command_stack])
        return real(self, *args, **kwargs)

    def command_alone(self: Any, *args: Any, **options: Any) -> Any:
        alone.append(args[0])
        return real_command(self, *args, **options)

    real_command = redis.Redis.execute_command
    with monkeypatch.context() as patch:
        patch.setattr(redis.client.Pipeline, "execute", exchange)
        patch.setattr(redis.Redis, "execute_command", command_alone)
        assert [counters.hit("falcon:t:b", 120) for _ in range(3)] == [1, 2, 3]

    assert exchanges == [["INCRBY", "EXPIRE"]] * 3  # one MULTI/EXEC exchange per hit
    assert alone == []  # and no command sent on its own
    assert 0 < redis_cache.ttl(cache.make_key("falcon:t:b")) <= 120
    assert cache.get("falcon:t:b") == 3  # the cache API reads the same counter
