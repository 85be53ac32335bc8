"""Fixtures of the pytest-benchmark suite: a real Redis server started the same way as the tests'
(``tests/servers.py``: a container where Docker answers, else a private redis-server process;
``ATOMIC_CHAT_STORE_TEST_BACKEND`` picks), and the systems of ``atomic-chat-store bench``.

How much runs is set by environment variables, so that the normal ``pytest`` run (testpaths
include ``benchmarks``) exercises every benchmark in seconds and they cannot rot:

``ATOMIC_CHAT_STORE_BENCH_SIZES``   conversation lengths, default ``10,100``
``ATOMIC_CHAT_STORE_BENCH_ROUNDS``  timed rounds per benchmark, at most, default ``5``
``ATOMIC_CHAT_STORE_BENCH_BUDGET``  seconds per benchmark after which rounds stop (at least one
                                    round always runs), default ``0.5``

A real measurement, for example::

    ATOMIC_CHAT_STORE_BENCH_SIZES=10,100,1000,10000 ATOMIC_CHAT_STORE_BENCH_ROUNDS=200 \\
    ATOMIC_CHAT_STORE_BENCH_BUDGET=10 pytest benchmarks --benchmark-only --benchmark-group-by=group

``atomic-chat-store bench`` is the fuller tool (interleaved runs, round trips, correctness,
concurrency, report); this suite keeps the same operations under pytest-benchmark.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from atomic_chat_store.bench.runner import new_prefix, remove_prefix  # noqa: E402
from atomic_chat_store.bench.systems import Floor, Seed, SyncStore, System, load_seed  # noqa: E402
from atomic_chat_store.scripts import scripts  # noqa: E402
from servers import RunningServer, redis_server  # noqa: E402, F401 (the tests' server fixture)

SIZES_ENV = "ATOMIC_CHAT_STORE_BENCH_SIZES"
ROUNDS_ENV = "ATOMIC_CHAT_STORE_BENCH_ROUNDS"
BUDGET_ENV = "ATOMIC_CHAT_STORE_BENCH_BUDGET"


def bench_sizes() -> list[int]:
    return [int(part) for part in os.environ.get(SIZES_ENV, "10,100").split(",") if part.strip()]


def bench_rounds() -> int:
    return max(1, int(os.environ.get(ROUNDS_ENV, "5")))


def bench_budget() -> float:
    return float(os.environ.get(BUDGET_ENV, "0.5"))


@pytest.fixture(scope="session")
def redis_url(redis_server: RunningServer) -> str:  # noqa: F811 (the fixture, by name)
    return redis_server.url


@pytest.fixture(scope="session")
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client for setting conversations up and putting them back, outside the clock."""
    client = redis.Redis.from_url(redis_url)
    for script in scripts().values():  # loaded once: every EVALSHA finds its script
        client.script_load(script.source)
    yield client
    client.close()


@pytest.fixture(scope="session")
def prefix(admin: redis.Redis) -> Iterator[str]:
    """Every key of the suite is under this prefix; removed at the end (no flush)."""
    value = new_prefix()
    yield value
    remove_prefix(admin, value)


@pytest.fixture(scope="session")
def systems(redis_url: str, prefix: str) -> Iterator[dict[str, System]]:
    """This store (sync), the seed and the floor, each on its own connected client."""
    seed = load_seed()
    if seed is None:
        pytest.fail("llama-index-storage-chat-store-redis is not installed", pytrace=False)
    clients = [redis.Redis.from_url(redis_url) for _ in range(3)]
    for client in clients:
        client.ping()
    seed_async = redis.asyncio.Redis.from_url(redis_url)  # given so the seed makes none
    built: dict[str, System] = {
        "sync": SyncStore(prefix, clients[0]),
        "seed": Seed(prefix, seed, clients[1], seed_async),
        "floor": Floor(prefix, clients[2]),
    }
    yield built
    for client in clients:
        client.close()
    asyncio.run(seed_async.aclose())
