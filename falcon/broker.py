"""kombu's Redis transport, sending its commands through one client per channel.

kombu builds a new ``redis.Redis`` object for every command it sends outside its polling loop
(``Channel.conn_or_acquire``): every published task and every acknowledged one. redis-py's
constructor copies its table of ~170 response callbacks each time, about 0.1 ms of CPU per message
on this machine (~20 % of a publish through Celery). The object is a thin handle on the channel's
connection pool, safe to share between threads, so this channel keeps one per pool: the connections
themselves are still taken from and given back to the pool per command, as before. The polling
loop's own client (``asynchronous=True``) is kombu's, unchanged.

Selected by ``CELERY_BROKER_TRANSPORT`` for ``redis://`` broker URLs (settings); other schemes
(``rediss://``, sentinel, AMQP, the first look's file system) keep their own transports.
"""

from __future__ import annotations

from typing import Any, cast

from kombu.transport import redis


class Channel(redis.Channel):
    _commands_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        kombus = cast(Any, super())  # kombu's stubs leave its private methods out
        if asynchronous:
            return kombus._create_client(asynchronous=True)
        client = self._commands_client
        # The pool is replaced when the channel reconnects (and dropped after a fork): follow it.
        if client is None or client.connection_pool is not self.pool:
            client = self._commands_client = kombus._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
