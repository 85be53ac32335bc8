"""Clients that count what they send: round trips (each write the client then waits on: one
command, or one whole pipeline) and top-level commands. A script's own ``redis.call``s run inside
the server and never pass through here, so they do not count.

Counting happens on separate clients in an untimed pass; the timed clients are plain redis-py.
Every URL form of ``atomic_chat_store.connection`` works: one server, a Sentinel-managed master
(its pool's own connection class is subclassed) and a Cluster (each node's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from ..connection import async_client_from_url, client_from_url


@dataclass
class Counter:
    round_trips: int = 0
    commands: int = 0

    def reset(self) -> None:
        self.round_trips = 0
        self.commands = 0


def _counting_class(base: type[Any], counter: Counter, is_async: bool) -> type[Any]:
    """A subclass of the pool's own connection class (TCP, TLS or Unix socket) that counts."""
    if is_async:

        class AsyncCounting(base):  # type: ignore[misc]
            async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
                counter.round_trips += 1
                await super().send_packed_command(command, check_health)

            async def send_command(self, *args: Any, **kwargs: Any) -> None:
                counter.commands += 1
                await super().send_command(*args, **kwargs)

            def pack_commands(self, commands: Iterable[Any]) -> Any:
                commands = list(commands)
                counter.commands += len(commands)
                return super().pack_commands(commands)

        return AsyncCounting

    class Counting(base):  # type: ignore[misc]
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            counter.round_trips += 1
            super().send_packed_command(command, check_health)

        def send_command(self, *args: Any, **kwargs: Any) -> None:
            counter.commands += 1
            super().send_command(*args, **kwargs)

        def pack_commands(self, commands: Iterable[Any]) -> Any:
            commands = list(commands)
            counter.commands += len(commands)
            return super().pack_commands(commands)

    return Counting


def _count_pool(pool: Any, counter: Counter) -> None:
    """Every connection ``pool`` makes from now on counts; those it made already are let go
    (closed and forgotten) so that none that does not count is used again."""
    pool.connection_class = _counting_class(pool.connection_class, counter, is_async=False)
    pool.disconnect()
    pool.reset()


def counting_client(url: str, counter: Counter, **kwargs: Any) -> redis.Redis:
    """A sync client for ``url`` (any form ``atomic_chat_store.connection`` takes) whose
    connections count. A Cluster's client connects while it is built (to learn the slots): its
    nodes' pools are then made to count; a node it only discovers later (a failover in the
    middle of the run) would not."""
    client = client_from_url(url, **kwargs)
    if isinstance(client, redis.cluster.RedisCluster):
        for node in client.get_nodes():
            if node.redis_connection is not None:
                _count_pool(node.redis_connection.connection_pool, counter)
    else:
        _count_pool(client.connection_pool, counter)
    return client


def counting_async_client(url: str, counter: Counter, **kwargs: Any) -> redis.asyncio.Redis:
    """The asyncio twin of ``counting_client``. Built without connecting (a Cluster's too): the
    connection class is replaced before any connection exists, for the nodes it discovers later
    as well."""
    client: Any = async_client_from_url(url, **kwargs)
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        manager = client.nodes_manager
        base = manager.connection_kwargs.get("connection_class", redis.asyncio.Connection)
        counting = _counting_class(base, counter, is_async=True)
        manager.connection_kwargs["connection_class"] = counting
        for node in manager.startup_nodes.values():
            node.connection_class = counting
    else:
        pool = client.connection_pool
        pool.connection_class = _counting_class(pool.connection_class, counter, is_async=True)
    counted: redis.asyncio.Redis = client
    return counted
