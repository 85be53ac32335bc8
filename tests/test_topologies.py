"""The topologies the tests run on (tests/topologies.py), checked with plain redis-py clients:
Sentinel discovery and failovers, Cluster routing, failover and slot migration, TLS
verification, and the Valkey server."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TypeVar

import pytest
import redis
from redis.sentinel import Sentinel

from servers import RunningServer
from topologies import (
    ClusterTopology,
    SentinelTopology,
    TlsServer,
    start_cluster,
    start_sentinel,
    wait_until,
)

T = TypeVar("T")

pytestmark = pytest.mark.topology

# ---------------------------------------------------------------------------------------------
# Sentinel


def sentinel_client(topology: SentinelTopology) -> Sentinel:
    return topology.redis_sentinel()


def after_a_failover(call: Callable[[], T]) -> T:
    """A master_for client's first command after a failover fails once, with ConnectionError
    (the old master's connection lost, or READONLY from it once demoted), and the client asks
    the sentinels again on the next one. Without retries configured redis-py does not resend."""
    try:
        return call()
    except redis.ConnectionError:
        return call()


def test_sentinel_discovery_reads_and_writes(sentinel_topology: SentinelTopology):
    topology = sentinel_topology
    hosts = ",".join(f"127.0.0.1:{port}" for _, port in topology.sentinel_addresses)
    assert topology.url == f"redis+sentinel://{hosts}/{topology.service}"
    assert len({port for _, port in topology.sentinel_addresses}) == 3
    sentinel = sentinel_client(topology)
    assert sentinel.discover_master(topology.service) == topology.current_master()
    assert topology.current_master() == topology.data_nodes[0].address
    assert sentinel.discover_slaves(topology.service) == [topology.data_nodes[1].address]

    master = sentinel.master_for(topology.service)
    assert master.set("greeting", "hello")
    assert master.get("greeting") == b"hello"
    topology.wait_replicas_in_sync()
    replica = sentinel.slave_for(topology.service)
    assert replica.get("greeting") == b"hello"
    with pytest.raises(redis.ReadOnlyError):
        replica.set("greeting", "refused")
    master.close()
    replica.close()


def test_a_failover_moves_the_master_and_a_client_follows(sentinel_topology: SentinelTopology):
    topology = sentinel_topology
    master = sentinel_client(topology).master_for(topology.service)
    master.set("before", "1")
    old = topology.current_master()
    replica_before = topology.replica.address

    new = topology.failover()

    assert new != old
    assert new == replica_before
    with topology.node_at(new).client() as client:
        assert client.execute_command("ROLE")[0] == b"master"
        assert client.get("before") == b"1"
    with topology.node_at(old).client() as client:
        assert client.execute_command("ROLE")[0] == b"slave"
    # The client's connection still goes to the old master, now a replica: READONLY there makes
    # redis-py drop it and ask the sentinels again.
    assert after_a_failover(lambda: master.set("after", "2"))
    assert master.connection_pool.get_master_address() == new
    with topology.node_at(new).client() as client:
        assert client.get("after") == b"2"
    master.close()


def test_one_sentinel_stopped_changes_nothing(sentinel_topology: SentinelTopology):
    topology = sentinel_topology
    master_before = topology.current_master()
    topology.stop_sentinel(0)
    stopped = topology.sentinels[0]

    def seen_down() -> bool:  # by the two others, after down-after-milliseconds
        return all("s_down" in topology.peers_seen_by(i)[stopped.port] for i in (1, 2))

    wait_until("the stopped sentinel seen down", seen_down, timeout=15)
    assert topology.current_master() == master_before

    def quorum_of_two() -> bool:
        # Polled: on a loaded machine a sentinel may miss its peer's replies for down-after
        # (1 s) and count it down for a moment; the two must still make a quorum.
        for sentinel in topology.sentinels[1:]:
            with sentinel.client() as client:
                answer = client.execute_command("SENTINEL", "CKQUORUM", topology.service)
            if not answer.startswith(b"OK 2 usable Sentinels"):
                return False
        return True

    wait_until("the two other sentinels a quorum", quorum_of_two, timeout=15)
    master = sentinel_client(topology).master_for(topology.service)  # the dead address first
    assert master.set("still", "writable")
    assert master.connection_pool.get_master_address() == master_before
    master.close()

    topology.start_sentinel(0)
    assert topology.current_master() == master_before


def test_kill_of_the_master_promotes_the_replica_and_it_rejoins_as_replica(
    sentinel_topology: SentinelTopology,
):
    topology = sentinel_topology
    master = sentinel_client(topology).master_for(topology.service)
    for index in range(50):
        master.set(f"key:{index}", index)
    topology.wait_replicas_in_sync()
    old = topology.current_master()
    old_node = topology.node_at(old)

    new = topology.kill_master()

    assert new != old and not old_node.running
    assert after_a_failover(lambda: master.get("key:49")) == b"49"
    assert master.connection_pool.get_master_address() == new
    master.set("written-after-the-kill", "yes")

    topology.restart(old_node)

    assert old_node.running and old_node.port == old[1]
    with old_node.client() as client:
        info = client.info("replication")
        assert (info["role"], info["master_port"], info["master_link_status"]) == (
            "slave",
            new[1],
            "up",
        )
        assert client.get("written-after-the-kill") == b"yes"
        assert client.get("key:0") == b"0"
    assert topology.current_master() == new
    master.close()


def test_a_killed_master_restarted_at_once_keeps_its_acknowledged_writes(
    sentinel_topology: SentinelTopology,
):
    topology = sentinel_topology
    node = topology.master
    with node.client() as client:
        for index in range(100):
            client.set(f"durable:{index}", index)
    node.kill()
    topology.restart(node)  # still the sentinels' master: it comes back as it was, from its AOF
    with node.client() as client:
        assert client.get("durable:99") == b"99"
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.dbsize() == 100


def test_a_disturbed_sentinel_topology_is_healthy_for_the_next_test(
    sentinel_topology: SentinelTopology,
):
    # Runs after the tests above: whatever they did, this one starts from a healthy topology.
    topology = sentinel_topology
    assert all(node.running for node in [*topology.data_nodes, *topology.sentinels])
    assert not topology.disturbed
    with topology.master.client() as client:
        assert client.dbsize() == 0
        assert client.info("replication")["connected_slaves"] == 1


def test_sentinel_over_tls():
    topology = start_sentinel(tls=True)
    try:
        assert topology.url.startswith("rediss+sentinel://127.0.0.1:")
        sentinel = topology.redis_sentinel()
        master = sentinel.master_for(topology.service)
        assert master.set("secure", "yes")
        assert master.get("secure") == b"yes"
        master.close()
        plain = redis.Redis(*topology.sentinels[0].address, socket_timeout=2, retry=None)
        with pytest.raises(redis.ConnectionError):  # no plaintext port
            plain.ping()
    finally:
        topology.stop()


# ---------------------------------------------------------------------------------------------
# Cluster


def test_cluster_writes_and_reads_over_many_slots(cluster_topology: ClusterTopology):
    topology = cluster_topology
    assert topology.url == "redis+cluster://" + ",".join(
        f"{host}:{port}" for host, port in topology.startup_nodes
    )
    assert len(topology.masters()) == 3 and len(topology.replicas()) == 3
    client = topology.cluster_client()
    keys = [f"conversation:{index}" for index in range(600)]
    for key in keys:
        client.rpush(key, key)
    assert len({client.keyslot(key) for key in keys}) > 500
    assert [client.lrange(key, 0, -1) for key in keys] == [[key.encode()] for key in keys]
    per_master = []
    for node in topology.masters():
        with node.client() as direct:
            per_master.append(direct.dbsize())
    assert sum(per_master) == len(keys) and all(count > 0 for count in per_master)
    client.close()


def test_cluster_failover_keeps_every_key(cluster_topology: ClusterTopology):
    topology = cluster_topology
    client = topology.cluster_client()
    slot = client.keyslot("chat:{failover}")
    old_master = topology.primary_for_slot(slot)
    replica = topology.replica_of(old_master)
    for index in range(100):
        client.set(f"chat:{{failover}}:{index}", index)
    topology.wait_healthy()  # the replica in sync

    topology.failover(replica)

    assert topology.primary_for_slot(slot) is replica
    assert topology.replica_of(replica) is old_master
    assert [client.get(f"chat:{{failover}}:{index}") for index in range(100)] == [
        str(index).encode() for index in range(100)
    ]
    assert client.set("chat:{failover}:after", "1")
    with replica.client() as direct:
        assert direct.get("chat:{failover}:after") == b"1"
    client.close()


def test_a_slot_migrates_while_keys_are_written_to_it(cluster_topology: ClusterTopology):
    topology = cluster_topology
    client = topology.cluster_client()
    slot = client.keyslot("{moving}")
    source = topology.primary_for_slot(slot)
    destination = next(node for node in topology.masters() if node is not source)
    expected: dict[str, bytes] = {}

    def write(prefix: str, count: int) -> None:
        for index in range(count):
            key = f"{{moving}}:{prefix}:{index}"
            client.rpush(key, index)
            expected[key] = str(index).encode()

    write("before", 250)
    migration = topology.start_slot_migration(slot, destination)
    write("migrating", 50)  # new keys go to the destination (ASK), existing ones stay put
    moved = migration.move_keys(batch=100, max_batches=1)
    assert moved == 100
    write("half-moved", 50)
    for key in list(expected)[:20]:  # existing keys, some moved, some not: both are found
        client.rpush(key, "again")
        expected[key] += b",again"
    migration.finish()

    assert topology.primary_for_slot(slot) is destination
    with source.client() as direct:
        assert direct.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    with destination.client() as direct:
        assert direct.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(expected)
    seen = {key: b",".join(client.lrange(key, 0, -1)) for key in expected}
    assert seen == expected
    client.close()


def test_a_killed_cluster_master_is_replaced_and_rejoins(cluster_topology: ClusterTopology):
    topology = cluster_topology
    client = topology.cluster_client()
    slot = client.keyslot("{killed}")
    master = topology.primary_for_slot(slot)
    for index in range(50):
        client.set(f"{{killed}}:{index}", index)
    topology.wait_healthy()

    successor = topology.kill(master)

    assert successor is not None and topology.primary_for_slot(slot) is successor
    assert client.get("{killed}:49") == b"49"
    topology.restart(master)
    assert topology.replica_of(successor) is master
    with master.client() as direct:
        assert direct.info("replication")["master_link_status"] == "up"
    client.close()


def test_cluster_over_tls():
    topology = start_cluster(tls=True)
    try:
        assert topology.url.startswith("rediss+cluster://127.0.0.1:")
        client = topology.cluster_client()
        for index in range(100):
            client.set(f"secure:{index}", index)
        assert [client.get(f"secure:{index}") for index in range(100)] == [
            str(index).encode() for index in range(100)
        ]
        client.close()
    finally:
        topology.stop()


# ---------------------------------------------------------------------------------------------
# TLS


def test_tls_verifies_with_the_ca(tls_server: TlsServer):
    assert tls_server.url.startswith("rediss://127.0.0.1:")
    client = redis.Redis.from_url(
        tls_server.url,
        ssl_ca_certs=str(tls_server.ca_file),
        ssl_cert_reqs="required",
        ssl_check_hostname=True,
        socket_timeout=2,
    )
    assert client.ping()
    assert client.config_get("port") == {"port": "0"}  # TLS only
    client.close()


def test_tls_without_the_ca_fails_verification(tls_server: TlsServer):
    client = redis.Redis.from_url(
        tls_server.url, ssl_cert_reqs="required", socket_timeout=2, retry=None
    )
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        client.ping()
    client.close()


def test_a_plaintext_client_is_refused_on_the_tls_port(tls_server: TlsServer):
    plain = redis.Redis.from_url(
        tls_server.url.replace("rediss://", "redis://"), socket_timeout=2, retry=None
    )
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    plain.close()


def test_mutual_tls_requires_the_client_certificate(mutual_tls_server: TlsServer):
    server = mutual_tls_server
    without = redis.Redis.from_url(
        server.url, ssl_ca_certs=str(server.ca_file), socket_timeout=2, retry=None
    )
    with pytest.raises(redis.ConnectionError):
        without.ping()
    without.close()
    with_cert = redis.Redis.from_url(
        server.url,
        ssl_ca_certs=str(server.ca_file),
        ssl_certfile=str(server.client_cert_file),
        ssl_keyfile=str(server.client_key_file),
        socket_timeout=2,
    )
    assert with_cert.ping()
    with_cert.close()


def test_the_client_certificate_is_one_the_ca_signed(mutual_tls_server: TlsServer):
    context = ssl.create_default_context(cafile=str(mutual_tls_server.ca_file))
    context.load_cert_chain(
        str(mutual_tls_server.client_cert_file), str(mutual_tls_server.client_key_file)
    )  # raises if the key does not match the certificate


# ---------------------------------------------------------------------------------------------
# Valkey


def test_valkey_answers_and_reports_its_version(valkey_server: RunningServer):
    client = redis.Redis.from_url(valkey_server.url, socket_timeout=2)
    info = client.info("server")
    assert info["server_name"] == "valkey"
    assert str(info["valkey_version"]).startswith("9.1.")
    assert info["redis_version"] == "7.2.4"  # what Valkey reports for compatibility
    assert client.set("flavour", "valkey") and client.get("flavour") == b"valkey"
    client.flushdb()
    client.close()
