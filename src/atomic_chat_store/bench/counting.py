"""Clients that count what they send: round trips (each write the client then waits on: one
command, or one whole pipeline) and top-level commands. A script's own ``redis.call``s run inside
the server and never pass through here, so they do not count.

Counting happens on separate clients in an untimed pass; the timed clients are plain redis-py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio


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


def counting_client(url: str, counter: Counter, **kwargs: Any) -> redis.Redis:
    client = redis.Redis.from_url(url, **kwargs)
    pool = client.connection_pool
    pool.connection_class = _counting_class(pool.connection_class, counter, is_async=False)
    return client


def counting_async_client(url: str, counter: Counter, **kwargs: Any) -> redis.asyncio.Redis:
    client = redis.asyncio.Redis.from_url(url, **kwargs)
    pool = client.connection_pool
    pool.connection_class = _counting_class(pool.connection_class, counter, is_async=True)
    return client
