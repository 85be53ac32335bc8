"""AsyncRedisChatStore: the asyncio store, with the same methods as ``RedisChatStore``, awaitable.
It only awaits what ``operations`` builds, again after a lost reply as ``retry`` says (the rule
and everything else without I/O: ``base``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio

from . import operations as ops
from .base import NO_DECODING, StoreBase, is_cluster
from .connection import async_client_factory
from .messages import ChatMessage
from .retry import RetryPolicy

R = TypeVar("R")
T = TypeVar("T")


class AsyncRedisChatStore(StoreBase[redis.asyncio.Redis]):
    """The asyncio twin of :class:`atomic_chat_store.RedisChatStore`; see it for every method.

    ``client`` is a ``redis.asyncio`` client; ``aclose()`` closes it only if the store made it.
    A cancelled call may or may not have been applied: pass your own ``op_id`` to be able to send
    it again safely.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | None = None,
        *,
        url: str | None = None,
        ttl: ops.TTL | None = None,
        namespace: str = "",
        max_message_bytes: int | None = None,
        max_messages: int | None = None,
        op_window: ops.TTL | None = None,
        op_window_size: int | None = None,
        retry: RetryPolicy | None = None,
        **client_kwargs: Any,
    ) -> None:
        super().__init__(
            client,
            url=url,
            ttl=ttl,
            namespace=namespace,
            max_message_bytes=max_message_bytes,
            max_messages=max_messages,
            op_window=op_window,
            op_window_size=op_window_size,
            retry=retry,
            client_kwargs=client_kwargs,
            client_factory=async_client_factory,
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncRedisChatStore:
        return cls(url=url, **kwargs)

    # -- sending ----------------------------------------------------------------------------------

    async def execute(self, operation: ops.Operation[R]) -> R:
        wire = self._wire(operation)
        reply = await self._retrying(
            [operation],
            lambda: self.client.execute_command(*wire, **NO_DECODING),  # type: ignore[no-untyped-call]
        )
        return operation.decode(reply)

    async def execute_many(
        self, operations: Iterable[ops.Operation[Any]], *, transaction: bool = True
    ) -> list[Any]:
        batch = ops.check_operations(operations)
        if not batch:
            return []

        async def send() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for command in self._batch_wire(batch, transaction):
                    pipe.execute_command(*command, **NO_DECODING)
                replies = await pipe.execute(raise_on_error=False)
            return self._batch_replies(batch, transaction, replies)

        return ops.decode_replies(batch, await self._retrying(batch, send, batch=True))

    async def _retrying(
        self,
        operations: Sequence[ops.Operation[Any]],
        send: Callable[[], Awaitable[T]],
        *,
        batch: bool = False,
    ) -> T:
        attempts = self.retry.begin(operations, batch=batch)
        while True:
            try:
                if attempts.reload_scripts:
                    await self._load_scripts()
                    attempts.reload_scripts = False
                return await send()
            except Exception as error:
                await asyncio.sleep(attempts.failed(error))

    async def _load_scripts(self) -> None:
        if is_cluster(self.client):
            for source in self._script_sources:
                await self.client.script_load(source)  # to every primary
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for source in self._script_sources:
                pipe.script_load(source)
            await pipe.execute()

    # -- the operations ---------------------------------------------------------------------------

    async def add_message(
        self,
        key: str,
        message: object,
        idx: int | None = None,
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        return await self.execute(
            ops.add_message(
                self.config, key, message, idx, op_id=op_id, expected_version=expected_version
            )
        )

    async def add_messages(
        self,
        key: str,
        messages: Sequence[object],
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        return await self.execute(
            ops.append(self.config, key, messages, op_id=op_id, expected_version=expected_version)
        )

    async def set_messages(
        self,
        key: str,
        messages: Sequence[object],
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        return await self.execute(
            ops.set_messages(
                self.config, key, messages, op_id=op_id, expected_version=expected_version
            )
        )

    async def get_messages(
        self, key: str, start: int | None = None, stop: int | None = None
    ) -> list[ChatMessage]:
        return await self.execute(ops.get_messages(self.config, key, start, stop))

    async def get_conversation(
        self, key: str, start: int | None = None, stop: int | None = None
    ) -> ops.Conversation:
        return await self.execute(ops.get_conversation(self.config, key, start, stop))

    async def version(self, key: str) -> int:
        return await self.execute(ops.version(self.config, key))

    async def replace_message(
        self,
        key: str,
        idx: int,
        message: object,
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> ChatMessage | None:
        return await self.execute(
            ops.replace_message(
                self.config, key, idx, message, op_id=op_id, expected_version=expected_version
            )
        )

    async def delete_messages(
        self, key: str, *, op_id: str | None = None, expected_version: int | None = None
    ) -> list[ChatMessage] | None:
        return await self.execute(
            ops.delete_messages(self.config, key, op_id=op_id, expected_version=expected_version)
        )

    async def delete_message(
        self,
        key: str,
        idx: int,
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> ChatMessage | None:
        return await self.execute(
            ops.delete_message(
                self.config, key, idx, op_id=op_id, expected_version=expected_version
            )
        )

    async def delete_last_message(
        self, key: str, *, op_id: str | None = None, expected_version: int | None = None
    ) -> ChatMessage | None:
        return await self.execute(
            ops.delete_last_message(
                self.config, key, op_id=op_id, expected_version=expected_version
            )
        )

    async def count(self, key: str) -> int:
        return await self.execute(ops.count(self.config, key))

    async def refresh_ttl(self, key: str) -> bool:
        return await self.execute(ops.refresh_ttl(self.config, key))

    async def get_keys(self) -> list[str]:
        return await self._scan_keys("list")

    async def _scan_keys(self, redis_type: str) -> list[str]:
        async def scan() -> list[bytes]:
            found: list[bytes] = []
            for node in self._scan_nodes():
                cursor = 0
                while True:
                    reply = await self.client.execute_command(  # type: ignore[no-untyped-call]
                        *ops.scan_command(self.config, cursor, redis_type),
                        **self._scan_options(node),
                    )
                    cursor, names = self._scan_step(reply)
                    found.extend(names)
                    if not cursor:
                        break
            return found

        return ops.chat_keys(self.config, await self._retrying([], scan))

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncRedisChatStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
