"""One operation, one command on the wire: counted by MONITOR on the server, not by the client.

A script's own calls show up in MONITOR as client "lua"; only the other lines are round trips.
"""

from __future__ import annotations

import pytest
import redis

from atomic_chat_store import (
    BatchError,
    ChatMessage,
    WrongTypeError,
)
from atomic_chat_store import operations as ops
from atomic_chat_store.scripts import scripts
from conftest import round_trips

NEW = ChatMessage(content="new")

# Each builder takes the store's config and the conversation's length.
OPERATIONS = {
    "append": (lambda c, n: ops.add_message(c, "chat", NEW), "EVALSHA"),
    "append_many": (lambda c, n: ops.append(c, "chat", [NEW] * 3), "EVALSHA"),
    "insert_middle": (lambda c, n: ops.add_message(c, "chat", NEW, idx=n // 2), "EVALSHA"),
    "insert_near_end": (lambda c, n: ops.add_message(c, "chat", NEW, idx=-2), "EVALSHA"),
    "delete_middle": (lambda c, n: ops.delete_message(c, "chat", n // 2), "EVALSHA"),
    "delete_last": (lambda c, n: ops.delete_last_message(c, "chat"), "EVALSHA"),
    "set_all": (lambda c, n: ops.set_messages(c, "chat", [NEW] * 10), "EVALSHA"),
    "delete_all": (lambda c, n: ops.delete_messages(c, "chat"), "EVALSHA"),
    "get_all": (lambda c, n: ops.get_messages(c, "chat"), "LRANGE"),
    "count": (lambda c, n: ops.count(c, "chat"), "LLEN"),
    "refresh_ttl": (lambda c, n: ops.refresh_ttl(c, "chat"), "EVALSHA"),
}


def fill(client: redis.Redis, n: int) -> None:
    client.delete("chat")
    element = NEW.model_dump_json()
    for start in range(0, n, 1000):
        client.rpush("chat", *[element] * min(1000, n - start))


@pytest.mark.parametrize("n", [10, 10_000])
@pytest.mark.parametrize("name", OPERATIONS)
def test_each_operation_is_one_command(make_store, redis_client, monitored, name, n):
    build, command = OPERATIONS[name]
    store = make_store(ttl=60)
    fill(redis_client, n)
    store.execute(build(store.config, n))  # connects and loads the script
    fill(redis_client, n)
    with monitored() as seen:
        store.execute(build(store.config, n))
    assert [c.name for c in round_trips(seen)] == [command]


def test_after_script_flush_the_script_is_sent_by_its_source_once(
    make_store, redis_client, monitored
):
    store = make_store()
    store.add_message("chat", NEW)
    redis_client.script_flush()
    with monitored() as seen:
        assert store.add_message("chat", NEW) == 2
    # NOSCRIPT; every script loaded in one transaction (the server has all or none: a later
    # transaction cannot find some and miss others); then EVAL of the source, which cannot miss.
    sent = round_trips(seen)
    loads = ["SCRIPT"] * len(scripts())
    assert [c.name for c in sent] == ["EVALSHA", "MULTI", *loads, "EXEC", "EVAL"]
    assert sent[-1].args[1].decode() == scripts()["append"].source
    with monitored() as seen:
        store.add_message("chat", NEW)
    assert [c.name for c in round_trips(seen)] == ["EVALSHA"]


def test_execute_many_is_one_pipeline(make_store, redis_client, monitored):
    store = make_store()
    config = store.config
    batch = [
        ops.set_messages(config, "chat", [NEW, NEW]),
        ops.add_message(config, "chat", ChatMessage(content="first"), idx=0),
        ops.get_messages(config, "chat"),
    ]
    store.execute_many(batch)
    redis_client.script_flush()  # the pipeline must load what it needs by itself
    length, new_length, messages = store.execute_many(batch)
    assert (length, new_length) == (2, 3)
    assert [m.content for m in messages] == ["first", "new", "new"]
    with monitored() as seen:
        store.execute_many(batch)
    names = [c.name for c in round_trips(seen)]
    assert names == ["MULTI", "EVALSHA", "EVALSHA", "LRANGE", "EXEC"]


def test_a_failed_operation_of_a_batch_leaves_the_others_done(make_store, redis_client):
    store = make_store()
    config = store.config
    redis_client.set("taken", "precious")
    batch = [
        ops.add_message(config, "chat", NEW),
        ops.add_message(config, "taken", NEW),
        ops.get_messages(config, "chat"),
    ]
    with pytest.raises(BatchError) as raised:
        store.execute_many(batch)
    length, failure, messages = raised.value.results
    assert length == 1 and [m.content for m in messages] == ["new"]
    assert isinstance(failure, WrongTypeError) and raised.value.errors == {1: failure}
    assert redis_client.llen("chat") == 1 and redis_client.get("taken") == b"precious"
