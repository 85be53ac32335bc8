"""A private redis-server process: the tests' fallback where no Docker engine answers, and the
default server of ``atomic-chat-store bench``.

It listens on a free 127.0.0.1 port, persists nothing, keeps its files in a temporary directory,
and ``stop()`` (also on ``with`` exit, Ctrl-C included, and at interpreter exit) ends it and
removes the directory. The binary is ``$ATOMIC_CHAT_STORE_REDIS_SERVER`` or ``redis-server`` on
PATH.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType

import redis

from .errors import ChatStoreError

BINARY_ENV = "ATOMIC_CHAT_STORE_REDIS_SERVER"
HOW_TO_GET_ONE = (
    "install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), "
    f"or point ${BINARY_ENV} at a redis-server binary"
)


class ServerNotFoundError(ChatStoreError):
    """No redis-server binary to start."""


class ServerStartError(ChatStoreError):
    """redis-server was found but did not come up."""


def find_redis_server() -> str:
    """The binary to run: ``$ATOMIC_CHAT_STORE_REDIS_SERVER``, else ``redis-server`` on PATH."""
    configured = os.environ.get(BINARY_ENV)
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise ServerNotFoundError(f"${BINARY_ENV}={configured!r} is not an executable file")
        return configured
    found = shutil.which("redis-server")
    if found is None:
        raise ServerNotFoundError(f"no redis-server on PATH: {HOW_TO_GET_ONE}")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (another process may still take it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def server_arguments(host: str, port: int) -> list[str]:
    """redis-server's options for a private, throw-away server: one address, nothing persisted."""
    return ["--bind", host, "--port", str(port), "--save", "", "--appendonly", "no"]


class RedisServer:
    """One private redis-server on 127.0.0.1. ``extra_args`` go on its command line."""

    host = "127.0.0.1"

    def __init__(
        self,
        binary: str | None = None,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self.binary = binary or find_redis_server()
        self.port = port
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.directory: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServerStartError("the server is not started")
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        if self._process is not None:
            return self
        self.directory = tempfile.mkdtemp(prefix="atomic-chat-store-redis-")
        atexit.register(self.stop)
        chosen_port = self.port
        attempts = 1 if chosen_port is not None else 5
        try:
            for attempt in range(attempts):
                self.port = chosen_port if chosen_port is not None else free_port(self.host)
                try:
                    self._launch()
                    return self
                except ServerStartError:
                    self._terminate()
                    if attempt == attempts - 1:
                        raise
        except BaseException:  # Ctrl-C included: nothing is left behind
            self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self) -> None:
        assert self.directory is not None and self.port is not None
        log = os.path.join(self.directory, "redis.log")
        command = [
            self.binary,
            *server_arguments(self.host, self.port),
            "--dir", self.directory,
            "--daemonize", "no",
            "--logfile", log,
            *self.extra_args,
        ]  # fmt: skip
        process = self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.startup_timeout
        probe = redis.Redis(host=self.host, port=self.port, socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise ServerStartError(
                        f"redis-server exited with code {process.returncode}: {_tail(log)}"
                    )
                try:
                    answering_pid = int(probe.info("server")["process_id"])
                except redis.RedisError:  # not listening yet, or still loading
                    time.sleep(0.02)
                    continue
                if answering_pid != process.pid:
                    # Another server took the free port first: never hand out its URL.
                    raise ServerStartError(f"port {self.port} is served by another process")
                return
            raise ServerStartError(f"redis-server did not answer within {self.startup_timeout}s")
        finally:
            probe.close()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """End the server and remove its directory; safe to call more than once."""
        self._terminate()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        atexit.unregister(self.stop)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return " | ".join(log.read().splitlines()[-lines:])
    except OSError:
        return "(no log)"
