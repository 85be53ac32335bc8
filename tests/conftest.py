"""Fixtures: one real Redis server for the session, clean between tests, the topologies
(Sentinel, Cluster, TLS: tests/topologies.py), and the tools that assert on Redis itself (round
trips seen by MONITOR)."""

from __future__ import annotations

import codecs
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import redis
import redis.asyncio

from faults import fault_proxy, fault_redis, fault_server, killable_server  # noqa: F401
from load import measurements  # noqa: F401 (printed at the end of the run)
from servers import RunningServer, redis_server, valkey_server  # noqa: F401 (fixtures)
from topologies import (  # noqa: F401 (fixtures: one per topology)
    _cluster_session,
    _sentinel_session,
    cluster_topology,
    mutual_tls_server,
    sentinel_topology,
    tls_server,
)


@pytest.fixture(scope="session")
def redis_url(redis_server: RunningServer) -> str:  # noqa: F811 (the fixture, by name)
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client for asserting on Redis; the database is emptied after each test."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
async def async_redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.flushdb()
    await client.aclose()


_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')


@dataclass
class MonitoredCommand:
    client: str  # "lua" for the calls a script makes, else the client's address
    args: list[bytes] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.args[0].decode().upper()


def parse_monitor_line(line: bytes) -> MonitoredCommand:
    # 1700000000.000000 [0 127.0.0.1:5555] "EVALSHA" "..." ; [0 lua] for a script's own calls.
    head, _, rest = line.partition(b"] ")
    source = head.rsplit(b" ", 1)[-1].decode()
    args = [codecs.escape_decode(quoted)[0] for quoted in _QUOTED.findall(rest)]
    return MonitoredCommand(source, args)


@contextmanager
def monitor(url: str) -> Iterator[list[MonitoredCommand]]:
    """Everything the server executes inside the block, in the order it executed it.

    MONITOR streams asynchronously, so on exit a marker ECHO is sent from a separate connection
    and the stream is read up to it: every command of the block comes before the marker.
    """
    seen: list[MonitoredCommand] = []
    watcher = redis.Redis.from_url(url)
    marker_client = redis.Redis.from_url(url)
    marker = f"monitor-end-{uuid.uuid4()}".encode()
    try:
        marker_client.ping()  # connect now: its handshake must not show up inside the block
        with watcher.monitor() as stream:
            yield seen
            marker_client.echo(marker)
            while True:
                line = stream.connection.read_response()
                if isinstance(line, str):
                    line = line.encode()
                if line == b"OK":
                    continue
                command = parse_monitor_line(line)
                if command.args[:2] == [b"ECHO", marker]:
                    break
                seen.append(command)
    finally:
        marker_client.close()
        watcher.close()


def round_trips(commands: list[MonitoredCommand]) -> list[MonitoredCommand]:
    """Top-level commands: what clients sent, not what scripts called inside."""
    return [command for command in commands if command.client != "lua"]


@pytest.fixture
def monitored(redis_url: str) -> Callable[[], contextmanager[list[MonitoredCommand]]]:
    return lambda: monitor(redis_url)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} test(s) skipped: integration tests must never skip", red=True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A skipped integration test is a failure here: a missing server must be loud.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped") and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(params=["sync", "async"])
def make_store(request: pytest.FixtureRequest, redis_url: str, redis_client: redis.Redis):
    """A factory of stores on the test server: RedisChatStore, then AsyncRedisChatStore."""
    from stores import make_store as build

    made = []

    def factory(**kwargs):
        store = build(request.param, redis_url, **kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()
