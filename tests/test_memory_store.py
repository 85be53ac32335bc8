"""RedisMemoryStore, LlamaIndex's AsyncDBChatStore on Redis, against a real server: every method
and status, the layout in Redis (keys, types, TTLs, slots), one round trip per operation seen by
MONITOR, op ids, refusals. Its behaviour against SQLAlchemyChatStore is in
test_memory_differential.py; LlamaIndex's Memory on it in test_memory_end_to_end.py."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.crc
from llama_index.core.llms import ChatMessage
from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus

from atomic_chat_store import (
    CorruptMessageError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidIndexError,
    InvalidKeyError,
    OpIdConflictError,
    WrongTypeError,
)
from atomic_chat_store import memory as mem
from atomic_chat_store.llama_index import RedisChatStore, RedisMemoryStore
from atomic_chat_store.operations import StoreConfig
from conftest import round_trips

ACTIVE, ARCHIVED = MessageStatus.ACTIVE, MessageStatus.ARCHIVED
STATUSES = [ACTIVE, ARCHIVED, None]
TTL = 300  # seconds
TTL_MS = TTL * 1000
NAMESPACE = "memory:"


def m(text: str, role: str = "user") -> ChatMessage:
    return ChatMessage(role=role, content=text)


def texts(messages: Sequence[ChatMessage]) -> list[str | None]:
    return [message.content for message in messages]


def conversation_keys(key: str, namespace: str = NAMESPACE) -> tuple[bytes, bytes, bytes, bytes]:
    """The hash of messages, its record, the ACTIVE set, the ARCHIVED set."""
    return mem.memory_keys(StoreConfig(namespace=namespace), key)


def raw_state(client: redis.Redis, key: str) -> dict[str, Any]:
    """The conversation as Redis holds it, for comparing before and after."""
    messages, _, active, archived = conversation_keys(key)
    return {
        "messages": client.hgetall(messages),
        "active": client.zrange(active, 0, -1, withscores=True),
        "archived": client.zrange(archived, 0, -1, withscores=True),
    }


@pytest.fixture
async def store(redis_url: str, redis_client: redis.Redis) -> AsyncIterator[RedisMemoryStore]:
    chat_store = RedisMemoryStore(redis_url=redis_url, ttl=TTL)
    yield chat_store
    await chat_store.aclose()


async def fill(store: RedisMemoryStore, key: str, spec: str) -> None:
    """Messages named by letters, in order; upper case ACTIVE, lower case ARCHIVED."""
    for letter in spec:
        status = ACTIVE if letter.isupper() else ARCHIVED
        await store.add_message(key, m(letter), status=status)


# -- the class ------------------------------------------------------------------------------------


def test_it_is_a_complete_async_db_chat_store() -> None:
    assert issubclass(RedisMemoryStore, AsyncDBChatStore)
    assert not RedisMemoryStore.__abstractmethods__
    for name, member in vars(AsyncDBChatStore).items():
        if inspect.isfunction(member) and not name.startswith("_") and name != "class_name":
            ours = getattr(RedisMemoryStore, name)
            assert ours is not member, name
            assert inspect.iscoroutinefunction(ours), name
            # LlamaIndex's parameters, in its order, with its defaults (plus op_id for writes).
            theirs = inspect.signature(member).parameters
            mine = inspect.signature(ours).parameters
            assert list(mine)[: len(theirs)] == list(theirs), name
            for parameter, expected in theirs.items():
                assert mine[parameter].default == expected.default, (name, parameter)
    assert RedisMemoryStore.class_name() == "RedisMemoryStore"


def test_fields_and_the_password_kept_out_of_them(redis_url: str) -> None:
    chat_store = RedisMemoryStore(
        redis_url="redis://app:s3cret@127.0.0.1:1/2?password=other&socket_timeout=1", ttl=5
    )
    assert chat_store.model_dump() == {
        "redis_url": "redis://app@127.0.0.1:1/2?socket_timeout=1",
        "ttl": 5,
        "namespace": NAMESPACE,
    }
    assert "s3cret" not in repr(chat_store) and "other" not in repr(chat_store)
    assert RedisMemoryStore(redis_url=redis_url, namespace="n:").namespace == "n:"


def test_bad_options_are_refused_at_construction(redis_url: str) -> None:
    with pytest.raises(InvalidArgumentError):
        RedisMemoryStore(redis_url=redis_url, ttl=-1)
    with pytest.raises(InvalidKeyError):
        RedisMemoryStore(redis_url=redis_url, namespace="\udcff")
    with pytest.raises(InvalidArgumentError):
        RedisMemoryStore(redis_url=redis_url, max_message_bytes=0)


def test_the_lazy_import_is_the_same_class() -> None:
    from atomic_chat_store import llama_index, llama_index_memory

    assert llama_index.RedisMemoryStore is llama_index_memory.RedisMemoryStore
    with pytest.raises(AttributeError):
        llama_index.NoSuchStore  # noqa: B018


def test_operations_are_values_sent_with_the_shared_argv_prefix() -> None:
    config = StoreConfig.build(namespace=NAMESPACE, ttl=60)
    keys = conversation_keys("chat")
    message = m("a")
    add = mem.add_messages(config, "chat", [message], ARCHIVED, op_id="op-1")
    assert (add.script, add.keys, add.op_id) == ("memory_add", keys, "op-1")
    encoded = message.model_dump_json().encode()
    assert add.args == (*config.argv("op-1"), "archived", encoded)
    assert mem.set_messages(config, "chat", []).args[7:] == ("active",)
    read = mem.get_messages(config, "chat", None, limit=5, offset=2)
    assert (read.script, read.op_id, read.args) == (
        "memory_read",
        None,
        (*config.argv(""), "", 2, 5),
    )
    assert mem.get_messages(config, "chat").args[7:] == ("active", 0, "")
    assert mem.get_messages(config, "chat", limit=2**60).args[-1] == 2**48  # nothing changes
    counts = [mem.count_messages(config, "chat", status) for status in STATUSES]
    assert [(c.command, c.keys) for c in counts] == [
        ("ZCARD", (keys[2],)), ("ZCARD", (keys[3],)), ("HLEN", (keys[0],)),
    ]  # fmt: skip
    writes = [
        mem.delete_messages(config, "chat"),
        mem.delete_message(config, "chat", 3),
        mem.delete_oldest_messages(config, "chat", 2),
        mem.archive_oldest_messages(config, "chat", 2),
    ]
    assert [(w.script, w.args[7:]) for w in writes] == [
        ("memory_delete", ("",)),
        ("memory_delete_at", (3,)),
        ("memory_delete_oldest", (2,)),
        ("memory_archive_oldest", (2,)),
    ]
    assert all(w.op_id and w.args[0] == w.op_id for w in writes)


def test_a_bounded_configuration_is_refused() -> None:
    # The Memory store keeps no bound: its scripts would refuse ARGV[4] > 0 too.
    with pytest.raises(InvalidArgumentError):
        mem.add_messages(StoreConfig.build(max_messages=5), "chat", [m("a")])


# -- what each method does ------------------------------------------------------------------------


async def test_the_issues_example_archiving_keeps_each_message_in_its_place(
    store: RedisMemoryStore,
) -> None:
    await store.add_message("chat", m("A"))
    await store.add_message("chat", m("B"), status=ARCHIVED)
    await store.add_message("chat", m("C"))
    assert texts(await store.archive_oldest_messages("chat", 1)) == ["A"]
    assert texts(await store.get_messages("chat", status=ARCHIVED)) == ["A", "B"]
    assert texts(await store.get_messages("chat", status=None)) == ["A", "B", "C"]
    assert texts(await store.get_messages("chat")) == ["C"]
    counts = [await store.count_messages("chat", status=status) for status in STATUSES]
    assert counts == [1, 2, 3]


async def test_defaults_active_for_reads_both_for_delete_messages(
    store: RedisMemoryStore,
) -> None:
    await fill(store, "chat", "AbC")
    assert texts(await store.get_messages("chat")) == ["A", "C"]
    assert await store.count_messages("chat") == 2
    assert await store.delete_messages("chat") is None
    assert await store.count_messages("chat", status=None) == 0


async def test_a_missing_conversation_reads_empty(store: RedisMemoryStore) -> None:
    for status in STATUSES:
        assert await store.get_messages("none", status=status) == []
        assert await store.get_messages("none", status=status, limit=3, offset=1) == []
        assert await store.count_messages("none", status=status) == 0
    assert await store.delete_oldest_messages("none", 3) == []
    assert await store.archive_oldest_messages("none", 3) == []
    assert await store.delete_message("none", 0) is None
    assert await store.delete_messages("none") is None
    assert await store.get_keys() == []


@pytest.mark.parametrize("status", STATUSES, ids=["active", "archived", "both"])
async def test_limit_and_offset_apply_after_the_status_filter(
    store: RedisMemoryStore, status: MessageStatus | None
) -> None:
    spec = "AbcDEfGh"
    await fill(store, "chat", spec)
    view = [
        letter
        for letter in spec
        if status is None or (letter.isupper() if status is ACTIVE else letter.islower())
    ]
    for limit in (None, 0, 1, 2, 3, 10):
        for offset in (None, 0, 1, 2, 4, 9):
            start = offset or 0
            expected = view[start:] if limit is None else view[start : start + limit]
            got = await store.get_messages("chat", status=status, limit=limit, offset=offset)
            assert texts(got) == expected, (limit, offset)


async def test_add_messages_in_order_and_an_empty_list_changes_nothing(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    await store.add_messages("chat", [m("a"), m("b")])
    await store.add_messages("chat", [m("c"), m("d")], status=ARCHIVED)
    await store.add_messages("chat", [m("e")])
    before = raw_state(redis_client, "chat")
    await store.add_messages("chat", [])
    await store.add_messages("new", [], status=ARCHIVED)
    assert raw_state(redis_client, "chat") == before
    assert await store.get_keys() == ["chat"]
    assert texts(await store.get_messages("chat", status=None)) == ["a", "b", "c", "d", "e"]
    assert texts(await store.get_messages("chat", status=ARCHIVED)) == ["c", "d"]


async def test_set_messages_wipes_both_statuses(store: RedisMemoryStore) -> None:
    await fill(store, "chat", "AbCd")
    await store.set_messages("chat", [m("x"), m("y")])
    assert texts(await store.get_messages("chat", status=None)) == ["x", "y"]
    assert await store.count_messages("chat", status=ARCHIVED) == 0
    await store.set_messages("chat", [m("z")], status=ARCHIVED)
    assert texts(await store.get_messages("chat", status=ARCHIVED)) == ["z"]
    assert await store.get_messages("chat") == []
    await store.add_message("chat", m("after"))
    assert texts(await store.get_messages("chat", status=None)) == ["z", "after"]


async def test_set_messages_of_nothing_removes_every_key(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    await fill(store, "chat", "AbC")
    await store.set_messages("chat", [])
    messages, record, active, archived = conversation_keys("chat")
    assert redis_client.exists(messages, active, archived) == 0
    # The record stays for the op id window only, so that a replay still finds its reply.
    assert 0 < redis_client.pttl(record) <= 600_000
    assert await store.get_keys() == []
    await store.set_messages("never", [])
    assert redis_client.keys("*never*") == []


async def test_delete_and_archive_oldest_touch_only_active_messages(
    store: RedisMemoryStore,
) -> None:
    await fill(store, "chat", "aBcDEf")
    assert await store.archive_oldest_messages("chat", 0) == []
    assert await store.delete_oldest_messages("chat", 0) == []
    assert texts(await store.archive_oldest_messages("chat", 1)) == ["B"]
    assert texts(await store.get_messages("chat", status=ARCHIVED)) == ["a", "B", "c", "f"]
    assert texts(await store.delete_oldest_messages("chat", 1)) == ["D"]
    assert texts(await store.get_messages("chat", status=None)) == ["a", "B", "c", "E", "f"]
    # More than there are: every active one, and never an archived one.
    assert texts(await store.archive_oldest_messages("chat", 10)) == ["E"]
    assert await store.delete_oldest_messages("chat", 10) == []
    assert await store.archive_oldest_messages("chat", 10) == []
    assert texts(await store.get_messages("chat", status=ARCHIVED)) == ["a", "B", "c", "E", "f"]
    await store.add_messages("chat", [m("G"), m("H")])
    assert texts(await store.delete_oldest_messages("chat", 5)) == ["G", "H"]
    assert await store.count_messages("chat", status=None) == 5


async def test_deleting_the_oldest_of_everything_removes_the_conversation(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    await fill(store, "chat", "AB")
    assert texts(await store.delete_oldest_messages("chat", 2)) == ["A", "B"]
    messages, _, active, archived = conversation_keys("chat")
    assert redis_client.exists(messages, active, archived) == 0


async def test_delete_message_counts_positions_over_both_statuses_in_insertion_order(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    # The decision: idx is a position in get_messages(key, status=None), not an SQL row id.
    await fill(store, "chat", "AbCdE")
    deleted = await store.delete_message("chat", 1)
    assert isinstance(deleted, ChatMessage) and deleted.content == "b"
    assert texts(await store.get_messages("chat", status=None)) == ["A", "C", "d", "E"]
    deleted = await store.delete_message("chat", 3)
    assert deleted is not None and deleted.content == "E"
    assert texts(await store.get_messages("chat", status=None)) == ["A", "C", "d"]
    before = raw_state(redis_client, "chat")
    for outside in (3, 4, 100, -1, -3):
        assert await store.delete_message("chat", outside) is None
    assert raw_state(redis_client, "chat") == before
    assert texts([await store.delete_message("chat", 2)]) == ["d"]
    assert texts(await store.get_messages("chat", status=ARCHIVED)) == []
    for _ in range(2):
        assert await store.delete_message("chat", 0) is not None
    assert redis_client.exists(conversation_keys("chat")[0]) == 0


async def test_delete_message_finds_every_position_from_either_end(
    store: RedisMemoryStore,
) -> None:
    # The script merges both sets from the nearer end: every position, both halves.
    spec = "AbcDeFGhiJKlmnOp"
    for index in range(len(spec)):
        await store.set_messages("chat", [])
        await fill(store, "chat", spec)
        deleted = await store.delete_message("chat", index)
        assert deleted is not None and deleted.content == spec[index]
        left = texts(await store.get_messages("chat", status=None))
        assert left == list(spec[:index] + spec[index + 1 :])


@pytest.mark.parametrize("status", STATUSES, ids=["active", "archived", "both"])
async def test_delete_messages_of_one_status_or_both(
    store: RedisMemoryStore, redis_client: redis.Redis, status: MessageStatus | None
) -> None:
    await fill(store, "chat", "AbCd")
    await store.delete_messages("chat", status=status)
    left = {ACTIVE: ["b", "d"], ARCHIVED: ["A", "C"], None: []}[status]
    assert texts(await store.get_messages("chat", status=None)) == left
    if status is None:
        messages, _, active, archived = conversation_keys("chat")
        assert redis_client.exists(messages, active, archived) == 0


async def test_get_keys_lists_memory_conversations_only(
    store: RedisMemoryStore, redis_url: str, redis_client: redis.Redis
) -> None:
    await fill(store, "b", "A")
    await fill(store, "a", "b")
    await fill(store, "c{tag}", "A")
    other = RedisMemoryStore(redis_url=redis_url, namespace="other:")
    await other.add_message("elsewhere", m("x"))
    redis_client.hset("memory:a-plain-hash", "not", "ours")  # a hash of the namespace: listed
    redis_client.rpush("memory:a-list", "x")
    redis_client.set("memory:a-string", "x")
    assert await store.get_keys() == ["a", "a-plain-hash", "b", "c{tag}"]
    assert await other.get_keys() == ["elsewhere"]
    await store.delete_messages("a")
    assert await store.get_keys() == ["a-plain-hash", "b", "c{tag}"]
    await other.aclose()


async def test_the_default_namespace_keeps_memory_apart_from_the_drop_in(
    store: RedisMemoryStore, redis_url: str, redis_client: redis.Redis
) -> None:
    drop_in = RedisChatStore(redis_url=redis_url)
    await drop_in.aset_messages("user-1", [m("a list message")])
    await store.add_message("user-1", m("a memory message"))
    assert texts(await drop_in.aget_messages("user-1")) == ["a list message"]
    assert texts(await store.get_messages("user-1")) == ["a memory message"]
    assert await drop_in.aget_keys() == ["user-1"]
    assert await store.get_keys() == ["user-1"]
    assert redis_client.type("memory:user-1") == b"hash"
    await drop_in.aclose()
    drop_in.close()


async def test_messages_round_trip_as_llama_index_writes_them(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    message = ChatMessage(
        role="assistant",
        content="hello",
        additional_kwargs={"tool_calls": [{"id": "t1"}], "n": 1.5},
    )
    await store.add_message("chat", message)
    (read,) = await store.get_messages("chat")
    assert type(read) is ChatMessage and read == message
    stored = redis_client.hvals(conversation_keys("chat")[0])
    assert stored == [message.model_dump_json().encode()]


async def test_status_is_a_message_status_or_its_value(store: RedisMemoryStore) -> None:
    await store.add_message("chat", m("a"), status="archived")  # type: ignore[arg-type]
    assert texts(await store.get_messages("chat", status="archived")) == ["a"]  # type: ignore[arg-type]
    for bad in ("ARCHIVED", "deleted", ""):
        with pytest.raises(InvalidArgumentError):
            await store.get_messages("chat", status=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentTypeError):
        await store.add_message("chat", m("a"), status=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentTypeError):
        await store.set_messages("chat", [m("a")], status=1)  # type: ignore[arg-type]


async def test_negative_or_non_int_counts_are_refused_before_sending(
    store: RedisMemoryStore, redis_client: redis.Redis, monitored: Any
) -> None:
    # SQLite reads a negative LIMIT as none (delete_oldest_messages(key, -1) would delete every
    # active message), Postgres refuses it: refused here, as a ValueError.
    await fill(store, "chat", "AB")
    calls: list[Callable[[], Any]] = [
        lambda: store.get_messages("chat", limit=-1),
        lambda: store.get_messages("chat", offset=-1),
        lambda: store.delete_oldest_messages("chat", -1),
        lambda: store.archive_oldest_messages("chat", -1),
    ]
    with monitored() as seen:
        for call in calls:
            with pytest.raises(InvalidArgumentError) as raised:
                await call()
            assert isinstance(raised.value, ValueError)
        for call in [
            lambda: store.get_messages("chat", limit=True),
            lambda: store.get_messages("chat", offset=1.0),
            lambda: store.delete_oldest_messages("chat", "1"),
        ]:
            with pytest.raises(InvalidArgumentTypeError):
                await call()
        with pytest.raises(InvalidIndexError):
            await store.delete_message("chat", "0")  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            await store.add_message("", m("x"))
    assert round_trips(seen) == []
    assert await store.count_messages("chat") == 2


async def test_a_key_of_another_type_is_refused_untouched(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    redis_client.rpush("memory:chat", "x")
    writes: list[Callable[[], Any]] = [
        lambda: store.add_message("chat", m("a")),
        lambda: store.set_messages("chat", [m("a")]),
        lambda: store.delete_messages("chat"),
        lambda: store.delete_message("chat", 0),
        lambda: store.delete_oldest_messages("chat", 1),
        lambda: store.archive_oldest_messages("chat", 1),
        lambda: store.get_messages("chat", status=None),
        lambda: store.count_messages("chat", status=None),
    ]
    for call in writes:
        with pytest.raises(WrongTypeError):
            await call()
    assert redis_client.lrange("memory:chat", 0, -1) == [b"x"]
    assert redis_client.keys("*") == [b"memory:chat"]


async def test_a_corrupt_message_is_named_by_key_position_and_seq(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    await fill(store, "chat", "ABC")
    messages_key = conversation_keys("chat")[0]
    redis_client.hset(messages_key, "2", b'{"role": 5}')
    with pytest.raises(CorruptMessageError) as raised:
        await store.get_messages("chat", status=None)
    assert (raised.value.key, raised.value.index, raised.value.raw) == ("chat", 1, b'{"role": 5}')
    assert "seq 2" in str(raised.value) and not raised.value.removed
    with pytest.raises(CorruptMessageError) as raised:
        await store.get_messages("chat", offset=1, limit=1)
    assert raised.value.index == 1  # its position among the active messages
    # A delete removes what it was asked to and hands every element back.
    with pytest.raises(CorruptMessageError) as raised:
        await store.delete_oldest_messages("chat", 2)
    assert raised.value.removed and len(raised.value.removed_elements) == 2
    assert json.loads(raised.value.removed_elements[0])["blocks"][0]["text"] == "A"
    assert texts(await store.get_messages("chat")) == ["C"]
    # A seq listed without its message.
    redis_client.hdel(messages_key, "3")
    with pytest.raises(CorruptMessageError) as raised:
        await store.get_messages("chat")
    assert raised.value.raw == b"" and "seq 3" in str(raised.value)


# -- the layout in Redis --------------------------------------------------------------------------


async def test_the_layout_a_hash_and_two_sorted_sets_by_seq(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    await fill(store, "chat", "AbC")
    await store.archive_oldest_messages("chat", 1)
    messages, _, active, archived = conversation_keys("chat")
    assert redis_client.type(messages) == b"hash"
    assert sorted(redis_client.hkeys(messages)) == [b"1", b"2", b"3"]
    assert redis_client.zrange(active, 0, -1, withscores=True) == [(b"3", 3.0)]
    assert redis_client.zrange(archived, 0, -1, withscores=True) == [(b"1", 1.0), (b"2", 2.0)]
    # A new message comes after every message of either status, even once the newest is gone.
    await store.delete_message("chat", 2)
    await store.add_message("chat", m("D"), status=ARCHIVED)
    assert redis_client.zrange(archived, 0, -1) == [b"1", b"2", b"3"]
    assert texts(await store.get_messages("chat", status=None)) == ["A", "b", "D"]


@pytest.mark.parametrize("key", ["chat", "user:{42}:chat", "{}", "x{"])
def test_every_key_of_a_conversation_is_in_one_cluster_slot(key: str) -> None:
    keys = conversation_keys(key)
    assert len(set(keys)) == 4
    assert len({redis.crc.key_slot(k) for k in keys}) == 1
    assert all(k.startswith(keys[0]) and b"\xff" in k for k in keys[1:])


WRITES: dict[str, Callable[[RedisMemoryStore], Any]] = {
    "add_message": lambda s: s.add_message("chat", m("x")),
    "add_message_archived": lambda s: s.add_message("chat", m("x"), status=ARCHIVED),
    "add_messages": lambda s: s.add_messages("chat", [m("x"), m("y")]),
    "set_messages": lambda s: s.set_messages("chat", [m("x")], status=ARCHIVED),
    "delete_message": lambda s: s.delete_message("chat", 1),
    "delete_messages_active": lambda s: s.delete_messages("chat", status=ACTIVE),
    "delete_oldest_messages": lambda s: s.delete_oldest_messages("chat", 1),
    "archive_oldest_messages": lambda s: s.archive_oldest_messages("chat", 1),
}


@pytest.mark.parametrize("write", WRITES)
async def test_every_write_restarts_the_ttl_of_every_key(
    store: RedisMemoryStore, redis_client: redis.Redis, write: str
) -> None:
    await fill(store, "chat", "AbCdE")
    keys = conversation_keys("chat")
    for key in keys:
        redis_client.pexpire(key, 5_000)
    await WRITES[write](store)
    existing = [key for key in keys if redis_client.exists(key)]
    assert existing[:2] == list(keys[:2])  # the messages and the record; a set may be gone
    ttls = [redis_client.pttl(key) for key in existing]
    assert all(TTL_MS - 60_000 < ttl <= TTL_MS for ttl in ttls), ttls


async def test_without_ttl_nothing_expires_and_new_keys_follow_the_conversation(
    redis_url: str, redis_client: redis.Redis
) -> None:
    for ttl in (None, 0):
        chat_store = RedisMemoryStore(redis_url=redis_url, ttl=ttl)
        await fill(chat_store, "chat", "AB")
        await chat_store.archive_oldest_messages("chat", 1)  # makes the ARCHIVED set
        assert [redis_client.pttl(key) for key in conversation_keys("chat")] == [-1] * 4
        await chat_store.delete_messages("chat")
        await chat_store.aclose()
    # A conversation given an expiry by hand: keys made later expire with it.
    chat_store = RedisMemoryStore(redis_url=redis_url)
    await fill(chat_store, "chat", "AB")
    redis_client.pexpire(conversation_keys("chat")[0], 100_000)
    await chat_store.archive_oldest_messages("chat", 1)
    assert all(90_000 < redis_client.pttl(key) <= 100_000 for key in conversation_keys("chat"))
    await chat_store.aclose()


async def test_a_reassigned_ttl_applies_to_the_next_write(
    store: RedisMemoryStore, redis_client: redis.Redis
) -> None:
    store.ttl = 10
    await store.add_message("chat", m("a"))
    assert 5_000 < redis_client.pttl(conversation_keys("chat")[0]) <= 10_000


# -- round trips ----------------------------------------------------------------------------------

OPERATIONS: dict[str, tuple[Callable[[RedisMemoryStore, int], Any], str]] = {
    **{name: (lambda s, n, w=write: w(s), "EVALSHA") for name, write in WRITES.items()},
    "set_messages_many": (lambda s, n: s.set_messages("chat", [m("x")] * n), "EVALSHA"),
    "delete_message_middle": (lambda s, n: s.delete_message("chat", n // 2), "EVALSHA"),
    "delete_messages": (lambda s, n: s.delete_messages("chat"), "EVALSHA"),
    "get_active": (lambda s, n: s.get_messages("chat"), "EVALSHA"),
    "get_archived_page": (
        lambda s, n: s.get_messages("chat", status=ARCHIVED, limit=5, offset=3),
        "EVALSHA",
    ),
    "get_both": (lambda s, n: s.get_messages("chat", status=None), "EVALSHA"),
    "count_active": (lambda s, n: s.count_messages("chat"), "ZCARD"),
    "count_archived": (lambda s, n: s.count_messages("chat", status=ARCHIVED), "ZCARD"),
    "count_both": (lambda s, n: s.count_messages("chat", status=None), "HLEN"),
}


@pytest.mark.parametrize("n", [10, 2_000])
@pytest.mark.parametrize("name", OPERATIONS)
async def test_each_operation_is_one_command(
    store: RedisMemoryStore, redis_client: redis.Redis, monitored: Any, name: str, n: int
) -> None:
    operation, command = OPERATIONS[name]

    async def prepare() -> None:
        await store.set_messages("chat", [])
        await store.add_messages("chat", [m(f"m{i}") for i in range(n)])
        await store.archive_oldest_messages("chat", n // 2)

    await prepare()
    await operation(store, n)  # loads the script, connects
    await prepare()
    with monitored() as seen:
        await operation(store, n)
    assert [c.name for c in round_trips(seen)] == [command]


async def test_get_keys_scans_hashes_never_keys(store: RedisMemoryStore, monitored: Any) -> None:
    await store.add_message("chat", m("a"))
    with monitored() as seen:
        assert await store.get_keys() == ["chat"]
    sent = round_trips(seen)
    assert [c.name for c in sent] == ["SCAN"]
    assert sent[0].args[-2:] == [b"TYPE", b"hash"] and b"memory:*" in sent[0].args


# -- op ids ---------------------------------------------------------------------------------------

REPLAYS: dict[str, Callable[[RedisMemoryStore, str], Any]] = {
    "add_message": lambda s, i: s.add_message("chat", m("x"), op_id=i),
    "add_messages": lambda s, i: s.add_messages("chat", [m("x"), m("y")], ARCHIVED, op_id=i),
    "set_messages": lambda s, i: s.set_messages("chat", [m("x")], op_id=i),
    "delete_message": lambda s, i: s.delete_message("chat", 1, op_id=i),
    "delete_messages": lambda s, i: s.delete_messages("chat", ARCHIVED, op_id=i),
    "delete_oldest_messages": lambda s, i: s.delete_oldest_messages("chat", 2, op_id=i),
    "archive_oldest_messages": lambda s, i: s.archive_oldest_messages("chat", 2, op_id=i),
}


@pytest.mark.parametrize("write", REPLAYS)
async def test_a_write_sent_again_with_its_op_id_changes_nothing_and_returns_the_same(
    store: RedisMemoryStore, redis_client: redis.Redis, write: str
) -> None:
    await fill(store, "chat", "AbCdE")
    before = raw_state(redis_client, "chat")
    first = await REPLAYS[write](store, "op-1")
    assert first is None or first != []
    after = raw_state(redis_client, "chat")
    assert after != before
    assert await REPLAYS[write](store, "op-1") == first
    assert raw_state(redis_client, "chat") == after
    # A later write does not make the replay act again, nor change what it returns.
    await store.add_message("chat", m("later"), status=ARCHIVED)
    later = raw_state(redis_client, "chat")
    assert await REPLAYS[write](store, "op-1") == first
    assert raw_state(redis_client, "chat") == later
    # A new id is a new write.
    await REPLAYS[write](store, "op-2")
    assert raw_state(redis_client, "chat") != later


async def test_an_op_id_names_one_write(store: RedisMemoryStore) -> None:
    await store.add_message("chat", m("a"), op_id="one-id")
    with pytest.raises(OpIdConflictError):
        await store.archive_oldest_messages("chat", 1, op_id="one-id")
    assert await store.count_messages("chat") == 1


async def test_op_ids_work_through_the_operations_too(
    store: RedisMemoryStore, redis_url: str
) -> None:
    # The sans-I/O values, sent by the async core store: a re-sent value applies once.
    from atomic_chat_store import AsyncRedisChatStore

    async with AsyncRedisChatStore.from_url(redis_url, namespace=NAMESPACE) as core:
        operation = mem.add_messages(core.config, "chat", [m("a"), m("b")])
        assert operation.op_id is not None
        assert await core.execute(operation) == 2
        assert await core.execute(operation) == 2
        assert await core.execute(mem.count_messages(core.config, "chat", None)) == 2
        archived = await core.execute(mem.archive_oldest_messages(core.config, "chat", 1))
        assert [message.content for message in archived] == ["a"]
    assert texts(await store.get_messages("chat", status=ARCHIVED)) == ["a"]


# -- clients --------------------------------------------------------------------------------------


async def test_given_clients_are_used_as_given(
    redis_url: str, redis_client: redis.Redis, async_redis_client: redis.asyncio.Redis
) -> None:
    chat_store = RedisMemoryStore(
        redis_url="redis://127.0.0.1:1", aredis_client=async_redis_client, ttl=TTL
    )
    await chat_store.add_message("chat", m("a"))
    assert texts(await chat_store.get_messages("chat")) == ["a"]
    await chat_store.aclose()
    chat_store.close()
    assert await async_redis_client.ping()  # not ours to close


async def test_a_given_sync_client_alone_serves_through_a_thread(
    redis_url: str, redis_client: redis.Redis
) -> None:
    client = redis.Redis.from_url(redis_url)
    chat_store = RedisMemoryStore(redis_client=client)
    await fill(chat_store, "chat", "AbC")
    assert texts(await chat_store.archive_oldest_messages("chat", 1)) == ["A"]
    assert texts(await chat_store.get_messages("chat", status=None)) == ["A", "b", "C"]
    assert await chat_store.get_keys() == ["chat"]
    client.close()


async def test_client_options_reach_the_client(redis_url: str, redis_client: redis.Redis) -> None:
    chat_store = RedisMemoryStore(redis_url=redis_url, client_name="acs-memory-options")
    await chat_store.add_message("chat", m("a"))
    names = [client["name"] for client in redis_client.client_list()]
    assert names.count("acs-memory-options") == 1
    await chat_store.aclose()


async def test_concurrent_writers_lose_nothing(store: RedisMemoryStore) -> None:
    await asyncio.gather(*(store.add_message("chat", m(f"m{i}")) for i in range(50)))
    await asyncio.gather(
        *(store.archive_oldest_messages("chat", 2) for _ in range(10)),
        *(store.add_message("chat", m(f"n{i}"), status=ARCHIVED) for i in range(10)),
    )
    everything = texts(await store.get_messages("chat", status=None))
    assert len(everything) == len(set(everything)) == 60
    assert await store.count_messages("chat") == 30
    assert await store.count_messages("chat", status=ARCHIVED) == 30
