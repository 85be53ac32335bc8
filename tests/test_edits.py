"""The edits no other chat store has: replace in place, range reads, a bounded history, and
versions for safe concurrent read-modify-write."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomic_chat_store import ChatMessage, RedisChatStore, VersionConflictError
from atomic_chat_store import operations as ops
from atomic_chat_store.keys import record_key
from conftest import monitor, round_trips

RECORD = record_key(b"chat")


def msg(text: str) -> ChatMessage:
    return ChatMessage(content=text)


def texts(messages) -> list[str]:
    return [m.content for m in messages]


def stored(redis_client: redis.Redis, key: str = "chat") -> list[str]:
    return [json.loads(raw)["blocks"][0]["text"] for raw in redis_client.lrange(key, 0, -1)]


def seed(redis_client: redis.Redis, items, key: str = "chat") -> None:
    if items:
        redis_client.rpush(key, *[msg(str(t)).model_dump_json() for t in items])


# -- replace in place -----------------------------------------------------------------------------


def test_replace_returns_what_it_replaced_and_keeps_the_rest(make_store, redis_client):
    store = make_store(ttl=600)
    seed(redis_client, "abc")
    assert store.replace_message("chat", 1, msg("B")).content == "b"
    assert stored(redis_client) == ["a", "B", "c"]
    assert 590_000 < redis_client.pttl("chat") <= 600_000


@pytest.mark.parametrize("idx", [-1, 4, 10])
def test_replace_out_of_range_changes_nothing(make_store, redis_client, idx):
    store = make_store(ttl=600)
    seed(redis_client, "abc")
    store.add_message("chat", msg("d"))
    redis_client.pexpire("chat", 5_000)
    before = store.version("chat")
    assert store.replace_message("chat", idx, msg("X")) is None
    assert stored(redis_client) == list("abcd")
    assert store.version("chat") == before and redis_client.pttl("chat") <= 5_000
    assert store.replace_message("missing", 0, msg("X")) is None
    assert redis_client.exists("missing") == 0


def test_replace_is_one_script(make_store, redis_client, monitored):
    store = make_store()
    seed(redis_client, range(1000))
    store.replace_message("chat", 500, msg("x"))
    with monitored() as seen:
        store.replace_message("chat", 500, msg("y"))
    assert [c.name for c in round_trips(seen)] == ["EVALSHA"]


# -- range reads ----------------------------------------------------------------------------------

INDEXES = st.one_of(st.none(), st.integers(-15, 15), st.sampled_from([-(2**70), 2**70]))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=st.integers(0, 12), start=INDEXES, stop=INDEXES)
def test_ranges_follow_python_slices(redis_url, redis_client, size, start, stop):
    redis_client.delete("chat")
    seed(redis_client, range(size))
    with RedisChatStore.from_url(redis_url) as store:
        expected = [str(i) for i in range(size)][start:stop]
        assert texts(store.get_messages("chat", start, stop)) == expected
        assert texts(store.get_conversation("chat", start, stop).messages) == expected


def test_the_last_20_are_read_without_reading_the_rest(make_store, redis_client, monitored):
    store = make_store()
    for start in range(0, 20_000, 1000):
        seed(redis_client, range(start, start + 1000))
    store.get_messages("chat", -20)
    with monitored() as seen:
        last = store.get_messages("chat", -20)
    assert texts(last) == [str(i) for i in range(19_980, 20_000)]
    assert [(c.name, c.args[2:]) for c in round_trips(seen)] == [("LRANGE", [b"-20", b"-1"])]


def test_a_corrupt_element_in_a_range_is_named_by_its_index(make_store, redis_client):
    from atomic_chat_store import CorruptMessageError

    store = make_store()
    seed(redis_client, range(5))
    redis_client.lset("chat", 3, b"garbage")
    with pytest.raises(CorruptMessageError) as from_head:
        store.get_messages("chat", 2, 5)
    assert from_head.value.index == 3
    with pytest.raises(CorruptMessageError) as from_end:
        store.get_messages("chat", -4, -1)
    assert from_end.value.index == -2


# -- bounded history ------------------------------------------------------------------------------


def test_every_write_keeps_only_the_newest_n(make_store, redis_client, monitored):
    store = make_store(max_messages=3, ttl=600)
    assert store.add_messages("chat", [msg(str(i)) for i in range(5)]) == 3
    assert stored(redis_client) == ["2", "3", "4"]
    assert store.add_message("chat", msg("5")) == 3
    assert stored(redis_client) == ["3", "4", "5"]
    assert store.add_message("chat", msg("first"), idx=0) == 3  # inserted, then trimmed away
    assert stored(redis_client) == ["3", "4", "5"]
    assert store.add_message("chat", msg("mid"), idx=2) == 3
    assert stored(redis_client) == ["4", "mid", "5"]
    assert store.set_messages("chat", [msg(str(i)) for i in range(10)]) == 3
    assert stored(redis_client) == ["7", "8", "9"]
    with monitored() as seen:
        store.add_message("chat", msg("10"))
    assert [c.name for c in round_trips(seen)] == ["EVALSHA"]
    assert [c.args[1:] for c in seen if c.name == "LTRIM"] == [[b"chat", b"-3", b"-1"]]


# -- versions -------------------------------------------------------------------------------------


def test_every_change_makes_the_version_grow(make_store, redis_client):
    store = make_store()
    assert store.version("chat") == 0
    seed(redis_client, "ab")
    assert store.version("chat") == 1  # written by someone else: no record yet
    seen = [store.version("chat")]
    for write in (
        lambda: store.add_message("chat", msg("c")),
        lambda: store.add_message("chat", msg("x"), idx=1),
        lambda: store.replace_message("chat", 0, msg("A")),
        lambda: store.delete_message("chat", 1),
        lambda: store.delete_last_message("chat"),
        lambda: store.set_messages("chat", [msg("s")]),
    ):
        write()
        seen.append(store.version("chat"))
    assert seen == sorted(set(seen)), seen
    # Deleted: no conversation, version 0, though its record keeps its op ids for the window;
    # made again: above every version it had.
    store.delete_messages("chat")
    assert store.version("chat") == 0 and redis_client.exists(RECORD) == 1
    assert store.add_message("chat", msg("n"), expected_version=0) == 1
    seen.append(store.version("chat"))
    assert seen == sorted(set(seen)), seen
    conversation = store.get_conversation("chat")
    assert conversation.version == seen[-1] and texts(conversation.messages) == ["n"]


def test_a_stale_version_is_refused_and_changes_nothing(make_store, redis_client):
    store = make_store(ttl=600)
    store.set_messages("chat", [msg("a")])
    stale = store.version("chat")
    store.add_message("chat", msg("b"))
    current = store.version("chat")
    redis_client.pexpire("chat", 5_000)
    record_ttl = redis_client.pttl(RECORD)
    writes = [
        lambda v: store.add_message("chat", msg("x"), expected_version=v),
        lambda v: store.add_message("chat", msg("x"), idx=0, expected_version=v),
        lambda v: store.add_messages("chat", [msg("x")], expected_version=v),
        lambda v: store.set_messages("chat", [msg("x")], expected_version=v),
        lambda v: store.replace_message("chat", 0, msg("x"), expected_version=v),
        lambda v: store.delete_message("chat", 0, expected_version=v),
        lambda v: store.delete_last_message("chat", expected_version=v),
        lambda v: store.delete_messages("chat", expected_version=v),
    ]
    for write in writes:
        with pytest.raises(VersionConflictError) as raised:
            write(stale)
        assert (raised.value.expected, raised.value.actual) == (stale, current)
    assert stored(redis_client) == ["a", "b"] and store.version("chat") == current
    assert redis_client.pttl("chat") <= 5_000 and redis_client.pttl(RECORD) <= record_ttl
    assert store.add_message("chat", msg("c"), expected_version=current) == 3
    assert store.add_message("new", msg("first"), expected_version=0) == 1  # create only


@pytest.mark.parametrize("end", ["delete", "set_empty", "expiry"])
def test_a_conversation_made_again_never_shows_an_old_version(make_store, redis_client, end):
    # A counter restarting from 0 would give the same versions again after as many writes.
    store = make_store(op_window=0.05, ttl=(0.2 if end == "expiry" else None))
    before = []
    for i in range(30):
        store.add_message("chat", msg(str(i)))
        before.append(store.version("chat"))
    if end == "delete":
        store.delete_messages("chat")
    elif end == "set_empty":
        store.set_messages("chat", [])
    after_end = store.version("chat")
    deadline = time.monotonic() + 5
    while redis_client.exists("chat", RECORD) and time.monotonic() < deadline:
        time.sleep(0.02)  # the record goes with the window, or with the conversation's TTL
    assert redis_client.exists("chat", RECORD) == 0
    assert store.version("chat") == 0
    after = []
    for i in range(30):
        store.add_message("chat", msg(str(i)))
        after.append(store.version("chat"))
    assert after == sorted(set(after)) and min(after) > max(before) and min(after) > after_end


def test_concurrent_read_modify_writes_lose_no_update(redis_url, redis_client):
    workers, increments = 6, 25
    failures: list[BaseException] = []
    conflicts = []

    def work(number: int) -> None:
        store = RedisChatStore.from_url(redis_url)
        try:
            for step in range(increments):
                while True:  # read, compute, write with the version read
                    conversation = store.get_conversation("chat")
                    counter = int(conversation.messages[0].content) if conversation.messages else 0
                    try:
                        store.set_messages(
                            "chat",
                            [
                                msg(str(counter + 1)),
                                *conversation.messages[1:],
                                msg(f"{number}-{step}"),
                            ],
                            expected_version=conversation.version,
                        )
                        break
                    except VersionConflictError:
                        conflicts.append(1)
        except BaseException as error:
            failures.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures and not any(t.is_alive() for t in threads)
    final = stored(redis_client)
    assert final[0] == str(workers * increments)
    assert sorted(final[1:]) == sorted(
        f"{n}-{s}" for n in range(workers) for s in range(increments)
    )
    assert conflicts, "the workers never raced: the test proved nothing"


def test_the_new_operations_work_in_a_batch(make_store, redis_client):
    store = make_store()
    seed(redis_client, "abc")
    config = store.config
    batch = [
        ops.replace_message(config, "chat", 0, msg("A")),
        ops.get_messages(config, "chat", -2),
        ops.get_conversation(config, "chat", 0, 1),
        ops.version(config, "chat"),
    ]
    replaced, last_two, conversation, version = store.execute_many(batch)
    assert replaced.content == "a" and texts(last_two) == ["b", "c"]
    assert texts(conversation.messages) == ["A"] and conversation.version == version > 1


def test_monitor_sees_one_command_per_read(redis_url, redis_client):
    with RedisChatStore.from_url(redis_url) as store:
        seed(redis_client, "abc")
        store.get_conversation("chat")
        with monitor(redis_url) as seen:
            store.get_conversation("chat", -2)
            store.version("chat")
        assert [c.name for c in round_trips(seen)] == ["EVALSHA", "EVALSHA"]
