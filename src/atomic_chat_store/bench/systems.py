"""The systems compared, behind one interface: each turns an operation into a ready-to-run call
(everything encoded and bound beforehand, so the clock sees only the operation) and reduces its
reply to something comparable (ids, lengths).

- ``sync``: this package's ``RedisChatStore``;
- ``async``: its ``AsyncRedisChatStore``, on the run's one event loop;
- ``seed``: LlamaIndex's ``RedisChatStore`` (``llama-index-storage-chat-store-redis``), given
  clients made from the run's URL so it never connects anywhere else;
- ``floor``: raw redis-py commands (see ``model.FLOOR_DEFINITIONS``);
- ``unrecorded``: this store's append with an empty op id (see ``UnrecordedStore``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import redis
import redis.asyncio

from .. import operations as ops
from ..aio import AsyncRedisChatStore
from ..messages import encode_message
from ..store import RedisChatStore
from .data import BenchMessage, ident_of
from .model import LAST_COUNT

Call = Callable[[], Any]  # returns the reply, or (async systems) an awaitable of it

SEED_PACKAGE = "llama-index-storage-chat-store-redis"


@dataclass(frozen=True)
class OpArgs:
    """One operation on a conversation of ``size`` messages."""

    op: str
    size: int
    index: int  # the middle: size // 2
    new: BenchMessage  # what append and insert add, and what replace puts at the middle
    pivot: BenchMessage | None  # the message at ``index`` before the operation
    target: Sequence[BenchMessage] = ()  # what set_all writes


@dataclass(frozen=True)
class SeedClasses:
    store: type[Any]
    message: type[Any]
    version: str


def load_seed() -> SeedClasses | None:
    """LlamaIndex's store and message classes, or None when the package is not installed."""
    try:
        from llama_index.core.llms import ChatMessage as LlamaChatMessage
        from llama_index.storage.chat_store.redis import RedisChatStore as LlamaRedisChatStore
    except ImportError:
        return None
    try:
        version = metadata.version(SEED_PACKAGE)
    except metadata.PackageNotFoundError:  # pragma: no cover - imported but not installed
        version = "unknown"
    return SeedClasses(LlamaRedisChatStore, LlamaChatMessage, version)


class System:
    """One system under test, bound to its clients."""

    name: str = ""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def api_key(self, local: str) -> str:
        """The key to pass to this system's methods for the Redis key ``prefix + local``."""
        return self.prefix + local

    def message(self, message: BenchMessage) -> Any:
        """The object this system's API takes for one message."""
        return message.ours()

    def messages(self, messages: Sequence[BenchMessage]) -> list[Any]:
        return [self.message(message) for message in messages]

    def supports(self, op: str) -> bool:
        """Whether this system has a method for ``op`` (the seed has no replace, no range)."""
        return True

    def call(self, args: OpArgs, local: str) -> Call:
        raise NotImplementedError

    def timed(self, call: Call) -> tuple[float, Any]:
        start = time.perf_counter()
        reply = call()
        return time.perf_counter() - start, reply

    def run(self, call: Call) -> Any:
        return call()

    def normalize(self, args: OpArgs, reply: Any) -> Any:
        """The reply as ids and numbers, comparable with the other systems'."""
        return ident_of(reply)


class _ChatStoreCalls(System):
    """Systems with the ``BaseChatStore`` method names: this store (sync or async) and the seed."""

    store: Any

    def call(self, args: OpArgs, local: str) -> Call:
        if not self.supports(args.op):
            raise ValueError(f"{self.name} has no such operation as {args.op!r}")
        store, key = self.store, self.api_key(local)
        if args.op == "append":
            new = self.message(args.new)
            return lambda: store.add_message(key, new)
        if args.op == "insert_middle":
            new, index = self.message(args.new), args.index
            return lambda: store.add_message(key, new, idx=index)
        if args.op == "delete_middle":
            index = args.index
            return lambda: store.delete_message(key, index)
        if args.op == "replace_middle":
            new, index = self.message(args.new), args.index
            return lambda: store.replace_message(key, index, new)
        if args.op == "delete_last":
            return lambda: store.delete_last_message(key)
        if args.op == "set_all":
            target = self.messages(args.target)
            return lambda: store.set_messages(key, target)
        if args.op == "get_all":
            return lambda: store.get_messages(key)
        if args.op == "get_last":
            return lambda: store.get_messages(key, -LAST_COUNT)
        raise ValueError(f"unknown operation {args.op!r}")


class SyncStore(_ChatStoreCalls):
    name = "sync"

    def __init__(self, prefix: str, client: redis.Redis) -> None:
        super().__init__(prefix)
        self.store = RedisChatStore(client, namespace=prefix)

    def api_key(self, local: str) -> str:
        return local  # the store's namespace adds the prefix


def unrecorded_append(config: ops.StoreConfig, key: str, message: object) -> ops.Operation[int]:
    """``operations.add_message(config, key, message)`` with an EMPTY op id: append.lua then
    records nothing (no op id, no reply) but still bumps the version. Built by hand, for the
    bench only: the store has no such option, as a write without an op id cannot be retried
    safely."""
    encoded = encode_message(message, config.max_message_bytes)
    return ops.Operation(key, config.keys(key), (*config.argv(""), encoded), int, script="append")


class UnrecordedStore(SyncStore):
    """This store's append without its op id recorded, to measure what recording costs. It does
    the store's work otherwise: the message encoded and the operation built on every call, sent
    by ``execute`` (EVALSHA of append.lua)."""

    name = "unrecorded"

    def supports(self, op: str) -> bool:
        return op == "append"

    def call(self, args: OpArgs, local: str) -> Call:
        if not self.supports(args.op):
            raise ValueError(f"{self.name} has no such operation as {args.op!r}")
        store, key, message = self.store, self.api_key(local), self.message(args.new)
        config = store.config
        return lambda: store.execute(unrecorded_append(config, key, message))


class AsyncStore(_ChatStoreCalls):
    name = "async"

    def __init__(
        self, prefix: str, client: redis.asyncio.Redis, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(prefix)
        self.loop = loop
        self.store = AsyncRedisChatStore(client, namespace=prefix)

    def api_key(self, local: str) -> str:
        return local

    def timed(self, call: Call) -> tuple[float, Any]:
        return self.loop.run_until_complete(_timed_await(call))

    def run(self, call: Call) -> Any:
        return self.loop.run_until_complete(_await(call))


async def _timed_await(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    # The clock runs inside the loop: the loop's own start and stop stay outside it.
    start = time.perf_counter()
    reply = await call()
    return time.perf_counter() - start, reply


async def _await(call: Callable[[], Awaitable[Any]]) -> Any:
    return await call()


class Seed(_ChatStoreCalls):
    name = "seed"

    def __init__(
        self,
        prefix: str,
        classes: SeedClasses,
        client: redis.Redis,
        async_client: redis.asyncio.Redis,
    ) -> None:
        super().__init__(prefix)
        self.classes = classes
        # Both clients given: the seed makes none of its own (and never looks at its default URL).
        self.store = classes.store(redis_client=client, aredis_client=async_client)

    def message(self, message: BenchMessage) -> Any:
        return self.classes.message(role=message.role, content=message.text)

    def supports(self, op: str) -> bool:
        # The seed (0.8) has neither: looked up rather than assumed, so a later seed that adds
        # them, with this store's signatures, is measured.
        if op == "replace_middle":
            return callable(getattr(self.store, "replace_message", None))
        if op == "get_last":
            try:
                parameters = inspect.signature(self.store.get_messages).parameters
            except (TypeError, ValueError):  # pragma: no cover - a method always has one
                return False
            return "start" in parameters
        return True


class Floor(System):
    name = "floor"

    def __init__(self, prefix: str, client: redis.Redis) -> None:
        super().__init__(prefix)
        self.client = client

    def message(self, message: BenchMessage) -> Any:
        return message.payload

    def call(self, args: OpArgs, local: str) -> Call:
        client, key = self.client, self.api_key(local)
        raw: Any = client  # redis-py types values as str; bytes are what it sends anyway
        if args.op == "append":
            payload = args.new.payload
            return lambda: client.rpush(key, payload)
        if args.op in ("insert_middle", "delete_middle"):
            if args.pivot is None:
                raise ValueError("the floor needs the message at the middle")
            pivot, payload = args.pivot.payload, args.new.payload
            if args.op == "insert_middle":
                return lambda: raw.linsert(key, "BEFORE", pivot, payload)
            return lambda: raw.lrem(key, 1, pivot)
        if args.op == "replace_middle":
            index, payload = args.index, args.new.payload
            return lambda: raw.lset(key, index, payload)
        if args.op == "delete_last":
            return lambda: client.rpop(key)
        if args.op == "set_all":
            payloads = [message.payload for message in args.target]

            def set_all() -> Any:
                pipe = client.pipeline(transaction=False)
                pipe.delete(key)
                pipe.rpush(key, *payloads)
                return pipe.execute()

            return set_all
        if args.op == "get_all":
            return lambda: client.lrange(key, 0, -1)
        if args.op == "get_last":
            return lambda: client.lrange(key, -LAST_COUNT, -1)
        raise ValueError(f"unknown operation {args.op!r}")

    def normalize(self, args: OpArgs, reply: Any) -> Any:
        if args.op == "delete_middle":
            # LREM answers a count; the floor knew which message it named.
            return args.pivot.ident if reply == 1 and args.pivot is not None else None
        if args.op == "replace_middle":
            # LSET answers OK; the floor knew which message was there.
            return args.pivot.ident if reply is True and args.pivot is not None else None
        if args.op == "set_all":
            return reply[-1]  # RPUSH's new length
        return super().normalize(args, reply)
