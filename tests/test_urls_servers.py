"""Factory-built clients against real servers, for every kind of URL: a Sentinel setup (one
master, two sentinels) and a Cluster (three masters, no replicas), both small and started here on
loopback by this module, and stopped (by pid) when it ends.

Each URL form is checked with SET/GET, sync and async (the async ones inside the running loop of
the test), and the value is read back on the data node itself, so a client that wrote somewhere
else (another db, another server) fails. These checks may later move onto the shared topology
fixtures; they are kept small and self-contained until then.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
import redis
import redis.asyncio
import redis.cluster
import redis.sentinel

from atomic_chat_store.connection import async_client_factory, sync_client_factory
from atomic_chat_store.server import RedisServer, ServerStartError, find_redis_server, free_port

SERVICE = "mymaster"
# The master's default user and the sentinels share one password: the seed's case. The seed does
# not percent-decode passwords, so this one needs no encoding.
SHARED_PASSWORD = "shared-secret"
APP_USER, APP_PASSWORD = "app", "p@ss:w/rd?#%"  # a named ACL user on the master only
CLUSTER_PASSWORD = "cluster pw"
STARTUP_TIMEOUT = 20.0


def wait_until(check: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT) -> None:
    """Poll ``check`` until it is true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout}s")


def closed_port() -> int:
    """A loopback port nothing listens on: a sentinel or node that is down."""
    return free_port()


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1, ::1 and localhost."""

    ca: str
    cert: str
    key: str

    def server_args(self, tls_port: int) -> list[str]:
        return [
            "--tls-port", str(tls_port), "--tls-cert-file", self.cert,
            "--tls-key-file", self.key, "--tls-ca-cert-file", self.ca,
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def config(self, tls_port: int) -> str:
        """The same, as config file lines, with no plain port: TLS or nothing."""
        args = self.server_args(tls_port)
        pairs = zip(args[::2], args[1::2], strict=True)
        return "port 0\n" + "".join(f"{name[2:]} {value}\n" for name, value in pairs)

    @property
    def query(self) -> str:
        return f"ssl_ca_certs={quote(self.ca, safe='/')}"


@pytest.fixture(scope="module")
def tls_files() -> Iterator[TlsFiles]:
    import trustme

    directory = tempfile.mkdtemp(prefix="atomic-chat-store-tls-")
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "::1", "localhost")
    files = TlsFiles(*(os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem")))
    ca.cert_pem.write_to_path(files.ca)
    certificate.cert_chain_pems[0].write_to_path(files.cert)
    certificate.private_key_pem.write_to_path(files.key)
    try:
        yield files
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start_server(extra_args: Callable[[], list[str]], attempts: int = 5) -> RedisServer:
    """A launcher-started server whose extra ports (TLS, cluster bus) are picked per attempt."""
    for attempt in range(attempts):
        try:
            return RedisServer(extra_args=extra_args()).start()
        except ServerStartError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class Sentinel:
    """One ``redis-server --sentinel`` process. The package's launcher cannot start one: a
    sentinel needs its config file as redis-server's first argument, and it rewrites it."""

    port: int
    directory: str
    process: subprocess.Popen[bytes]
    tls: TlsFiles | None = None

    @classmethod
    def start(cls, master_port: int, tls: TlsFiles | None = None, attempts: int = 5) -> Sentinel:
        for attempt in range(attempts):
            port = free_port()
            directory = tempfile.mkdtemp(prefix="atomic-chat-store-sentinel-")
            config = os.path.join(directory, "sentinel.conf")
            with open(config, "w", encoding="utf-8") as file:
                file.write(
                    (
                        f"port {port}\n"
                        if tls is None
                        else tls.config(port) + "tls-replication yes\n"
                    )
                    + "bind 127.0.0.1 ::1\n"
                    f"dir {directory}\n"
                    f"logfile {os.path.join(directory, 'sentinel.log')}\n"
                    f'requirepass "{SHARED_PASSWORD}"\n'
                    f'sentinel sentinel-pass "{SHARED_PASSWORD}"\n'
                    f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
                    f'sentinel auth-pass {SERVICE} "{SHARED_PASSWORD}"\n'
                    f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                    f"sentinel failover-timeout {SERVICE} 3000\n"
                )
            process = subprocess.Popen(
                [find_redis_server(), config, "--sentinel"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            sentinel = cls(port, directory, process, tls)
            try:
                sentinel.wait_ready()
                return sentinel
            except (TimeoutError, RuntimeError):
                sentinel.stop()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def wait_ready(self) -> None:
        tls = {} if self.tls is None else {"ssl": True, "ssl_ca_certs": self.tls.ca}
        client = redis.Redis(
            "127.0.0.1", self.port, password=SHARED_PASSWORD, socket_timeout=1, **tls
        )

        def knows_the_master() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"sentinel on port {self.port} exited")
            state = client.sentinel_master(SERVICE)
            return bool(state["is_master"]) and not state["is_sdown"]

        try:
            wait_until(knows_the_master, f"sentinel on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class SentinelSetup:
    master: RedisServer
    sentinels: list[Sentinel] = field(default_factory=list)

    def master_client(self, db: int) -> redis.Redis:
        """A plain client on the master's plain port (it has one even when TLS is tested)."""
        return redis.Redis(self.master.host, self.master.port, db=db, password=SHARED_PASSWORD)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.master.stop()


def start_sentinel_setup(tls: TlsFiles | None) -> SentinelSetup:
    """One master (with a TLS port, monitored on it, when ``tls``) and two sentinels."""
    started = time.monotonic()
    tls_port = [0]

    def master_args() -> list[str]:
        if tls is None:
            return []
        tls_port[0] = free_port()
        return tls.server_args(tls_port[0])

    setup = SentinelSetup(start_server(master_args))
    try:
        with redis.Redis(setup.master.host, setup.master.port) as admin:
            # Set after start: the launcher's readiness probe sends no password.
            admin.acl_setuser(
                APP_USER, enabled=True, passwords=[f"+{APP_PASSWORD}"], keys=["*"],
                channels=["*"], commands=["+@all"],
            )  # fmt: skip
            admin.config_set("requirepass", SHARED_PASSWORD)
        monitored = setup.master.port if tls is None else tls_port[0]
        assert monitored is not None
        setup.sentinels = [Sentinel.start(monitored, tls) for _ in range(2)]
        print(f"sentinel setup (TLS: {tls is not None}) ready in {time.monotonic() - started:.2f}s")
        return setup
    except BaseException:
        setup.stop()
        raise


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[SentinelSetup]:
    setup = start_sentinel_setup(tls=None)
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture(scope="module")
def tls_sentinel_setup(tls_files: TlsFiles) -> Iterator[SentinelSetup]:
    setup = start_sentinel_setup(tls=tls_files)
    try:
        yield setup
    finally:
        setup.stop()


@dataclass
class ClusterSetup:
    nodes: list[RedisServer]

    @property
    def ports(self) -> list[int]:
        """The plain ports."""
        return [node.port for node in self.nodes if node.port is not None]

    def client_ports(self, tls: TlsFiles | None) -> list[int]:
        """The ports clients are given: the TLS ones when ``tls``."""
        if tls is None:
            return self.ports
        return [
            int(node.extra_args[node.extra_args.index("--tls-port") + 1]) for node in self.nodes
        ]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node_holding(self, key: str) -> redis.Redis:
        """A plain client on the primary that owns ``key``'s slot: the others answer MOVED."""
        for node in self.nodes:
            client = redis.Redis(node.host, node.port, password=CLUSTER_PASSWORD)
            try:
                client.exists(key)
                return client
            except redis.exceptions.MovedError:
                client.close()
        raise AssertionError(f"no node holds {key!r}")


def start_cluster(tls: TlsFiles | None) -> ClusterSetup:
    """Three masters, no replicas; with ``tls``, every node and the bus on TLS (the plain ports
    stay, for the launcher's probe and the checks)."""
    started = time.monotonic()

    def node_args() -> list[str]:
        args = [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(free_port()),  # explicit: port + 10000 may be over 65535
            "--cluster-node-timeout", "5000",
        ]  # fmt: skip
        if tls is not None:
            args += [*tls.server_args(free_port()), "--tls-cluster", "yes"]
        return args

    setup = ClusterSetup([])
    try:
        setup.nodes = [start_server(node_args) for _ in range(3)]
        for node in setup.nodes:
            with redis.Redis(node.host, node.port) as admin:
                admin.config_set("requirepass", CLUSTER_PASSWORD)
        redis_cli = shutil.which("redis-cli")
        assert redis_cli is not None, "redis-cli is needed to create the cluster"
        tls_cli = [] if tls is None else ["--tls", "--cacert", tls.ca]
        subprocess.run(
            [redis_cli, *tls_cli, "--cluster", "create",
             *(f"127.0.0.1:{port}" for port in setup.client_ports(tls)), "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": CLUSTER_PASSWORD},
            check=True, capture_output=True, timeout=STARTUP_TIMEOUT,
        )  # fmt: skip
        for port in setup.ports:
            with redis.Redis("127.0.0.1", port, password=CLUSTER_PASSWORD) as node_client:
                wait_until(
                    lambda c=node_client: (
                        c.execute_command("CLUSTER INFO")["cluster_state"] == "ok"
                    ),
                    f"cluster_state:ok on {port}",
                )
        print(f"cluster (TLS: {tls is not None}) ready in {time.monotonic() - started:.2f}s")
        return setup
    except BaseException:
        setup.stop()
        raise


@pytest.fixture(scope="module")
def cluster_setup() -> Iterator[ClusterSetup]:
    setup = start_cluster(tls=None)
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture(scope="module")
def tls_cluster_setup(tls_files: TlsFiles) -> Iterator[ClusterSetup]:
    setup = start_cluster(tls=tls_files)
    try:
        yield setup
    finally:
        setup.stop()


# --- URL forms -------------------------------------------------------------------------------

APP_CREDENTIALS = f"{quote(APP_USER, safe='')}:{quote(APP_PASSWORD, safe='')}"


def sentinel_urls(setup: SentinelSetup) -> dict[str, tuple[str, int]]:
    """name -> (URL, the db it must write to)."""
    first, second = (sentinel.port for sentinel in setup.sentinels)
    shared = quote(SHARED_PASSWORD, safe="")
    return {
        # The seed's form: one sentinel, the same password for the master and the sentinel.
        "seed form": (f"redis+sentinel://:{shared}@127.0.0.1:{first}/{SERVICE}/2", 2),
        # Several sentinels, the first one down, one by IPv6; the master's own ACL user, and the
        # sentinels' password as a query parameter.
        "several sentinels, one down": (
            f"redis+sentinel://{APP_CREDENTIALS}@127.0.0.1:{closed_port()},"
            f"127.0.0.1:{first},[::1]:{second}/{SERVICE}/3?sentinel_password={shared}"
            "&socket_timeout=2&client_name=url-test",
            3,
        ),
        # The service name left out: mymaster, db 0.
        "default service name": (f"redis+sentinel://:{shared}@127.0.0.1:{second}", 0),
    }


def cluster_urls(setup: ClusterSetup) -> dict[str, str]:
    password = quote(CLUSTER_PASSWORD, safe="")
    ports = setup.ports
    return {
        "every node": "redis+cluster://:{}@{}".format(
            password, ",".join(f"127.0.0.1:{port}" for port in ports)
        ),
        "one node down, then one up, /0": (
            f"redis+cluster://:{password}@127.0.0.1:{closed_port()},127.0.0.1:{ports[1]}/0"
            "?socket_timeout=2"
        ),
    }


SENTINEL_FORMS = ["seed form", "several sentinels, one down", "default service name"]
CLUSTER_FORMS = ["every node", "one node down, then one up, /0"]


def unique_key() -> str:
    return f"url-test:{uuid.uuid4().hex}"


def sentinel_connections(client: redis.Redis | redis.asyncio.Redis) -> list[object]:
    """The connections the client's own Sentinel object opened to the sentinels."""
    manager = client.connection_pool.sentinel_manager
    return [
        connection
        for sentinel in manager.sentinels
        for connection in sentinel.connection_pool._available_connections
    ]


# --- Sentinel --------------------------------------------------------------------------------


@pytest.mark.parametrize("form", SENTINEL_FORMS)
def test_sync_sentinel_client_sets_and_gets(sentinel_setup: SentinelSetup, form: str) -> None:
    url, db = sentinel_urls(sentinel_setup)[form]
    key = unique_key()
    client = sync_client_factory(url)()
    try:
        assert isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool)
        assert client.set(key, b"sync")
        assert client.get(key) == b"sync"
        assert any(connection.is_connected for connection in sentinel_connections(client))
    finally:
        client.close()
    # Closing the client closes its sentinels' connections too.
    assert not any(connection.is_connected for connection in sentinel_connections(client))
    with sentinel_setup.master_client(db) as master:
        assert master.get(key) == b"sync"
        master.delete(key)


@pytest.mark.parametrize("form", SENTINEL_FORMS)
async def test_async_sentinel_client_sets_and_gets_inside_a_running_loop(
    sentinel_setup: SentinelSetup, form: str
) -> None:
    url, db = sentinel_urls(sentinel_setup)[form]
    key = unique_key()
    client = async_client_factory(url)()  # built inside the running loop: no asyncio.run()
    try:
        assert await client.set(key, b"async")
        assert await client.get(key) == b"async"
        assert any(connection.is_connected for connection in sentinel_connections(client))
    finally:
        await client.aclose()
    assert not any(connection.is_connected for connection in sentinel_connections(client))
    with sentinel_setup.master_client(db) as master:
        assert master.get(key) == b"async"
        master.delete(key)


def test_sentinel_credentials_default_to_the_masters(sentinel_setup: SentinelSetup) -> None:
    # Without sentinel_password, the sentinels are sent the master's credentials: the user
    # "app" exists on the master only, so no sentinel lets the client in.
    first = sentinel_setup.sentinels[0].port
    client = sync_client_factory(
        f"redis+sentinel://{APP_CREDENTIALS}@127.0.0.1:{first}/{SERVICE}"
    )()
    try:
        with pytest.raises(redis.sentinel.MasterNotFoundError, match=r"(?i)auth|password"):
            client.ping()
    finally:
        client.close()


def test_the_seeds_client_reads_what_ours_wrote_through_the_same_url(
    sentinel_setup: SentinelSetup,
) -> None:
    from llama_index.storage.chat_store.redis import RedisChatStore as SeedChatStore

    url, db = sentinel_urls(sentinel_setup)["seed form"]
    key = unique_key()
    # The seed's own sync path for the URL. Its constructor also builds an async client with
    # asyncio.run(), which leaves a connection open on a closed loop: not called here.
    seed_store = SeedChatStore.__new__(SeedChatStore)
    seed = seed_store._get_client(url)
    ours = sync_client_factory(url)()
    try:
        ours.set(key, b"same place")
        assert seed.get(key) == b"same place"
        assert int(seed.connection_pool.connection_kwargs["db"]) == db
    finally:
        ours.delete(key)
        ours.close()
        seed.close()
        seed.connection_pool.sentinel_manager.close()


# --- Cluster ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", CLUSTER_FORMS)
def test_sync_cluster_client_sets_and_gets(cluster_setup: ClusterSetup, form: str) -> None:
    url = cluster_urls(cluster_setup)[form]
    keys = [unique_key() for _ in range(8)]  # spread over the three nodes' slots
    client = sync_client_factory(url)()  # RedisCluster connects here
    try:
        assert isinstance(client, redis.cluster.RedisCluster)
        for key in keys:
            assert client.set(key, key)
            assert client.get(key) == key.encode()
    finally:
        client.close()
    for key in keys:
        with cluster_setup.node_holding(key) as node:
            assert node.get(key) == key.encode()
            node.delete(key)


@pytest.mark.parametrize("form", CLUSTER_FORMS)
async def test_async_cluster_client_sets_and_gets_inside_a_running_loop(
    cluster_setup: ClusterSetup, form: str
) -> None:
    url = cluster_urls(cluster_setup)[form]
    keys = [unique_key() for _ in range(8)]
    client = async_client_factory(url)()
    try:
        assert isinstance(client, redis.asyncio.cluster.RedisCluster)
        for key in keys:
            assert await client.set(key, key)
            assert await client.get(key) == key.encode()
    finally:
        await client.aclose()
    for key in keys:
        with cluster_setup.node_holding(key) as node:
            assert node.get(key) == key.encode()
            node.delete(key)


# --- One server: TCP and Unix socket ---------------------------------------------------------


@pytest.fixture(scope="module")
def unix_server() -> Iterator[RedisServer]:
    directory = tempfile.mkdtemp(prefix="atomic-chat-store-sock-")
    server = RedisServer(extra_args=["--unixsocket", os.path.join(directory, "redis.sock")])
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_plain_and_unix_urls_still_work(unix_server: RedisServer) -> None:
    socket_path = next(arg for arg in unix_server.extra_args if arg.endswith(".sock"))
    key = unique_key()
    for url in (
        f"redis://127.0.0.1:{unix_server.port}/4",
        f"unix://{socket_path}?db=4",
    ):
        client = sync_client_factory(url)()
        try:
            assert client.set(key, url)
        finally:
            client.close()
        with redis.Redis(unix_server.host, unix_server.port, db=4) as direct:
            assert direct.get(key) == url.encode()


async def test_async_plain_and_unix_urls_still_work(unix_server: RedisServer) -> None:
    socket_path = next(arg for arg in unix_server.extra_args if arg.endswith(".sock"))
    key = unique_key()
    for url in (
        f"redis://127.0.0.1:{unix_server.port}/5",
        f"unix://{socket_path}?db=5",
    ):
        client = async_client_factory(url)()
        try:
            assert await client.set(key, url)
        finally:
            await client.aclose()
        with redis.Redis(unix_server.host, unix_server.port, db=5) as direct:
            assert direct.get(key) == url.encode()


# --- TLS: rediss+sentinel:// (TLS to the master and to the sentinels) and rediss+cluster:// ---


def tls_sentinel_url(setup: SentinelSetup, tls: TlsFiles) -> str:
    first, second = (sentinel.port for sentinel in setup.sentinels)  # TLS-only ports
    return (
        f"rediss+sentinel://:{SHARED_PASSWORD}@127.0.0.1:{first},[::1]:{second}/{SERVICE}/1"
        f"?{tls.query}"
    )


def test_sync_tls_sentinel_client_sets_and_gets(
    tls_sentinel_setup: SentinelSetup, tls_files: TlsFiles
) -> None:
    key = unique_key()
    client = sync_client_factory(tls_sentinel_url(tls_sentinel_setup, tls_files))()
    try:
        assert client.set(key, b"tls")
        assert client.get(key) == b"tls"
        # The master was reached on its TLS port, the one the sentinels monitor.
        assert client.connection_pool.get_master_address()[1] != tls_sentinel_setup.master.port
    finally:
        client.close()
    with tls_sentinel_setup.master_client(1) as master:
        assert master.get(key) == b"tls"
        master.delete(key)


async def test_async_tls_sentinel_client_sets_and_gets(
    tls_sentinel_setup: SentinelSetup, tls_files: TlsFiles
) -> None:
    key = unique_key()
    client = async_client_factory(tls_sentinel_url(tls_sentinel_setup, tls_files))()
    try:
        assert await client.set(key, b"tls")
        assert await client.get(key) == b"tls"
    finally:
        await client.aclose()
    with tls_sentinel_setup.master_client(1) as master:
        assert master.get(key) == b"tls"
        master.delete(key)


def test_tls_sentinels_refuse_a_client_without_tls(
    tls_sentinel_setup: SentinelSetup, tls_files: TlsFiles
) -> None:
    # The same URL without TLS: the sentinels have no plain port, nothing answers.
    url = tls_sentinel_url(tls_sentinel_setup, tls_files).replace("rediss+", "redis+", 1)
    client = sync_client_factory(url.partition("?")[0], socket_timeout=2)()
    try:
        with pytest.raises(redis.sentinel.MasterNotFoundError):
            client.ping()
    finally:
        client.close()


def tls_cluster_url(setup: ClusterSetup, tls: TlsFiles) -> str:
    nodes = ",".join(f"127.0.0.1:{port}" for port in setup.client_ports(tls))
    return f"rediss+cluster://:{quote(CLUSTER_PASSWORD, safe='')}@{nodes}?{tls.query}"


def test_sync_tls_cluster_client_sets_and_gets(
    tls_cluster_setup: ClusterSetup, tls_files: TlsFiles
) -> None:
    keys = [unique_key() for _ in range(8)]
    client = sync_client_factory(tls_cluster_url(tls_cluster_setup, tls_files))()
    try:
        assert {node.port for node in client.get_nodes()} == set(
            tls_cluster_setup.client_ports(tls_files)
        )  # every node reached on its TLS port
        for key in keys:
            assert client.set(key, key)
            assert client.get(key) == key.encode()
    finally:
        client.close()
    for key in keys:
        with tls_cluster_setup.node_holding(key) as node:
            assert node.get(key) == key.encode()
            node.delete(key)


async def test_async_tls_cluster_client_sets_and_gets(
    tls_cluster_setup: ClusterSetup, tls_files: TlsFiles
) -> None:
    keys = [unique_key() for _ in range(8)]
    client = async_client_factory(tls_cluster_url(tls_cluster_setup, tls_files))()
    try:
        for key in keys:
            assert await client.set(key, key)
            assert await client.get(key) == key.encode()
        assert {node.port for node in client.get_nodes()} == set(
            tls_cluster_setup.client_ports(tls_files)
        )
    finally:
        await client.aclose()
    for key in keys:
        with tls_cluster_setup.node_holding(key) as node:
            assert node.get(key) == key.encode()
            node.delete(key)
