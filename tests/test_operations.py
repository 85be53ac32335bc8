"""Every operation, through both stores, checked against a Python list and against Redis itself."""

from __future__ import annotations

import json

import pytest

from atomic_chat_store import ChatMessage


def msg(text: str, role: str = "user") -> ChatMessage:
    return ChatMessage(role=role, content=text)


def texts(messages) -> list[str]:
    return [m.content for m in messages]


def stored_texts(redis_client, key: str) -> list[str]:
    return [json.loads(raw)["blocks"][0]["text"] for raw in redis_client.lrange(key, 0, -1)]


def seeded(store, key: str, n: int) -> list[str]:
    expected = [f"m{i}" for i in range(n)]
    if n:
        store.set_messages(key, [msg(t) for t in expected])
    return expected


def test_append_returns_length_and_keeps_order(make_store, redis_client):
    store = make_store()
    assert store.add_message("chat", msg("a")) == 1
    assert store.add_message("chat", {"role": "assistant", "content": "b"}) == 2
    assert store.add_messages("chat", [msg("c"), msg("d")]) == 4
    assert texts(store.get_messages("chat")) == ["a", "b", "c", "d"]
    assert store.get_messages("chat")[1].role == "assistant"
    assert redis_client.type("chat") == b"list"
    assert store.count("chat") == 4


def test_add_messages_of_nothing_changes_nothing(make_store, redis_client):
    store = make_store()
    assert store.add_messages("chat", []) == 0
    assert redis_client.exists("chat") == 0


@pytest.mark.parametrize("n", [0, 1, 5, 40])
def test_insert_follows_list_insert(make_store, redis_client, n):
    # 40 elements reach the branch that moves a short tail (index 38, 39) as well as the mark.
    store = make_store()
    for idx in sorted({-n - 5, -n, -3, -1, 0, 1, n // 2, n - 2, n - 1, n, n + 7}):
        expected = seeded(store, "chat", n)
        expected.insert(idx, "new")
        assert store.add_message("chat", msg("new"), idx=idx) == n + 1
        assert stored_texts(redis_client, "chat") == expected, idx
        store.delete_messages("chat")


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_delete_at_index_returns_the_message_and_keeps_order(make_store, redis_client, n):
    store = make_store()
    for idx in range(n):
        expected = seeded(store, "chat", n)
        removed = expected.pop(idx)
        got = store.delete_message("chat", idx)
        assert isinstance(got, ChatMessage) and got.content == removed
        assert stored_texts(redis_client, "chat") == expected
    assert redis_client.exists("chat") == (1 if n > 1 else 0)


@pytest.mark.parametrize("idx", [-1, -3, 3, 4, 100])
def test_delete_at_index_out_of_range_changes_nothing(make_store, redis_client, idx):
    store = make_store()
    expected = seeded(store, "chat", 3)
    assert store.delete_message("chat", idx) is None
    assert stored_texts(redis_client, "chat") == expected
    assert store.delete_message("missing", 0) is None
    assert redis_client.exists("missing") == 0


def test_deleting_the_only_message_removes_the_key(make_store, redis_client):
    store = make_store(ttl=60)
    seeded(store, "chat", 1)
    assert store.delete_message("chat", 0).content == "m0"
    assert redis_client.exists("chat") == 0


def test_delete_last(make_store, redis_client):
    store = make_store()
    seeded(store, "chat", 2)
    assert store.delete_last_message("chat").content == "m1"
    assert store.delete_last_message("chat").content == "m0"
    assert redis_client.exists("chat") == 0
    assert store.delete_last_message("chat") is None


def test_set_replaces_and_empty_set_removes(make_store, redis_client):
    store = make_store()
    seeded(store, "chat", 5)
    assert store.set_messages("chat", [msg("x"), msg("y")]) == 2
    assert stored_texts(redis_client, "chat") == ["x", "y"]
    assert store.set_messages("chat", []) == 0
    assert redis_client.exists("chat") == 0


def test_delete_messages_returns_what_it_held(make_store, redis_client):
    store = make_store()
    expected = seeded(store, "chat", 3)
    assert texts(store.delete_messages("chat")) == expected
    assert redis_client.exists("chat") == 0
    assert store.delete_messages("chat") is None


def test_reads_of_a_missing_key(make_store):
    store = make_store()
    assert store.get_messages("nothing") == []
    assert store.count("nothing") == 0


def test_namespace_prefixes_every_key_and_get_keys_strips_it(make_store, redis_client):
    store = make_store(namespace="app:chat:")
    other = make_store(namespace="other:")
    store.add_message("alice", msg("hi"))
    store.add_message("bob", msg("hi"))
    other.add_message("carol", msg("hi"))
    redis_client.set("app:chat:not-a-list", "x")
    assert redis_client.exists("app:chat:alice") == 1
    assert store.get_keys() == ["alice", "bob"]
    assert other.get_keys() == ["carol"]


def test_get_keys_escapes_glob_characters_of_the_namespace(make_store, redis_client):
    store = make_store(namespace="t[1]*:")
    store.add_message("k", msg("hi"))
    redis_client.rpush("t1x:k", "not ours")
    assert store.get_keys() == ["k"]


def test_get_keys_without_namespace_lists_only_lists(make_store, redis_client):
    store = make_store()
    store.add_message("one", msg("hi"))
    store.add_message("two", msg("hi"))
    redis_client.set("plain-string", "x")
    redis_client.hset("a-hash", "f", "v")
    assert store.get_keys() == ["one", "two"]


def test_a_client_that_decodes_responses_works_too(redis_url, redis_client):
    import redis

    from atomic_chat_store import RedisChatStore

    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        store = RedisChatStore(client)
        store.add_messages("chat", [msg("a"), msg("b")])
        assert store.delete_message("chat", 0).content == "a"
        assert texts(store.get_messages("chat")) == ["b"]
        assert store.get_keys() == ["chat"]


def test_unknown_fields_and_block_types_survive_a_round_trip(make_store, redis_client):
    store = make_store()
    raw = {
        "role": "assistant",
        "additional_kwargs": {"tool_calls": [{"id": "1"}]},
        "blocks": [
            {"block_type": "text", "text": "look"},
            {"block_type": "image", "url": "https://example.invalid/x.png", "detail": "low"},
        ],
        "future_field": {"kept": True},
    }
    store.add_message("chat", raw)
    assert json.loads(redis_client.lindex("chat", 0)) == raw
    (back,) = store.get_messages("chat")
    assert back.model_dump() == raw
    assert back.content == "look"


def test_the_older_content_form_reads_back(make_store, redis_client):
    store = make_store()
    redis_client.rpush(
        "chat", json.dumps({"role": "user", "content": "old", "additional_kwargs": {}})
    )
    (message,) = store.get_messages("chat")
    assert message.content == "old"
    assert message.blocks == [{"block_type": "text", "text": "old"}]


def test_content_beside_blocks_is_kept(make_store, redis_client):
    store = make_store()
    stored = {
        "role": "user",
        "additional_kwargs": {},
        "blocks": [{"block_type": "text", "text": "from blocks"}],
        "content": "from content",
    }
    redis_client.rpush("chat", json.dumps(stored))
    (message,) = store.get_messages("chat")
    assert message.content == "from blocks"
    store.set_messages("chat", [message])
    assert json.loads(redis_client.lindex("chat", 0)) == stored
