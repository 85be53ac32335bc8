"""Real Redis servers for the tests: a testcontainers container where a Docker engine answers,
else a redis-server process started by the package's own launcher.

``ATOMIC_CHAT_STORE_TEST_BACKEND`` picks one: ``docker``, ``process`` or ``auto`` (the default:
docker when an engine answers, else process). Nothing here falls back to a fake: when no real
server can be started, ``ServerUnavailable`` says why and how to get one, and the run fails.
Sentinel and Cluster topologies are meant to be added here as more ``start_*`` functions that
return the same ``RunningServer`` shape.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from atomic_chat_store.server import (
    RedisServer,
    ServerNotFoundError,
    ServerStartError,
    free_port,
    server_arguments,
)

# Ryuk (testcontainers' reaper) runs from an image that cannot be pulled here; the fixtures stop
# their containers themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

BACKEND_ENV = "ATOMIC_CHAT_STORE_TEST_BACKEND"
IMAGE_ENV = "ATOMIC_CHAT_STORE_REDIS_IMAGE"
DEFAULT_IMAGE = "redis:7.4"  # the official image; CI builds its own offline and sets the variable


class ServerUnavailable(RuntimeError):
    """No real Redis server could be started for the tests."""


@dataclass
class RunningServer:
    url: str
    backend: str
    stop: Callable[[], None]
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


READY_LINE = "Ready to accept connections"


def start_container(
    extra_args: Sequence[str] = (), *, port: int | None = None, data_dir: str | None = None
) -> RunningServer:
    """``extra_args`` go on redis-server's command line; ``data_dir``, a host directory, is
    mounted as the server's working directory /data and written as this machine's user."""
    from testcontainers.core.container import DockerContainer

    image = os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)
    port = port or free_port()
    # Host networking: the engine here runs with --bridge=none, and every address stays 127.0.0.1.
    # Spelled network="host", not network_mode="host": testcontainers adds its own guess of a
    # network unless "network" is given, and docker-py lets that guess replace network_mode.
    kwargs: dict[str, Any] = {"network": "host"}
    command = ["redis-server", *server_arguments("127.0.0.1", port), *extra_args]
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
            f"docker/build-redis-image.sh and set ${IMAGE_ENV}, or set {BACKEND_ENV}=process"
            + (f"\ncontainer log:\n{logs}" if logs else "")
        ) from error
    url = f"redis://127.0.0.1:{port}/0"
    return RunningServer(url, f"docker:{image}", container.stop, container)


def _start_and_wait(container: Any, timeout: int) -> None:
    """Start the container and wait for redis-server's ready line; fail at once if it exits."""
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
    extra_args: Sequence[str] = (), *, port: int | None = None, data_dir: str | None = None
) -> RunningServer:
    """The same server as a process; ``data_dir`` becomes its working directory."""
    if data_dir is not None:
        extra_args = [*extra_args, "--dir", data_dir]  # after the launcher's own --dir: it wins
    try:
        server = RedisServer(port=port, extra_args=extra_args).start()
    except (ServerNotFoundError, ServerStartError) as error:
        raise ServerUnavailable(
            f"no Docker engine answers and no redis-server process could be started: {error}"
        ) from error
    return RunningServer(server.url, f"process:{server.binary}", server.stop, server)


_shared: RunningServer | None = None
_holders = 0


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RunningServer]:
    """The session's server, one per pytest process: tests/ and benchmarks/ both import this
    fixture into their conftest, and share the server it starts."""
    global _shared, _holders
    if _shared is None:
        try:
            _shared = start_standalone()
        except ServerUnavailable as error:
            pytest.fail(f"no real Redis server for the tests: {error}", pytrace=False)
    _holders += 1
    try:
        yield _shared
    finally:
        _holders -= 1
        if _holders == 0:
            _shared.stop()
            _shared = None


def use_docker() -> bool:
    """The backend choice of ``$ATOMIC_CHAT_STORE_TEST_BACKEND``: True for a container."""
    backend = os.environ.get(BACKEND_ENV, "auto")
    if backend not in ("docker", "process", "auto"):
        raise ServerUnavailable(f"{BACKEND_ENV}={backend!r}: use docker, process or auto")
    return backend == "docker" or (backend == "auto" and docker_engine_answers())


def start_standalone(extra_args: Sequence[str] = ()) -> RunningServer:
    """One server on the chosen backend; ``extra_args`` go on redis-server's command line."""
    if use_docker():
        return start_container(extra_args)
    return start_process(extra_args)
