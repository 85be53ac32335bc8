"""Measurements behind design choices, reproducible: ``python benchmarks/micro.py``.

1. How ``insert.lua`` inserts inside a list: swapping the element for a mark and letting LINSERT
   scan (in C, from the head), against moving the shorter side through the script.
2. How a conversation is decoded: one pydantic call on the elements joined into a JSON array,
   against one call per element, and LlamaIndex's own per-element decoding; and what building a
   set_messages of 1,000 costs (encoding and checking every message).
3. What a write's script costs on the server (``INFO commandstats`` over 20,000 EVALSHA sent
   through a pipeline): an empty script with the same keys and arguments, the prelude alone,
   append.lua with an empty op id (nothing recorded), and with one (the record full, so old ids
   also leave); and, for comparison, the append script of before op ids (TYPE, LLEN, RPUSH,
   PEXPIRE).

Uses $REDIS_URL (keys under "acs-micro:", removed at the end) or a private redis-server.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable

import redis

from atomic_chat_store import ChatMessage
from atomic_chat_store import operations as ops
from atomic_chat_store.keys import record_key
from atomic_chat_store.messages import decode_conversation, decode_message
from atomic_chat_store.scripts import expand_includes, lua_dir, scripts
from atomic_chat_store.server import RedisServer

KEY = "acs-micro:list"
MARK_INSERT = """
local pivot = redis.call('LINDEX', KEYS[1], ARGV[1])
redis.call('LSET', KEYS[1], ARGV[1], '\\255mark')
redis.call('LINSERT', KEYS[1], 'BEFORE', '\\255mark', ARGV[2])
redis.call('LSET', KEYS[1], tonumber(ARGV[1]) + 1, pivot)
"""
MOVE_INSERT = """
local i = tonumber(ARGV[1])
local tail = redis.call('LRANGE', KEYS[1], i, -1)
redis.call('LTRIM', KEYS[1], 0, i - 1)
redis.call('RPUSH', KEYS[1], ARGV[2])
for s = 1, #tail, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(tail, s, math.min(s + 999, #tail)))
end
"""
MESSAGE = ChatMessage(content="x" * 150).model_dump_json().encode()  # about 200 bytes


def median_ms(action: Callable[[], object], after: Callable[[], object] = lambda: None) -> float:
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
        after()
    return statistics.median(samples) * 1000


def insert_strategies(client: redis.Redis) -> None:
    mark, move = client.register_script(MARK_INSERT), client.register_script(MOVE_INSERT)
    print("insert inside a list of 200-byte messages (median of 30, ms)")
    print(f"  {'N':>7} {'at':>5} {'mark + LINSERT':>15} {'move the tail':>14}")
    for n, fraction in ((10_000, 0.5), (100_000, 0.5), (100_000, 0.9)):
        client.delete(KEY)
        for start in range(0, n, 1000):
            client.rpush(KEY, *[MESSAGE] * min(1000, n - start))
        index = int(n * fraction)
        times = [
            median_ms(
                lambda s=script, i=index: s(keys=[KEY], args=[i, MESSAGE]),
                lambda: client.rpop(KEY),
            )
            for script in (mark, move)
        ]
        print(f"  {n:>7,} {fraction:>5.0%} {times[0]:>15.2f} {times[1]:>14.2f}")
    client.delete(KEY)


def decoding() -> None:
    from llama_index.core.llms import ChatMessage as LlamaChatMessage

    raws = [MESSAGE] * 1000
    print("decode 1,000 stored messages (median of 30, ms)")
    joined = median_ms(lambda: decode_conversation(raws))
    each = median_ms(lambda: [decode_message(r) for r in raws])
    print(f"  one call, joined into an array   {joined:6.2f}")
    print(f"  one call per element             {each:6.2f}")
    llama = median_ms(lambda: [LlamaChatMessage.model_validate_json(r) for r in raws])
    print(f"  LlamaIndex, one call per element {llama:6.2f}")


OLD_APPEND = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'list' and kind ~= 'none' then return redis.error_reply('WRONGTYPE') end
local length = redis.call('LLEN', KEYS[1])
length = redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return length
"""


def server_usec(client: redis.Redis, send: Callable[[redis.client.Pipeline, int], object]) -> float:
    """Microseconds of server time per EVALSHA over 20,000 calls (INFO commandstats)."""
    client.config_resetstat()
    for first in range(0, 20_000, 500):
        pipe = client.pipeline(transaction=False)
        for i in range(first, first + 500):
            send(pipe, i)
        pipe.execute()
    return float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def script_costs(client: redis.Redis) -> None:
    config = ops.StoreConfig.build(ttl=600)
    key = KEY.encode()
    keys = (key, record_key(key))
    folder = lua_dir()
    prelude_only = expand_includes("#!lua\n-- @include prelude\nreturn 1\n", folder / "includes")
    shas = {
        "empty": client.script_load("#!lua\nreturn 1\n"),
        "prelude": client.script_load(prelude_only),
        "append": client.script_load(scripts()["append"].source),
    }
    old = client.script_load(OLD_APPEND)

    def evalsha(name: str, op_id: str) -> Callable[[redis.client.Pipeline, int], object]:
        def send(pipe: redis.client.Pipeline, i: int) -> object:
            argv = config.argv(f"{op_id}{i}" if op_id else "")
            return pipe.evalsha(shas[name], 2, *keys, *argv, MESSAGE)

        return send

    client.delete(*keys)
    # The record full: 1,100 ids first, so that each measured append also makes old ids leave.
    server_usec(client, evalsha("append", "fill-"))
    rows = [
        ("an empty script, same keys and arguments", evalsha("empty", "")),
        ("the prelude alone", evalsha("prelude", "")),
        ("append.lua, empty op id (nothing recorded)", evalsha("append", "")),
        ("append.lua, op id recorded (record full)", evalsha("append", "op-")),
        (
            "the append script before op ids",
            lambda pipe, i: pipe.evalsha(old, 1, KEY + ":old", 600_000, MESSAGE),
        ),
    ]
    print("server time per EVALSHA, 20,000 calls (INFO commandstats, µs)")
    for label, send in rows:
        print(f"  {label:<45} {server_usec(client, send):6.2f}")
    client.delete(*keys, KEY + ":old")


def building() -> None:
    messages = [ChatMessage(content="x" * 150)] * 1000
    config = ops.StoreConfig.build()
    cost = median_ms(lambda: ops.set_messages(config, "k", messages))
    print(f"build set_messages of 1,000 messages (median of 30): {cost:.2f} ms")


def main() -> None:
    url = os.environ.get("REDIS_URL")
    with RedisServer() if url is None else contextlib.nullcontext() as server:
        client = redis.Redis.from_url(url or server.url)
        insert_strategies(client)
        script_costs(client)
        client.close()
    decoding()
    building()


if __name__ == "__main__":
    main()
