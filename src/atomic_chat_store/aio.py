"""AsyncRedisChatStore: the asyncio store, with the same methods as ``RedisChatStore``, awaitable.
It only awaits what ``operations`` builds."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar

import redis
import redis.asyncio

from . import operations as ops
from .connection import DEFAULT_URL, async_client_from_url
from .messages import ChatMessage
from .scripts import register_scripts

R = TypeVar("R")


class AsyncRedisChatStore:
    """The asyncio twin of :class:`atomic_chat_store.RedisChatStore`; see it for every method.

    ``client`` is a ``redis.asyncio`` client; ``aclose()`` closes it only if the store made it.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | None = None,
        *,
        url: str | None = None,
        ttl: ops.TTL | None = None,
        namespace: str = "",
        max_message_bytes: int | None = None,
        **client_kwargs: Any,
    ) -> None:
        if client is not None and (url is not None or client_kwargs):
            raise ValueError("pass either a client or a url with its options, not both")
        self.config = ops.StoreConfig.build(
            namespace=namespace, ttl=ttl, max_message_bytes=max_message_bytes
        )
        self._owns_client = client is None
        self.client = (
            client
            if client is not None
            else async_client_from_url(url or DEFAULT_URL, **client_kwargs)
        )
        self._scripts = register_scripts(self.client)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncRedisChatStore:
        return cls(url=url, **kwargs)

    async def execute(self, operation: ops.Operation[R]) -> R:
        try:
            if operation.script is not None:
                reply = await self._scripts[operation.script](
                    keys=operation.keys, args=operation.args
                )
            else:
                reply = await self.client.execute_command(*operation.command_line)  # type: ignore[no-untyped-call]
        except redis.ResponseError as exc:
            error = operation.error(exc)
            if error is exc:
                raise
            raise error from exc
        return operation.decode(reply)

    async def execute_many(
        self, operations: Sequence[ops.Operation[Any]], *, transaction: bool = True
    ) -> list[Any]:
        async with self.client.pipeline(transaction=transaction) as pipe:
            for operation in operations:
                if operation.script is not None:
                    await self._scripts[operation.script](
                        keys=operation.keys, args=operation.args, client=pipe
                    )
                else:
                    pipe.execute_command(*operation.command_line)
            replies = await pipe.execute(raise_on_error=False)
        return ops.decode_replies(operations, replies)

    async def add_message(self, key: str, message: object, idx: int | None = None) -> int:
        return await self.execute(ops.add_message(self.config, key, message, idx))

    async def add_messages(self, key: str, messages: Sequence[object]) -> int:
        return await self.execute(ops.append(self.config, key, messages))

    async def set_messages(self, key: str, messages: Sequence[object]) -> int:
        return await self.execute(ops.set_messages(self.config, key, messages))

    async def get_messages(self, key: str) -> list[ChatMessage]:
        return await self.execute(ops.get_messages(self.config, key))

    async def delete_messages(self, key: str) -> list[ChatMessage] | None:
        return await self.execute(ops.delete_messages(self.config, key))

    async def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        return await self.execute(ops.delete_message(self.config, key, idx))

    async def delete_last_message(self, key: str) -> ChatMessage | None:
        return await self.execute(ops.delete_last_message(self.config, key))

    async def count(self, key: str) -> int:
        return await self.execute(ops.count(self.config, key))

    async def refresh_ttl(self, key: str) -> bool:
        return await self.execute(ops.refresh_ttl(self.config, key))

    async def get_keys(self) -> list[str]:
        found = [
            raw
            async for raw in self.client.scan_iter(
                match=ops.keys_pattern(self.config), count=ops.SCAN_COUNT, _type="list"
            )
        ]
        return ops.chat_keys(self.config, found)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncRedisChatStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
