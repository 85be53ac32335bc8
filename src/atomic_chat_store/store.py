"""RedisChatStore: the synchronous store. It only sends what ``operations`` builds."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar

import redis

from . import operations as ops
from .connection import DEFAULT_URL, client_from_url
from .messages import ChatMessage
from .scripts import register_scripts

R = TypeVar("R")


class RedisChatStore:
    """Chat histories in Redis lists, every edit one atomic Lua script and one round trip.

    ``client`` is any redis-py client (``redis.Redis``, a Sentinel master, ``RedisCluster``);
    without one, ``url`` (default ``redis://localhost:6379/0``) and ``client_kwargs`` make one,
    which ``close()`` then closes. ``ttl`` (seconds or a timedelta) is refreshed by every write;
    ``namespace`` is prepended to every key; a message whose JSON is over ``max_message_bytes``
    (default 4 MiB) is refused before anything is sent.
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
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
            client if client is not None else client_from_url(url or DEFAULT_URL, **client_kwargs)
        )
        self._scripts = register_scripts(self.client)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisChatStore:
        """A store on a new client for ``url``; other keyword arguments as for the constructor."""
        return cls(url=url, **kwargs)

    def execute(self, operation: ops.Operation[R]) -> R:
        """Send one operation built by ``atomic_chat_store.operations``: one round trip."""
        try:
            if operation.script is not None:
                reply = self._scripts[operation.script](keys=operation.keys, args=operation.args)
            else:
                reply = self.client.execute_command(*operation.command_line)  # type: ignore[no-untyped-call]
        except redis.ResponseError as exc:
            error = operation.error(exc)
            if error is exc:
                raise
            raise error from exc
        return operation.decode(reply)

    def execute_many(
        self, operations: Sequence[ops.Operation[Any]], *, transaction: bool = True
    ) -> list[Any]:
        """Send several operations in one redis-py pipeline (MULTI/EXEC when ``transaction``).

        Results come back in order. Every operation runs, even after one fails: Redis does not
        roll a MULTI/EXEC back. A failure raises ``BatchError``, whose ``results`` hold each
        result or typed error. redis-py checks the scripts are loaded (SCRIPT EXISTS) before it
        sends the pipeline: two round trips for the lot.
        """
        with self.client.pipeline(transaction=transaction) as pipe:
            for operation in operations:
                if operation.script is not None:
                    self._scripts[operation.script](
                        keys=operation.keys, args=operation.args, client=pipe
                    )
                else:
                    pipe.execute_command(*operation.command_line)  # type: ignore[no-untyped-call]
            replies = pipe.execute(raise_on_error=False)
        return ops.decode_replies(operations, replies)

    def add_message(self, key: str, message: object, idx: int | None = None) -> int:
        """Append ``message``, or insert it before ``idx`` (``list.insert`` rules).

        Returns the new length.
        """
        return self.execute(ops.add_message(self.config, key, message, idx))

    def add_messages(self, key: str, messages: Sequence[object]) -> int:
        """Append several messages in one script. Returns the new length."""
        return self.execute(ops.append(self.config, key, messages))

    def set_messages(self, key: str, messages: Sequence[object]) -> int:
        """Replace the conversation atomically; an empty list removes the key.

        Returns the new length.
        """
        return self.execute(ops.set_messages(self.config, key, messages))

    def get_messages(self, key: str) -> list[ChatMessage]:
        """The whole conversation, oldest first; ``[]`` for a missing key."""
        return self.execute(ops.get_messages(self.config, key))

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Remove the conversation; returns what it held, or None when it held nothing."""
        return self.execute(ops.delete_messages(self.config, key))

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Remove and return the message at ``0 <= idx < len``; otherwise None, nothing changes."""
        return self.execute(ops.delete_message(self.config, key, idx))

    def delete_last_message(self, key: str) -> ChatMessage | None:
        """Remove and return the last message; None when there is none."""
        return self.execute(ops.delete_last_message(self.config, key))

    def count(self, key: str) -> int:
        """The number of messages; 0 for a missing key."""
        return self.execute(ops.count(self.config, key))

    def refresh_ttl(self, key: str) -> bool:
        """Restart the conversation's TTL without changing it; False when the key is missing."""
        return self.execute(ops.refresh_ttl(self.config, key))

    def get_keys(self) -> list[str]:
        """Every conversation of the namespace, namespace stripped, sorted: an incremental SCAN
        (several round trips on a large keyspace, never the blocking KEYS command)."""
        found = self.client.scan_iter(
            match=ops.keys_pattern(self.config), count=ops.SCAN_COUNT, _type="list"
        )
        return ops.chat_keys(self.config, found)

    def close(self) -> None:
        """Close the client if the store made it."""
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> RedisChatStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
