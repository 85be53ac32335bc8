"""``RedisMemoryStore``: LlamaIndex's ``AsyncDBChatStore`` on Redis, for its ``Memory``.

Imported as ``atomic_chat_store.llama_index.RedisMemoryStore`` (this module is loaded on first
use, so that the ``RedisChatStore`` drop-in keeps working with a llama-index-core older than the
``Memory`` class)::

    from atomic_chat_store.llama_index import RedisMemoryStore
    from llama_index.core.memory import Memory

    memory = Memory.from_defaults(
        session_id="user-1",
        chat_store=RedisMemoryStore(redis_url="redis://localhost:6379", ttl=3600),
        token_limit=40_000,
    )

Every write is one Lua script of ``lua/memory_*.lua`` (atomic, one round trip, its op id
recorded for exactly-once re-sends, the TTL of every key of the conversation refreshed inside
it); every read is one script or one command. The layout in Redis is described in
``atomic_chat_store.memory``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

try:
    from llama_index.core.llms import ChatMessage as LlamaChatMessage
    from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus
except ImportError as error:  # pragma: no cover - depends on the installed LlamaIndex
    raise ImportError(
        "atomic_chat_store.llama_index.RedisMemoryStore needs a llama-index-core with "
        "llama_index.core.storage.chat_store.base_db (the one whose Memory takes chat_store=; "
        f"0.14 is tested), which could not be imported ({error}). Upgrade it with: "
        "pip install -U 'atomic-chat-store[llama-index]'"
    ) from error

from pydantic import Field, PrivateAttr

from . import memory
from . import operations as ops
from .aio import AsyncRedisChatStore
from .llama_index import DEFAULT_REDIS_URL, _config_with_ttl, _Stores, _url_without_secrets
from .store import RedisChatStore as SyncRedisChatStore

__all__ = ["RedisMemoryStore"]


def _messages(
    operation: ops.Operation[Any], *, removed: bool, first: int = 0
) -> ops.Operation[list[LlamaChatMessage]]:
    """``operation`` answering LlamaIndex's messages, decoded straight into its model."""
    key = operation.chat_key

    def decode(reply: Sequence[Any]) -> list[LlamaChatMessage]:
        return memory.decode_messages(key, reply, LlamaChatMessage, removed=removed, first=first)

    return operation.with_decoder(decode)


def _nothing(reply: object) -> None:
    return None


class RedisMemoryStore(AsyncDBChatStore):
    """LlamaIndex's ``AsyncDBChatStore`` on Redis: the chat store of its ``Memory``.

    It behaves as LlamaIndex's reference, ``SQLAlchemyChatStore``, on every method (a
    differential test checks it), with these choices where that one depends on SQL:

    - ``delete_message(key, idx)``: ``idx`` is the 0-based position in
      ``get_messages(key, status=None)``, both statuses in insertion order (SQL's is a row id,
      unique across keys, which Redis has no use for). Returns the message, or None (nothing
      changes) when ``idx`` is not in ``0 <= idx < count_messages(key, status=None)``.
    - ``n``, ``limit`` and ``offset`` below 0 raise ``InvalidArgumentError`` (a ``ValueError``):
      SQLite reads them as no limit (or no offset), Postgres refuses them.
    - ``add_messages(key, [])`` changes nothing (SQL inserts a row without a key and fails).
    - ``status`` may be given as ``MessageStatus`` or its value (``"active"``); anything else
      raises ``InvalidArgumentError``.
    - An empty key raises ``InvalidKeyError``; SQL stores it.

    Clients: as ``atomic_chat_store.llama_index.RedisChatStore``. ``redis_client`` (sync) and
    ``aredis_client`` (async) are used as given and left open; otherwise async clients are made
    from ``redis_url`` and ``**kwargs`` (options of ``redis.asyncio.Redis.from_url``; cluster and
    sentinel URLs too, see ``atomic_chat_store.connection``), one per event loop, since
    ``Memory``'s sync methods run each call on an event loop of their own (a new one in a worker
    thread). Each client is closed when its loop shuts down (the end of ``asyncio.run``), or by
    ``aclose()`` in it. Given only ``redis_client``, the methods run it in a worker thread.

    ``ttl`` (seconds; None or 0: no expiry) is restarted by every write, for every key of the
    conversation, inside its script. ``namespace`` (default ``"memory:"``) is prepended to every
    key, so that a Memory session never meets a drop-in conversation of the same name. The
    ``redis_url`` field holds the URL without its password (as the drop-in's).

    Each write takes ``op_id=`` beyond LlamaIndex's signature: a write sent again with the same
    id (after an ``OutcomeUnknownError``, say) is applied at most once and returns what it
    returned the first time. Without one, the store makes one, and uses it when it sends again.
    """

    redis_url: str = Field(
        default=DEFAULT_REDIS_URL, frozen=True, description="Redis URL, without its password."
    )
    ttl: int | float | None = Field(
        default=None,
        description="Time to live in seconds, restarted by every write; None or 0: no expiry.",
    )
    namespace: str = Field(
        default=memory.DEFAULT_NAMESPACE, frozen=True, description="Prefix of every Redis key."
    )

    _config: ops.StoreConfig = PrivateAttr()
    _stores: _Stores = PrivateAttr()

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        redis_client: redis.Redis | None = None,
        aredis_client: redis.asyncio.Redis | None = None,
        ttl: float | None = None,
        *,
        namespace: str = memory.DEFAULT_NAMESPACE,
        max_message_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        # mypy sees the base's dataclass-style __init__, which knows no field of this class.
        super().__init__(  # type: ignore[call-arg]
            redis_url=_url_without_secrets(redis_url), ttl=ttl, namespace=namespace
        )
        # A bad ttl, namespace or limit is refused here, not on first use.
        self._config = ops.StoreConfig.build(
            namespace=namespace, ttl=ttl or None, max_message_bytes=max_message_bytes
        )
        self._stores = _Stores(
            redis_url, redis_client, aredis_client, namespace=namespace, client_kwargs=kwargs
        )

    @classmethod
    def class_name(cls) -> str:
        return "RedisMemoryStore"

    def _current_config(self) -> ops.StoreConfig:
        self._config = _config_with_ttl(self._config, self.ttl)
        return self._config

    # -- reads ------------------------------------------------------------------------------------

    async def get_messages(
        self,
        key: str,
        status: MessageStatus | None = MessageStatus.ACTIVE,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[LlamaChatMessage]:
        """The messages of ``status`` (None: both, interleaved in insertion order), oldest
        first; ``offset`` and ``limit`` (ints >= 0) apply after the status filter. One script:
        O(log N + M) for one status, O(log N + offset + M) for both."""
        operation = memory.get_messages(self._current_config(), key, status, limit, offset)
        first = 0 if offset is None else offset
        return await self._stores.aexecute(_messages(operation, removed=False, first=first))

    async def count_messages(
        self, key: str, status: MessageStatus | None = MessageStatus.ACTIVE
    ) -> int:
        """The number of messages of ``status`` (None: both): one ZCARD, or one HLEN."""
        return await self._stores.aexecute(
            memory.count_messages(self._current_config(), key, status)
        )

    async def get_keys(self) -> list[str]:
        """Every conversation of the namespace, namespace stripped, sorted: an incremental SCAN
        for hashes, never KEYS."""
        return await self._stores.run(_scan_hashes, _ascan_hashes)

    # -- writes -----------------------------------------------------------------------------------

    async def add_message(
        self,
        key: str,
        message: LlamaChatMessage,
        status: MessageStatus = MessageStatus.ACTIVE,
        *,
        op_id: str | None = None,
    ) -> None:
        """Add ``message`` of ``status`` after every message of the conversation."""
        operation = memory.add_messages(self._current_config(), key, [message], status, op_id=op_id)
        await self._stores.aexecute(operation.with_decoder(_nothing))

    async def add_messages(
        self,
        key: str,
        messages: list[LlamaChatMessage],
        status: MessageStatus = MessageStatus.ACTIVE,
        *,
        op_id: str | None = None,
    ) -> None:
        """Add ``messages`` of ``status``, in order, after every message; ``[]`` changes
        nothing."""
        operation = memory.add_messages(self._current_config(), key, messages, status, op_id=op_id)
        await self._stores.aexecute(operation.with_decoder(_nothing))

    async def set_messages(
        self,
        key: str,
        messages: list[LlamaChatMessage],
        status: MessageStatus = MessageStatus.ACTIVE,
        *,
        op_id: str | None = None,
    ) -> None:
        """Replace the conversation, both statuses, by ``messages`` of ``status``; ``[]``
        removes it. Readers see the old conversation or the new one."""
        operation = memory.set_messages(self._current_config(), key, messages, status, op_id=op_id)
        await self._stores.aexecute(operation.with_decoder(_nothing))

    async def delete_message(
        self, key: str, idx: int, *, op_id: str | None = None
    ) -> LlamaChatMessage | None:
        """Remove and return the message at position ``idx`` of ``get_messages(key,
        status=None)`` (0-based, both statuses, insertion order); None, and nothing changes,
        unless ``0 <= idx < count_messages(key, status=None)``."""
        operation = memory.delete_message(self._current_config(), key, idx, op_id=op_id)

        def decode(reply: Any) -> LlamaChatMessage | None:
            return memory.decode_removed(key, reply, LlamaChatMessage)

        return await self._stores.aexecute(operation.with_decoder(decode))

    async def delete_messages(
        self, key: str, status: MessageStatus | None = None, *, op_id: str | None = None
    ) -> None:
        """Remove the messages of ``status``; None (the default) removes the conversation."""
        operation = memory.delete_messages(self._current_config(), key, status, op_id=op_id)
        await self._stores.aexecute(operation.with_decoder(_nothing))

    async def delete_oldest_messages(
        self, key: str, n: int, *, op_id: str | None = None
    ) -> list[LlamaChatMessage]:
        """Remove the ``n`` oldest ACTIVE messages (archived ones are never touched) and return
        them, oldest first."""
        operation = memory.delete_oldest_messages(self._current_config(), key, n, op_id=op_id)
        return await self._stores.aexecute(_messages(operation, removed=True))

    async def archive_oldest_messages(
        self, key: str, n: int, *, op_id: str | None = None
    ) -> list[LlamaChatMessage]:
        """Make the ``n`` oldest ACTIVE messages ARCHIVED, each keeping its place in time among
        the archived ones, and return them, oldest first."""
        operation = memory.archive_oldest_messages(self._current_config(), key, n, op_id=op_id)
        return await self._stores.aexecute(_messages(operation, removed=False))

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the clients this store made: the sync one, and the async ones of event loops
        that are not running, such as the loop LlamaIndex's sync ``Memory`` methods keep in the
        main thread (given clients are left open)."""
        self._stores.close()

    async def aclose(self) -> None:
        """Close the async client this store made for the running loop, if any (a given one is
        left open); a later call in this loop makes a new one."""
        await self._stores.aclose()


def _scan_hashes(store: SyncRedisChatStore) -> list[str]:
    return store._scan_keys("hash")


async def _ascan_hashes(store: AsyncRedisChatStore) -> list[str]:
    return await store._scan_keys("hash")
