"""A drop-in for LlamaIndex's ``RedisChatStore`` (``llama-index-storage-chat-store-redis``).

Its constructor (plus ``max_message_bytes``), its fields, its ``class_name()`` and its
data in Redis (one list per key, one ``ChatMessage.model_dump_json()`` per element, no key
prefix), so a conversation written by either reads back through the other. What changes is
how it is written: every edit is one Lua script of ``atomic_chat_store``, atomic and one round
trip, with the TTL refreshed inside the same script.

    from atomic_chat_store.llama_index import RedisChatStore
    from llama_index.core.memory import ChatMemoryBuffer

    store = RedisChatStore(redis_url="redis://localhost:6379", ttl=3600)
    memory = ChatMemoryBuffer.from_defaults(chat_store=store, chat_store_key="user-1")

Needs LlamaIndex: ``pip install 'atomic-chat-store[llama-index]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote_plus

import redis
import redis.asyncio

try:
    from llama_index.core.llms import ChatMessage as LlamaChatMessage
    from llama_index.core.storage.chat_store.base import BaseChatStore
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "atomic_chat_store.llama_index needs LlamaIndex (llama-index-core>=0.12), which could not "
        f"be imported ({error}). Install it with: pip install 'atomic-chat-store[llama-index]'"
    ) from error

from pydantic import Field, PrivateAttr, TypeAdapter

from . import operations as ops
from .aio import AsyncRedisChatStore
from .errors import ChatStoreError, CorruptMessageError
from .messages import ChatMessage, decode_conversation, to_chat_message
from .store import RedisChatStore as SyncRedisChatStore

if TYPE_CHECKING:
    from .llama_index_memory import RedisMemoryStore as RedisMemoryStore

# RedisMemoryStore is loaded on first use (see __getattr__): it needs a newer llama-index-core
# than the drop-in, which keeps working without it.
__all__ = ["RedisChatStore", "from_llama_message", "to_llama_message"]

R = TypeVar("R")

DEFAULT_REDIS_URL = "redis://localhost:6379"  # LlamaIndex's default, kept as is

_LLAMA_CONVERSATION = TypeAdapter(list[LlamaChatMessage])
# What LlamaIndex's model raises on data it cannot read: pydantic's ValidationError (a
# ValueError), or what one of its own validators lets through.
_REJECTED = (ValueError, TypeError, AttributeError)


def _url_without_secrets(url: str) -> str:
    """``url`` without its secrets: the password of its userinfo (the user name stays) and every
    query parameter whose name holds "password" (``password``, ``sentinel_password``, ...); the
    fragment, which redis-py ignores, goes too. Only the text is cut: the hosts are not parsed, so
    ``redis+sentinel://user:pw@h1:26379,h2:26379/svc`` keeps all of them."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    rest = rest.partition("#")[0]
    # The authority ends at the first "/" or "?"; its userinfo at its last "@", as redis-py
    # (urllib) reads it.
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        authority = f"{user}@{hosts}" if user else hosts
    path, question, query = path.partition("?")
    if question:
        kept = [
            parameter
            for parameter in query.split("&")
            if "password" not in unquote_plus(parameter.partition("=")[0]).lower()
        ]
        query = "&".join(kept)
    return f"{scheme}://{authority}{path}" + (f"?{query}" if query else "")


def to_llama_message(message: ChatMessage) -> LlamaChatMessage:
    """Our message as LlamaIndex's. Every field LlamaIndex knows is kept (blocks of every type,
    ``additional_kwargs``); top-level fields it does not know are dropped by its model."""
    return LlamaChatMessage.model_validate(message.model_dump())


def from_llama_message(message: LlamaChatMessage) -> ChatMessage:
    """LlamaIndex's message as ours; its JSON is byte for byte what LlamaIndex's own
    ``model_dump_json()`` writes."""
    return to_chat_message(message)


# Writes hand LlamaIndex's messages straight to ``operations``: their own ``model_dump_json()``
# is stored once its shape is checked, never converted to our model first.
#
# Reads decode Redis's reply straight into LlamaIndex's model, as LlamaIndex's store does: a
# detour through our model would validate every message twice. Only when that fails is the
# reply decoded by the operation itself, to raise the typed error naming the element at fault;
# an element only LlamaIndex's model refuses is named next, with its bytes as stored.


def _llama_message(
    operation: ops.Operation[Any], index: int, raw: bytes, *, removed: bool
) -> LlamaChatMessage:
    """One stored element as LlamaIndex's message, else CorruptMessageError holding ``raw``."""
    try:
        return LlamaChatMessage.model_validate_json(raw)
    except _REJECTED as error:
        reason = f"not a LlamaIndex ChatMessage: {error}"
    raise CorruptMessageError(operation.chat_key, index, raw, reason, removed=removed)


def _llama_messages(
    operation: ops.Operation[Any], reply: Sequence[bytes | str], *, removed: bool
) -> list[LlamaChatMessage]:
    raws = [ops.as_bytes(raw) for raw in reply]
    try:  # the whole conversation in one validation call
        return decode_conversation(raws, _LLAMA_CONVERSATION)
    except _REJECTED:
        pass
    operation.decode(reply)  # raises CorruptMessageError for an element our model refuses too
    for index, raw in enumerate(raws):
        _llama_message(operation, index, raw, removed=removed)  # raises for the one at fault
    raise ChatStoreError(  # pragma: no cover - each element reads alone, the list does not
        f"key {operation.chat_key!r} could not be decoded as one list"
    )


def _get_all(config: ops.StoreConfig, key: str) -> ops.Operation[list[LlamaChatMessage]]:
    """LRANGE answering LlamaIndex messages; ``[]`` for a missing key."""
    operation = ops.get_messages(config, key)
    return operation.with_decoder(partial(_llama_messages, operation, removed=False))


def _delete_all(config: ops.StoreConfig, key: str) -> ops.Operation[list[LlamaChatMessage] | None]:
    """delete_messages answering the removed LlamaIndex messages; None when there were none."""
    operation = ops.delete_messages(config, key)

    def decode(reply: Sequence[bytes | str]) -> list[LlamaChatMessage] | None:
        return _llama_messages(operation, reply, removed=True) or None

    return operation.with_decoder(decode)


def _delete_one(
    config: ops.StoreConfig, key: str, idx: int | None
) -> ops.Operation[LlamaChatMessage | None]:
    """delete_message at ``idx``, or delete_last_message when ``idx`` is None, answering the
    removed element as a LlamaIndex message; None when nothing was removed."""
    if idx is None:  # -1 names the last element, as in CorruptMessageError
        operation, index = ops.delete_last_message(config, key), -1
    else:
        operation, index = ops.delete_message(config, key, idx), idx  # idx is checked here

    def decode(reply: bytes | str | None) -> LlamaChatMessage | None:
        if reply is None:
            return None
        raw = ops.as_bytes(reply)
        try:
            return LlamaChatMessage.model_validate_json(raw)
        except _REJECTED:
            pass
        operation.decode(reply)  # raises CorruptMessageError when our model refuses it too
        return _llama_message(operation, index, raw, removed=True)  # raises

    return operation.with_decoder(decode)


_LoopStores = dict[
    asyncio.AbstractEventLoop, tuple[AsyncRedisChatStore, AsyncGenerator[None, None]]
]


async def _closed_with_its_loop(
    stores: _LoopStores, loop: asyncio.AbstractEventLoop
) -> AsyncGenerator[None, None]:
    """Suspended once started; finalised by ``loop`` when it shuts its async generators down
    (``asyncio.run`` and ``asyncio.Runner`` do, at their end), or by ``aclose()``: then removes
    the loop's store and closes its client in that loop, the only one it can be closed in."""
    try:
        yield
    finally:
        store, _ = stores.pop(loop)
        await store.aclose()


class _Stores:
    """What a LlamaIndex store sends through: a sync store, and an async one for the running
    event loop. Both LlamaIndex classes of this module use it.

    A given ``redis_client`` (sync) or ``aredis_client`` (async) is used as given and left open.
    Otherwise stores are made from ``redis_url`` and ``client_kwargs``: the sync one at once (it
    connects on first use), the async ones on first async call in each event loop, since a
    redis.asyncio client works only in the loop it was made in. Each is closed when its loop
    shuts its async generators down (``asyncio.run`` ends) or is closed, by ``aclose()`` in its
    loop, or by ``close()`` while its loop is not running. Given
    only ``redis_client`` (and the default URL), async calls run the sync store in a worker
    thread rather than open a connection to a server nobody named.
    """

    def __init__(
        self,
        redis_url: str,
        redis_client: redis.Redis | None,
        aredis_client: redis.asyncio.Redis | None,
        *,
        namespace: str = "",
        client_kwargs: dict[str, Any],
    ) -> None:
        self.sync = (
            SyncRedisChatStore(redis_client, namespace=namespace)
            if redis_client is not None
            else SyncRedisChatStore(url=redis_url, namespace=namespace, **client_kwargs)
        )
        self._given_async: AsyncRedisChatStore | None = None
        # Makes each loop's async store from the URL; None when ``_given_async`` serves every
        # loop, or, both None, when async calls run ``sync`` in a worker thread.
        self._new_async: Callable[[], AsyncRedisChatStore] | None = None
        if aredis_client is not None:
            self._given_async = AsyncRedisChatStore(aredis_client, namespace=namespace)
        elif redis_client is None or redis_url != DEFAULT_REDIS_URL:
            self._new_async = partial(
                AsyncRedisChatStore, url=redis_url, namespace=namespace, **client_kwargs
            )
        # Each running loop's store, with the generator that closes it and removes it from here.
        self.by_loop: _LoopStores = {}
        # The loops whose close() closes their client first (see _close_before).
        self._closing_with: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    async def current(self) -> AsyncRedisChatStore | None:
        """The async store for the running loop; None when async calls go through a thread."""
        if self._new_async is None:
            return self._given_async
        loop = asyncio.get_running_loop()
        entry = self.by_loop.get(loop)
        if entry is None:
            closer = _closed_with_its_loop(self.by_loop, loop)
            entry = self.by_loop[loop] = (self._new_async(), closer)
            await anext(closer)  # started in the loop: the loop finalises it when it shuts down
            if loop not in self._closing_with:
                self._close_before(loop)
        return entry[0]

    def _close_before(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make ``loop.close()`` close this loop's client first, for a loop closed without
        shutting its async generators down: LlamaIndex's ``asyncio_run``, called inside a
        running loop, runs each call on a new loop in a worker thread and closes it so; each
        such call would otherwise leave a connection open. A loop whose ``close`` cannot be
        replaced (uvloop's) is left as it is: ``asyncio.run`` still closes the client there."""
        close = loop.close

        def close_our_client_first() -> None:
            self._close_idle(loop)
            close()

        with contextlib.suppress(AttributeError, TypeError):
            loop.close = close_our_client_first  # type: ignore[method-assign]
            self._closing_with.add(loop)

    def _close_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the client of ``loop``, unless the loop is running (then only ``aclose()`` in
        it can) or closed (then its shutdown did)."""
        entry = self.by_loop.get(loop)
        if entry is not None and not loop.is_running() and not loop.is_closed():
            # Closing must not fail because a client would not close cleanly.
            with contextlib.suppress(Exception):
                loop.run_until_complete(entry[1].aclose())

    async def run(
        self,
        in_thread: Callable[[SyncRedisChatStore], R],
        native: Callable[[AsyncRedisChatStore], Awaitable[R]],
    ) -> R:
        store = await self.current()
        if store is None:
            return await asyncio.to_thread(in_thread, self.sync)
        return await native(store)

    def execute(self, operation: ops.Operation[R]) -> R:
        return self.sync.execute(operation)

    async def aexecute(self, operation: ops.Operation[R]) -> R:
        return await self.run(
            lambda store: store.execute(operation), lambda store: store.execute(operation)
        )

    def close(self) -> None:
        """Close the sync client, and the async clients of loops that are not running (a
        loop that is never closed, such as the one LlamaIndex's ``asyncio_run`` keeps in the
        main thread, would otherwise keep its client open until the process ends)."""
        self.sync.close()
        for loop in list(self.by_loop):
            self._close_idle(loop)

    async def aclose(self) -> None:
        entry = self.by_loop.get(asyncio.get_running_loop())
        if entry is not None:
            await entry[1].aclose()  # runs its ``finally``: removes the store, closes its client


def _config_with_ttl(config: ops.StoreConfig, ttl: float | None) -> ops.StoreConfig:
    """``config`` with the TTL of a store's ``ttl`` field, which may be reassigned at any time
    (LlamaIndex's store reads it on every call; None or 0: no expiry)."""
    ttl_ms = ops.ttl_to_ms(ttl or None)
    return config if ttl_ms == config.ttl_ms else dataclasses.replace(config, ttl_ms=ttl_ms)


class RedisChatStore(BaseChatStore):
    """LlamaIndex chat store on Redis: every edit one atomic Lua script, one round trip.

    ``redis_client`` (a ``redis.Redis``) and ``aredis_client`` (a ``redis.asyncio.Redis``) are
    used as given, and left open. Without them, clients are made from ``redis_url`` and
    ``**kwargs`` (options of ``redis.Redis.from_url``): the sync one at once (it connects on first
    use), the async ones on first async call, one per event loop, so that ``asyncio.run`` called
    twice works. Each is closed when its loop shuts down (``asyncio.run`` ends), or by ``aclose()``
    in its loop. Given only ``redis_client`` (and the default ``redis_url``), the async methods run
    the sync client in a worker thread rather than open a connection to a server nobody named.

    ``ttl`` (seconds; None or 0: no expiry) is refreshed by every write, inside its script; a
    reassigned ``ttl`` applies from the next call. A message whose JSON is over
    ``max_message_bytes`` (default 4 MiB) is refused before sending.

    The public ``redis_url`` field, and so ``repr``, ``str``, ``to_dict()``, ``to_json()``,
    ``model_dump_json()`` and a ``ChatMemoryBuffer``'s ``to_dict()``, holds the URL without its
    secrets: the password of its userinfo (the user name stays) and every query parameter whose
    name holds "password" (``password=``, ``sentinel_password=``...) are removed, not masked,
    since a mask would be sent as a password by a store rebuilt from it. The clients are made
    from the URL as given. To rebuild a store from its dict, give the password again, as a
    client option or in the full URL::

        RedisChatStore.from_dict(data, password=secret)  # or redis_url=<the full URL>

    A pickled store keeps the full URL, so that it reconnects when unpickled (client options
    other than those in the URL are not kept, as with LlamaIndex's store).
    """

    redis_url: str = Field(
        default=DEFAULT_REDIS_URL, description="Redis URL, without its password."
    )
    ttl: int | None = Field(default=None, description="Time to live in seconds.")

    _redis_url: str = PrivateAttr(default=DEFAULT_REDIS_URL)  # as given, secrets included
    _config: ops.StoreConfig = PrivateAttr()
    _stores: _Stores = PrivateAttr()

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        redis_client: redis.Redis | None = None,
        aredis_client: redis.asyncio.Redis | None = None,
        ttl: int | None = None,
        *,
        max_message_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        # mypy sees the base's dataclass-style __init__, which knows no field of this class.
        public_url = _url_without_secrets(redis_url)
        super().__init__(redis_url=public_url, ttl=ttl)  # type: ignore[call-arg]
        self._redis_url = redis_url
        # LlamaIndex's store reads ``self.ttl`` on every call, 0 meaning "no expiry": both kept
        # (see _current_config). A bad ttl or limit is refused here, not on first use.
        self._config = ops.StoreConfig.build(ttl=ttl or None, max_message_bytes=max_message_bytes)
        self._stores = _Stores(redis_url, redis_client, aredis_client, client_kwargs=kwargs)

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's store's serialisation id: same fields, same data, interchangeable."""
        return "RedisChatStore"

    def __setstate__(self, state: dict[str, Any]) -> None:
        # BaseComponent unpickles by calling __init__ with the public fields: give it the URL
        # as given, which pickling kept among the private attributes.
        private = state.get("__pydantic_private__") or {}
        if isinstance(private.get("_redis_url"), str):
            state = {**state, "__dict__": {**state["__dict__"], "redis_url": private["_redis_url"]}}
        super().__setstate__(state)

    # -- plumbing ---------------------------------------------------------------------------------

    def _current_config(self) -> ops.StoreConfig:
        self._config = _config_with_ttl(self._config, self.ttl)
        return self._config

    def _execute(self, operation: ops.Operation[R]) -> R:
        return self._stores.execute(operation)

    async def _aexecute(self, operation: ops.Operation[R]) -> R:
        return await self._stores.aexecute(operation)

    # -- sync -------------------------------------------------------------------------------------

    def set_messages(self, key: str, messages: list[LlamaChatMessage]) -> None:
        """Replace the conversation: one script, readers see the old list or the new one."""
        self._execute(ops.set_messages(self._current_config(), key, messages))

    def get_messages(self, key: str) -> list[LlamaChatMessage]:
        """The conversation, oldest first; ``[]`` for a missing key."""
        return self._execute(_get_all(self._current_config(), key))

    def add_message(self, key: str, message: LlamaChatMessage, idx: int | None = None) -> None:
        """Append, or insert before ``idx`` by ``list.insert`` rules; one script either way."""
        self._execute(ops.add_message(self._current_config(), key, message, idx))

    def delete_messages(self, key: str) -> list[LlamaChatMessage] | None:
        """Remove the conversation; returns what it held, None when it held nothing."""
        return self._execute(_delete_all(self._current_config(), key))

    def delete_message(self, key: str, idx: int) -> LlamaChatMessage | None:
        """Remove and return the message at ``0 <= idx < len``, keeping the others' order;
        None (and nothing changes) for any other index."""
        return self._execute(_delete_one(self._current_config(), key, idx))

    def delete_last_message(self, key: str) -> LlamaChatMessage | None:
        """Remove and return the last message; None when there is none."""
        return self._execute(_delete_one(self._current_config(), key, None))

    def get_keys(self) -> list[str]:
        """Every key holding a list, sorted: an incremental SCAN, never KEYS."""
        return self._stores.sync.get_keys()

    # -- async ------------------------------------------------------------------------------------

    async def aset_messages(self, key: str, messages: list[LlamaChatMessage]) -> None:
        await self._aexecute(ops.set_messages(self._current_config(), key, messages))

    async def aget_messages(self, key: str) -> list[LlamaChatMessage]:
        return await self._aexecute(_get_all(self._current_config(), key))

    async def async_add_message(
        self, key: str, message: LlamaChatMessage, idx: int | None = None
    ) -> None:
        await self._aexecute(ops.add_message(self._current_config(), key, message, idx))

    async def adelete_messages(self, key: str) -> list[LlamaChatMessage] | None:
        return await self._aexecute(_delete_all(self._current_config(), key))

    async def adelete_message(self, key: str, idx: int) -> LlamaChatMessage | None:
        return await self._aexecute(_delete_one(self._current_config(), key, idx))

    async def adelete_last_message(self, key: str) -> LlamaChatMessage | None:
        return await self._aexecute(_delete_one(self._current_config(), key, None))

    async def aget_keys(self) -> list[str]:
        return await self._stores.run(SyncRedisChatStore.get_keys, AsyncRedisChatStore.get_keys)

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client if this store made it, and the async ones it made for event
        loops that are not running (given clients are left open)."""
        self._stores.close()

    async def aclose(self) -> None:
        """Close the async client this store made for the running loop, if any (a given one is
        left open); a later async call in this loop makes a new one. Each is also closed when its
        loop shuts its async generators down, as ``asyncio.run`` does, or is closed
        (``loop.close()``; for loops whose ``close`` cannot be wrapped, uvloop's, call
        ``aclose()`` first)."""
        await self._stores.aclose()


def __getattr__(name: str) -> Any:
    """``RedisMemoryStore``, LlamaIndex's ``AsyncDBChatStore`` for its ``Memory``, imported on
    first use from ``atomic_chat_store.llama_index_memory``."""
    if name == "RedisMemoryStore":
        from .llama_index_memory import RedisMemoryStore as RedisMemoryStore

        return RedisMemoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
