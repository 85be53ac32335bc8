"""What the sync and async stores share: everything but sending (httpx's ``BaseClient`` shape).

The constructor, the configuration, the client (made on first use), the scripts, the retry rule
and the shape of what goes on the wire live here; ``RedisChatStore`` and ``AsyncRedisChatStore``
add only the loop that sends, waits and awaits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio.cluster
import redis.cluster
from redis.client import NEVER_DECODE

from . import operations as ops
from .connection import DEFAULT_URL
from .errors import InvalidArgumentError, InvalidArgumentTypeError
from .retry import RetryPolicy, is_retryable
from .scripts import Script, scripts

ClientT = TypeVar("ClientT")

# Every command the store sends asks redis-py to hand its reply back as bytes, whatever the
# client's decode_responses: messages are decoded by the store, and an element that is not UTF-8
# must come back as stored (to be reported, or handed back by a delete), never fail to decode.
NO_DECODING: dict[str, Any] = {NEVER_DECODE: []}


def check_client(client: Any) -> None:
    if not callable(getattr(client, "execute_command", None)):
        raise InvalidArgumentTypeError(
            f"client must be a redis-py client, not {type(client).__name__}"
        )


def is_cluster(client: Any) -> bool:
    return isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))


class StoreBase(Generic[ClientT]):
    """The parts of a store that do no I/O. See ``RedisChatStore`` for the options."""

    def __init__(
        self,
        client: ClientT | None,
        *,
        url: str | None,
        ttl: ops.TTL | None,
        namespace: str,
        max_message_bytes: int | None,
        max_messages: int | None,
        op_window: ops.TTL | None,
        op_window_size: int | None,
        retry: RetryPolicy | None,
        client_kwargs: dict[str, Any],
        client_factory: Callable[..., Callable[[], ClientT]],
    ) -> None:
        if client is not None and (url is not None or client_kwargs):
            raise InvalidArgumentError("pass either a client or a url with its options, not both")
        self.config = ops.StoreConfig.build(
            namespace=namespace,
            ttl=ttl,
            max_message_bytes=max_message_bytes,
            max_messages=max_messages,
            op_window=op_window,
            op_window_size=op_window_size,
        )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentTypeError(
                f"retry must be a RetryPolicy, not {type(retry).__name__}"
            )
        self.retry = retry or RetryPolicy()
        self._scripts: dict[str, Script] = scripts()
        self._owns_client = client is None
        self._client: ClientT | None = client
        self._new_client: Callable[[], ClientT] | None = None
        if client is None:
            # Parsed and checked now; made on first use (a sync RedisCluster connects when made).
            self._new_client = client_factory(DEFAULT_URL if url is None else url, **client_kwargs)
        else:
            check_client(client)

    @property
    def client(self) -> ClientT:
        """The redis-py client the store sends through (made on first use from the URL)."""
        if self._client is None:
            assert self._new_client is not None
            self._client = self._new_client()
        return self._client

    def _wire(self, operation: ops.Operation[Any]) -> tuple[ops.Arg, ...]:
        """The command that sends ``operation``: EVALSHA of its script, or the plain command."""
        if operation.script is None:
            return operation.command_line
        script = self._scripts[operation.script]
        return ("EVALSHA", script.sha, len(operation.keys), *operation.keys, *operation.args)

    @property
    def _script_sources(self) -> list[str]:
        return [script.source for script in self._scripts.values()]

    def _scan_nodes(self) -> list[Any]:
        """Where get_keys scans: every primary of a Cluster, else the one server (None)."""
        if is_cluster(self.client):
            return list(self.client.get_primaries())  # type: ignore[attr-defined]
        return [None]

    @staticmethod
    def _scan_step(reply: Any) -> tuple[int, list[bytes]]:
        """SCAN's cursor and names; a Cluster client answers the cursor as {node: cursor}."""
        cursor, names = reply
        if isinstance(cursor, dict):
            (cursor,) = cursor.values()
        return int(cursor), list(names)

    @staticmethod
    def _scan_options(node: Any) -> dict[str, Any]:
        return NO_DECODING if node is None else {**NO_DECODING, "target_nodes": node}

    def _batch_wire(
        self, batch: Sequence[ops.Operation[Any]], transaction: bool
    ) -> list[tuple[ops.Arg, ...]]:
        """The commands of one pipeline. A transaction is spelled out (MULTI, ..., EXEC) rather
        than left to redis-py, which decodes EXEC's reply as the client is set to."""
        commands = [self._wire(operation) for operation in batch]
        return [("MULTI",), *commands, ("EXEC",)] if transaction else commands

    @staticmethod
    def _batch_replies(
        batch: Sequence[ops.Operation[Any]], transaction: bool, replies: Sequence[Any]
    ) -> list[Any]:
        """Each operation's reply out of the pipeline's. Raises what asks for the whole batch to
        be sent again (a NOSCRIPT, a demoted master: the writes that ran replay their recorded
        replies then), or what refused the whole transaction while queueing (nothing ran)."""
        if transaction:
            queued, executed = replies[1:-1], replies[-1]
            if isinstance(executed, Exception):  # EXECABORT: the reason is in the queueing
                raise next((r for r in queued if isinstance(r, Exception)), executed)
            replies = executed
        if len(replies) != len(batch):
            raise redis.ResponseError(f"{len(replies)} replies to {len(batch)} operations")
        for reply in replies:
            if isinstance(reply, Exception) and is_retryable(reply):
                raise reply
        return list(replies)
