"""RedisChatStore: the synchronous store. It only sends what ``operations`` builds, again after a
lost reply as ``retry`` says (the rule and everything else without I/O: ``base``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import redis

from . import operations as ops
from .base import NO_DECODING, StoreBase, is_cluster
from .connection import sync_client_factory
from .errors import ChatStoreError
from .messages import ChatMessage
from .retry import Attempts, RetryPolicy

R = TypeVar("R")
T = TypeVar("T")


class RedisChatStore(StoreBase[redis.Redis]):
    """Chat histories in Redis lists, every edit one atomic Lua script and one round trip.

    ``client`` is any redis-py client (``redis.Redis``, a Sentinel master, ``RedisCluster``) made
    with ``decode_responses=False`` (the default); without one, ``url`` (default
    ``redis://localhost:6379/0``) and ``client_kwargs`` make one on first use, which ``close()``
    then closes. Building a store never connects.

    ``ttl`` (seconds or a timedelta) is refreshed by every write; ``namespace`` is prepended to
    every key; a message whose JSON is over ``max_message_bytes`` (default 4 MiB) is refused
    before anything is sent.

    Every write takes ``op_id``: the store makes one when none is given. Its script records it
    with its reply, and meeting it again returns that reply and changes nothing, so a write sent
    again (by redis-py's retries, the store's, or the caller after ``OutcomeUnknownError``) is
    applied at most once. A conversation remembers its last ``op_window_size`` ids (default
    1,000) for ``op_window`` (default 10 minutes). On a lost connection, a timeout, NOSCRIPT,
    READONLY and the like the store sends the same operation again, as ``retry`` allows (a
    ``RetryPolicy``; the default rides out a 10 s outage).
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
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
            client_factory=sync_client_factory,
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisChatStore:
        """A store on a new client for ``url``; other keyword arguments as for the constructor."""
        return cls(url=url, **kwargs)

    # -- sending ----------------------------------------------------------------------------------

    def execute(self, operation: ops.Operation[R]) -> R:
        """Send one operation built by ``atomic_chat_store.operations``: one round trip, sent
        again after a lost reply within the retry budget."""

        def send(attempts: Attempts) -> Any:
            if self._durable(operation):
                commands = self._one_on_node(operation, attempts.send_source)
                return self._reply_on_node(self._send_on_node(operation.keys[0], commands))
            wire = self._wire(operation, attempts.send_source)
            return self.client.execute_command(*wire, **NO_DECODING)  # type: ignore[no-untyped-call]

        return operation.decode(self._retrying([operation], send))

    def execute_many(
        self, operations: Iterable[ops.Operation[Any]], *, transaction: bool = True
    ) -> list[Any]:
        """Send several operations in one pipeline (MULTI/EXEC when ``transaction``): one round
        trip on one server. On a Cluster: one pipeline per node without ``transaction``; a
        transaction only within one slot.

        Results come back in order. Every operation runs, even after one fails: Redis does not
        roll a MULTI/EXEC back. A failure raises ``BatchError``, whose ``results`` hold each
        result or typed error. After a lost reply the whole batch is sent again: the writes that
        ran replay their recorded replies.
        """
        batch = ops.check_operations(operations)
        if not batch:
            return []
        route = self._batch_route(batch, transaction)
        if route == "each":
            return ops.gather_results(batch, [self._outcome(operation) for operation in batch])

        def send(attempts: Attempts) -> list[Any]:
            if route == "cluster":
                with self.client.pipeline(transaction=False) as pipe:
                    for operation in batch:
                        wire = self._wire(operation, attempts.send_source)
                        # The node named: redis-py's sync Cluster pipeline would otherwise ask
                        # the server for an EVALSHA's keys (COMMAND GETKEYS), one round trip
                        # each. A MOVED reply is sent again by redis-py without it.
                        options = {**NO_DECODING, "target_nodes": self._node_of(operation)}
                        pipe.execute_command(*wire, **options)  # type: ignore[no-untyped-call]
                    replies = pipe.execute(raise_on_error=False)
            else:
                commands = self._batch_wire(batch, transaction, attempts.send_source)
                replies = self._send_on_node(self._node_key(batch), commands)
            return self._batch_replies(batch, transaction and route == "node", replies)

        return ops.decode_replies(batch, self._retrying(batch, send, batch=True))

    def _outcome(self, operation: ops.Operation[Any]) -> Any:
        try:
            return self.execute(operation)
        except ChatStoreError as error:
            return error

    def _node_of(self, operation: ops.Operation[Any]) -> Any:
        return self.client.get_node_from_key(operation.keys[0])  # type: ignore[attr-defined]

    def _send_on_node(
        self, key: bytes | None, commands: Sequence[tuple[ops.Arg, ...]]
    ) -> list[Any]:
        """``commands`` in one pipeline on one connection: the server's, or on a Cluster the one
        of the node serving ``key``'s slot."""
        client: Any = self.client
        if is_cluster(client):
            client = client.get_redis_connection(client.get_node_from_key(key))
        with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command, **NO_DECODING)
            replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies

    def _retrying(
        self,
        operations: Sequence[ops.Operation[Any]],
        send: Callable[[Attempts], T],
        *,
        batch: bool = False,
    ) -> T:
        """``send(attempts)``, again after each failure the retry rule deems worth it, as it
        says (``attempts`` says how: by the scripts' source after a NOSCRIPT, ...)."""
        attempts = self.retry.begin(operations, batch=batch)
        while True:
            try:
                if attempts.rediscover:
                    attempts.rediscover = False
                    self._rediscover()
                if attempts.load_scripts:
                    attempts.load_scripts = False
                    self._load_scripts()
                return send(attempts)
            except Exception as error:
                time.sleep(attempts.failed(error))

    def _load_scripts(self) -> None:
        """Every script, in one transaction (on a Cluster, one on each primary)."""
        client: Any = self.client
        targets = (
            [client.get_redis_connection(node) for node in client.get_primaries()]
            if is_cluster(client)
            else [client]
        )
        for target in targets:
            with target.pipeline(transaction=False) as pipe:
                for command in self._script_loads():
                    pipe.execute_command(*command)
                pipe.execute()

    def _rediscover(self) -> None:
        """Find the master again: the Cluster's slots, or a Sentinel pool's master."""
        client: Any = self.client
        if is_cluster(client):
            client.nodes_manager.initialize()
        elif self._rediscovers_on_connect(client):
            # Idle connections only: those in use may carry the caller's other commands.
            client.connection_pool.disconnect(inuse_connections=False)

    # -- the operations ---------------------------------------------------------------------------

    def add_message(
        self,
        key: str,
        message: object,
        idx: int | None = None,
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Append ``message``, or insert it before ``idx`` (``list.insert`` rules).

        Returns the new length.
        """
        return self.execute(
            ops.add_message(
                self.config, key, message, idx, op_id=op_id, expected_version=expected_version
            )
        )

    def add_messages(
        self,
        key: str,
        messages: Sequence[object],
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Append several messages in one script. Returns the new length."""
        return self.execute(
            ops.append(self.config, key, messages, op_id=op_id, expected_version=expected_version)
        )

    def set_messages(
        self,
        key: str,
        messages: Sequence[object],
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Replace the conversation atomically; an empty list removes the key.

        Returns the new length.
        """
        return self.execute(
            ops.set_messages(
                self.config, key, messages, op_id=op_id, expected_version=expected_version
            )
        )

    def get_messages(
        self, key: str, start: int | None = None, stop: int | None = None
    ) -> list[ChatMessage]:
        """The messages ``[start:stop]`` by Python's slice rules (negative indexes count from
        the end), oldest first; by default all of them; ``[]`` for a missing key. One LRANGE:
        ``get_messages(key, -20)`` reads the last 20 in a time that does not grow with the
        conversation."""
        return self.execute(ops.get_messages(self.config, key, start, stop))

    def get_conversation(
        self, key: str, start: int | None = None, stop: int | None = None
    ) -> ops.Conversation:
        """``get_messages`` and the conversation's version, read together in one round trip:
        read, compute, then write with ``expected_version=`` that version."""
        return self.execute(ops.get_conversation(self.config, key, start, stop))

    def version(self, key: str) -> int:
        """The conversation's version: it grows with every write that changes it, and never
        comes back, across deletes too. 0 when there is no conversation, 1 for one no write of
        this store has touched."""
        return self.execute(ops.version(self.config, key))

    def replace_message(
        self,
        key: str,
        idx: int,
        message: object,
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> ChatMessage | None:
        """Put ``message`` in place of the one at ``0 <= idx < len`` and return that one;
        otherwise None, nothing changes."""
        return self.execute(
            ops.replace_message(
                self.config, key, idx, message, op_id=op_id, expected_version=expected_version
            )
        )

    def delete_messages(
        self, key: str, *, op_id: str | None = None, expected_version: int | None = None
    ) -> list[ChatMessage] | None:
        """Remove the conversation; returns what it held, or None when it held nothing."""
        return self.execute(
            ops.delete_messages(self.config, key, op_id=op_id, expected_version=expected_version)
        )

    def delete_message(
        self,
        key: str,
        idx: int,
        *,
        op_id: str | None = None,
        expected_version: int | None = None,
    ) -> ChatMessage | None:
        """Remove and return the message at ``0 <= idx < len``; otherwise None, nothing changes."""
        return self.execute(
            ops.delete_message(
                self.config, key, idx, op_id=op_id, expected_version=expected_version
            )
        )

    def delete_last_message(
        self, key: str, *, op_id: str | None = None, expected_version: int | None = None
    ) -> ChatMessage | None:
        """Remove and return the last message; None when there is none."""
        return self.execute(
            ops.delete_last_message(
                self.config, key, op_id=op_id, expected_version=expected_version
            )
        )

    def count(self, key: str) -> int:
        """The number of messages; 0 for a missing key."""
        return self.execute(ops.count(self.config, key))

    def refresh_ttl(self, key: str) -> bool:
        """Restart the conversation's TTL without changing it; False when the key is missing."""
        return self.execute(ops.refresh_ttl(self.config, key))

    def get_keys(self) -> list[str]:
        """Every conversation of the namespace, namespace stripped, sorted: an incremental SCAN
        of every primary (several round trips on a large keyspace, never the blocking KEYS)."""
        return self._scan_keys("list")

    def _scan_keys(self, redis_type: str) -> list[str]:
        """The chat keys of the namespace whose keys hold ``redis_type`` (the Memory store's
        conversations are hashes)."""

        def scan() -> list[bytes]:
            found: list[bytes] = []
            for node in self._scan_nodes():
                cursor = 0
                while True:
                    reply = self.client.execute_command(  # type: ignore[no-untyped-call]
                        *ops.scan_command(self.config, cursor, redis_type),
                        **self._scan_options(node),
                    )
                    cursor, names = self._scan_step(reply)
                    found.extend(names)
                    if not cursor:
                        break
            return found

        return ops.chat_keys(self.config, self._retrying([], lambda _: scan()))

    def close(self) -> None:
        """Close the client if the store made it."""
        if self._owns_client and self._client is not None:
            self._client.close()

    def __enter__(self) -> RedisChatStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
