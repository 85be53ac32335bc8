"""Every operation of the store, once, with what each must return: run by the Sentinel, Cluster
and TLS tests on a sync store, or awaited on an async one inside a running event loop. Then what
Redis holds is checked on the server itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from atomic_chat_store import ChatMessage
from atomic_chat_store import operations as ops
from model_checker import texts_of

TTL_SECONDS = 600


def message(text: str) -> ChatMessage:
    return ChatMessage(content=text)


@dataclass(frozen=True)
class Step:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    expected: Any  # the returned value in the model's terms (texts_of), or a predicate on it


def _conversation(texts: list[str]) -> Callable[[Any], bool]:
    return lambda got: texts_of(got.messages) == texts and got.version > 1


def steps(store: Any, key: str, other: str) -> list[Step]:
    """``key`` and ``other`` are two conversations of an empty namespace (in two Cluster slots,
    most likely); a transaction touches ``key`` alone."""
    config = store.config
    return [
        Step("add_message", (key, message("a")), {}, 1),
        Step("add_messages", (key, [message("b"), message("c")]), {}, 3),
        Step("add_message", (key, message("x")), {"idx": 1}, 4),
        Step("get_messages", (key,), {}, ["a", "x", "b", "c"]),
        Step("get_messages", (key, 1, 3), {}, ["x", "b"]),
        Step("get_messages", (key, -1), {}, ["c"]),
        Step("count", (key,), {}, 4),
        Step("replace_message", (key, 0, message("A")), {}, "a"),
        Step("delete_message", (key, 1), {}, "x"),
        Step("delete_last_message", (key,), {}, "c"),
        Step("get_conversation", (key,), {}, _conversation(["A", "b"])),
        Step("version", (key,), {}, lambda version: version > 1),
        Step("refresh_ttl", (key,), {}, True),
        Step("set_messages", (other, [message("p"), message("q")]), {}, 2),
        Step("get_keys", (), {}, sorted([key, other])),
        Step("delete_messages", (other,), {}, ["p", "q"]),
        Step("count", (other,), {}, 0),
        Step("get_messages", (other,), {}, []),
        Step("delete_last_message", (other,), {}, None),
        Step(
            "execute_many",
            ([ops.append(config, key, [message("d")]), ops.count(config, key)],),
            {"transaction": True},
            [3, 3],
        ),
        Step(
            "execute_many",
            ([ops.add_message(config, other, message("z")), ops.get_messages(config, key)],),
            {"transaction": False},
            [1, ["A", "b", "d"]],
        ),
    ]


def _check(step: Step, returned: Any) -> None:
    got = texts_of(returned) if step.method != "get_conversation" else returned
    if callable(step.expected):
        assert step.expected(got), f"{step.method}{step.args}: {got!r}"
    else:
        assert got == step.expected, f"{step.method}{step.args}: {got!r} != {step.expected!r}"


def run_sync(store: Any, key: str, other: str) -> None:
    for step in steps(store, key, other):
        _check(step, getattr(store, step.method)(*step.args, **step.kwargs))


async def run_async(store: Any, key: str, other: str) -> None:
    for step in steps(store, key, other):
        _check(step, await getattr(store, step.method)(*step.args, **step.kwargs))


def assert_stored(client_for: Callable[[bytes], redis.Redis], key: bytes, other: bytes) -> None:
    """What the tour leaves, read on the master holding each key: the lists, and the TTL the
    store's writes set."""
    for name, texts in ((key, ["A", "b", "d"]), (other, ["z"])):
        client = client_for(name)
        try:
            raws = client.lrange(name, 0, -1)
            assert [json.loads(raw)["blocks"][0]["text"] for raw in raws] == texts
            assert 0 < client.pttl(name) <= TTL_SECONDS * 1000
        finally:
            client.close()
