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
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.client import NEVER_DECODE

from . import operations as ops
from .connection import DEFAULT_URL
from .errors import InvalidArgumentError, InvalidArgumentTypeError
from .keys import key_slot
from .retry import (
    BatchResend,
    ReplicaShortfall,
    RetryPolicy,
    TransactionNotStarted,
    is_retryable,
)
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
        wait_replicas: int,
        wait_timeout: float,
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
            wait_replicas=wait_replicas,
        )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentTypeError(
                f"retry must be a RetryPolicy, not {type(retry).__name__}"
            )
        self.retry = retry or RetryPolicy()
        self.wait_timeout_ms = ops.ttl_to_ms(wait_timeout, "wait_timeout")
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

    def _wire(self, operation: ops.Operation[Any], source: bool = False) -> tuple[ops.Arg, ...]:
        """The command that sends ``operation``: EVALSHA of its script (EVAL of its source after
        a NOSCRIPT: it loads the script as it runs it), or the plain command."""
        if operation.script is None:
            return operation.command_line
        script = self._scripts[operation.script]
        head = ("EVAL", script.source) if source else ("EVALSHA", script.sha)
        return (*head, len(operation.keys), *operation.keys, *operation.args)

    # -- what goes on the wire, decided here for both shells --------------------------------------

    def _durable(self, operation: ops.Operation[Any]) -> bool:
        return self.config.wait_replicas > 0 and operation.op_id is not None

    def _durability_tail(
        self, operations: Sequence[ops.Operation[Any]]
    ) -> list[tuple[ops.Arg, ...]]:
        """What follows durable writes on their connection: WAIT for the replicas, after a
        SPUBLISH that reaches them. WAIT waits for the offset of the connection's last write, and
        a write sent again (a new connection, perhaps) that replays its recorded reply writes
        nothing: without something replicated after it, WAIT would not wait for the write it
        replays. SPUBLISH changes no data and goes to the shard's replicas only."""
        return [
            ("SPUBLISH", operations[0].keys[1], b""),  # the record: what the script checks
            ("WAIT", self.config.wait_replicas, self.wait_timeout_ms),
        ]

    def _one_on_node(
        self, operation: ops.Operation[Any], source: bool
    ) -> list[tuple[ops.Arg, ...]]:
        """A durable write's commands, for one connection."""
        return [self._wire(operation, source), *self._durability_tail([operation])]

    def _reply_on_node(self, replies: Sequence[Any]) -> Any:
        """The reply of a durable write: raises an error reply, and the shortfall of replicas."""
        reply, _, acknowledged = replies
        for answer in (reply, acknowledged):
            if isinstance(answer, Exception):
                raise answer
        if acknowledged < self.config.wait_replicas:
            raise ReplicaShortfall(reply, acknowledged, self.config.wait_replicas)
        return reply

    def _batch_route(self, batch: Sequence[ops.Operation[Any]], transaction: bool) -> str:
        """How a batch travels: ``node``, one pipeline on one connection (a server, or the node of
        the one slot a Cluster transaction may touch); ``cluster``, redis-py's Cluster pipeline
        (one pipeline per node; it follows MOVED and ASK itself); ``each``, one operation at a
        time (durable writes on a Cluster, each waiting on its own node)."""
        if not is_cluster(self.client):
            return "node"
        if transaction:
            slots = {key_slot(operation.keys[0]) for operation in batch}
            if len(slots) > 1:
                raise InvalidArgumentError(
                    "a Cluster runs a transaction within one slot only, and these operations "
                    f"touch {len(slots)} slots: use transaction=False, or keys with one hash tag"
                )
            return "node"
        return "each" if any(self._durable(operation) for operation in batch) else "cluster"

    def _node_key(self, batch: Sequence[ops.Operation[Any]]) -> bytes | None:
        return batch[0].keys[0] if is_cluster(self.client) else None

    @staticmethod
    def _rediscovers_on_connect(client: Any) -> bool:
        """A Sentinel-managed pool: it asks the sentinels for the master on each new connection,
        so closing its connections is how to follow a failover at once."""
        pool = getattr(client, "connection_pool", None)
        return isinstance(
            pool,
            (redis.sentinel.SentinelConnectionPool, redis.asyncio.sentinel.SentinelConnectionPool),
        )

    def _script_loads(self) -> list[tuple[ops.Arg, ...]]:
        """Every script loaded in one transaction: Redis then has all of them or none."""
        loads = [("SCRIPT", "LOAD", script.source) for script in self._scripts.values()]
        return [("MULTI",), *loads, ("EXEC",)]

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
        self, batch: Sequence[ops.Operation[Any]], transaction: bool, source: bool
    ) -> list[tuple[ops.Arg, ...]]:
        """The commands of one pipeline on one connection. A transaction is spelled out (MULTI,
        ..., EXEC) rather than left to redis-py, which decodes EXEC's reply as the client is set
        to; durable writes are followed by the durability tail."""
        commands = [self._wire(operation, source) for operation in batch]
        if transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        if any(self._durable(operation) for operation in batch):
            commands += self._durability_tail(batch)
        return commands

    def _batch_replies(
        self, batch: Sequence[ops.Operation[Any]], transaction: bool, replies: Sequence[Any]
    ) -> list[Any]:
        """Each operation's reply out of the pipeline's. Raises what asks for the whole batch to
        be sent again (a NOSCRIPT, a demoted master: the writes that ran replay their recorded
        replies then, and a transaction resent by EVAL is whole again), what refused the whole
        transaction while queueing (nothing ran), or a shortfall of replicas."""
        acknowledged = None
        if any(self._durable(operation) for operation in batch):
            *replies, _, acknowledged = replies
            if isinstance(acknowledged, Exception):
                raise acknowledged
        if transaction:
            begun, queued, executed = replies[0], replies[1:-1], replies[-1]
            if isinstance(begun, Exception):
                if is_retryable(begun):  # a server loading, a demoted master: send it again
                    raise begun
                # MULTI refused (an ACL without it): what followed ran at once, one by one.
                raise TransactionNotStarted(list(queued), begun)
            if isinstance(executed, Exception):  # EXECABORT: the reason is in the queueing
                raise next((r for r in queued if isinstance(r, Exception)), executed)
            replies = executed
        if len(replies) != len(batch):
            raise redis.ResponseError(f"{len(replies)} replies to {len(batch)} operations")
        for reply in replies:
            if isinstance(reply, Exception) and is_retryable(reply):
                applied = any(
                    operation.op_id is not None and not isinstance(answer, Exception)
                    for operation, answer in zip(batch, replies, strict=False)
                )
                raise BatchResend(reply, applied)
        if acknowledged is not None and acknowledged < self.config.wait_replicas:
            raise ReplicaShortfall(list(replies), acknowledged, self.config.wait_replicas)
        return list(replies)
