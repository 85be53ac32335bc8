"""The store on Redis Cluster: every operation, sync and async, from a URL or from a ready
client; get_keys over every primary; batches (one pipeline per node, a transaction within one
slot, refused across slots before anything is sent); durable writes; and, under load checked
against the model (tests/load.py), CLUSTER FAILOVER of a replica and a slot migrating while its
conversations are written."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.connection

from atomic_chat_store import (
    AsyncRedisChatStore,
    BatchError,
    ChatMessage,
    InvalidArgumentError,
    OutcomeUnknownError,
    RedisChatStore,
    RetryPolicy,
    UnavailableError,
)
from atomic_chat_store import operations as ops
from atomic_chat_store.errors import DurabilityError
from atomic_chat_store.keys import CLUSTER_SLOTS, key_slot, record_key
from atomic_chat_store.server import free_port
from conftest import MonitoredCommand, monitor, round_trips
from load import Load, Stored, check_load, read_stored, stored_text, writer_specs
from model_checker import texts_of
from servers import Node
from topologies import ClusterTopology
from tour import TTL_SECONDS, assert_stored, run_async, run_sync

pytestmark = pytest.mark.topology

SHORT = RetryPolicy(attempts=3, timeout=1.5, backoff_base=0.01, backoff_cap=0.1)


def message(text: str) -> ChatMessage:
    return ChatMessage(content=text)


def slot_of(name: str) -> int:
    return key_slot(name.encode())


def name_in(prefix: str, slots: Callable[[int], bool], start: int = 0) -> str:
    """The first ``prefix-N`` (N from ``start``) whose slot ``slots`` accepts: untagged names,
    brute-forced into a chosen part of the key space."""
    for number in range(start, start + 50 * CLUSTER_SLOTS):
        name = f"{prefix}-{number}"
        if slots(slot_of(name)):
            return name
    raise AssertionError(f"no {prefix}-N found")


def slots_of(topology: ClusterTopology, master: Node) -> Callable[[int], bool]:
    (view,) = [v for v in topology.view(master) if v.address == master.address]
    return lambda slot: any(start <= slot <= end for start, end in view.slots)


def node_client(topology: ClusterTopology) -> Callable[[bytes], redis.Redis]:
    """A direct client of the master that holds a key now."""
    return lambda name: topology.primary_for_slot(key_slot(name)).client()


def stored_now(topology: ClusterTopology, keys: list[str]) -> dict[str, Stored]:
    stored = {}
    for key in keys:
        with topology.primary_for_slot(slot_of(key)).client() as client:
            stored[key] = read_stored(client, key)
    return stored


def async_cluster_client(topology: ClusterTopology) -> redis.asyncio.cluster.RedisCluster:
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in topology.startup_nodes]
    return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, socket_timeout=2.0)


def two_keys_on_two_masters(topology: ClusterTopology, namespace: str) -> tuple[str, str]:
    first, second = topology.masters()[:2]
    key = name_in(f"{namespace}conversation", slots_of(topology, first))
    other = name_in(f"{namespace}other", slots_of(topology, second))
    return key.removeprefix(namespace), other.removeprefix(namespace)


# ---------------------------------------------------------------------------------------------
# Every operation


@pytest.mark.parametrize("form", ["url", "client"])
def test_every_operation_sync(cluster_topology: ClusterTopology, form: str):
    topology = cluster_topology
    space = f"tour-{uuid.uuid4().hex[:8]}:"
    key, other = two_keys_on_two_masters(topology, space)
    client = topology.cluster_client() if form == "client" else None
    if client is None:
        store = RedisChatStore.from_url(topology.url, ttl=TTL_SECONDS, namespace=space)
    else:
        store = RedisChatStore(client, ttl=TTL_SECONDS, namespace=space)
    try:
        run_sync(store, key, other)
    finally:
        store.close()
        if client is not None:
            client.close()
    assert_stored(node_client(topology), f"{space}{key}".encode(), f"{space}{other}".encode())


@pytest.mark.parametrize("form", ["url", "client"])
async def test_every_operation_async(cluster_topology: ClusterTopology, form: str):
    topology = cluster_topology
    space = f"tour-{uuid.uuid4().hex[:8]}:"
    key, other = two_keys_on_two_masters(topology, space)
    client = async_cluster_client(topology) if form == "client" else None
    if client is None:
        store = AsyncRedisChatStore.from_url(topology.url, ttl=TTL_SECONDS, namespace=space)
    else:
        store = AsyncRedisChatStore(client, ttl=TTL_SECONDS, namespace=space)
    try:
        await run_async(store, key, other)
    finally:
        await store.aclose()
        if client is not None:
            await client.aclose()
    assert_stored(node_client(topology), f"{space}{key}".encode(), f"{space}{other}".encode())


async def test_building_a_store_never_connects():
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(3))
    url = f"redis+cluster://{dead}"
    store = RedisChatStore.from_url(url, retry=SHORT)  # nothing listens: building succeeds
    async_store = AsyncRedisChatStore.from_url(url, retry=SHORT)
    with pytest.raises(UnavailableError) as read:
        store.get_messages("conversation")
    assert not isinstance(read.value, OutcomeUnknownError)
    assert read.value.attempts == SHORT.attempts
    with pytest.raises(UnavailableError):
        store.add_message("conversation", message("a"))
    with pytest.raises(UnavailableError) as async_read:
        await async_store.count("conversation")
    assert not isinstance(async_read.value, OutcomeUnknownError)
    with pytest.raises(UnavailableError):
        await async_store.set_messages("conversation", [message("a")])
    store.close()
    await async_store.aclose()


# ---------------------------------------------------------------------------------------------
# get_keys


# Braces of every kind: a hash tag, an empty one (the whole key hashes), an unclosed one, a
# closing brace first, two tags (the first counts), an empty tag before a real one.
SHAPES = ("plain-%d", "{tag-%d}:chat", "x{}y-%d", "{open-%d", "}{-%d", "{a-%d}{b}", "{}{c-%d}")


def awkward_names(topology: ClusterTopology, namespace: str) -> list[str]:
    """Conversation names of every shape in every master's slots (``namespace`` included)."""
    names = []
    for master in topology.masters():
        in_master = slots_of(topology, master)
        for shape in SHAPES:
            number = next(
                n for n in range(50 * CLUSTER_SLOTS) if in_master(slot_of(namespace + shape % n))
            )
            names.append(shape % number)
    return names


def test_get_keys_scans_every_primary(cluster_topology: ClusterTopology):
    topology = cluster_topology
    space = "keys:"
    names = awkward_names(topology, space)
    with RedisChatStore.from_url(topology.url, namespace=space) as store:
        for name in names:
            store.add_message(name, message(name))
        not_a_conversation = f"{space}a-string"
        store.client.set(not_a_conversation, "x")
        assert store.get_keys() == sorted(names)
    for master in topology.masters():  # every primary holds some of them
        with master.client() as client:
            assert any(client.scan_iter(match=f"{space}*", count=1000))


async def test_get_keys_scans_every_primary_async(cluster_topology: ClusterTopology):
    topology = cluster_topology
    space = "{keys}:"  # a namespace holding a hash tag: every conversation in its one slot
    async with AsyncRedisChatStore.from_url(topology.url, namespace=space) as store:
        names = [f"chat-{index}" for index in range(30)] + ["{x}", "a{b}c"]
        for name in names:
            await store.add_message(name, message(name))
        assert await store.get_keys() == sorted(names)
    space = "keys-async:"
    names = awkward_names(topology, space)
    async with AsyncRedisChatStore.from_url(topology.url, namespace=space) as store:
        for name in names:
            await store.add_message(name, message(name))
        assert await store.get_keys() == sorted(names)


# ---------------------------------------------------------------------------------------------
# Batches


@contextmanager
def sends_by_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[int]]:
    """How many times the process wrote a command (or a pipeline) to each port: redis-py's
    connections, sync and async, counted as they send."""
    counts: Counter[int] = Counter()
    sync_send = redis.connection.AbstractConnection.send_packed_command
    async_send = redis.asyncio.connection.AbstractConnection.send_packed_command

    def counted_sync(connection: Any, *args: Any, **kwargs: Any) -> Any:
        counts[int(connection.port)] += 1
        return sync_send(connection, *args, **kwargs)

    async def counted_async(connection: Any, *args: Any, **kwargs: Any) -> Any:
        counts[int(connection.port)] += 1
        return await async_send(connection, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted_sync)
        patch.setattr(
            redis.asyncio.connection.AbstractConnection, "send_packed_command", counted_async
        )
        yield counts


@contextmanager
def monitors(nodes: list[Node]) -> Iterator[dict[int, list[MonitoredCommand]]]:
    """What each node executed inside the block (MONITOR), by port."""
    with ExitStack() as stack:
        seen = {
            node.port: stack.enter_context(monitor(f"redis://127.0.0.1:{node.port}/0"))
            for node in nodes
        }
        yield seen


def keys_on_every_master(topology: ClusterTopology, per_master: int) -> dict[int, list[str]]:
    return {
        master.port: [
            name_in(f"batch:{index}", slots_of(topology, master)) for index in range(per_master)
        ]
        for master in topology.masters()
    }


class Sync:
    """One body for both stores: the sync one, or the async one on a loop of its own."""

    def __init__(self, mode: str, url: str, **options: Any) -> None:
        self.mode = mode
        if mode == "sync":
            self.store: Any = RedisChatStore.from_url(url, **options)
        else:
            import asyncio

            self.loop = asyncio.new_event_loop()
            self.store = AsyncRedisChatStore.from_url(url, **options)

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.store, method)(*args, **kwargs)
        return result if self.mode == "sync" else self.loop.run_until_complete(result)

    def close(self) -> None:
        if self.mode == "sync":
            self.store.close()
        else:
            self.loop.run_until_complete(self.store.aclose())
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def cluster_store(request: pytest.FixtureRequest, cluster_topology: ClusterTopology):
    made: list[Sync] = []

    def make(**options: Any) -> Sync:
        made.append(Sync(request.param, cluster_topology.url, **options))
        return made[-1]

    yield make
    for store in made:
        store.close()


def test_a_batch_across_nodes_is_one_pipeline_per_node(
    cluster_topology: ClusterTopology, cluster_store, monkeypatch: pytest.MonkeyPatch
):
    topology = cluster_topology
    store = cluster_store()
    keys = keys_on_every_master(topology, per_master=3)
    every_key = [key for names in keys.values() for key in names]
    config = store.store.config
    warm_up = [ops.count(config, key) for key in every_key]
    store("execute_many", warm_up, transaction=False)  # connections made, slots known
    store(
        "execute_many",
        [ops.add_message(config, k, message("x")) for k in every_key],
        transaction=False,
    )

    batch = [ops.add_message(config, key, message(key)) for key in every_key]
    with monitors(topology.masters()) as seen, sends_by_port(monkeypatch) as sends:
        results = store("execute_many", batch, transaction=False)

    assert results == [2] * len(every_key)
    assert sends == Counter({port: 1 for port in keys})  # one write per node: its pipeline
    for port, names in keys.items():
        commands = round_trips(seen[port])
        assert [command.name for command in commands] == ["EVALSHA"] * len(names)
        assert {command.args[3].decode() for command in commands} == set(names)
        assert len({command.client for command in commands}) == 1  # on one connection
    for key in every_key:
        with topology.primary_for_slot(slot_of(key)).client() as client:
            assert [stored_text(raw) for raw in client.lrange(key, 0, -1)] == ["x", key]


def test_a_transaction_runs_on_its_slots_node_as_multi_exec(
    cluster_topology: ClusterTopology, cluster_store, monkeypatch: pytest.MonkeyPatch
):
    topology = cluster_topology
    store = cluster_store()
    config = store.store.config
    keys = ["{room}:a", "{room}:b", "{room}:c"]
    node = topology.primary_for_slot(slot_of(keys[0]))
    warm_up = [  # every script of the batch loaded on the node: no NOSCRIPT inside the block
        ops.add_message(config, "{room}:w", message("w")),
        ops.delete_last_message(config, "{room}:w"),
        ops.set_messages(config, "{room}:w", []),
    ]
    store("execute_many", warm_up)
    batch = [
        ops.add_message(config, keys[0], message("a1")),
        ops.append(config, keys[1], [message("b1"), message("b2")]),
        ops.delete_last_message(config, keys[1]),
        ops.set_messages(config, keys[2], [message("c1")]),
        ops.get_messages(config, keys[1]),
    ]
    with monitors(topology.masters()) as seen, sends_by_port(monkeypatch) as sends:
        results = store("execute_many", batch, transaction=True)

    assert texts_of(results) == [1, 2, "b2", 1, ["b1"]]
    assert sends == Counter({node.port: 1})
    commands = round_trips(seen[node.port])
    assert [c.name for c in commands] == ["MULTI", *["EVALSHA"] * 4, "LRANGE", "EXEC"]
    assert len({command.client for command in commands}) == 1
    for other in topology.masters():
        if other is not node:
            assert round_trips(seen[other.port]) == []


def test_a_transaction_across_slots_is_refused_before_sending(
    cluster_topology: ClusterTopology, cluster_store, monkeypatch: pytest.MonkeyPatch
):
    topology = cluster_topology
    store = cluster_store()
    config = store.store.config
    first, second = topology.masters()[:2]
    in_first = slots_of(topology, first)
    key = name_in("across", in_first)
    elsewhere = name_in("across", slots_of(topology, second))
    beside = name_in("beside", lambda slot: in_first(slot) and slot != slot_of(key))
    store("count", key)  # warm up
    for pair in ([key, elsewhere], [key, beside]):  # another node; the same node, another slot
        batch = [ops.add_message(config, name, message("x")) for name in pair]
        with (
            monitors(topology.masters()) as seen,
            sends_by_port(monkeypatch) as sends,
            pytest.raises(InvalidArgumentError, match="one slot"),
        ):
            store("execute_many", batch, transaction=True)
        assert sends == Counter()
        assert all(round_trips(commands) == [] for commands in seen.values())
    for name in (key, elsewhere, beside):
        with topology.primary_for_slot(slot_of(name)).client() as client:
            assert client.exists(name, record_key(name.encode())) == 0


# ---------------------------------------------------------------------------------------------
# Durable writes


def texts_on_replica(replica: Node, key: str) -> list[str]:
    with replica.client() as client:
        client.execute_command("READONLY")  # else a Cluster replica answers MOVED
        return [stored_text(raw) for raw in client.lrange(key, 0, -1)]


def test_wait_replicas_on_a_cluster(cluster_topology: ClusterTopology, cluster_store):
    """With its replica up a durable write returns once the replica has it; with the replica of
    its master stopped DurabilityError says it was applied (on the master, once); with the
    replica back the same write, same op id, returns normally."""
    topology = cluster_topology
    store = cluster_store(wait_replicas=1, wait_timeout=0.3, retry=SHORT)
    key = "{durable}:conversation"
    master = topology.primary_for_slot(slot_of(key))
    replica = topology.replica_of(master)
    assert store("add_message", key, message("a")) == 1
    assert texts_on_replica(replica, key) == ["a"]  # WAIT returned: the replica has it

    topology.disturbed = True  # repaired for the next test
    replica.stop()
    with pytest.raises(DurabilityError) as raised:
        store("add_message", key, message("b"), op_id="write-b")
    assert (raised.value.reply, raised.value.acknowledged, raised.value.wanted) == (2, 0, 1)
    config = store.store.config
    batch = [
        ops.append(config, key, [message("c")], op_id="write-c"),
        ops.append(config, "{durable}:other", [message("z")], op_id="write-z"),
    ]
    with pytest.raises(DurabilityError) as batch_raised:
        store("execute_many", batch, transaction=True)
    assert batch_raised.value.reply == [3, 1]
    with pytest.raises(BatchError) as spread:  # not a transaction: each waits on its own
        store("execute_many", batch, transaction=False)
    assert all(isinstance(error, DurabilityError) for error in spread.value.results)
    with master.client() as client:
        assert [stored_text(raw) for raw in client.lrange(key, 0, -1)] == ["a", "b", "c"]

    topology.restart(replica)
    assert store("add_message", key, message("b"), op_id="write-b") == 2
    assert store("execute_many", batch, transaction=True) == [3, 1]
    assert texts_on_replica(replica, key) == ["a", "b", "c"]


# ---------------------------------------------------------------------------------------------
# Under load


def reset_error_counts(topology: ClusterTopology) -> None:
    for node in topology.nodes:
        with node.client() as client:
            client.config_resetstat()


def error_counts(topology: ClusterTopology) -> Counter[str]:
    """INFO errorstats summed over the nodes: the error replies they sent, by code."""
    counts: Counter[str] = Counter()
    for node in topology.nodes:
        with node.client() as client:
            for name, value in client.info("errorstats").items():
                counts[name.removeprefix("errorstat_")] += int(value["count"])
    return counts


def test_cluster_failover_under_load(cluster_topology: ClusterTopology, measurements):
    """CLUSTER FAILOVER of a replica while writers (threads and asyncio tasks, with and without
    wait_replicas) write to conversations in its master's slots: the writers follow the MOVED,
    nothing acknowledged is lost (a manual failover waits for the replica to catch up), nothing
    is duplicated, every returned value is right."""
    topology = cluster_topology
    master = topology.masters()[0]
    replica = topology.replica_of(master)
    in_master = slots_of(topology, master)
    load = Load(
        topology.url,
        writer_specs("cluster-failover", key_for=lambda name: name_in(name, in_master)),
    )
    reset_error_counts(topology)
    with load:
        load.wait_progress(0.0, calls=30)
        commanded = time.monotonic()
        topology.failover(replica)
        promoted = time.monotonic()
        load.wait_progress(promoted, calls=15)

    assert topology.primary_for_slot(slot_of(load.keys[0])) is replica
    report = check_load(load, stored_now(topology, load.keys))
    assert not report.problems, "\n".join(report.problems)
    assert error_counts(topology)["MOVED"] > 0  # the writers were sent to the new master
    measurements.append(
        f"CLUSTER FAILOVER: the replica answered as master {promoted - commanded:.2f} s after "
        "the command"
    )
    measurements += [f"  {group.summary(commanded)}" for group in report.groups.values()]


def test_a_slot_migrating_under_load(cluster_topology: ClusterTopology, measurements):
    """Every conversation of the writers in one slot (hash tags and untagged names brute-forced
    into it; each conversation's record beside its list), moved to another master key by key
    (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) while they are written. Writers
    meet ASK (moved keys), TRYAGAIN (a conversation whose list and record are on two nodes) and
    MOVED (after the hand-over), and lose nothing, duplicate nothing."""
    topology = cluster_topology
    slot = slot_of("{migrating}")
    names = iter(range(10**6))

    def key_for(name: str) -> str:
        if next(names) % 2:
            return f"{{migrating}}:{name}"
        return name_in(name, lambda s: s == slot)

    reset_error_counts(topology)
    source = topology.primary_for_slot(slot)
    destination = next(node for node in topology.masters() if node is not source)
    load = Load(topology.url, writer_specs("migrating", key_for=key_for))
    assert {slot_of(key) for key in load.keys} == {slot}
    assert {key_slot(record_key(key.encode())) for key in load.keys} == {slot}
    with load:
        load.wait_progress(0.0, calls=30)
        started = time.monotonic()
        migration = topology.start_slot_migration(slot, destination)
        deadline = time.monotonic() + 20
        while migration.move_keys(batch=1, max_batches=1) and time.monotonic() < deadline:
            time.sleep(0.05)  # one key at a time: conversations split between the two nodes
        migration.finish()
        finished = time.monotonic()
        load.wait_progress(finished, calls=15)

    assert topology.primary_for_slot(slot) is destination
    with source.client() as client:
        assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    report = check_load(load, stored_now(topology, load.keys))
    assert not report.problems, "\n".join(report.problems)
    errors = error_counts(topology)
    assert errors["ASK"] > 0 and errors["TRYAGAIN"] > 0 and errors["MOVED"] > 0, errors
    measurements.append(
        f"slot {slot} migrated key by key under load in {finished - started:.2f} s "
        f"({migration.moved} keys moved); the nodes answered ASK {errors['ASK']}, TRYAGAIN "
        f"{errors['TRYAGAIN']}, MOVED {errors['MOVED']} times"
    )
    measurements += [f"  {group.summary(started)}" for group in report.groups.values()]
