"""Each operation of ``atomic-chat-store bench`` under pytest-benchmark: this store (sync), the
seed (LlamaIndex's RedisChatStore) and the floor (raw redis-py), grouped by operation and N.

Every round starts from a conversation of exactly N messages; the previous round is undone in
pytest-benchmark's teardown, outside the clock. The number of rounds is capped by a time budget
per benchmark (see ``conftest.py``), so the seed's O(N)-round-trip operations stay bounded.
"""

from __future__ import annotations

import functools
import gc
from typing import Any

import pytest
import redis

from atomic_chat_store.bench.data import BenchMessage, idents, make_conversation, make_message
from atomic_chat_store.bench.model import OPERATIONS
from atomic_chat_store.bench.runner import (
    check_operation,
    reset_conversation,
    restore_conversation,
)
from atomic_chat_store.bench.systems import OpArgs, System

from .conftest import bench_budget, bench_rounds, bench_sizes

MESSAGE_BYTES = 200


@functools.cache
def conversations(size: int) -> tuple[list[BenchMessage], list[BenchMessage], BenchMessage]:
    return (
        make_conversation("c", size, MESSAGE_BYTES),
        make_conversation("r", size, MESSAGE_BYTES),
        make_message("new", MESSAGE_BYTES),
    )


# The seed (llama-index-storage-chat-store-redis 0.8) has no replace and no range read: those
# pairs are left out here (a skip would fail the run); test_the_seed_lacks_them says why.
SEED_HAS_NO = ("replace_middle", "get_last")
SYSTEM_OPERATIONS = [
    (system_name, op)
    for system_name in ("sync", "seed", "floor")
    for op in OPERATIONS
    if not (system_name == "seed" and op in SEED_HAS_NO)
]


def test_the_seed_lacks_them(systems: dict[str, System]) -> None:
    seed = systems["seed"]
    assert [op for op in OPERATIONS if not seed.supports(op)] == list(SEED_HAS_NO)


@pytest.mark.parametrize("size", bench_sizes(), ids=lambda size: f"N={size}")
@pytest.mark.parametrize(("system_name", "op"), SYSTEM_OPERATIONS)
def test_operation(
    benchmark: Any,
    systems: dict[str, System],
    admin: redis.Redis,
    prefix: str,
    system_name: str,
    op: str,
    size: int,
) -> None:
    system = systems[system_name]
    canonical, replacement, new = conversations(size)
    index = size // 2
    local = f"pytest-benchmark:{op}:{size}:{system_name}"
    key = prefix + local
    targets = {"canonical": canonical, "replacement": replacement}
    calls = {
        name: system.call(OpArgs(op, size, index, new, canonical[index], target), local)
        for name, target in targets.items()
    }
    base = OpArgs(op, size, index, new, canonical[index])

    # One untimed call: is the result right, and how long does it take (to size the rounds)?
    check_args = OpArgs(
        op, size, index, new, canonical[index], replacement if op == "set_all" else ()
    )
    checked = check_operation(admin, system, check_args, local, canonical)
    correct, detail = checked.correct, checked.detail

    state = {"now": "canonical"}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if op == "set_all":  # write the other list: every round starts from N messages
            target = "replacement" if state["now"] == "canonical" else "canonical"
            state["now"] = target if correct else "canonical"
            return (calls[target],), {}
        return (calls["canonical"],), {}

    def teardown(call: Any) -> None:
        if not correct:
            reset_conversation(admin, key, canonical)
        elif op != "set_all":
            restore_conversation(admin, key, base, canonical)

    rounds = max(1, min(bench_rounds(), int(bench_budget() / max(checked.elapsed_s, 1e-6))))
    benchmark.group = f"{op} N={size}"
    benchmark.extra_info.update(
        {"system": system_name, "op": op, "size": size, "correct": correct, "detail": detail}
    )
    gc.collect()
    gc.freeze()  # as atomic-chat-store bench does: the harness's heap stays out of the GC's way
    try:
        benchmark.pedantic(lambda call: call(), setup=setup, teardown=teardown, rounds=rounds)
    finally:
        gc.unfreeze()

    # Every round really started from the same state, and the rounds left it there.
    assert idents(admin.lrange(key, 0, -1)) == [m.ident for m in targets[state["now"]]]
    admin.delete(key)
    if system_name in ("sync", "floor"):
        assert correct, detail
