"""The store on Sentinel: every operation, sync and async, from a URL or from a ready client;
durable writes (``wait_replicas``); one sentinel down; and failovers under load, every write
checked against the model (tests/load.py): SENTINEL FAILOVER with the old master left writable,
and kill -9 of the master.

The failover tests measure what a store without ``wait_replicas`` loses, and print it at the end
of the run (``measured``): see the README's Sentinel section.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid

import pytest
import redis
import redis.asyncio.sentinel

from atomic_chat_store import (
    AsyncRedisChatStore,
    ChatMessage,
    OutcomeUnknownError,
    RedisChatStore,
    RetryPolicy,
    UnavailableError,
)
from atomic_chat_store import operations as ops
from atomic_chat_store.errors import DurabilityError
from atomic_chat_store.server import free_port
from load import Load, check_load, read_stored, writer_specs
from topologies import SentinelTopology, wait_until
from tour import TTL_SECONDS, assert_stored, run_async, run_sync

pytestmark = pytest.mark.topology

# Short budgets where a test waits for the store to give up.
SHORT = RetryPolicy(attempts=3, timeout=1.5, backoff_base=0.01, backoff_cap=0.1)


def message(text: str) -> ChatMessage:
    return ChatMessage(content=text)


def texts_on(client: redis.Redis, key: str) -> list[str]:
    from load import stored_text

    return [stored_text(raw) for raw in client.lrange(key, 0, -1)]


def role(topology: SentinelTopology, address: tuple[str, int]) -> str:
    with topology.node_at(address).client() as client:
        return client.execute_command("ROLE")[0].decode()


def namespace() -> str:
    return f"tour-{uuid.uuid4().hex[:8]}:"


def on_master(topology: SentinelTopology):
    return lambda _key: topology.master.client()


# ---------------------------------------------------------------------------------------------
# Every operation


@pytest.mark.parametrize("form", ["url", "client"])
def test_every_operation_sync(sentinel_topology: SentinelTopology, form: str):
    topology = sentinel_topology
    space = namespace()
    if form == "url":
        store = RedisChatStore.from_url(topology.url, ttl=TTL_SECONDS, namespace=space)
    else:
        client = topology.redis_sentinel().master_for(topology.service)
        store = RedisChatStore(client, ttl=TTL_SECONDS, namespace=space)
    try:
        run_sync(store, "conversation", "other")
    finally:
        store.close()
        if form == "client":
            client.close()
    assert_stored(on_master(topology), f"{space}conversation".encode(), f"{space}other".encode())


@pytest.mark.parametrize("form", ["url", "client"])
async def test_every_operation_async(sentinel_topology: SentinelTopology, form: str):
    topology = sentinel_topology
    space = namespace()
    if form == "url":
        store = AsyncRedisChatStore.from_url(topology.url, ttl=TTL_SECONDS, namespace=space)
    else:
        sentinel = redis.asyncio.sentinel.Sentinel(
            topology.sentinel_addresses, sentinel_kwargs={"socket_timeout": 2.0}
        )
        client = sentinel.master_for(topology.service)
        store = AsyncRedisChatStore(client, ttl=TTL_SECONDS, namespace=space)
    try:
        await run_async(store, "conversation", "other")
    finally:
        await store.aclose()
        if form == "client":
            await client.aclose()
    assert_stored(on_master(topology), f"{space}conversation".encode(), f"{space}other".encode())


async def test_building_a_store_never_connects():
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(3))
    url = f"redis+sentinel://{dead}/atomic-chat-store"
    store = RedisChatStore.from_url(url, retry=SHORT)  # nothing listens: building succeeds
    async_store = AsyncRedisChatStore.from_url(url, retry=SHORT)
    with pytest.raises(UnavailableError) as read:
        store.count("conversation")
    assert not isinstance(read.value, OutcomeUnknownError)  # a read: nothing applied, surely
    assert read.value.attempts == SHORT.attempts
    with pytest.raises(UnavailableError):
        store.add_message("conversation", message("a"))
    with pytest.raises(UnavailableError) as async_read:
        await async_store.get_messages("conversation")
    assert not isinstance(async_read.value, OutcomeUnknownError)
    with pytest.raises(UnavailableError):
        await async_store.delete_last_message("conversation")
    store.close()
    await async_store.aclose()


# ---------------------------------------------------------------------------------------------
# Durable writes


async def test_wait_replicas_waits_for_the_replica_and_says_when_it_cannot(
    sentinel_topology: SentinelTopology,
):
    """With the replica up a durable write returns; with it stopped the write is applied on the
    master and DurabilityError says so, after the budget; sent again with its op id it changes
    nothing, and once the replica is back it returns normally."""
    topology = sentinel_topology
    options = {"wait_replicas": 1, "wait_timeout": 0.3, "retry": SHORT}
    store = RedisChatStore.from_url(topology.url, **options)
    async_store = AsyncRedisChatStore.from_url(topology.url, **options)
    replica = topology.replica
    assert store.add_message("durable", message("a")) == 1
    assert await async_store.add_message("durable", message("b")) == 2
    with replica.client() as client:  # WAIT returned: the replica has both, read right away
        assert texts_on(client, "durable") == ["a", "b"]

    topology.disturbed = True  # a stopped replica: the next test gets a new topology
    replica.stop()
    with pytest.raises(DurabilityError) as raised:
        store.add_message("durable", message("c"), op_id="write-c")
    assert (raised.value.reply, raised.value.acknowledged, raised.value.wanted) == (3, 0, 1)
    assert raised.value.op_ids == ("write-c",)
    with pytest.raises(DurabilityError) as async_raised:
        await async_store.delete_message("durable", 0, op_id="delete-a")
    assert async_raised.value.reply.content == "a"
    batch = [ops.append(store.config, "durable", [message("d")], op_id="write-d")]
    with pytest.raises(DurabilityError) as batch_raised:
        store.execute_many(batch)
    assert batch_raised.value.reply == [3]
    with topology.master.client() as client:  # applied, each once
        assert texts_on(client, "durable") == ["b", "c", "d"]
    with pytest.raises(DurabilityError) as again:  # the same write again: nothing changes
        store.add_message("durable", message("c"), op_id="write-c")
    assert again.value.reply == 3
    with topology.master.client() as client:
        assert texts_on(client, "durable") == ["b", "c", "d"]

    topology.restart(replica)  # as a replica, in sync
    assert store.add_message("durable", message("c"), op_id="write-c") == 3
    assert (await async_store.delete_message("durable", 0, op_id="delete-a")).content == "a"
    with replica.client() as client:
        assert texts_on(client, "durable") == ["b", "c", "d"]
    store.close()
    await async_store.aclose()


def test_a_durable_write_waiting_when_its_master_is_demoted_goes_to_the_new_master(
    sentinel_topology: SentinelTopology,
):
    """A durable write applied on a master that no replica follows any more (the replica was
    just promoted) waits in WAIT; the master is then demoted, as the sentinels do, and Redis
    ends the WAIT with ``-UNBLOCKED ... (master -> replica?)``. That write was applied on a
    master whose data its resync now discards: the store must send it again, same op id, to the
    new master (where it returns normally once the demoted node replicates), never hand the
    caller Redis's raw error."""
    topology = sentinel_topology
    options = {"wait_replicas": 1, "wait_timeout": 4.0}
    store = RedisChatStore.from_url(topology.url, **options)
    async_store = AsyncRedisChatStore.from_url(topology.url, **options)

    async def connect_async() -> None:
        await async_store.add_message("async", message("a"))

    assert store.add_message("sync", message("a")) == 1  # both connected to the master
    loop = asyncio.new_event_loop()
    loop.run_until_complete(connect_async())
    old = topology.current_master()
    new = topology.failover(demote_old_master=False)

    results: dict[str, object] = {}

    def write_sync() -> None:
        try:
            results["sync"] = store.add_message("sync", message("b"), op_id="sync-b")
        except Exception as error:
            results["sync"] = error

    def write_async() -> None:
        async def write() -> object:
            try:
                return await async_store.add_message("async", message("b"), op_id="async-b")
            except Exception as error:
                return error

        results["async"] = loop.run_until_complete(write())

    writers = [threading.Thread(target=write_sync), threading.Thread(target=write_async)]
    for writer in writers:
        writer.start()

    def waiting_in_wait() -> bool:  # both writes applied on the old master, blocked in WAIT
        with topology.node_at(old).client() as client:
            return int(client.info("clients")["blocked_clients"]) == 2

    wait_until("both writes blocked in WAIT on the old master", waiting_in_wait, timeout=3)
    with topology.node_at(old).client() as client:
        client.replicaof(*new)  # what the sentinels do to the old master, ~11 s later
    for writer in writers:
        writer.join(timeout=30)
    loop.run_until_complete(async_store.aclose())
    loop.close()
    store.close()

    assert results == {"sync": 2, "async": 2}
    with topology.node_at(new).client() as client:
        assert texts_on(client, "sync") == ["a", "b"]
        assert texts_on(client, "async") == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# One sentinel down


def test_the_sentinels_connections_do_not_retry(sentinel_topology: SentinelTopology):
    """A dead sentinel is skipped for the next at once: redis-py's default retries would spend
    seconds on it at every discovery."""
    store = RedisChatStore.from_url(sentinel_topology.url)
    sentinels = store.client.connection_pool.sentinel_manager.sentinels
    assert len(sentinels) == 3
    for sentinel in sentinels:
        assert sentinel.get_retry().get_retries() == 0
    store.close()


def first_call_seconds(url: str) -> float:
    """A new store's first call: it asks the sentinels (the first in the URL first) for the
    master, connects and reads."""
    with RedisChatStore.from_url(url) as store:
        started = time.monotonic()
        store.count("nothing")
        return time.monotonic() - started


def test_one_sentinel_down_changes_nothing(sentinel_topology: SentinelTopology, measurements):
    """The first sentinel of the URL stopped: new stores find the master, writers carry on,
    and a failover still happens (two sentinels are a quorum) and is followed."""
    topology = sentinel_topology
    first_before = min(first_call_seconds(topology.url) for _ in range(3))
    with Load(topology.url, writer_specs("all-up", per_group=1)) as before:
        before.wait_progress(0.0, calls=60)
    baseline = check_load(before, stored_now(topology, before))
    assert not baseline.problems, "\n".join(baseline.problems)

    topology.stop_sentinel(0)
    first_after = min(first_call_seconds(topology.url) for _ in range(3))
    load = Load(topology.url, writer_specs("one-down", per_group=1))
    with load:
        load.wait_progress(0.0, calls=60)
        commanded = time.monotonic()
        topology.failover()  # demotes the old master as soon as the sentinels agree
        demoted = time.monotonic()
        load.wait_progress(demoted, calls=20)
    report = check_load(load, stored_now(topology, load), losses_allowed={0: (commanded, demoted)})
    assert not report.problems, "\n".join(report.problems)
    assert not report.group(1).lost
    measurements.append(
        f"Sentinel, first of three sentinels down: first call of a new store "
        f"{first_after * 1000:.1f} ms (all up: {first_before * 1000:.1f} ms); median write "
        f"latency {median_ms(load.outcomes, commanded):.1f} ms "
        f"(all up: {median_ms(before.outcomes, float('inf')):.1f} ms)"
    )
    measurements.append("  then SENTINEL FAILOVER, the old master demoted at once:")
    measurements += [f"  {group.summary(commanded)}" for group in report.groups.values()]


def median_ms(outcomes, until: float) -> float:
    """The median latency of the acknowledged calls that ended before ``until``, by group."""
    return 1000 * statistics.median(
        o.ended - o.started for o in outcomes if o.acknowledged and o.ended < until
    )


def stored_now(topology: SentinelTopology, load: Load):
    with topology.master.client() as client:
        return {key: read_stored(client, key) for key in load.keys}


# ---------------------------------------------------------------------------------------------
# Failovers under load


def test_sentinel_failover_under_load(sentinel_topology: SentinelTopology, measurements):
    """SENTINEL FAILOVER while writers (threads and asyncio tasks, with and without
    wait_replicas) edit their conversations and append to shared ones. The old master is left
    to the sentinels, which demote it ~11 s after the replica is promoted: meanwhile it still
    acknowledges writes, which its demotion then discards. Without wait_replicas only writes
    acknowledged in that window may be lost; with wait_replicas=1 none: a write the old master
    applied but no replica acknowledged is sent again, same op id, to the new master."""
    topology = sentinel_topology
    old = topology.current_master()
    load = Load(topology.url, writer_specs("sentinel-failover"))
    with load:
        load.wait_progress(0.0, calls=30)
        commanded = time.monotonic()
        new = topology.failover(demote_old_master=False)
        promoted = time.monotonic()
        wait_until(
            "the sentinels demoting the old master",
            lambda: role(topology, old) == "slave",
            timeout=40,
            interval=0.02,
        )
        demoted = time.monotonic()
        load.wait_progress(demoted, calls=15)
    assert topology.current_master() == new != old

    report = check_load(load, stored_now(topology, load), losses_allowed={0: (commanded, demoted)})

    assert not report.problems, "\n".join(report.problems)
    assert not report.group(1).lost
    durable_in_window = [
        o for o in load.outcomes if o.writer.wait_replicas == 1 and o.started < demoted < o.ended
    ]
    assert durable_in_window, "no durable write was in flight when the old master was demoted"
    # The scenario reproduced the split brain: the old master acknowledged writes it then lost.
    assert report.group(0).lost, "the old master lost nothing: the window did not open"
    measurements.append(
        f"SENTINEL FAILOVER (old master left to the sentinels): promoted "
        f"{promoted - commanded:.2f} s after the command (as the sentinels report it), old "
        f"master demoted {demoted - commanded:.2f} s after it"
    )
    for group in report.groups.values():
        measurements.append(f"  {group.summary(commanded)}")


def test_kill_of_the_master_under_load(sentinel_topology: SentinelTopology, measurements):
    """kill -9 of the master while the same writers write. The sentinels promote the replica
    (~2-3 s); the killed node comes back as a replica of the new master, so that durable writes
    can be acknowledged. With wait_replicas=1 every acknowledged write is on the new master;
    without, only writes acknowledged before the kill may be lost (what had not reached the
    replica yet)."""
    topology = sentinel_topology
    old_node = topology.master
    load = Load(topology.url, writer_specs("sentinel-kill"))
    with load:
        load.wait_progress(0.0, calls=30)
        killed = time.monotonic()
        topology.kill_master()
        promoted = time.monotonic()
        topology.restart(old_node)  # as a replica of the new master, in sync
        rejoined = time.monotonic()
        load.wait_progress(rejoined, calls=15)

    report = check_load(
        load, stored_now(topology, load), losses_allowed={0: (killed - 2.0, promoted)}
    )

    assert not report.problems, "\n".join(report.problems)
    assert not report.group(1).lost
    late = [o for o in report.group(0).lost if o.ended > killed + 0.5]
    assert not late, f"acknowledged after the kill and lost: {late}"
    measurements.append(
        f"kill -9 of the Sentinel master: promoted {promoted - killed:.2f} s after the kill, "
        f"old node back as a replica at {rejoined - killed:.2f} s"
    )
    for group in report.groups.values():
        measurements.append(f"  {group.summary(killed)}")
