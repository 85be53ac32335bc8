"""Bad input gets a typed error before anything is sent; stored data is never lost."""

from __future__ import annotations

import datetime
import decimal
import json
import math

import pytest

from atomic_chat_store import (
    ChatMessage,
    ChatStoreError,
    CorruptMessageError,
    InvalidIndexError,
    InvalidKeyError,
    InvalidMessageError,
    MessageTooLargeError,
    RedisChatStore,
    WrongTypeError,
)
from conftest import round_trips

GOOD = ChatMessage(content="fine")

CALLS_WITH_KEY = {
    "add_message": lambda s, k: s.add_message(k, GOOD),
    "insert": lambda s, k: s.add_message(k, GOOD, idx=0),
    "add_messages": lambda s, k: s.add_messages(k, [GOOD]),
    "set_messages": lambda s, k: s.set_messages(k, [GOOD]),
    "get_messages": lambda s, k: s.get_messages(k),
    "delete_messages": lambda s, k: s.delete_messages(k),
    "delete_message": lambda s, k: s.delete_message(k, 0),
    "delete_last_message": lambda s, k: s.delete_last_message(k),
    "count": lambda s, k: s.count(k),
}


@pytest.fixture
def sync_store(redis_url):
    store = RedisChatStore.from_url(redis_url)
    yield store
    store.close()


@pytest.mark.parametrize("call", CALLS_WITH_KEY)
@pytest.mark.parametrize("key", [None, 1, b"bytes", ""], ids=["None", "int", "bytes", "empty"])
def test_a_bad_key_is_refused_before_sending(sync_store, monitored, call, key):
    sync_store.count("warm")
    with monitored() as seen, pytest.raises(InvalidKeyError):
        CALLS_WITH_KEY[call](sync_store, key)
    assert round_trips(seen) == []


@pytest.mark.parametrize("idx", [True, "1", 1.0, None], ids=["bool", "str", "float", "None"])
def test_a_bad_index_is_refused(make_store, redis_client, idx):
    store = make_store()
    store.add_message("chat", GOOD)
    if idx is not None:
        with pytest.raises(InvalidIndexError):
            store.add_message("chat", GOOD, idx=idx)
    with pytest.raises(InvalidIndexError):
        store.delete_message("chat", idx)
    assert redis_client.llen("chat") == 1


@pytest.mark.parametrize(
    "message",
    [5, "text", ["a"], {"role": 5}, {"blocks": "nope"}, {"content": 3}],
    ids=["int", "str", "list", "role-int", "blocks-str", "content-int"],
)
def test_a_value_that_is_not_a_message_is_refused(make_store, redis_client, message):
    store = make_store()
    with pytest.raises(InvalidMessageError):
        store.add_message("chat", message)
    with pytest.raises(InvalidMessageError):
        store.set_messages("chat", [GOOD, message])
    assert redis_client.exists("chat") == 0


@pytest.mark.parametrize(
    "value",
    [datetime.datetime(2024, 1, 2), (1, 2), {1}, decimal.Decimal("1"), b"text", math.nan, object()],
    ids=["datetime", "tuple", "set", "Decimal", "bytes", "NaN", "object"],
)
def test_a_value_json_would_not_read_back_is_refused_before_sending(
    make_store, redis_client, monitored, value
):
    store = make_store()
    store.set_messages("chat", [GOOD])
    bad = ChatMessage(content="bad", additional_kwargs={"k": value})
    with monitored() as seen:
        for write in (
            lambda: store.add_message("chat", bad),
            lambda: store.add_message("chat", {"role": "user", "extra": value}, idx=0),
            lambda: store.add_messages("chat", [GOOD, bad]),
            lambda: store.set_messages("chat", [bad]),
        ):
            with pytest.raises(InvalidMessageError):
                write()
    assert round_trips(seen) == []
    assert redis_client.lrange("chat", 0, -1) == [GOOD.model_dump_json().encode()]


def test_messages_must_be_a_list(make_store):
    store = make_store()
    for not_a_list in ("text", GOOD, {"role": "user"}, 7):
        with pytest.raises(InvalidMessageError):
            store.set_messages("chat", not_a_list)


def test_an_oversized_message_is_refused_and_nothing_is_written(make_store, redis_client):
    store = make_store(max_message_bytes=1_000)
    store.set_messages("chat", [GOOD])
    big = ChatMessage(content="x" * 1_000)
    with pytest.raises(MessageTooLargeError) as raised:
        store.add_message("chat", big)
    assert raised.value.limit == 1_000 and raised.value.size > 1_000
    with pytest.raises(MessageTooLargeError):
        store.set_messages("chat", [GOOD, big])
    assert [json.loads(r)["blocks"][0]["text"] for r in redis_client.lrange("chat", 0, -1)] == [
        "fine"
    ]


def test_the_default_limit_is_4_mib(make_store, redis_client):
    store = make_store()
    store.add_message("chat", ChatMessage(content="x" * (4 * 1024 * 1024 - 200)))
    with pytest.raises(MessageTooLargeError):
        store.add_message("chat", ChatMessage(content="x" * (4 * 1024 * 1024)))
    assert redis_client.llen("chat") == 1


@pytest.mark.parametrize("call", CALLS_WITH_KEY)
def test_a_key_holding_a_non_list_is_left_untouched(make_store, redis_client, call):
    store = make_store(ttl=60)
    redis_client.set("taken", "precious")
    with pytest.raises(WrongTypeError) as raised:
        CALLS_WITH_KEY[call](store, "taken")
    assert raised.value.key == "taken"
    assert isinstance(raised.value, ChatStoreError)
    assert redis_client.get("taken") == b"precious"
    assert redis_client.pttl("taken") == -1


def test_a_corrupt_element_is_named_and_left_in_place(make_store, redis_client):
    store = make_store()
    elements = [GOOD.model_dump_json(), "not json", GOOD.model_dump_json()]
    redis_client.rpush("chat", *elements)
    with pytest.raises(CorruptMessageError) as raised:
        store.get_messages("chat")
    assert (raised.value.key, raised.value.index, raised.value.raw) == ("chat", 1, b"not json")
    assert raised.value.removed is False
    assert [e.decode() for e in redis_client.lrange("chat", 0, -1)] == elements


@pytest.mark.parametrize("element", ['{"role": 5}', "[1, 2]", '{"role":"user"},{"role":"user"}'])
def test_json_that_is_not_one_message_is_corrupt(make_store, redis_client, element):
    store = make_store()
    redis_client.rpush("chat", GOOD.model_dump_json(), element)
    with pytest.raises(CorruptMessageError) as raised:
        store.get_messages("chat")
    assert raised.value.index == 1
    assert redis_client.llen("chat") == 2


def test_deleting_a_corrupt_element_hands_back_its_bytes(make_store, redis_client):
    store = make_store()
    redis_client.rpush("chat", GOOD.model_dump_json(), "garbage", "more garbage")
    with pytest.raises(CorruptMessageError) as raised:
        store.delete_message("chat", 1)
    assert (raised.value.index, raised.value.raw, raised.value.removed) == (1, b"garbage", True)
    assert raised.value.removed_elements == [b"garbage"]
    with pytest.raises(CorruptMessageError) as raised:
        store.delete_last_message("chat")
    assert raised.value.raw == b"more garbage" and raised.value.removed
    assert redis_client.lrange("chat", 0, -1) == [GOOD.model_dump_json().encode()]


def test_errors_are_also_the_builtin_exceptions_callers_expect():
    assert issubclass(InvalidKeyError, ValueError)
    assert issubclass(InvalidIndexError, TypeError)
    assert issubclass(InvalidMessageError, TypeError)
    assert issubclass(MessageTooLargeError, ValueError)
    for error in (CorruptMessageError, WrongTypeError, MessageTooLargeError):
        assert issubclass(error, ChatStoreError)


def test_client_and_url_together_are_refused(redis_url):
    import redis

    with redis.Redis.from_url(redis_url) as client, pytest.raises(ValueError):
        RedisChatStore(client, url=redis_url)
    with pytest.raises(ValueError, match="scheme"):
        RedisChatStore.from_url("http://127.0.0.1:1")


def test_a_pydantic_model_of_another_shape_is_refused(make_store, redis_client):
    from pydantic import BaseModel

    class NotAMessage(BaseModel):
        role: int = 5

    class LooksLikeOne(BaseModel):
        role: str = "tool"
        blocks: list[dict] = [{"block_type": "text", "text": "from a model"}]
        trace_id: str = "abc"

    store = make_store()
    with pytest.raises(InvalidMessageError):
        store.add_message("chat", NotAMessage())
    assert redis_client.exists("chat") == 0
    store.add_message("chat", LooksLikeOne())
    (back,) = store.get_messages("chat")
    assert (back.role, back.content, back.model_extra) == (
        "tool",
        "from a model",
        {"trace_id": "abc"},
    )


def test_fragments_that_would_join_into_messages_are_corrupt(make_store, redis_client):
    # Joined with commas, these three elements read as three valid messages.
    fragments = ['{"role":"a","additional_kwargs":{"k":[1', "2]}}", '{"role":"b"},{"role":"c"}']
    redis_client.rpush("chat", *fragments)
    with pytest.raises(CorruptMessageError) as raised:
        make_store().get_messages("chat")
    assert raised.value.index == 0
    assert redis_client.lrange("chat", 0, -1) == [f.encode() for f in fragments]


def test_an_empty_element_is_corrupt(make_store, redis_client):
    redis_client.rpush("chat", GOOD.model_dump_json(), "")
    with pytest.raises(CorruptMessageError) as raised:
        make_store().get_messages("chat")
    assert (raised.value.index, raised.value.raw) == (1, b"")


def test_a_message_with_spaces_around_its_json_still_reads(make_store, redis_client):
    spaced = "  " + GOOD.model_dump_json() + "\n"
    redis_client.rpush("chat", GOOD.model_dump_json(), spaced)
    assert [m.content for m in make_store().get_messages("chat")] == ["fine", "fine"]


def test_deleting_a_conversation_with_a_corrupt_element_hands_back_every_element(
    make_store, redis_client
):
    elements = [GOOD.model_dump_json().encode(), b"garbage", GOOD.model_dump_json().encode()]
    redis_client.rpush("chat", *elements)
    with pytest.raises(CorruptMessageError) as raised:
        make_store().delete_messages("chat")
    assert (raised.value.index, raised.value.raw, raised.value.removed) == (1, b"garbage", True)
    assert raised.value.removed_elements == elements
    assert redis_client.exists("chat") == 0
