"""The Redis broker transport (falcon.broker): messages still go through, without a client per message."""

from __future__ import annotations

import uuid
from typing import Any, cast
from unittest import mock

from django.conf import settings
from kombu.transport import redis as kombu_redis

from falcon import broker
from falcon.celery import app


def _counting_clients() -> tuple[Any, list[bool]]:
    """kombu's client factory, counting the command clients it builds (the polling ones apart)."""
    built: list[bool] = []
    original = cast(Any, kombu_redis.Channel)._create_client

    def create(self: Any, asynchronous: bool = False) -> Any:
        built.append(asynchronous)
        return original(self, asynchronous)

    return mock.patch.object(kombu_redis.Channel, "_create_client", create), built


def test_a_redis_broker_url_selects_the_transport() -> None:
    assert settings.CELERY_BROKER_URL.startswith(
        "redis://"
    )  # the suite's broker (the AMQP run skips this file)
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, broker.Transport)


def test_messages_published_and_acknowledged_through_one_client_per_pool() -> None:
    name = f"falcon-broker-test-{uuid.uuid4().hex}"
    patch, built = _counting_clients()
    with patch, app.connection_for_write() as connection:
        queue = connection.SimpleQueue(name)
        try:
            for i in range(5):
                queue.put({"n": i})
            received = []
            for _ in range(5):
                message = queue.get(timeout=5)
                received.append(message.payload["n"])
                message.ack()
            assert sorted(received) == [0, 1, 2, 3, 4]
            assert built.count(False) == 1  # kombu alone: one per put, get and ack

            # The channel reconnects (a new pool): the next command uses a client on the new pool.
            channel: Any = queue.channel
            old = channel._create_client()
            channel._disconnect_pools()
            queue.put({"n": 5})
            assert queue.get(timeout=5).payload == {"n": 5}
            assert built.count(False) == 2
            assert channel._create_client() is not old
            assert channel._create_client().connection_pool is channel.pool
        finally:
            queue.queue.delete()
            queue.close()
