"""LlamaIndex's ``Memory`` on RedisMemoryStore, end to end, against the same flow on its own
SQLAlchemyChatStore: put/aput, get/aget, the flush of the oldest messages to ARCHIVED once the
token limit is passed, memory blocks, reset; its sync methods from the main thread, from a plain
thread and from inside a running loop (each call on a loop of its own), leaving no connection
open; and a Cluster, where every key of a session lives on one node."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.cluster
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import BaseMemoryBlock, Memory, StaticMemoryBlock
from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus
from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore
from pydantic import Field

from atomic_chat_store import memory as mem
from atomic_chat_store.keys import key_slot
from atomic_chat_store.llama_index import RedisMemoryStore
from atomic_chat_store.operations import StoreConfig
from test_urls_servers import CLUSTER_PASSWORD, ClusterSetup, start_cluster

ACTIVE, ARCHIVED = MessageStatus.ACTIVE, MessageStatus.ARCHIVED
TOKEN_LIMIT = 120  # tokens; 70 % of it for the chat history
FLUSH_SIZE = 25


class Recorder(BaseMemoryBlock[str]):
    """A memory block that keeps what Memory flushes to it, and says how much it holds."""

    received: list[list[str]] = Field(default_factory=list)

    async def _aget(self, messages: list[ChatMessage] | None = None, **kwargs: Any) -> str:
        return f"{sum(len(batch) for batch in self.received)} messages flushed so far"

    async def _aput(self, messages: list[ChatMessage]) -> None:
        self.received.append([str(message.content) for message in messages])


def turn(i: int) -> ChatMessage:
    role = "user" if i % 2 == 0 else "assistant"
    return ChatMessage(role=role, content=f"turn {i}: " + "lorem ipsum dolor sit amet " * 2)


def new_memory(chat_store: AsyncDBChatStore, session_id: str) -> Memory:
    return Memory.from_defaults(
        session_id=session_id,
        chat_store=chat_store,
        token_limit=TOKEN_LIMIT,
        token_flush_size=FLUSH_SIZE,
        memory_blocks=[
            StaticMemoryBlock(name="core_info", static_content="The user's name is Ada."),
            Recorder(name="recorder", priority=1),
        ],
    )


def shown(messages: list[ChatMessage]) -> list[tuple[str, str | None]]:
    return [(str(message.role.value), message.content) for message in messages]


async def snapshot(memory: Memory) -> dict[str, Any]:
    return {
        "get": shown(await memory.aget()),
        "active": shown(await memory.aget_all(status=ACTIVE)),
        "archived": shown(await memory.aget_all(status=ARCHIVED)),
        "all": shown(await memory.aget_all()),
        "flushed": [list(batch) for batch in memory.memory_blocks[1].received],
    }


def connections_named(client: redis.Redis, name: str) -> int:
    """Connections of that client name the server still lists once closed ones are gone."""
    deadline = time.monotonic() + 2
    while True:
        count = sum(1 for entry in client.client_list() if entry["name"] == name)
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


async def test_memory_flushes_to_archived_as_it_does_on_sql(
    redis_url: str, redis_client: redis.Redis
) -> None:
    sql = SQLAlchemyChatStore(
        table_name="memory", async_database_uri="sqlite+aiosqlite:///:memory:"
    )
    ours = RedisMemoryStore(redis_url=redis_url, ttl=300)
    on_sql, on_redis = new_memory(sql, "session-1"), new_memory(ours, "session-1")
    for i in range(16):
        await on_sql.aput(turn(i))
        await on_redis.aput(turn(i))
        assert await snapshot(on_redis) == await snapshot(on_sql), i
    final = await snapshot(on_redis)
    # The flush happened: the oldest are ARCHIVED, in order, and went to the memory block.
    assert final["archived"] and final["active"]
    assert final["all"] == final["archived"] + final["active"]
    flushed = [text for batch in final["flushed"] for text in batch]
    assert flushed == [text for _, text in final["archived"]]
    # Memory blocks come first, in a system message; then the active history.
    system = final["get"][0]
    assert system[0] == "system" and "Ada" in str(system[1]) and "flushed so far" in str(system[1])
    assert final["get"][1:] == final["active"]
    # In Redis: one hash of every message, and the two sets.
    messages_key, _, active_key, archived_key = mem.memory_keys(
        StoreConfig(namespace="memory:"), "session-1"
    )
    assert redis_client.hlen(messages_key) == 16
    assert redis_client.zcard(active_key) == len(final["active"])
    assert redis_client.zcard(archived_key) == len(final["archived"])
    await on_sql.areset()
    await on_redis.areset()
    assert await snapshot(on_redis) == await snapshot(on_sql)
    assert await on_redis.aget_all() == []
    assert await ours.get_keys() == []
    await ours.aclose()
    assert sql._async_engine is not None
    await sql._async_engine.dispose()


async def test_put_messages_set_and_reset_of_one_status(
    redis_url: str, redis_client: redis.Redis
) -> None:
    ours = RedisMemoryStore(redis_url=redis_url)
    memory = new_memory(ours, "session-2")
    await memory.aput_messages([turn(i) for i in range(12)])
    archived = await memory.aget_all(status=ARCHIVED)
    assert archived and len(await memory.aget_all()) == 12
    await memory.areset(status=ACTIVE)
    assert shown(await memory.aget_all()) == shown(archived)
    await memory.aset([turn(100)])
    assert shown(await memory.aget_all()) == shown([turn(100)])
    await memory.areset()
    assert redis_client.keys("memory:*") == [] or all(
        b"\xff" in key for key in redis_client.keys("memory:*")
    )
    await ours.aclose()


def test_chat_history_given_to_from_defaults(redis_url: str, redis_client: redis.Redis) -> None:
    ours = RedisMemoryStore(redis_url=redis_url)
    memory = Memory.from_defaults(
        session_id="session-3", chat_store=ours, chat_history=[turn(0), turn(1)]
    )
    assert shown(memory.get_all()) == shown([turn(0), turn(1)])
    ours.close()


def run_sync_flow(memory: Memory) -> list[tuple[str, str | None]]:
    """Memory's sync methods, each of which runs on an event loop of LlamaIndex's choosing."""
    memory.reset()
    for i in range(12):
        memory.put(turn(i))
    assert memory.get_all(status=ARCHIVED)
    result = shown(memory.get())
    memory.put_messages([turn(12)])
    assert shown(memory.get_all())[-1] == shown([turn(12)])[0]
    return result


@pytest.fixture
def named_store(
    redis_url: str, redis_client: redis.Redis
) -> Iterator[tuple[RedisMemoryStore, str]]:
    name = f"acs-memory-{uuid.uuid4().hex[:8]}"
    chat_store = RedisMemoryStore(redis_url=redis_url, client_name=name)
    yield chat_store, name
    chat_store.close()


def test_sync_methods_from_a_plain_thread_close_each_loops_client(
    named_store: tuple[RedisMemoryStore, str], redis_client: redis.Redis
) -> None:
    # Outside the main thread LlamaIndex's asyncio_run calls asyncio.run: a new loop per call.
    chat_store, name = named_store
    results: list[Any] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker = threading.Thread(
            target=lambda: results.append(run_sync_flow(new_memory(chat_store, "s")))
        )
        worker.start()
        worker.join(timeout=60)
        gc.collect()  # an unclosed client would warn here
    assert not worker.is_alive() and len(results) == 1
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert connections_named(redis_client, name) == 0
    assert chat_store._stores.by_loop == {}


def test_sync_methods_inside_a_running_loop_leave_no_connection_open(
    named_store: tuple[RedisMemoryStore, str], redis_client: redis.Redis
) -> None:
    # Inside a running loop LlamaIndex's asyncio_run runs each call on a new loop in a worker
    # thread and closes that loop without shutting its async generators down: the store closes
    # its client with the loop all the same.
    chat_store, name = named_store

    async def inside_a_loop() -> list[tuple[str, str | None]]:
        return run_sync_flow(new_memory(chat_store, "s"))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(inside_a_loop())
        gc.collect()
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert connections_named(redis_client, name) == 0
    assert chat_store._stores.by_loop == {}


def test_sync_methods_from_the_main_thread(
    named_store: tuple[RedisMemoryStore, str], redis_client: redis.Redis
) -> None:
    # Here asyncio_run may reuse a loop it never closes: close() closes that loop's client.
    chat_store, name = named_store
    result = run_sync_flow(new_memory(chat_store, "s"))
    assert result[0][0] == "system"
    chat_store.close()
    assert connections_named(redis_client, name) == 0


def test_sync_and_async_flows_agree(redis_url: str, redis_client: redis.Redis) -> None:
    ours = RedisMemoryStore(redis_url=redis_url)
    sync_result = run_sync_flow(new_memory(ours, "sync"))

    async def async_flow() -> list[tuple[str, str | None]]:
        memory = new_memory(ours, "async")
        for i in range(12):
            await memory.aput(turn(i))
        return shown(await memory.aget())

    assert asyncio.run(async_flow()) == sync_result
    ours.close()


# -- on a Cluster ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSetup]:
    # Three masters, from test_urls_servers (to move to the shared topology fixtures).
    setup = start_cluster(tls=None)
    try:
        yield setup
    finally:
        setup.stop()


async def test_memory_on_a_cluster(cluster: ClusterSetup) -> None:
    url = "redis+cluster://:{}@{}".format(
        CLUSTER_PASSWORD.replace(" ", "%20"),
        ",".join(f"127.0.0.1:{port}" for port in cluster.ports),
    )
    ours = RedisMemoryStore(redis_url=url, ttl=300)
    sql = SQLAlchemyChatStore(
        table_name="memory", async_database_uri="sqlite+aiosqlite:///:memory:"
    )
    sessions = [f"cluster-{i}" for i in range(6)]  # spread over the masters' slots
    for session in sessions:
        on_redis, on_sql = new_memory(ours, session), new_memory(sql, session)
        for i in range(10):
            await on_redis.aput(turn(i))
            await on_sql.aput(turn(i))
        assert await snapshot(on_redis) == await snapshot(on_sql)
        # All four keys of the session on the one node that owns their slot.
        keys = mem.memory_keys(StoreConfig(namespace="memory:"), session)
        assert len({key_slot(key) for key in keys}) == 1
        node = cluster.node_holding(keys[0].decode("utf-8", "surrogateescape"))
        try:
            assert node.exists(*keys) == 4
            assert all(0 < node.pttl(key) <= 300_000 for key in keys)
        finally:
            node.close()
    assert await ours.get_keys() == sorted(sessions)
    assert len({cluster_node_of(cluster, s) for s in sessions}) > 1
    # A given sync RedisCluster client (run in a worker thread) sees the same.
    given = redis.cluster.RedisCluster("127.0.0.1", cluster.ports[0], password=CLUSTER_PASSWORD)
    through_sync = RedisMemoryStore(redis_client=given)
    assert await through_sync.get_keys() == sorted(sessions)
    assert shown(await through_sync.get_messages(sessions[0], status=None)) == [
        shown([turn(i)])[0] for i in range(10)
    ]
    given.close()
    for session in sessions:
        await ours.delete_messages(session)
    assert await ours.get_keys() == []
    await ours.aclose()
    assert sql._async_engine is not None
    await sql._async_engine.dispose()


def cluster_node_of(cluster: ClusterSetup, session: str) -> int:
    key = mem.memory_keys(StoreConfig(namespace="memory:"), session)[0]
    node = cluster.node_holding(key.decode())
    try:
        return int(node.connection_pool.connection_kwargs["port"])
    finally:
        node.close()
