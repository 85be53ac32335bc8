"""A write sent again with its op id is applied at most once; a refused write changes nothing.

These need a server but no fault: the same write sent twice by hand, the record beside the
conversation, and every refusal (type, TTL, memory, permissions) before the first write.
Faults (lost replies, timeouts, killed servers) are in test_faults.py.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from atomic_chat_store import (
    BatchError,
    ChatMessage,
    CorruptMessageError,
    OpIdConflictError,
    OutOfMemoryError,
    RedisChatStore,
    WrongTypeError,
)
from atomic_chat_store import operations as ops
from atomic_chat_store.keys import record_key

RECORD = record_key(b"chat")


def msg(text: str) -> ChatMessage:
    return ChatMessage(content=text)


def stored(redis_client: redis.Redis, key: str = "chat") -> list[str]:
    return [json.loads(raw)["blocks"][0]["text"] for raw in redis_client.lrange(key, 0, -1)]


def seed(redis_client: redis.Redis, texts: str, key: str = "chat") -> None:
    redis_client.rpush(key, *[msg(t).model_dump_json() for t in texts])


def version(redis_client: redis.Redis, key: bytes = RECORD) -> bytes | None:
    return redis_client.hget(key, "v")


# Each write, once with a given id; the texts before and after.
WRITES = {
    "append": (lambda s, i: s.add_message("chat", msg("x"), op_id=i), "ab", "abx", 3),
    "append_many": (
        lambda s, i: s.add_messages("chat", [msg("x"), msg("y")], op_id=i),
        "ab",
        "abxy",
        4,
    ),
    "insert": (lambda s, i: s.add_message("chat", msg("x"), idx=1, op_id=i), "abc", "axbc", 4),
    "set": (lambda s, i: s.set_messages("chat", [msg("x")], op_id=i), "ab", "x", 1),
    "delete_at": (lambda s, i: s.delete_message("chat", 1, op_id=i).content, "abc", "ac", "b"),
    "delete_last": (lambda s, i: s.delete_last_message("chat", op_id=i).content, "abc", "ab", "c"),
    "delete_all": (
        lambda s, i: [m.content for m in s.delete_messages("chat", op_id=i)],
        "ab",
        "",
        ["a", "b"],
    ),
}


@pytest.mark.parametrize("write", WRITES)
def test_a_write_sent_again_returns_its_reply_and_changes_nothing(make_store, redis_client, write):
    call, before, after, reply = WRITES[write]
    store = make_store(ttl=600)
    seed(redis_client, before)
    assert call(store, "op-1") == reply
    assert "".join(stored(redis_client)) == after
    first_version = version(redis_client)
    redis_client.pexpire("chat", 5_000)
    assert call(store, "op-1") == reply  # the recorded reply: nothing runs again
    assert "".join(stored(redis_client)) == after
    assert version(redis_client) == first_version
    if after:
        assert redis_client.pttl("chat") <= 5_000  # not even the TTL was refreshed


def test_the_same_operation_value_sent_again_is_the_same_write(make_store, redis_client):
    store = make_store()
    seed(redis_client, "abc")
    delete = ops.delete_message(store.config, "chat", 0)
    assert store.execute(delete).content == "a"
    assert store.execute(delete).content == "a"
    assert stored(redis_client) == ["b", "c"]
    batch = [ops.add_message(store.config, "chat", msg("x")), ops.count(store.config, "chat")]
    assert store.execute_many(batch) == [3, 3]
    assert store.execute_many(batch) == [3, 3]
    assert stored(redis_client) == ["b", "c", "x"]


def test_a_replayed_delete_of_everything_returns_what_it_removed(make_store, redis_client):
    store = make_store(ttl=600, op_window=30)
    seed(redis_client, "abc")
    assert [m.content for m in store.delete_messages("chat", op_id="wipe")] == list("abc")
    assert redis_client.exists("chat") == 0
    # The conversation is gone; its record stays for the window, holding the reply.
    assert 0 < redis_client.pttl(RECORD) <= 30_000
    assert [m.content for m in store.delete_messages("chat", op_id="wipe")] == list("abc")
    assert redis_client.exists("chat") == 0


def test_an_op_id_names_one_write(make_store, redis_client):
    store = make_store()
    seed(redis_client, "ab")
    store.add_message("chat", msg("x"), op_id="mine")
    with pytest.raises(OpIdConflictError) as raised:
        store.delete_last_message("chat", op_id="mine")
    assert raised.value.recorded_by == "append"
    assert stored(redis_client) == ["a", "b", "x"]


def test_a_write_that_changes_nothing_is_not_recorded(make_store, redis_client):
    store = make_store(ttl=600)
    seed(redis_client, "a")
    redis_client.pexpire("chat", 5_000)
    assert store.delete_message("chat", 3, op_id="late") is None
    assert redis_client.exists(RECORD) == 0 and redis_client.pttl("chat") <= 5_000
    # Nothing was applied, so the same write later applies (once): it is its first time.
    seed(redis_client, "bcd")
    assert store.delete_message("chat", 3, op_id="late").content == "d"
    assert store.delete_message("chat", 3, op_id="late").content == "d"
    assert stored(redis_client) == ["a", "b", "c"]


def test_the_record_follows_the_conversations_expiry(make_store, redis_client):
    store = make_store(ttl=300)
    store.add_message("chat", msg("a"))
    assert redis_client.type(RECORD) == b"hash"
    assert 290_000 < redis_client.pttl(RECORD) <= 300_000
    assert abs(redis_client.pttl(RECORD) - redis_client.pttl("chat")) < 1_000
    # A store without a TTL leaves the conversation's expiry alone; the record follows it.
    plain = make_store()
    redis_client.pexpire("chat", 50_000)
    plain.add_message("chat", msg("b"))
    assert 40_000 < redis_client.pttl(RECORD) <= 50_000
    redis_client.persist("chat")
    plain.add_message("chat", msg("c"))
    assert redis_client.pttl(RECORD) == -1
    assert plain.get_keys() == ["chat"]


def test_the_op_id_window_is_bounded_by_count(make_store, redis_client):
    # The newest op_window_size ids are always remembered; older ones leave in batches (of
    # up to 32 more), so the record never holds more than op_window_size + 32.
    store = make_store(op_window_size=3)
    for i in range(50):
        store.add_message("chat", msg(str(i)), op_id=f"id-{i}")
        remembered = [k for k in redis_client.hkeys(RECORD) if k.startswith(b"o:")]
        assert min(i + 1, 3) <= len(remembered) <= 3 + 32
        assert {f"o:id-{j}".encode() for j in range(max(0, i - 2), i + 1)} <= set(remembered)
    assert store.add_message("chat", msg("49"), op_id="id-49") == 50  # remembered
    # Forgotten: the documented limit of the window. Sent again, it applies again.
    assert not redis_client.hexists(RECORD, "o:id-0")
    assert store.add_message("chat", msg("0"), op_id="id-0") == 51


def test_the_op_id_window_is_bounded_by_time(make_store, redis_client):
    store = make_store(op_window=0.2)
    store.add_message("chat", msg("a"), op_id="old")
    time.sleep(0.3)
    store.add_message("chat", msg("b"), op_id="new")  # the next write drops what is older
    assert not redis_client.hexists(RECORD, "o:old")
    assert redis_client.hexists(RECORD, "o:new")


def test_versions_grow_from_the_server_clock_and_survive_a_delete(make_store, redis_client):
    store = make_store(op_window=0.1)
    store.add_message("chat", msg("a"))
    first = int(version(redis_client))
    seconds, micros = redis_client.time()
    assert abs(first - (seconds * 1_000_000 + micros)) < 5_000_000
    store.add_message("chat", msg("b"))
    assert int(version(redis_client)) > first
    store.delete_messages("chat")
    deleted_at = int(version(redis_client))
    time.sleep(0.2)
    assert redis_client.exists(RECORD, "chat") == 0  # the record went with the window
    store.add_message("chat", msg("c"))
    assert int(version(redis_client)) > deleted_at


# -- refused writes change nothing ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["string", "hash", "set", "zset", "stream"])
def test_refresh_ttl_leaves_other_types_alone(make_store, redis_client, kind):
    make = {
        "string": lambda: redis_client.set("chat", "v"),
        "hash": lambda: redis_client.hset("chat", "f", "v"),
        "set": lambda: redis_client.sadd("chat", "v"),
        "zset": lambda: redis_client.zadd("chat", {"v": 1}),
        "stream": lambda: redis_client.xadd("chat", {"f": "v"}),
    }
    make[kind]()
    redis_client.pexpire("chat", 5_000)
    with pytest.raises(WrongTypeError):
        make_store(ttl=600).refresh_ttl("chat")
    assert 0 < redis_client.pttl("chat") <= 5_000


def test_a_ttl_pexpire_would_refuse_is_refused_before_the_write(make_store, redis_client):
    seed(redis_client, "abc")
    with pytest.raises(ValueError):
        make_store(ttl=10**14)  # 10^17 ms: Lua would print it as 1e+17
    store = make_store(ttl=10**12)  # the largest in use: ~31,700 years, still exact
    assert store.delete_message("chat", 1).content == "b"
    assert redis_client.pttl("chat") > 10**14


@pytest.mark.parametrize("mark", [b"\xffatomic-chat-store:mark", b"\xffacs-mark:"])
def test_a_stored_copy_of_a_mark_never_misplaces_an_edit(make_store, redis_client, mark):
    # A mark is found by value: a copy of it stored before the index (from the end a scan starts
    # at) would take the edit's place.
    store = make_store()
    seed(redis_client, "abcd")
    redis_client.rpush("chat", mark)
    seed(redis_client, "efghij")
    # a b c d MARK e f g h i j: the insert scans from the head, the delete from the nearer end
    store.add_message("chat", msg("x"), idx=7)
    assert store.delete_message("chat", 5).content == "e"
    raw = redis_client.lrange("chat", 0, -1)
    assert raw[4] == mark
    texts = [json.loads(r)["blocks"][0]["text"] for r in raw if r != mark]
    assert texts == list("abcdfxghij")


def test_deletes_run_at_maxmemory_and_other_writes_are_refused_whole(make_store, redis_client):
    store = make_store(ttl=600)
    seed(redis_client, "abcdef")
    used = int(redis_client.info("memory")["used_memory"])
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", used - 100_000)
    try:
        with pytest.raises(OutOfMemoryError):
            store.add_message("chat", msg("x"))
        with pytest.raises(OutOfMemoryError):
            store.set_messages("chat", [msg("x")])
        assert stored(redis_client) == list("abcdef")
        assert store.delete_message("chat", 1).content == "b"
        assert store.delete_last_message("chat").content == "f"
        assert [m.content for m in store.delete_messages("chat")] == list("acde")
    finally:
        redis_client.config_set("maxmemory", 0)
    assert redis_client.exists("chat") == 0


def test_a_transaction_refused_while_queueing_is_a_batch_error(make_store, redis_client):
    store = make_store()
    seed(redis_client, "ab")
    used = int(redis_client.info("memory")["used_memory"])
    batch = [
        ops.delete_last_message(store.config, "chat"),
        ops.add_message(store.config, "chat", msg("x")),
    ]
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", used - 100_000)
    try:
        with pytest.raises(BatchError) as raised:
            store.execute_many(batch)
    finally:
        redis_client.config_set("maxmemory", 0)
    assert not raised.value.applied
    assert isinstance(raised.value.results[1], OutOfMemoryError)
    assert stored(redis_client) == ["a", "b"]  # nothing ran, the delete neither


# -- clients that decode, names that are not UTF-8 ------------------------------------------------


@pytest.mark.parametrize("asyncio", [False, True], ids=["sync", "async"])
def test_a_client_that_decodes_loses_no_byte(redis_url, redis_client, asyncio):
    from stores import BlockingAsyncStore

    redis_client.rpush("chat", msg("a").model_dump_json(), b"\xff\xfe not utf-8", b"{\xe9}")
    redis_client.rpush(b"caf\xe9", msg("z").model_dump_json())
    if asyncio:
        store = BlockingAsyncStore(redis_url, decode_responses=True)
    else:
        store = RedisChatStore.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(CorruptMessageError) as read:
            store.get_messages("chat")
        assert read.value.raw == b"\xff\xfe not utf-8" and not read.value.removed
        with pytest.raises(CorruptMessageError) as deleted:
            store.delete_message("chat", 1)
        assert deleted.value.removed_elements == [b"\xff\xfe not utf-8"]
        with pytest.raises(CorruptMessageError) as wiped:
            store.delete_messages("chat")
        assert wiped.value.removed_elements == [msg("a").model_dump_json().encode(), b"{\xe9}"]
        names = store.get_keys()
        assert names == ["caf\udce9"]
        assert [m.content for m in store.get_messages(names[0])] == ["z"]
    finally:
        store.close()


# -- SCRIPT FLUSH racing writes -------------------------------------------------------------------


def test_script_flush_racing_writes_loses_and_duplicates_nothing(redis_url, redis_client):
    writers, per_writer = 4, 150
    flusher = redis.Redis.from_url(redis_url)
    stop = threading.Event()
    failures: list[BaseException] = []
    lengths: list[int] = []

    def flush() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            flusher.script_flush()

    def write(number: int) -> None:
        store = RedisChatStore.from_url(redis_url)
        try:
            for i in range(per_writer):
                lengths.append(store.add_message(f"chat-{number}", msg(str(i))))
        except BaseException as error:
            failures.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    flushing = threading.Thread(target=flush)
    flushing.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stop.set()
    flushing.join(timeout=30)
    flusher.close()
    assert not failures, failures[:3]
    assert sorted(lengths) == sorted(list(range(1, per_writer + 1)) * writers)
    for number in range(writers):
        assert stored(redis_client, f"chat-{number}") == [str(i) for i in range(per_writer)]
