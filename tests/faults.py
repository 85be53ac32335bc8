"""Fault injection for the tests: a RESP-aware TCP proxy that drops, delays or cuts, and real
servers to hurt (DEBUG SLEEP, kill -9 and restart, maxmemory, ACL users).

``FaultProxy`` runs its own event loop in its own thread, so sync and asyncio tests drive it the
same way: every control method is an ordinary, thread-safe call. It parses the client's byte
stream into commands and the server's into replies, and pairs them in order (Redis answers in
order on one connection; in MULTI/EXEC each queued command gets +QUEUED, EXEC one array).
SUBSCRIBE, MONITOR and CLIENT REPLY break that pairing: do not send them through the proxy.

    with FaultProxy(server.port) as proxy:
        proxy.drop_reply("EVALSHA")            # the server applies it, the client loses it
        client = redis.Redis(port=proxy.port)
        ...
        assert len(proxy.fired(Fault.DROP_REPLY_AND_CLOSE, "EVALSHA")) == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import os
import random
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from atomic_chat_store.server import free_port
from servers import (
    REDIS,
    RunningServer,
    ServerUnavailable,
    start_container,
    start_process,
    use_docker,
)

T = TypeVar("T")

# ----------------------------------------------------------------------------------------------
# RESP, both directions


class RespError(str):
    """An error reply (``-ERR ...``), kept apart from a simple string."""


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push (``>``): out of band, the answer to no request."""


class _Incomplete(Exception):
    pass


def _parse(buffer: bytearray, start: int) -> tuple[Any, int]:
    """One RESP2/RESP3 value at ``start``: (value, end). Raises _Incomplete."""
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        raise _Incomplete
    kind, line = bytes(buffer[start : start + 1]), bytes(buffer[start + 1 : line_end])
    position = line_end + 2
    if kind == b"+":
        return line.decode(errors="replace"), position
    if kind == b"-":
        return RespError(line.decode(errors="replace")), position
    if kind in (b":", b"("):
        return int(line), position
    if kind == b",":
        return float(line), position
    if kind == b"#":
        return line == b"t", position
    if kind == b"_":
        return None, position
    if kind in (b"$", b"=", b"!"):
        size = int(line)
        if size < 0:
            return None, position
        if len(buffer) < position + size + 2:
            raise _Incomplete
        data, end = bytes(buffer[position : position + size]), position + size + 2
        return (RespError(data.decode(errors="replace")) if kind == b"!" else data), end
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(line) * (2 if kind in (b"%", b"|") else 1)
        if count < 0:
            return None, position
        items = []
        for _ in range(count):
            item, position = _parse(buffer, position)
            items.append(item)
        if kind == b"|":  # attributes precede the value they describe: keep the value
            return _parse(buffer, position)
        return (Push(items) if kind == b">" else items), position
    raise ValueError(f"not RESP: {bytes(buffer[start : start + 40])!r}")


class RespStream:
    """Bytes in, complete values out, each with its exact bytes; a value split across reads
    waits for the rest. ``requests=True`` also accepts inline commands (``PING\\r\\n``) and yields
    each command as a tuple of bytes. Replies: RESP3 maps come as flat [key, value, ...] lists,
    attributes are left out."""

    def __init__(self, *, requests: bool = False) -> None:
        self.requests = requests
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, bytes]]:
        self._buffer += data
        values, start = [], 0
        while start < len(self._buffer):
            try:
                value, end = self._parse_one(start)
            except _Incomplete:
                break
            if value != ():  # Redis ignores empty commands and answers none: so do we
                values.append((value, bytes(self._buffer[start:end])))
            start = end
        del self._buffer[:start]
        return values

    def _parse_one(self, start: int) -> tuple[Any, int]:
        if not self.requests:
            return _parse(self._buffer, start)
        if self._buffer[start : start + 1] == b"*":
            value, end = _parse(self._buffer, start)
            return tuple(value or ()), end
        line_end = self._buffer.find(b"\n", start)
        if line_end < 0:
            raise _Incomplete
        return tuple(bytes(self._buffer[start:line_end]).split()), line_end + 1


# ----------------------------------------------------------------------------------------------
# Rules and the event log


class Fault(enum.Enum):
    # The server applies the request; the client loses the reply and the connection:
    DROP_REPLY_AND_CLOSE = "drop reply and close"
    # The server applies it; the connection stays open and goes silent both ways (time-outs):
    DROP_REPLY_AND_HANG = "drop reply and hang"
    DELAY_REPLY = "delay reply"
    DELAY_REQUEST = "delay request"
    # The server never sees the request; the client loses the connection:
    CLOSE_BEFORE_REQUEST = "close before request"
    # The server never sees it; the proxy answers an error in its turn (READONLY ..., NOSCRIPT ...):
    ERROR_REPLY = "error reply"


REPLY_FAULTS = (Fault.DROP_REPLY_AND_CLOSE, Fault.DROP_REPLY_AND_HANG, Fault.DELAY_REPLY)


@dataclass(frozen=True)
class Request:
    args: tuple[bytes, ...]
    connection: int  # the proxy's number for the client connection, from 1

    @property
    def name(self) -> str:
        return self.args[0].decode(errors="replace").upper()


@dataclass
class Rule:
    """Fires ``fault`` on the next ``times`` requests that match ``command`` (a name, any case)
    and ``where`` (a predicate on the Request), each with ``probability`` (seeded RNG).

    ``where`` runs on the proxy's thread: keep it a pure function of the request. ``fired``
    counts the requests the rule was armed on; ``FaultProxy.fired()`` lists the faults that took
    effect (a reply fault takes effect when the reply comes back)."""

    fault: Fault
    command: str | None = None
    where: Callable[[Request], bool] | None = None
    times: int = 1
    probability: float = 1.0
    delay: float = 0.0
    error: str = ""  # for ERROR_REPLY, without the leading "-"
    seed: int = 0
    fired: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.command = self.command.upper() if self.command else None
        self.rng = random.Random(self.seed)

    def fires_on(self, request: Request) -> bool:
        if self.fired >= self.times:
            return False
        if self.command is not None and request.name != self.command:
            return False
        if self.where is not None and not self.where(request):
            return False
        if self.probability < 1.0 and self.rng.random() >= self.probability:
            return False
        self.fired += 1
        return True


@dataclass(frozen=True)
class Event:
    """kind: connect, refused, unreachable, request (forwarded), reply (forwarded), fault, cut."""

    kind: str
    connection: int
    command: str = ""
    args: tuple[bytes, ...] = ()
    fault: Fault | None = None
    reply: Any = None


class _Connection:
    def __init__(self, number: int, client: asyncio.StreamWriter) -> None:
        self.number = number
        self.client = client
        self.server: asyncio.StreamWriter | None = None
        self.pending: deque[tuple[Request, Rule | None]] = deque()  # forwarded, not yet answered
        self.silent = False

    def close(self) -> None:
        for writer in (self.client, self.server):
            if writer is not None:
                writer.close()


# ----------------------------------------------------------------------------------------------
# The proxy


class FaultProxy:
    """A fault-injecting TCP proxy from 127.0.0.1:``port`` (free) to ``target_host:target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self._lock = threading.Lock()  # rules, events, counts: shared with the callers' threads
        self._rules: list[Rule] = []
        self._events: list[Event] = []
        self._forwarded: Counter[str] = Counter()
        # Touched only on the proxy's own loop:
        self._connections: dict[int, _Connection] = {}
        self._numbers = itertools.count(1)
        self._refusing = False
        self._outage_end: asyncio.TimerHandle | None = None
        self._listener: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    # -- life cycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> FaultProxy:
        self._thread.start()
        self._listener = self._call(asyncio.start_server(self._serve, self.host, 0), timeout)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the listener, and join the thread; bounded by ``timeout``."""
        if not self._thread.is_alive():
            return
        try:
            self._call(self._shutdown(), timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the fault proxy's thread did not stop within {timeout}s")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _shutdown(self) -> None:
        if self._outage_end is not None:
            self._outage_end.cancel()
        if self._listener is not None:
            self._listener.close()
        await self._cut_all()

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        """Run ``coroutine`` on the proxy's loop and wait for it (never from that loop)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # -- rules -----------------------------------------------------------------------------------

    def add_rule(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def drop_reply(self, command: str | None = None, **options: Any) -> Rule:
        """Forward the request, drop its reply, close the client connection."""
        return self.add_rule(Rule(Fault.DROP_REPLY_AND_CLOSE, command, **options))

    def hang_reply(self, command: str | None = None, **options: Any) -> Rule:
        """Forward the request, drop its reply, keep the connection open and silent."""
        return self.add_rule(Rule(Fault.DROP_REPLY_AND_HANG, command, **options))

    def delay_reply(self, command: str | None, delay: float, **options: Any) -> Rule:
        return self.add_rule(Rule(Fault.DELAY_REPLY, command, delay=delay, **options))

    def delay_request(self, command: str | None, delay: float, **options: Any) -> Rule:
        return self.add_rule(Rule(Fault.DELAY_REQUEST, command, delay=delay, **options))

    def close_before(self, command: str | None = None, **options: Any) -> Rule:
        """Close the client connection instead of forwarding the request."""
        return self.add_rule(Rule(Fault.CLOSE_BEFORE_REQUEST, command, **options))

    def error_reply(self, command: str | None, error: str, **options: Any) -> Rule:
        """Answer the request with ``-error`` in its turn, instead of forwarding it."""
        return self.add_rule(Rule(Fault.ERROR_REPLY, command, error=error, **options))

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def _rule_for(self, request: Request) -> Rule | None:
        with self._lock:
            return next((rule for rule in self._rules if rule.fires_on(request)), None)

    # -- connections -----------------------------------------------------------------------------

    def cut_all(self) -> int:
        """Close every current connection now; returns how many there were."""
        return self._call(self._cut_all())

    def refuse_new(self, refuse: bool) -> None:
        """Reset (RST) every new connection while ``refuse`` holds; current ones are untouched."""
        self._call(self._set_refusing(refuse))

    def outage(self, seconds: float) -> None:
        """Cut every connection and refuse new ones for ``seconds``; returns at once."""
        self._call(self._outage(seconds))

    async def _cut_all(self) -> int:
        connections = list(self._connections.values())
        for connection in connections:
            self._log(Event("cut", connection.number))
            connection.close()
        return len(connections)

    async def _set_refusing(self, refuse: bool) -> None:
        if self._outage_end is not None:
            self._outage_end.cancel()
            self._outage_end = None
        self._refusing = refuse

    async def _outage(self, seconds: float) -> None:
        await self._set_refusing(True)
        await self._cut_all()
        self._outage_end = self._loop.call_later(seconds, setattr, self, "_refusing", False)

    # -- the event log ---------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def fired(self, fault: Fault | None = None, command: str | None = None) -> list[Event]:
        """The faults that took effect, optionally of one kind and on one command."""
        return [
            event
            for event in self.events
            if event.kind == "fault"
            and (fault is None or event.fault is fault)
            and (command is None or event.command == command.upper())
        ]

    @property
    def forwarded(self) -> Counter[str]:
        """Requests forwarded to the server, per command name."""
        with self._lock:
            return Counter(self._forwarded)

    def clear_log(self) -> None:
        with self._lock:
            self._events.clear()
            self._forwarded.clear()

    def _log(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            if event.kind == "request":
                self._forwarded[event.command] += 1

    # -- forwarding ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(next(self._numbers), writer)
        if self._refusing:
            self._log(Event("refused", connection.number))
            _reset(writer)
            return
        try:
            server_reader, connection.server = await asyncio.wait_for(
                asyncio.open_connection(*self.target), timeout=5
            )
        except (OSError, asyncio.TimeoutError):
            self._log(Event("unreachable", connection.number))
            _reset(writer)
            return
        self._connections[connection.number] = connection
        self._log(Event("connect", connection.number))
        pumps = [
            asyncio.ensure_future(self._pump_requests(reader, connection)),
            asyncio.ensure_future(self._pump_replies(server_reader, connection)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:  # either side gone (or a fault closed it): the whole connection goes
            connection.close()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            del self._connections[connection.number]

    async def _pump_requests(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        stream, server = RespStream(requests=True), connection.server
        assert server is not None
        while data := await reader.read(65536):
            for args, raw in stream.feed(data):
                if connection.silent:
                    continue
                request = Request(args, connection.number)
                rule = self._rule_for(request)
                fault = rule.fault if rule else None
                if fault in (Fault.CLOSE_BEFORE_REQUEST, Fault.DELAY_REQUEST, Fault.ERROR_REPLY):
                    self._log(Event("fault", connection.number, request.name, args, fault))
                if fault is Fault.CLOSE_BEFORE_REQUEST:
                    return
                if rule is not None and fault is Fault.DELAY_REQUEST:
                    await server.drain()
                    await asyncio.sleep(rule.delay)
                if fault is Fault.ERROR_REPLY:  # in its turn: after the replies still due
                    connection.pending.append((request, rule))
                    self._write_injected(connection)
                    continue
                connection.pending.append((request, rule if fault in REPLY_FAULTS else None))
                self._log(Event("request", connection.number, request.name, args))
                server.write(raw)  # after the log: whoever sees the effect finds it logged
            await server.drain()

    async def _pump_replies(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        stream, client = RespStream(), connection.client
        while data := await reader.read(65536):
            for reply, raw in stream.feed(data):
                if connection.silent:
                    continue
                if isinstance(reply, Push) or not connection.pending:
                    client.write(raw)
                    continue
                request, rule = connection.pending[0]  # popped once written: see _write_injected
                fault = rule.fault if rule else None
                number, name, args = connection.number, request.name, request.args
                if fault is not None:
                    self._log(Event("fault", number, name, args, fault, reply))
                if fault is Fault.DROP_REPLY_AND_CLOSE:
                    return  # the replies before it are written: close() sends them first
                if fault is Fault.DROP_REPLY_AND_HANG:
                    connection.silent = True
                    continue
                if rule is not None and fault is Fault.DELAY_REPLY:
                    await client.drain()
                    await asyncio.sleep(rule.delay)
                connection.pending.popleft()
                self._log(Event("reply", number, name, args, reply=reply))
                client.write(raw)
                self._write_injected(connection)
            await client.drain()

    @staticmethod
    def _write_injected(connection: _Connection) -> None:
        """Send the proxy's own error replies that are next in line."""
        while connection.pending:
            _, rule = connection.pending[0]
            if rule is None or rule.fault is not Fault.ERROR_REPLY:
                return
            connection.pending.popleft()
            connection.client.write(b"-" + rule.error.encode() + b"\r\n")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a refused or crashed peer would."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ----------------------------------------------------------------------------------------------
# Servers to hurt


def wait_until(condition: Callable[[], T], timeout: float, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; AssertionError at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout}s: {condition}")
        time.sleep(interval)


def answering_run_id(port: int) -> str | None:
    """The server's run_id when it answers commands (not LOADING), else None."""
    client = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, retry=None)
    try:
        client.ping()
        return str(client.info("server")["run_id"])
    except redis.RedisError:
        return None
    finally:
        client.close()


def start_fault_server() -> RunningServer:
    """A server that allows ``DEBUG SLEEP`` (and the rest of DEBUG) from 127.0.0.1."""
    args = ["--enable-debug-command", "local"]
    return start_container(REDIS, args) if use_docker() else start_process(REDIS, args)


class KillableServer:
    """A server that persists every write before answering it (``appendonly yes``,
    ``appendfsync always``) into a host directory, so that after ``kill()`` (SIGKILL: a process
    by pid, a container by ``docker kill --signal KILL``) ``restart()`` brings it back on the
    same port with the same data."""

    persist = ("--appendonly", "yes", "--appendfsync", "always")

    def __init__(self) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="atomic-chat-store-killable-")
        self.port = free_port()
        self.docker = use_docker()
        self._running: RunningServer | None = None
        self._run_id: str | None = None
        self._pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> KillableServer:
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        start = start_container if self.docker else start_process
        self._running = start(REDIS, self.persist, port=self.port, data_dir=self.data_dir)
        with redis.Redis(port=self.port) as client:
            info = client.info("server")
        self._run_id, self._pid = info["run_id"], int(info["process_id"])

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the server; returns once its port no longer answers."""
        assert self._running is not None, "not started"
        if self.docker:
            self._running.handle.get_wrapped_container().kill(signal="KILL")
        else:
            assert self._pid is not None
            os.kill(self._pid, signal.SIGKILL)
            self._running.stop()  # reaps the process; the data directory is ours, it stays
        wait_until(lambda: answering_run_id(self.port) is None, timeout)

    def restart(self, timeout: float = 20.0) -> None:
        """Start the server again on the same port and data; returns once it answers."""
        assert self._running is not None, "not started"
        previous = self._run_id
        if self.docker:
            self._running.handle.get_wrapped_container().start()
        else:
            self._launch()  # the launcher waits until it answers

        def new_run_id() -> str | None:
            run_id = answering_run_id(self.port)
            return run_id if run_id != previous else None

        self._run_id = wait_until(new_run_id, timeout)

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KillableServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def memory_limit(url: str, maxmemory: int | str, policy: str = "noeviction") -> Iterator[None]:
    """``maxmemory`` and ``maxmemory-policy`` set for the block, then restored. A ``maxmemory``
    under ``used_memory`` (``1`` does it) makes every write that may grow memory fail with OOM."""
    client = redis.Redis.from_url(url)
    try:
        saved = client.config_get("maxmemory-policy")
        saved.update(client.config_get("maxmemory"))
        client.config_set("maxmemory-policy", policy)
        client.config_set("maxmemory", maxmemory)
        try:
            yield
        finally:
            client.config_set("maxmemory", saved["maxmemory"])
            client.config_set("maxmemory-policy", saved["maxmemory-policy"])
    finally:
        client.close()


@contextlib.contextmanager
def acl_user(url: str, rules: Sequence[str] = ("+@all",)) -> Iterator[str]:
    """A user with access to every key and channel and the command ``rules`` (ACL SETUSER
    syntax: ``("+@all", "-linsert")``, or an exact allow-list ``("+get", "+set")``); yields its
    URL, deletes the user afterwards."""
    name, password = f"test-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    admin = redis.Redis.from_url(url)
    try:
        access = ("reset", "on", f">{password}", "~*", "&*")
        admin.execute_command("ACL", "SETUSER", name, *access, *rules)
        parts = urlsplit(url)
        netloc = f"{name}:{password}@{parts.hostname}:{parts.port}"
        try:
            yield urlunsplit(parts._replace(netloc=netloc))
        finally:
            admin.execute_command("ACL", "DELUSER", name)
    finally:
        admin.close()


# ----------------------------------------------------------------------------------------------
# Fixtures (imported by tests/conftest.py)


def _started(start: Callable[[], T]) -> T:
    try:
        return start()
    except ServerUnavailable as error:
        pytest.fail(f"no real Redis server for the fault tests: {error}", pytrace=False)


@pytest.fixture(scope="module")
def fault_server() -> Iterator[RunningServer]:
    """One server per test module for fault tests, with DEBUG allowed from 127.0.0.1.
    Tests leave it as they found it (``fault_redis`` empties it after each test)."""
    server = _started(start_fault_server)
    yield server
    server.stop()


@pytest.fixture
def fault_redis(fault_server: RunningServer) -> Iterator[redis.Redis]:
    """A direct client of ``fault_server`` (no proxy); the server is emptied after the test."""
    client = redis.Redis.from_url(fault_server.url)
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def fault_proxy(fault_server: RunningServer) -> Iterator[FaultProxy]:
    """A FaultProxy in front of ``fault_server``, stopped after the test."""
    with FaultProxy(fault_server.port) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def killable_server() -> Iterator[KillableServer]:
    """One server per test module that tests may kill -9 and restart; it keeps its data across
    restarts, so tests empty it themselves."""
    server = _started(lambda: KillableServer().start())
    yield server
    server.stop()
