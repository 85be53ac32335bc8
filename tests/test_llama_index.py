"""The LlamaIndex drop-in, against a real Redis and against the seed it replaces
(``llama-index-storage-chat-store-redis``), which writes and reads the same keys."""

from __future__ import annotations

import asyncio
import base64
import gc
import inspect
import json
import pickle
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio
from llama_index.core.base.llms import types as llama_types
from llama_index.core.llms import ChatMessage, MessageRole, TextBlock
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.storage.chat_store.base import BaseChatStore
from llama_index.storage.chat_store.redis import RedisChatStore as SeedChatStore

from atomic_chat_store import ChatMessage as OurChatMessage
from atomic_chat_store import (
    ConnectionRefusedByServerError,
    CorruptMessageError,
    MessageTooLargeError,
    WrongTypeError,
)
from atomic_chat_store import messages as acs_messages
from atomic_chat_store.llama_index import (
    RedisChatStore,
    _url_without_secrets,
    from_llama_message,
    to_llama_message,
)
from conftest import round_trips

TTL = 300  # seconds
TTL_MS = TTL * 1000
ALMOST_EXPIRED_MS = 5_000

# A 1x1 PNG: real image bytes, so LlamaIndex guesses the mimetype and stores base64.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def m(text: str, role: str = "user") -> ChatMessage:
    return ChatMessage(role=role, content=text)


def texts(messages: list[ChatMessage]) -> list[str | None]:
    return [message.content for message in messages]


def rich_messages() -> list[ChatMessage]:
    """Every kind of content block this LlamaIndex has, and additional_kwargs of every shape."""
    t = llama_types
    blocks: list[Any] = [
        t.TextBlock(text="look"),
        t.ImageBlock(image=PNG),
        t.ImageBlock(url="https://example.com/cat.png", detail="high"),
        t.AudioBlock(audio=b"RIFF\x00\x00\x00\x00WAVEfmt ", format="wav"),
        t.DocumentBlock(data=b"%PDF-1.4 tiny", title="doc"),
    ]
    # Blocks newer than the oldest LlamaIndex we support (0.12), when this one has them.
    if hasattr(t, "VideoBlock"):
        blocks.append(t.VideoBlock(video=b"\x00\x00\x00\x18ftypmp42", video_mimetype="video/mp4"))
    if hasattr(t, "CachePoint"):
        blocks.append(t.CachePoint(cache_control=t.CacheControl(type="ephemeral")))
    if hasattr(t, "ThinkingBlock"):
        blocks.append(t.ThinkingBlock(content="hmm", num_tokens=3, additional_information={"s": 1}))
    if hasattr(t, "ToolCallBlock"):
        blocks.append(t.ToolCallBlock(tool_call_id="c1", tool_name="search", tool_kwargs={"q": 1}))
    if hasattr(t, "CitableBlock"):
        blocks.append(t.CitableBlock(content=[t.TextBlock(text="quoted")], source="s", title="T"))
    if hasattr(t, "CitationBlock"):
        blocks.append(
            t.CitationBlock(
                cited_content=t.TextBlock(text="c"),
                source="s",
                title="T",
                additional_location_info={"page": 2},
            )
        )
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="You are terse."),
        ChatMessage(role="user", content='héllo \u2028 "quoted" ✓ 😀 \\ /'),
        ChatMessage(role="user", blocks=blocks),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            content=None,
            additional_kwargs={
                "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
                "float": 1.5,
                "big": 2**70,
                "none": None,
                "nested": {"list": [1, "two", {"three": [3.0]}]},
            },
        ),
        ChatMessage(role=MessageRole.TOOL, content="42", additional_kwargs={"tool_call_id": "c1"}),
        ChatMessage(role=MessageRole.ASSISTANT, content=""),
        ChatMessage(role=MessageRole.USER),  # no blocks at all
    ]


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def store(redis_url: str, redis_client: redis.Redis) -> Iterator[RedisChatStore]:
    chat_store = RedisChatStore(redis_url=redis_url)
    yield chat_store
    chat_store.close()


@pytest.fixture
def ttl_store(redis_url: str, redis_client: redis.Redis) -> Iterator[RedisChatStore]:
    chat_store = RedisChatStore(redis_url=redis_url, ttl=TTL)
    yield chat_store
    chat_store.close()


@pytest.fixture
async def astore(
    redis_url: str, async_redis_client: redis.asyncio.Redis
) -> AsyncIterator[RedisChatStore]:
    chat_store = RedisChatStore(redis_url=redis_url)
    yield chat_store
    await chat_store.aclose()
    chat_store.close()


@pytest.fixture
async def attl_store(
    redis_url: str, async_redis_client: redis.asyncio.Redis
) -> AsyncIterator[RedisChatStore]:
    chat_store = RedisChatStore(redis_url=redis_url, ttl=TTL)
    yield chat_store
    await chat_store.aclose()
    chat_store.close()


@pytest.fixture
def seed(redis_url: str, redis_client: redis.Redis) -> Iterator[SeedChatStore]:
    """The seed on our test server. Both clients are given: without them it connects to
    localhost:6379 in its constructor."""
    sync_client = redis.Redis.from_url(redis_url)
    async_client = redis.asyncio.Redis.from_url(redis_url)
    yield SeedChatStore(redis_client=sync_client, aredis_client=async_client)
    sync_client.close()


@pytest.fixture
def seed_with_ttl(redis_url: str, redis_client: redis.Redis) -> Iterator[SeedChatStore]:
    sync_client = redis.Redis.from_url(redis_url)
    yield SeedChatStore(
        redis_client=sync_client, aredis_client=redis.asyncio.Redis.from_url(redis_url), ttl=TTL
    )
    sync_client.close()


@pytest.fixture
async def aseed(
    redis_url: str, async_redis_client: redis.asyncio.Redis
) -> AsyncIterator[SeedChatStore]:
    sync_client = redis.Redis.from_url(redis_url)
    async_client = redis.asyncio.Redis.from_url(redis_url)
    yield SeedChatStore(redis_client=sync_client, aredis_client=async_client)
    await async_client.aclose()
    sync_client.close()


def stored(client: redis.Redis, key: str) -> list[bytes]:
    return client.lrange(key, 0, -1)


def connections_named(client: redis.Redis, name: str) -> int:
    """How many connections of that client name the server holds, once closed ones are gone:
    the server may list a connection for a moment after its client closed it."""
    deadline = time.monotonic() + 2
    while True:
        count = sum(1 for entry in client.client_list() if entry["name"] == name)
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


def stored_json(messages: list[ChatMessage]) -> list[bytes]:
    """What the seed stores for these messages: LlamaIndex's own JSON, one element each."""
    return [message.model_dump_json().encode() for message in messages]


# -- the class ------------------------------------------------------------------------------------


def test_it_is_a_complete_base_chat_store_with_native_async_methods() -> None:
    assert issubclass(RedisChatStore, BaseChatStore)
    assert not RedisChatStore.__abstractmethods__
    base_methods = {
        name
        for name, member in vars(BaseChatStore).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }
    assert len(base_methods) == 14 and {"aget_keys", "adelete_last_message"} <= base_methods
    for name in base_methods:
        # Not BaseChatStore's versions: those run the sync method in a thread.
        assert getattr(RedisChatStore, name) is not getattr(BaseChatStore, name), name
        ours = inspect.signature(getattr(RedisChatStore, name))
        theirs = inspect.signature(getattr(BaseChatStore, name))
        assert list(ours.parameters)[: len(theirs.parameters)] == list(theirs.parameters), name
        assert inspect.iscoroutinefunction(getattr(RedisChatStore, name)) == (
            inspect.iscoroutinefunction(getattr(BaseChatStore, name))
        ), name
    # The seed's extra ``idx`` of add_message, sync and async.
    assert "idx" in inspect.signature(RedisChatStore.add_message).parameters
    assert "idx" in inspect.signature(RedisChatStore.async_add_message).parameters


def test_class_name_and_fields_are_the_seeds(redis_url: str, store: RedisChatStore) -> None:
    assert RedisChatStore.class_name() == SeedChatStore.class_name() == "RedisChatStore"
    with_ttl = RedisChatStore(redis_url=redis_url, ttl=TTL)
    assert with_ttl.to_dict() == {
        "redis_url": redis_url,
        "ttl": TTL,
        "class_name": "RedisChatStore",
    }
    assert (
        set(RedisChatStore.model_fields) == set(SeedChatStore.model_fields) == {"redis_url", "ttl"}
    )
    assert store.redis_url == redis_url and store.ttl is None


def test_from_dict_makes_a_working_store(redis_url: str, redis_client: redis.Redis) -> None:
    original = RedisChatStore(redis_url=redis_url, ttl=TTL)
    copy = RedisChatStore.from_dict(original.to_dict())
    copy.add_message("chat", m("hi"))
    assert texts(original.get_messages("chat")) == ["hi"]
    assert 0 < redis_client.pttl("chat") <= TTL_MS
    original.close()
    copy.close()


# -- the password is never shown ------------------------------------------------------------------


@dataclass
class AclUser:
    name: str
    password: str
    url: str  # the test server's URL with this user and password in its userinfo


@pytest.fixture
def acl_user(redis_url: str, redis_client: redis.Redis) -> Iterator[AclUser]:
    """A user with a password on the test server, deleted afterwards (its connections with it)."""
    name, password = f"acs-user-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    redis_client.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all")
    assert redis_url.startswith("redis://")
    yield AclUser(name, password, redis_url.replace("redis://", f"redis://{name}:{password}@", 1))
    redis_client.execute_command("ACL", "DELUSER", name)


def connections_of_user(client: redis.Redis, user: str) -> int:
    return sum(1 for entry in client.client_list() if entry.get("user") == user)


def wait_for_no_connections_of_user(client: redis.Redis, user: str) -> None:
    """The server may list a connection for a moment after its client closed it."""
    deadline = time.monotonic() + 2
    while connections_of_user(client, user) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert connections_of_user(client, user) == 0


def shown(store: RedisChatStore) -> dict[str, str]:
    """Everything that prints or saves a store."""
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="k")
    return {
        "repr": repr(store),
        "str": str(store),
        "to_dict": repr(store.to_dict()),
        "to_json": store.to_json(),
        "model_dump_json": store.model_dump_json(),
        "ChatMemoryBuffer.to_dict": json.dumps(memory.to_dict()),
    }


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_the_password_is_in_no_output_and_the_store_still_authenticates(
    acl_user: AclUser, redis_client: redis.Redis, where: str
) -> None:
    if where == "userinfo":
        url = acl_user.url
    else:  # the password as a query parameter, beside one that stays
        url = f"{acl_user.url.replace(f':{acl_user.password}@', '@')}?password={acl_user.password}"
        url += "&socket_timeout=5"
    store = RedisChatStore(redis_url=url, ttl=TTL)
    for name, text in shown(store).items():
        assert acl_user.password not in text, name
        assert acl_user.name in text, name  # the user name stays: only the secret goes
    assert "***" not in store.redis_url
    store.add_message("chat", m("hi"))
    assert connections_of_user(redis_client, acl_user.name) == 1  # the sync client, as the user
    assert asyncio.run(store.aget_messages("chat")) == [m("hi")]  # the async one, too
    assert texts(store.get_messages("chat")) == ["hi"]
    store.close()


def test_a_store_rebuilt_from_its_dict_needs_the_password_again(
    acl_user: AclUser, redis_client: redis.Redis
) -> None:
    original = RedisChatStore(redis_url=acl_user.url, ttl=TTL)
    data = original.to_dict()
    original.close()
    assert acl_user.password not in json.dumps(data)
    without = RedisChatStore.from_dict(data)
    with pytest.raises(ConnectionRefusedByServerError) as refused:  # the user, no password
        without.get_messages("chat")
    assert isinstance(refused.value.reason, redis.AuthenticationError)
    without.close()
    for rebuilt in (
        RedisChatStore.from_dict(data, password=acl_user.password),
        RedisChatStore.from_dict(data, redis_url=acl_user.url),
    ):
        wait_for_no_connections_of_user(redis_client, acl_user.name)
        rebuilt.add_message("chat", m("again"))
        assert connections_of_user(redis_client, acl_user.name) == 1  # authenticated as the user
        assert 0 < redis_client.pttl("chat") <= TTL_MS
        assert texts(rebuilt.get_messages("chat"))[-1] == "again"
        rebuilt.close()
    in_redis = [ChatMessage.model_validate_json(raw) for raw in stored(redis_client, "chat")]
    assert texts(in_redis) == ["again", "again"]


def test_a_wrong_password_in_the_url_is_used_as_given(acl_user: AclUser) -> None:
    store = RedisChatStore(redis_url=acl_user.url.replace(acl_user.password, "wrong"))
    with pytest.raises(ConnectionRefusedByServerError) as refused:
        store.get_messages("chat")
    assert isinstance(refused.value.reason, redis.AuthenticationError)
    store.close()


def test_a_pickled_store_keeps_the_full_url_and_reconnects(acl_user: AclUser) -> None:
    store = RedisChatStore(redis_url=acl_user.url)
    store.add_message("chat", m("a"))
    copy = pickle.loads(pickle.dumps(store))
    assert acl_user.password not in repr(copy)
    assert copy.get_messages("chat") == [m("a")]
    copy.close()
    store.close()


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("redis://:s3cret@host:6379", "redis://host:6379"),
        ("redis://user:s3cret@host:6379/2", "redis://user@host:6379/2"),
        (
            "rediss://user:s3cr%40t@host/0?ssl_cert_reqs=none",
            "rediss://user@host/0?ssl_cert_reqs=none",
        ),
        (
            "redis+sentinel://user:s3cret@h1:26379,h2:26379/svc",
            "redis+sentinel://user@h1:26379,h2:26379/svc",
        ),
        (
            "redis+sentinel://h1:26379,h2:26379/svc/0?sentinel_password=s3cret&password=s3cret",
            "redis+sentinel://h1:26379,h2:26379/svc/0",
        ),
        ("redis://h/0?socket_timeout=1&PASSWORD=s3cret&db=1", "redis://h/0?socket_timeout=1&db=1"),
        ("redis://h?pass%77ord=s3cret", "redis://h"),
        ("redis://h?ssl_password=s3cret", "redis://h"),
        ("redis://:s3c@ret@host", "redis://host"),  # an unescaped "@": the last one ends it
        ("redis://user:@host", "redis://user@host"),
        ("redis://host#s3cret", "redis://host"),  # redis-py ignores the fragment
        ("unix://:s3cret@/run/redis.sock?db=0", "unix:///run/redis.sock?db=0"),
        ("unix:///run/re@dis.sock", "unix:///run/re@dis.sock"),  # an "@" in the path stays
        ("redis://localhost:6379", "redis://localhost:6379"),
        ("not a url", "not a url"),
    ],
)
def test_every_secret_is_removed_from_the_url_the_hosts_kept(url: str, public: str) -> None:
    assert _url_without_secrets(url) == public
    assert "s3c" not in public


def test_the_module_says_how_to_install_llama_index_when_it_is_missing() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["llama_index"] = None  # as if llama-index-core were not installed
        import atomic_chat_store  # the core package never needs it
        try:
            import atomic_chat_store.llama_index
        except ImportError as error:
            print("ImportError:", error)
        else:
            print("no error")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.startswith("ImportError: atomic_chat_store.llama_index needs LlamaIndex")
    assert "pip install 'atomic-chat-store[llama-index]'" in result.stdout


def test_bad_ttl_and_url_are_refused_at_construction(redis_url: str) -> None:
    with pytest.raises(ValueError):
        RedisChatStore(redis_url=redis_url, ttl=-1)
    with pytest.raises(ValueError, match="scheme"):
        RedisChatStore(redis_url="http://127.0.0.1:1")


# -- conversion -----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(rich_messages())))
def test_messages_convert_both_ways_without_loss(index: int) -> None:
    message = rich_messages()[index]
    ours = from_llama_message(message)
    # Ours writes exactly the JSON LlamaIndex writes...
    assert ours.model_dump_json() == message.model_dump_json()
    # ...and LlamaIndex's model_validate of our model_dump gives the message back.
    back = to_llama_message(ours)
    assert back == message
    assert back.model_dump_json() == message.model_dump_json()
    assert (
        to_llama_message(OurChatMessage.model_validate_json(message.model_dump_json())) == message
    )


def test_images_survive_as_llama_index_reads_them() -> None:
    message = rich_messages()[2]
    back = to_llama_message(from_llama_message(message))
    image = back.blocks[1]
    assert isinstance(image, llama_types.ImageBlock)
    assert image.resolve_image().read() == PNG
    assert image.image_mimetype == "image/png"
    assert str(back.blocks[2].url) == "https://example.com/cat.png"
    assert [type(block) for block in back.blocks] == [type(block) for block in message.blocks]


def test_our_unknown_fields_are_kept_by_ours_and_ignored_by_llama_index() -> None:
    raw = b'{"role":"user","additional_kwargs":{"k":1},"blocks":[],"trace_id":"t-1"}'
    ours = OurChatMessage.model_validate_json(raw)
    assert ours.model_dump()["trace_id"] == "t-1"
    theirs = to_llama_message(ours)
    assert theirs == ChatMessage.model_validate_json(raw)  # what the seed would read
    assert theirs.additional_kwargs == {"k": 1}


# -- every sync method ----------------------------------------------------------------------------


def test_set_and_get_messages(store: RedisChatStore, redis_client: redis.Redis) -> None:
    messages = rich_messages()
    store.set_messages("chat", messages)
    assert store.get_messages("chat") == messages
    assert stored(redis_client, "chat") == stored_json(messages)
    store.set_messages("chat", [m("only")])
    assert texts(store.get_messages("chat")) == ["only"]
    store.set_messages("chat", [])
    assert redis_client.exists("chat") == 0
    assert store.get_messages("chat") == []
    assert store.get_messages("never-written") == []


def test_add_message_appends_or_inserts_like_list_insert(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    assert store.add_message("chat", m("b")) is None
    store.add_message("chat", m("d"))
    store.add_message("chat", m("a"), idx=0)
    store.add_message("chat", m("c"), idx=2)
    store.add_message("chat", m("e"), idx=99)
    store.add_message("chat", m("d2"), idx=-1)
    expected = ["a", "b", "c", "d", "d2", "e"]
    expected_list = ["a", "b", "c", "d", "e"]
    expected_list.insert(-1, "d2")
    assert expected == expected_list
    assert texts(store.get_messages("chat")) == expected
    assert stored(redis_client, "chat") == stored_json([m(t) for t in expected])


def test_delete_messages_returns_what_was_removed(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    messages = rich_messages()
    store.set_messages("chat", messages)
    assert store.delete_messages("chat") == messages
    assert redis_client.exists("chat") == 0
    assert store.delete_messages("chat") is None


def test_delete_message_removes_one_and_keeps_the_order(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    store.set_messages("chat", [m(t) for t in "abcde"])
    removed = store.delete_message("chat", 2)
    assert isinstance(removed, ChatMessage) and removed == m("c")
    assert texts(store.get_messages("chat")) == ["a", "b", "d", "e"]
    assert store.delete_message("chat", 0) == m("a")
    assert store.delete_message("chat", 2) == m("e")
    assert texts(store.get_messages("chat")) == ["b", "d"]
    # Out of range, negative included (the seed's rule): None, nothing changes.
    before = stored(redis_client, "chat")
    assert store.delete_message("chat", 2) is None
    assert store.delete_message("chat", -1) is None
    assert store.delete_message("missing", 0) is None
    assert stored(redis_client, "chat") == before


def test_delete_last_message(store: RedisChatStore, redis_client: redis.Redis) -> None:
    store.set_messages("chat", [m("a"), m("b")])
    removed = store.delete_last_message("chat")
    assert isinstance(removed, ChatMessage) and removed == m("b")
    assert store.delete_last_message("chat") == m("a")
    assert redis_client.exists("chat") == 0
    assert store.delete_last_message("chat") is None


def test_get_keys_lists_conversations_only(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    assert store.get_keys() == []
    store.set_messages("b", [m("x")])
    store.add_message("a", m("y"))
    redis_client.set("a-string", "not a chat")
    redis_client.hset("a-hash", "f", "v")
    assert store.get_keys() == ["a", "b"]


# -- every async method ---------------------------------------------------------------------------


async def test_aset_and_aget_messages(
    astore: RedisChatStore, async_redis_client: redis.asyncio.Redis
) -> None:
    messages = rich_messages()
    await astore.aset_messages("chat", messages)
    assert await astore.aget_messages("chat") == messages
    assert await async_redis_client.lrange("chat", 0, -1) == stored_json(messages)
    await astore.aset_messages("chat", [])
    assert await async_redis_client.exists("chat") == 0
    assert await astore.aget_messages("chat") == []


async def test_async_add_message(
    astore: RedisChatStore, async_redis_client: redis.asyncio.Redis
) -> None:
    assert await astore.async_add_message("chat", m("b")) is None
    await astore.async_add_message("chat", m("a"), idx=0)
    await astore.async_add_message("chat", m("c"), idx=5)
    await astore.async_add_message("chat", m("b2"), idx=-1)
    assert texts(await astore.aget_messages("chat")) == ["a", "b", "b2", "c"]
    assert await async_redis_client.lrange("chat", 0, -1) == stored_json(
        [m(t) for t in ["a", "b", "b2", "c"]]
    )


async def test_adelete_messages(
    astore: RedisChatStore, async_redis_client: redis.asyncio.Redis
) -> None:
    messages = rich_messages()
    await astore.aset_messages("chat", messages)
    assert await astore.adelete_messages("chat") == messages
    assert await async_redis_client.exists("chat") == 0
    assert await astore.adelete_messages("chat") is None


async def test_adelete_message(
    astore: RedisChatStore, async_redis_client: redis.asyncio.Redis
) -> None:
    await astore.aset_messages("chat", [m(t) for t in "abc"])
    removed = await astore.adelete_message("chat", 1)
    assert isinstance(removed, ChatMessage) and removed == m("b")
    assert texts(await astore.aget_messages("chat")) == ["a", "c"]
    assert await astore.adelete_message("chat", 2) is None
    assert await astore.adelete_message("chat", -1) is None
    assert await astore.adelete_message("chat", 0) == m("a")
    assert await astore.adelete_message("chat", 0) == m("c")
    assert await async_redis_client.exists("chat") == 0


async def test_adelete_last_message(
    astore: RedisChatStore, async_redis_client: redis.asyncio.Redis
) -> None:
    await astore.aset_messages("chat", [m("a"), m("b")])
    assert await astore.adelete_last_message("chat") == m("b")
    assert texts(await astore.aget_messages("chat")) == ["a"]
    assert await astore.adelete_last_message("chat") == m("a")
    assert await astore.adelete_last_message("chat") is None
    assert await async_redis_client.exists("chat") == 0


async def test_aget_keys(astore: RedisChatStore, async_redis_client: redis.asyncio.Redis) -> None:
    assert await astore.aget_keys() == []
    await astore.aset_messages("b", [m("x")])
    await astore.async_add_message("a", m("y"))
    await async_redis_client.set("a-string", "not a chat")
    assert await astore.aget_keys() == ["a", "b"]


async def test_async_methods_use_the_async_client_not_a_thread(
    astore: RedisChatStore, redis_client: redis.Redis, monitored: Any
) -> None:
    await astore.aset_messages("chat", [m("warm up")])  # connects, loads the script
    astore.get_messages("chat")  # connects the sync client
    with monitored() as seen:
        astore.get_messages("chat")
        await astore.aset_messages("chat", [m("a"), m("b")])
        await astore.aget_messages("chat")
        await astore.aget_keys()
    sent = round_trips(seen)
    assert [c.name for c in sent] == ["LRANGE", "EVALSHA", "LRANGE", "SCAN"]
    sync_connection, *async_connections = (c.client for c in sent)
    # One connection of the loop's async client, not the sync client's (from a worker thread).
    assert set(async_connections) == {async_connections[0]} != {sync_connection}


async def test_a_given_sync_client_alone_serves_the_async_methods_too(
    redis_url: str, redis_client: redis.Redis
) -> None:
    # No async client and no URL named: the async methods run the given client in a thread
    # rather than open a connection to the default localhost:6379 (where nothing listens here).
    client = redis.Redis.from_url(redis_url)
    chat_store = RedisChatStore(redis_client=client)
    await chat_store.aset_messages("chat", [m("a"), m("b")])
    await chat_store.async_add_message("chat", m("c"))
    assert texts(await chat_store.aget_messages("chat")) == ["a", "b", "c"]
    assert await chat_store.adelete_last_message("chat") == m("c")
    assert await chat_store.aget_keys() == ["chat"]
    assert stored(redis_client, "chat") == stored_json([m("a"), m("b")])
    client.close()


async def test_given_clients_are_used_as_given(
    redis_url: str, redis_client: redis.Redis, async_redis_client: redis.asyncio.Redis
) -> None:
    sync_client = redis.Redis.from_url(redis_url)
    chat_store = RedisChatStore(
        redis_url="redis://127.0.0.1:1", redis_client=sync_client, aredis_client=async_redis_client
    )
    chat_store.add_message("chat", m("sync"))
    await chat_store.async_add_message("chat", m("async"))
    assert texts(chat_store.get_messages("chat")) == ["sync", "async"]
    chat_store.close()
    await chat_store.aclose()
    assert sync_client.ping() and await async_redis_client.ping()  # not ours to close
    sync_client.close()


def test_asyncio_run_twice_on_one_store(redis_url: str, redis_client: redis.Redis) -> None:
    # A client made in one event loop cannot be used in the next: the store makes one per loop,
    # and closes it as that loop shuts down.
    chat_store = RedisChatStore(redis_url=redis_url, client_name="acs-run-twice")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(chat_store.aset_messages("chat", [m("first loop")]))
        assert texts(asyncio.run(chat_store.aget_messages("chat"))) == ["first loop"]
        gc.collect()  # an unclosed client would warn here
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert connections_named(redis_client, "acs-run-twice") == 0  # both loops' clients closed
    assert len(chat_store._stores.by_loop) == 0  # and the finished loops let go

    async def last_loop() -> list[ChatMessage]:
        try:
            return await chat_store.aget_messages("chat")
        finally:
            await chat_store.aclose()

    assert texts(asyncio.run(last_loop())) == ["first loop"]
    assert connections_named(redis_client, "acs-run-twice") == 0
    chat_store.close()


def test_a_loop_closed_by_hand_closes_its_client(redis_url: str, redis_client: redis.Redis) -> None:
    # A loop closed without shutting its async generators down (LlamaIndex's asyncio_run does
    # so inside a running loop) closes the client the store made for it all the same.
    chat_store = RedisChatStore(redis_url=redis_url, client_name="acs-closed-by-hand")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            loop = asyncio.new_event_loop()
            loop.run_until_complete(chat_store.async_add_message("chat", m("x")))
            loop.close()
        gc.collect()
    assert [w.message for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert connections_named(redis_client, "acs-closed-by-hand") == 0
    assert len(chat_store._stores.by_loop) == 0
    # A loop never closed: close() closes its client.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(chat_store.aget_messages("chat"))
    assert connections_named(redis_client, "acs-closed-by-hand") == 1
    chat_store.close()
    assert connections_named(redis_client, "acs-closed-by-hand") == 0
    loop.close()
    assert texts(chat_store.get_messages("chat")) == ["x", "x", "x"]
    chat_store.close()


async def test_client_options_reach_both_clients(redis_url: str, redis_client: redis.Redis) -> None:
    chat_store = RedisChatStore(redis_url=redis_url, client_name="acs-llama-index")
    chat_store.add_message("chat", m("sync"))
    await chat_store.async_add_message("chat", m("async"))
    names = [client["name"] for client in redis_client.client_list()]
    assert names.count("acs-llama-index") == 2
    await chat_store.aclose()
    chat_store.close()


def test_a_client_decoding_responses_works(redis_url: str, redis_client: redis.Redis) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    chat_store = RedisChatStore(redis_client=client)
    messages = rich_messages()
    chat_store.set_messages("chat", messages)
    assert chat_store.get_messages("chat") == messages
    assert chat_store.delete_message("chat", 0) == messages[0]
    assert chat_store.get_keys() == ["chat"]
    client.close()


def test_pickling_reconnects_from_the_url(store: RedisChatStore, redis_client: redis.Redis) -> None:
    # BaseComponent drops the clients when pickling and calls __init__ with the fields when
    # unpickling, as it does for the seed.
    store.ttl = TTL
    store.set_messages("chat", [m("a")])
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.redis_url, copy.ttl) == (store.redis_url, TTL)
    assert copy.get_messages("chat") == [m("a")]
    copy.close()


# -- behind ChatMemoryBuffer ----------------------------------------------------------------------


def test_chat_memory_buffer(store: RedisChatStore, redis_client: redis.Redis) -> None:
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="k")
    memory.put(m("hello"))
    memory.put(m("hi there", role="assistant"))
    assert texts(memory.get()) == ["hello", "hi there"]
    assert texts(memory.get_all()) == ["hello", "hi there"]
    assert stored(redis_client, "k") == stored_json([m("hello"), m("hi there", role="assistant")])
    memory.set([m("replaced")])
    assert texts(store.get_messages("k")) == ["replaced"]
    assert memory.to_dict()["chat_store"] == {
        "redis_url": store.redis_url,
        "ttl": None,
        "class_name": "RedisChatStore",
    }
    memory.reset()
    assert redis_client.exists("k") == 0
    assert memory.get() == []


async def test_chat_memory_buffer_async(
    astore: RedisChatStore, async_redis_client: redis.asyncio.Redis
) -> None:
    memory = ChatMemoryBuffer.from_defaults(chat_store=astore, chat_store_key="k")
    await memory.aput(m("hello"))
    await memory.aput(m("hi there", role="assistant"))
    assert texts(await memory.aget()) == ["hello", "hi there"]
    await memory.aset([m("replaced")])
    assert texts(await memory.aget_all()) == ["replaced"]
    await memory.areset()
    assert await async_redis_client.exists("k") == 0


def test_chat_memory_buffer_token_limit_reads_from_redis(store: RedisChatStore) -> None:
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="k", token_limit=12)
    for i in range(10):
        memory.put(m(f"message number {i} with a few words"))
    window = memory.get()
    assert 0 < len(window) < 10
    assert texts(window) == texts(store.get_messages("k"))[-len(window) :]


# -- interop with the seed ------------------------------------------------------------------------


def test_what_the_seed_writes_reads_back_identically(
    seed: SeedChatStore, store: RedisChatStore, redis_client: redis.Redis
) -> None:
    messages = rich_messages()
    seed.set_messages("chat", messages)
    seed.add_message("chat", m("appended"))
    seed.add_message("chat", m("inserted"), idx=1)
    raw = stored(redis_client, "chat")
    assert store.get_messages("chat") == seed.get_messages("chat")
    expected = [messages[0], m("inserted"), *messages[1:], m("appended")]
    assert store.get_messages("chat") == expected
    assert stored(redis_client, "chat") == raw  # reading changed nothing


def test_what_ours_writes_reads_back_identically_through_the_seed(
    seed: SeedChatStore, store: RedisChatStore, redis_client: redis.Redis
) -> None:
    messages = rich_messages()
    store.set_messages("ours", messages)
    store.add_message("ours", m("appended"))
    store.add_message("ours", m("inserted"), idx=1)
    seed.set_messages("seed", messages)
    seed.add_message("seed", m("appended"))
    seed.add_message("seed", m("inserted"), idx=1)
    # The same bytes in Redis, element for element...
    assert stored(redis_client, "ours") == stored(redis_client, "seed")
    # ...so the seed reads ours exactly as it reads its own.
    assert seed.get_messages("ours") == seed.get_messages("seed")
    assert seed.get_messages("ours") == [messages[0], m("inserted"), *messages[1:], m("appended")]


async def test_async_interop_with_the_seed(
    aseed: SeedChatStore, astore: RedisChatStore, async_redis_client: redis.asyncio.Redis
) -> None:
    messages = rich_messages()
    await aseed.aset_messages("seed", messages)
    await astore.aset_messages("ours", messages)
    assert await async_redis_client.lrange("ours", 0, -1) == await async_redis_client.lrange(
        "seed", 0, -1
    )
    assert await astore.aget_messages("seed") == messages
    assert await aseed.aget_messages("ours") == messages


def test_an_insert_leaves_the_other_elements_bytes_alone(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    # Elements written by another program, with fields LlamaIndex does not know: the seed's
    # insert reads, re-encodes and rewrites the list, dropping them; ours moves no element.
    foreign = [
        b'{"role":"user","additional_kwargs":{},"blocks":[],"trace_id":"t-1"}',
        b'{"role": "assistant", "content": "old format"}',
    ]
    redis_client.rpush("chat", *foreign)
    store.add_message("chat", m("new"), idx=1)
    assert stored(redis_client, "chat") == [
        foreign[0],
        m("new").model_dump_json().encode(),
        foreign[1],
    ]
    assert texts(store.get_messages("chat")) == [None, "new", "old format"]


# -- TTL ------------------------------------------------------------------------------------------


def prepare_almost_expired(client: redis.Redis, key: str = "chat") -> None:
    client.rpush(key, *stored_json([m(t) for t in "abc"]))
    client.pexpire(key, ALMOST_EXPIRED_MS)


def assert_ttl_refreshed(client: redis.Redis, key: str = "chat") -> None:
    assert TTL_MS - ALMOST_EXPIRED_MS < client.pttl(key) <= TTL_MS


SYNC_WRITES = {
    "set_messages": lambda s: s.set_messages("chat", [m("x"), m("y")]),
    "add_message": lambda s: s.add_message("chat", m("new")),
    "add_message_idx": lambda s: s.add_message("chat", m("new"), idx=1),
    "delete_message": lambda s: s.delete_message("chat", 1),
    "delete_last_message": lambda s: s.delete_last_message("chat"),
}

ASYNC_WRITES = {
    "aset_messages": lambda s: s.aset_messages("chat", [m("x"), m("y")]),
    "async_add_message": lambda s: s.async_add_message("chat", m("new")),
    "async_add_message_idx": lambda s: s.async_add_message("chat", m("new"), idx=1),
    "adelete_message": lambda s: s.adelete_message("chat", 1),
    "adelete_last_message": lambda s: s.adelete_last_message("chat"),
}


@pytest.mark.parametrize("write", SYNC_WRITES)
def test_every_sync_write_refreshes_the_ttl(
    ttl_store: RedisChatStore, redis_client: redis.Redis, write: str
) -> None:
    prepare_almost_expired(redis_client)
    SYNC_WRITES[write](ttl_store)
    assert_ttl_refreshed(redis_client)


@pytest.mark.parametrize("write", ASYNC_WRITES)
async def test_every_async_write_refreshes_the_ttl(
    attl_store: RedisChatStore, redis_client: redis.Redis, write: str
) -> None:
    prepare_almost_expired(redis_client)
    await ASYNC_WRITES[write](attl_store)
    assert_ttl_refreshed(redis_client)


@pytest.mark.parametrize("write", ["sync", "async"])
async def test_delete_messages_removes_the_key_and_its_ttl(
    attl_store: RedisChatStore, redis_client: redis.Redis, write: str
) -> None:
    prepare_almost_expired(redis_client)
    if write == "sync":
        assert texts(attl_store.delete_messages("chat") or []) == ["a", "b", "c"]
    else:
        assert texts(await attl_store.adelete_messages("chat") or []) == ["a", "b", "c"]
    assert redis_client.pttl("chat") == -2  # no key


def test_the_refresh_is_inside_the_script(
    ttl_store: RedisChatStore, redis_client: redis.Redis, monitored: Any
) -> None:
    prepare_almost_expired(redis_client)
    for write in SYNC_WRITES.values():
        write(ttl_store)  # loads every script
    for name, write in SYNC_WRITES.items():
        prepare_almost_expired(redis_client)
        with monitored() as seen:
            write(ttl_store)
        assert [c.name for c in round_trips(seen)] == ["EVALSHA"], name
        expires = [c for c in seen if c.name in ("PEXPIRE", "EXPIRE")]
        # The conversation's, then its record's (a key beside it in the same slot).
        assert [(c.client, c.args[1][:4], c.args[2]) for c in expires] == [
            ("lua", b"chat", str(TTL_MS).encode())
        ] * 2, name


def test_without_ttl_nothing_expires(store: RedisChatStore, redis_client: redis.Redis) -> None:
    store.set_messages("chat", [m("a"), m("b"), m("c")])
    store.add_message("chat", m("d"))
    store.add_message("chat", m("e"), idx=0)
    store.delete_message("chat", 1)
    store.delete_last_message("chat")
    assert redis_client.pttl("chat") == -1


def test_ttl_zero_means_no_expiry_as_in_the_seed(redis_url: str, redis_client: redis.Redis) -> None:
    chat_store = RedisChatStore(redis_url=redis_url, ttl=0)
    chat_store.add_message("chat", m("a"))
    assert redis_client.pttl("chat") == -1
    chat_store.close()


def test_a_reassigned_ttl_applies_to_the_next_write(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    store.add_message("chat", m("a"))
    assert redis_client.pttl("chat") == -1
    store.ttl = TTL  # the seed reads self.ttl on every call; so does this store
    store.add_message("chat", m("b"))
    assert 0 < redis_client.pttl("chat") <= TTL_MS


# -- the seed's defects, fixed --------------------------------------------------------------------


def test_delete_message_keeps_order_returns_a_message_and_keeps_the_ttl(
    ttl_store: RedisChatStore, redis_client: redis.Redis
) -> None:
    ttl_store.set_messages("chat", [m("m0"), m("m1"), m("m2")])
    removed = ttl_store.delete_message("chat", 1)
    assert isinstance(removed, ChatMessage) and removed.content == "m1"
    assert texts(ttl_store.get_messages("chat")) == ["m0", "m2"]
    assert 0 < redis_client.pttl("chat") <= TTL_MS


def test_delete_message_of_the_only_message(
    ttl_store: RedisChatStore, redis_client: redis.Redis
) -> None:
    ttl_store.set_messages("chat", [m("alone")])
    assert ttl_store.delete_message("chat", 0) == m("alone")
    assert redis_client.exists("chat") == 0
    assert ttl_store.get_messages("chat") == []


def test_delete_last_message_returns_a_message_and_refreshes_the_ttl(
    ttl_store: RedisChatStore, redis_client: redis.Redis
) -> None:
    prepare_almost_expired(redis_client)
    removed = ttl_store.delete_last_message("chat")
    assert isinstance(removed, ChatMessage) and removed.content == "c"
    assert_ttl_refreshed(redis_client)


def test_get_keys_never_sends_keys(
    store: RedisChatStore, redis_client: redis.Redis, monitored: Any
) -> None:
    for i in range(30):
        redis_client.rpush(f"chat:{i}", m("x").model_dump_json())
    redis_client.set("cache:1", "not a chat")
    store.get_keys()  # connects
    with monitored() as seen:
        keys = store.get_keys()
    assert keys == sorted(f"chat:{i}" for i in range(30))
    names = [c.name for c in round_trips(seen)]
    assert "KEYS" not in names and set(names) == {"SCAN"}


def test_set_messages_is_one_evalsha(
    store: RedisChatStore, redis_client: redis.Redis, monitored: Any
) -> None:
    store.set_messages("warm-up", [m("x")])
    many = [m(f"message {i}") for i in range(2_500)]  # more than one 1,000-element RPUSH chunk
    with monitored() as seen:
        store.set_messages("chat", many)
    assert [c.name for c in round_trips(seen)] == ["EVALSHA"]
    assert redis_client.llen("chat") == 2_500
    assert stored(redis_client, "chat") == stored_json(many)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.add_message("chat", m("x"), idx=2),
        lambda s: s.delete_message("chat", 2),
        lambda s: s.delete_last_message("chat"),
        lambda s: s.delete_messages("chat"),
    ],
    ids=["insert", "delete_message", "delete_last_message", "delete_messages"],
)
def test_every_edit_is_one_evalsha(
    store: RedisChatStore, redis_client: redis.Redis, monitored: Any, call: Any
) -> None:
    call(store)  # connects, loads the script
    redis_client.rpush("chat", *stored_json([m(t) for t in "abcde"]))
    with monitored() as seen:
        call(store)
    assert [c.name for c in round_trips(seen)] == ["EVALSHA"]


async def test_async_set_messages_is_one_evalsha(
    astore: RedisChatStore, async_redis_client: redis.asyncio.Redis, monitored: Any
) -> None:
    await astore.aset_messages("warm-up", [m("x")])
    with monitored() as seen:
        await astore.aset_messages("chat", [m(f"message {i}") for i in range(1_500)])
    assert [c.name for c in round_trips(seen)] == ["EVALSHA"]
    assert await async_redis_client.llen("chat") == 1_500


def test_the_seed_has_the_defects_these_tests_catch(
    seed_with_ttl: SeedChatStore, redis_client: redis.Redis, monitored: Any
) -> None:
    """The same scenarios through the seed (0.8.0), to show the tests above discriminate.
    If this fails, the seed changed: review the list of differences in the README."""
    seed = seed_with_ttl
    seed.set_messages("chat", [m("m0"), m("m1"), m("m2")])
    removed = seed.delete_message("chat", 1)
    assert isinstance(removed, bytes)  # not a ChatMessage
    assert texts(seed.get_messages("chat")) == ["m2", "m0"]  # order reversed
    assert redis_client.pttl("chat") == -1  # TTL dropped

    seed.set_messages("alone", [m("alone")])
    with pytest.raises(redis.ResponseError):
        seed.delete_message("alone", 0)

    assert isinstance(seed.delete_last_message("chat"), bytes)

    redis_client.set("cache:1", "not a chat")
    with monitored() as seen:
        keys = seed.get_keys()
    assert "cache:1" in keys
    assert "KEYS" in [c.name for c in round_trips(seen)]

    with monitored() as seen:
        seed.set_messages("many", [m(str(i)) for i in range(10)])
    assert len(round_trips(seen)) > 10  # a DEL, then an RPUSH and an EXPIRE per message


# -- errors ---------------------------------------------------------------------------------------


def test_a_key_of_another_type_is_refused_untouched(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    redis_client.set("chat", "a string")
    with pytest.raises(WrongTypeError):
        store.add_message("chat", m("x"))
    with pytest.raises(WrongTypeError):
        store.get_messages("chat")
    assert redis_client.get("chat") == b"a string"


def test_a_corrupt_element_is_named_and_left_in_place(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    redis_client.rpush("chat", m("ok").model_dump_json(), b"{not json")
    with pytest.raises(CorruptMessageError) as caught:
        store.get_messages("chat")
    assert caught.value.index == 1 and caught.value.raw == b"{not json"
    assert redis_client.llen("chat") == 2


def test_a_message_llama_index_cannot_read_is_named_not_lost(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    # Valid for atomic-chat-store, but a block type this LlamaIndex does not know; written by
    # another program, so that re-encoding it would not give its bytes back.
    future = b'{"role": "user", "blocks": [{"block_type": "hologram"}], "trace_id": "t-1"}'
    redis_client.rpush("chat", m("ok").model_dump_json(), future, m("end").model_dump_json())
    with pytest.raises(CorruptMessageError) as caught:
        store.get_messages("chat")
    assert caught.value.index == 1 and not caught.value.removed
    assert caught.value.raw == future  # the bytes as stored
    with pytest.raises(CorruptMessageError) as caught:
        store.delete_message("chat", 1)
    assert caught.value.index == 1 and caught.value.removed
    assert caught.value.raw == future  # the removed bytes, to keep
    assert texts(store.get_messages("chat")) == ["ok", "end"]
    redis_client.rpush("chat", future)
    with pytest.raises(CorruptMessageError) as caught:
        store.delete_last_message("chat")
    assert (caught.value.index, caught.value.removed, caught.value.raw) == (-1, True, future)
    redis_client.rpush("chat", future)
    with pytest.raises(CorruptMessageError) as caught:
        store.delete_messages("chat")
    assert (caught.value.index, caught.value.removed, caught.value.raw) == (2, True, future)


def test_messages_over_the_limit_are_refused_before_sending(
    redis_url: str, redis_client: redis.Redis
) -> None:
    chat_store = RedisChatStore(redis_url=redis_url, max_message_bytes=1_000)
    with pytest.raises(MessageTooLargeError):
        chat_store.set_messages("chat", [m("small"), m("x" * 2_000)])
    assert redis_client.exists("chat") == 0
    chat_store.close()


def test_writes_store_llama_index_json_without_converting_it(
    store: RedisChatStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LlamaIndex's messages go straight to the operations, which store their own JSON once its
    # shape is checked: never rebuilt as our model first, which would encode each one twice.
    def refuse(message: object) -> OurChatMessage:
        raise AssertionError(f"converted to our model: {message!r}")

    monkeypatch.setattr(acs_messages, "to_chat_message", refuse)
    messages = rich_messages()
    store.set_messages("chat", messages)
    store.add_message("chat", m("appended"))
    store.add_message("chat", m("inserted"), idx=0)
    assert stored(redis_client, "chat") == stored_json([m("inserted"), *messages, m("appended")])


def test_messages_may_also_be_given_as_text_blocks_lists(
    store: RedisChatStore, redis_client: redis.Redis
) -> None:
    message = ChatMessage(role="user", content=[TextBlock(text="a"), TextBlock(text="b")])
    store.add_message("chat", message)
    assert store.get_messages("chat") == [message]
    assert stored(redis_client, "chat") == stored_json([message])
