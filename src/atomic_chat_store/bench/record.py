"""What the op id record costs: every write of this store records its op id and its reply in a
hash beside the conversation (``keys.record_key``), for a window of the newest 1,000 ids (up to
32 more) and 10 minutes, so that a write sent again is applied once.

- Bytes: ``MEMORY USAGE <key> SAMPLES 0`` (exact) of the list and of its record, for a
  conversation written by one set_messages, one written by N single appends (the record then holds
  min(N, 1,000) to min(N, 1,032) op ids and their replies), and the latter's record after
  delete_messages, which
  keeps what it removed as the reply of its op id.
- Time: the append groups of the latency section measure the store's append, the same append
  with an empty op id (``systems.UnrecordedStore``) and the floor's RPUSH, taking turns. Here, the
  share of each: the server's time per call (``INFO commandstats``, over passes of one kind of
  call alone) and the time Python takes to build the call.

Everything here is untimed by the latency section's clock and runs on the run's admin client.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.cluster

from .. import operations as ops
from ..errors import ChatStoreError
from ..store import RedisChatStore
from .data import BenchMessage, make_conversation, make_message
from .model import CallCost, RecordBytes
from .systems import unrecorded_append

# Appends of one conversation sent together: one pipeline (no MULTI) of this many scripts, each
# its own write with its own op id, as N clients' appends would reach the server.
PIPELINE_BATCH = 500
CALL_ROUNDS = 5  # passes of each kind of call, taking turns
BUILD_SAMPLES = 1000


def _store(client: redis.Redis, prefix: str) -> RedisChatStore:
    return RedisChatStore(client, namespace=prefix)


def append_each(store: RedisChatStore, local: str, messages: Sequence[BenchMessage]) -> None:
    """One append per message, each with its own op id (pipelined, no transaction)."""
    for first in range(0, len(messages), PIPELINE_BATCH):
        batch = messages[first : first + PIPELINE_BATCH]
        store.execute_many(
            [ops.add_message(store.config, local, m.ours()) for m in batch], transaction=False
        )


def fill_record(client: redis.Redis, prefix: str, local: str, message: BenchMessage) -> None:
    """Fill the record of ``prefix + local`` to its op id window with appends of ``message``
    (the list grows by as many; the caller puts it back). Afterwards every recorded write also
    evicts the oldest id: the steady state of a conversation written more than 1,000 times in
    10 minutes, and of any older one, whose ids leave by age at the same pace."""
    store = _store(client, prefix)
    append_each(store, local, [message] * store.config.op_window_size)


def keys_of(client: redis.Redis, prefix: str, local: str) -> tuple[bytes, bytes]:
    """The list and the record of ``prefix + local``."""
    return _store(client, prefix).config.keys(local)


def _memory(client: redis.Redis, key: bytes) -> int | None:
    value = client.memory_usage(key, samples=0)
    return None if value is None else int(value)


def _op_ids(client: redis.Redis, record: bytes) -> int:
    # The record's fields o:<id> hold each id's reply (lua/includes/prelude.lua).
    return sum(1 for _ in client.hscan_iter(record, match="o:*", count=1000))


def measure_record_bytes(
    client: redis.Redis, prefix: str, size: int, message_bytes: int
) -> RecordBytes:
    """The bytes of a conversation of ``size`` messages and of its record, written both ways;
    every key it writes is removed again (errors included: the row then says what failed)."""
    row = RecordBytes(size)
    store = _store(client, prefix)
    messages = make_conversation("m", size, message_bytes)
    written = [f"record:{size}:set", f"record:{size}:appended"]
    try:
        set_list, set_record = store.config.keys(written[0])
        store.set_messages(written[0], [m.ours() for m in messages])
        row.set_list_bytes = _memory(client, set_list)
        row.set_record_bytes = _memory(client, set_record)
        row.set_op_ids = _op_ids(client, set_record)

        appended_list, appended_record = store.config.keys(written[1])
        append_each(store, written[1], messages)
        row.appended_list_bytes = _memory(client, appended_list)
        row.appended_record_bytes = _memory(client, appended_record)
        row.appended_op_ids = _op_ids(client, appended_record)

        store.delete_messages(written[1])
        row.deleted_record_bytes = _memory(client, appended_record)
        row.deleted_op_ids = _op_ids(client, appended_record)
    except (redis.RedisError, ChatStoreError) as error:  # e.g. MEMORY refused by an ACL
        row.error = f"{type(error).__name__}: {error}"
    finally:
        for local in written:
            client.delete(*store.config.keys(local))
    return row


def _commandstats(client: redis.Redis, key: bytes) -> dict[str, Any]:
    """INFO commandstats of the server holding ``key`` (on a Cluster, its primary)."""
    if isinstance(client, redis.cluster.RedisCluster):
        node = client.get_node_from_key(key)
        stats: dict[str, Any] = client.info("commandstats", target_nodes=node)
        return stats
    return client.info("commandstats")


def _calls_and_usec(client: redis.Redis, key: bytes, command: str) -> tuple[int, int]:
    found = _commandstats(client, key).get(f"cmdstat_{command}") or {}
    return int(found.get("calls", 0)), int(found.get("usec", 0))


def _median_us(build: Callable[[], Any], samples: int) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        build()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def measure_calls(
    client: redis.Redis, prefix: str, calls_per_round: int, message_bytes: int
) -> list[CallCost]:
    """The server's time per append, recorded, without an op id, and RPUSH's; and the time
    Python takes to build the store's two. The recorded appends run on a record filled to its
    window, as in the latency section. Raises RedisError when INFO is refused."""
    store = _store(client, prefix)
    config = store.config
    message = make_message("call", message_bytes)
    chat_message = message.ours()
    payload: Any = message.payload
    local, floor_local = "record-cost:calls", "record-cost:calls:floor"
    list_key, record = config.keys(local)
    floor_key = (prefix + floor_local).encode()
    try:
        fill_record(client, prefix, local, message)
        kinds: dict[str, tuple[bytes, str, Callable[[], Any]]] = {
            "recorded": (list_key, "evalsha", lambda: store.add_message(local, chat_message)),
            "unrecorded": (
                list_key,
                "evalsha",
                lambda: store.execute(unrecorded_append(config, local, chat_message)),
            ),
            "rpush": (floor_key, "rpush", lambda: client.rpush(floor_key, payload)),
        }
        results = {name: CallCost(name) for name in kinds}
        usec = dict.fromkeys(kinds, 0)
        for _ in range(CALL_ROUNDS):
            for name, (key, command, call) in kinds.items():
                calls_before, usec_before = _calls_and_usec(client, key, command)
                for _ in range(calls_per_round):
                    call()
                calls_after, usec_after = _calls_and_usec(client, key, command)
                results[name].calls += calls_after - calls_before
                usec[name] += usec_after - usec_before
        for name, result in results.items():
            result.server_us = usec[name] / result.calls if result.calls else None
        results["recorded"].build_us = _median_us(
            lambda: ops.add_message(config, local, chat_message), BUILD_SAMPLES
        )
        results["unrecorded"].build_us = _median_us(
            lambda: unrecorded_append(config, local, chat_message), BUILD_SAMPLES
        )
        return list(results.values())
    finally:
        client.delete(list_key, record)
        client.delete(floor_key)
