"""AsyncRedisChatStore: the asyncio store, with the same methods as ``RedisChatStore``, awaitable.
It only awaits what ``operations`` builds, again after a lost reply as ``retry`` says (the rule
and everything else without I/O: ``base``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio
from redis.asyncio.cluster import PipelineCommand

from . import operations as ops
from .base import NO_DECODING, StoreBase, is_cluster
from .connection import async_client_factory
from .errors import ChatStoreError
from .messages import ChatMessage
from .retry import Attempts, RetryPolicy

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
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
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
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            client_kwargs=client_kwargs,
            client_factory=async_client_factory,
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncRedisChatStore:
        return cls(url=url, **kwargs)

    # -- sending ----------------------------------------------------------------------------------

    async def execute(self, operation: ops.Operation[R]) -> R:
        async def send(attempts: Attempts) -> Any:
            if self._durable(operation):
                commands = self._one_on_node(operation, attempts.send_source)
                return self._reply_on_node(await self._send_on_node(operation.keys[0], commands))
            wire = self._wire(operation, attempts.send_source)
            return await self.client.execute_command(*wire, **NO_DECODING)  # type: ignore[no-untyped-call]

        return operation.decode(await self._retrying([operation], send))

    async def execute_many(
        self, operations: Iterable[ops.Operation[Any]], *, transaction: bool = True
    ) -> list[Any]:
        batch = ops.check_operations(operations)
        if not batch:
            return []
        route = self._batch_route(batch, transaction)
        if route == "each":
            return ops.gather_results(batch, [await self._outcome(op) for op in batch])

        async def send(attempts: Attempts) -> list[Any]:
            if route == "cluster":
                async with self.client.pipeline(transaction=False) as pipe:
                    for operation in batch:
                        wire = self._wire(operation, attempts.send_source)
                        pipe.execute_command(*wire, **NO_DECODING)
                    replies = await pipe.execute(raise_on_error=False)
            else:
                commands = self._batch_wire(batch, transaction, attempts.send_source)
                replies = await self._send_on_node(self._node_key(batch), commands)
            return self._batch_replies(batch, transaction and route == "node", replies)

        return ops.decode_replies(batch, await self._retrying(batch, send, batch=True))

    async def _outcome(self, operation: ops.Operation[Any]) -> Any:
        try:
            return await self.execute(operation)
        except ChatStoreError as error:
            return error

    async def _send_on_node(
        self, key: bytes | None, commands: Sequence[tuple[ops.Arg, ...]]
    ) -> list[Any]:
        client: Any = self.client
        if is_cluster(client):
            await client.initialize()  # once: the async Cluster client starts lazily
            node = client.get_node_from_key(key)
            queued = [
                PipelineCommand(i, *command, **NO_DECODING) for i, command in enumerate(commands)
            ]
            await node.execute_pipeline(queued)
            return [command.result for command in queued]
        async with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command, **NO_DECODING)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _retrying(
        self,
        operations: Sequence[ops.Operation[Any]],
        send: Callable[[Attempts], Awaitable[T]],
        *,
        batch: bool = False,
    ) -> T:
        attempts = self.retry.begin(operations, batch=batch)
        while True:
            try:
                if attempts.rediscover:
                    attempts.rediscover = False
                    await self._rediscover()
                if attempts.load_scripts:
                    attempts.load_scripts = False
                    await self._load_scripts()
                return await send(attempts)
            except Exception as error:
                await asyncio.sleep(attempts.failed(error))

    async def _load_scripts(self) -> None:
        client: Any = self.client
        if is_cluster(client):
            await client.initialize()
            for node in client.get_primaries():
                queued = [PipelineCommand(i, *c) for i, c in enumerate(self._script_loads())]
                await node.execute_pipeline(queued)
                for loaded in queued:
                    if isinstance(loaded.result, Exception):
                        raise loaded.result
            return
        async with client.pipeline(transaction=False) as pipe:
            for load in self._script_loads():
                pipe.execute_command(*load)
            await pipe.execute()

    async def _rediscover(self) -> None:
        client: Any = self.client
        if is_cluster(client):
            await client.nodes_manager.initialize()
        elif self._rediscovers_on_connect(client):
            await client.connection_pool.disconnect(inuse_connections=False)

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

        return ops.chat_keys(self.config, await self._retrying([], lambda _: scan()))

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
