"""The store's minimal ACL: exactly the commands it needs, each one shown to be needed.

A user ``on >pw ~* -@all`` plus MINIMAL_ACL can run every store operation; a user without any
one of those commands gets a typed error (PermissionDeniedError, or a BatchError holding one)
on at least one operation, and an operation refused so changes nothing in Redis (the list and
its record, dumped before and after, and their expiries). MEMORY_ACL adds what the Memory store
needs, DURABLE_ACL what ``wait_replicas`` needs; each of their commands is shown needed too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from atomic_chat_store import (
    BatchError,
    DurabilityError,
    PermissionDeniedError,
    RedisChatStore,
    RetryPolicy,
)
from atomic_chat_store import operations as ops
from atomic_chat_store.keys import record_key
from atomic_chat_store.scripts import scripts
from fault_harness import msg, msgs

# What the store needs, for the README: ACL SETUSER <user> on ><password> ~<keys> -@all + these.
MINIMAL_ACL = (
    # sent by the store: writes; after NOSCRIPT, every script loaded, then the script's source;
    # transactions; reads; get_keys
    "+evalsha",
    "+script|load",
    "+eval",
    "+multi",
    "+exec",
    "+lrange",
    "+llen",
    "+scan",
    # called by the scripts (lua/*.lua, lua/includes/prelude.lua)
    "+type",
    "+hmget",
    "+hget",
    "+hset",
    "+hdel",
    "+time",
    "+pexpire",
    "+pttl",
    "+persist",
    "+del",
    "+rpush",
    "+lpush",
    "+lpop",
    "+rpop",
    "+lindex",
    "+lset",
    "+linsert",
    "+lrem",
    "+ltrim",
)

# RedisMemoryStore (llama_index_memory.py) needs these as well: its counts (ZCARD, HLEN) and
# what its scripts (lua/memory_*.lua) call beyond the others.
MEMORY_ACL = ("+zcard", "+hlen", "+zadd", "+zrange", "+zrem", "+zscore")
# wait_replicas needs WAIT, and SPUBLISH on a channel named like the record key (after a write,
# so that a write sent again waits for the offset it replays): a channel rule such as "&*".
DURABLE_ACL = ("+wait", "+spublish", "&*")

# The commands the Python side sends itself (base.py, store.py, operations.py).
STORE_COMMANDS = {"evalsha", "script|load", "eval", "multi", "exec", "lrange", "llen", "scan"}
MEMORY_COMMANDS = {"zcard", "hlen"}

KEY = "chat"
RECORD = record_key(KEY.encode())
SEEDED = [f"s{n}" for n in range(40)]
# An expiry of the store's own (600 s) would replace this one: a refused write leaves it.
SEEDED_TTL_MS = 50_000


def commands_the_scripts_call(memory: bool) -> set[str]:
    called: set[str] = set()
    for name, script in scripts().items():
        if name.startswith("memory_") == memory:
            called |= {
                name.lower() for name in re.findall(r"(?:rcall|in_chunks)\('(\w+)'", script.source)
            }
    return called


def test_the_minimal_acl_is_what_the_store_sends_and_its_scripts_call() -> None:
    assert len(set(MINIMAL_ACL + MEMORY_ACL)) == len(MINIMAL_ACL + MEMORY_ACL)
    listed = {rule.removeprefix("+") for rule in MINIMAL_ACL}
    assert listed == STORE_COMMANDS | commands_the_scripts_call(memory=False)
    memory = {rule.removeprefix("+") for rule in MEMORY_ACL}
    assert listed | memory == listed | MEMORY_COMMANDS | commands_the_scripts_call(memory=True)


# ----------------------------------------------------------------------------------------------


@contextmanager
def user_with(url: str, rules: tuple[str, ...]) -> Iterator[str]:
    """A user with exactly ``on >pw ~* -@all`` and ``rules``; yields its URL."""
    name, password = f"acl-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    admin = redis.Redis.from_url(url)
    admin.execute_command(
        "ACL", "SETUSER", name, "reset", "on", f">{password}", "~*", "-@all", *rules
    )
    try:
        yield url.replace("redis://", f"redis://{name}:{password}@", 1)
    finally:
        admin.execute_command("ACL", "DELUSER", name)
        admin.close()


def seed(url: str) -> None:
    """A fresh conversation as one of our scripts leaves it (with its record and version), a
    TTL of its own on both, and no script loaded: the user's store must load them."""
    admin = redis.Redis.from_url(url)
    admin.delete(KEY, RECORD)
    with RedisChatStore.from_url(url) as admin_store:
        admin_store.set_messages(KEY, msgs(*SEEDED))
    admin.pexpire(KEY, SEEDED_TTL_MS)
    admin.pexpire(RECORD, SEEDED_TTL_MS)
    admin.script_flush()
    admin.close()


def snapshot(client: redis.Redis) -> tuple[Any, ...]:
    """The list (every element's bytes, in order) and its record (every field) as Redis holds
    them, and whether their expiries are still the seeded ones. (Contents rather than DUMP: a
    read may advance a hash's incremental rehashing, which reorders its DUMP.)"""
    return (
        client.lrange(KEY, 0, -1),
        client.hgetall(RECORD),
        0 < client.pttl(KEY) <= SEEDED_TTL_MS,
        0 < client.pttl(RECORD) <= SEEDED_TTL_MS,
    )


class Stores:
    """The stores every operation runs on: with a TTL and a bound on messages, plain, and one
    whose bound trims."""

    def __init__(self, url: str) -> None:
        self.ttl = RedisChatStore.from_url(url, ttl=600, max_messages=1000)
        self.plain = RedisChatStore.from_url(url)
        self.bounded = RedisChatStore.from_url(url, max_messages=5)

    def close(self) -> None:
        for store in (self.ttl, self.plain, self.bounded):
            store.close()


def batch(store: RedisChatStore, transaction: bool) -> list[Any]:
    config = store.config
    if transaction:
        operations = [
            ops.add_message(config, KEY, msg("b0")),
            ops.delete_message(config, KEY, 10),
            ops.count(config, KEY),
        ]
    else:
        operations = [
            ops.add_message(config, KEY, msg("b1"), 3),
            ops.delete_last_message(config, KEY),
            ops.get_messages(config, KEY),
        ]
    return store.execute_many(operations, transaction=transaction)


# Every operation, each on the seeded conversation of 40 messages: (name, call).
OPERATIONS: list[tuple[str, Callable[[Stores], Any]]] = [
    ("append", lambda s: s.plain.add_message(KEY, msg("a"))),
    ("append with TTL", lambda s: s.ttl.add_message(KEY, msg("a"))),
    ("append many", lambda s: s.ttl.add_messages(KEY, msgs("a", "b"))),
    ("append and trim", lambda s: s.bounded.add_message(KEY, msg("a"))),
    ("insert in the middle", lambda s: s.plain.add_message(KEY, msg("i"), 2)),
    ("insert near the end", lambda s: s.ttl.add_message(KEY, msg("i"), 39)),  # moves the tail
    ("insert at the head", lambda s: s.plain.add_message(KEY, msg("i"), 0)),
    ("set", lambda s: s.ttl.set_messages(KEY, msgs("x", "y"))),
    ("get", lambda s: s.plain.get_messages(KEY)),
    ("count", lambda s: s.plain.count(KEY)),
    ("delete at the head", lambda s: s.plain.delete_message(KEY, 0)),
    ("delete in the middle", lambda s: s.plain.delete_message(KEY, 5)),
    ("delete at the end", lambda s: s.ttl.delete_message(KEY, 39)),
    ("delete last", lambda s: s.plain.delete_last_message(KEY)),
    ("delete all", lambda s: s.ttl.delete_messages(KEY)),
    ("refresh ttl", lambda s: s.ttl.refresh_ttl(KEY)),
    ("replace", lambda s: s.ttl.replace_message(KEY, 3, msg("r"))),
    ("get a range", lambda s: s.plain.get_messages(KEY, -5)),
    ("get with the version", lambda s: s.plain.get_conversation(KEY, 2, 4)),
    ("version", lambda s: s.plain.version(KEY)),
    (
        "write with a version",
        lambda s: s.plain.add_message(KEY, msg("v"), expected_version=s.plain.version(KEY)),
    ),
    ("get keys", lambda s: s.plain.get_keys()),
    ("transaction", lambda s: batch(s.ttl, transaction=True)),
    ("pipeline", lambda s: batch(s.plain, transaction=False)),
]


def test_a_user_with_exactly_the_minimal_acl_runs_every_operation(redis_url: str) -> None:
    with user_with(redis_url, MINIMAL_ACL) as url:
        stores = Stores(url)
        try:
            for name, operation in OPERATIONS:
                seed(redis_url)
                try:
                    operation(stores)
                except Exception as error:
                    pytest.fail(f"{name}: {error!r}")
            seed(redis_url)
            assert stores.plain.get_keys() == [KEY]
            assert stores.plain.add_message(KEY, msg("i"), 20) == 41
            assert stores.plain.delete_message(KEY, 20).content == "i"
            assert stores.plain.execute_many([ops.count(stores.plain.config, KEY)]) == [40]
        finally:
            stores.close()


def describe(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__name__}: {error}"


def permission_denied(error: BaseException) -> bool:
    """A PermissionDeniedError, or a BatchError whose every error is one, or one that says its
    transaction could not start for one (MULTI refused: its operations ran one by one)."""
    if isinstance(error, BatchError) and error.cause is not None:
        return isinstance(error.cause, PermissionDeniedError) and error.cause.command == "multi"
    if isinstance(error, BatchError):
        return all(isinstance(e, PermissionDeniedError) for e in error.errors.values())
    return isinstance(error, PermissionDeniedError)


@pytest.mark.parametrize("command", [rule.removeprefix("+") for rule in MINIMAL_ACL])
def test_without_any_one_command_an_operation_is_refused_and_changes_nothing(
    redis_url: str, redis_client: redis.Redis, command: str
) -> None:
    rules = tuple(rule for rule in MINIMAL_ACL if rule != f"+{command}")
    refused, problems = [], []
    with user_with(redis_url, rules) as url:
        stores = Stores(url)
        try:
            for name, operation in OPERATIONS:
                seed(redis_url)
                before = snapshot(redis_client)
                try:
                    operation(stores)
                except Exception as error:
                    typed = permission_denied(error)
                    if typed:
                        refused.append(name)
                    else:
                        problems.append(f"{name}: not a PermissionDeniedError: {describe(error)}")
                    # A batch whose every operation failed must have changed nothing either.
                    whole = not isinstance(error, BatchError) or len(error.errors) == len(
                        error.results
                    )
                    if whole and snapshot(redis_client) != before:
                        problems.append(f"{name}: failed ({describe(error)}), yet Redis changed")
        finally:
            stores.close()
    assert not problems, "\n".join(problems)
    assert refused, f"no operation needed {command}"


# -- wait_replicas --------------------------------------------------------------------------------


def durable_store(url: str) -> RedisChatStore:
    # A server without replicas: WAIT 1 never gets one, so a write that may wait ends in
    # DurabilityError (applied); one that may not ends in PermissionDeniedError (not applied).
    return RedisChatStore.from_url(
        url, wait_replicas=1, wait_timeout=0.01, retry=RetryPolicy(attempts=2, timeout=1)
    )


@pytest.mark.parametrize("left_out", [None, *DURABLE_ACL])
def test_durable_writes_need_wait_and_spublish(
    redis_url: str, redis_client: redis.Redis, left_out: str | None
) -> None:
    rules = MINIMAL_ACL + tuple(rule for rule in DURABLE_ACL if rule != left_out)
    if left_out == "&*":
        rules += ("resetchannels",)
    with user_with(redis_url, rules) as url:
        seed(redis_url)
        before = snapshot(redis_client)
        store = durable_store(url)
        try:
            if left_out is None:
                with pytest.raises(DurabilityError) as raised:
                    store.add_message(KEY, msg("d"))
                assert raised.value.reply == len(SEEDED) + 1  # applied, not acknowledged
            else:
                with pytest.raises(PermissionDeniedError):
                    store.add_message(KEY, msg("d"))
                assert snapshot(redis_client) == before  # refused whole, not applied
        finally:
            store.close()


# -- the Memory store -----------------------------------------------------------------------------


def memory_calls(store: Any) -> list[tuple[str, Callable[[], Any]]]:
    from llama_index.core.storage.chat_store.base_db import MessageStatus

    return [
        ("add", lambda: store.add_message(KEY, lmsg("m"))),
        ("add archived", lambda: store.add_messages(KEY, [lmsg("a")], MessageStatus.ARCHIVED)),
        ("get", lambda: store.get_messages(KEY)),
        ("get all", lambda: store.get_messages(KEY, status=None, limit=2, offset=1)),
        ("count", lambda: store.count_messages(KEY)),
        ("count all", lambda: store.count_messages(KEY, status=None)),
        ("archive", lambda: store.archive_oldest_messages(KEY, 1)),
        ("delete oldest", lambda: store.delete_oldest_messages(KEY, 1)),
        ("delete at", lambda: store.delete_message(KEY, 0)),
        ("delete archived", lambda: store.delete_messages(KEY, MessageStatus.ARCHIVED)),
        ("set", lambda: store.set_messages(KEY, [lmsg("s")])),
        ("keys", lambda: store.get_keys()),
        ("delete all", lambda: store.delete_messages(KEY)),
    ]


def lmsg(text: str) -> Any:
    from llama_index.core.llms import ChatMessage as LlamaChatMessage

    return LlamaChatMessage(role="user", content=text)


def run_memory(url: str, admin_url: str) -> tuple[list[str], list[str]]:
    """Every Memory store call on a fresh conversation of three active messages: the names of
    those refused with PermissionDeniedError, and the problems (other errors, or changes made
    by a refused call)."""
    import asyncio

    from atomic_chat_store.llama_index import RedisMemoryStore

    admin = redis.Redis.from_url(admin_url)
    refused, problems = [], []

    async def run() -> None:
        store = RedisMemoryStore(redis_url=url)
        seeder = RedisMemoryStore(redis_url=admin_url)
        try:
            for name, call in memory_calls(store):
                await seeder.delete_messages(KEY)
                await seeder.add_messages(KEY, [lmsg("x"), lmsg("y"), lmsg("z")])
                before = sorted((k, admin.type(k), admin.dump(k)) for k in admin.keys("memory:*"))
                try:
                    await call()
                except PermissionDeniedError:
                    refused.append(name)
                    after = sorted(
                        (k, admin.type(k), admin.dump(k)) for k in admin.keys("memory:*")
                    )
                    if after != before:
                        problems.append(f"{name}: refused, yet Redis changed")
                except Exception as error:
                    problems.append(f"{name}: {describe(error)}")
        finally:
            await seeder.aclose()
            await store.aclose()

    try:
        asyncio.run(run())
    finally:
        admin.close()
    return refused, problems


@pytest.mark.parametrize("left_out", [None, *MEMORY_ACL])
def test_the_memory_store_needs_its_acl(redis_url: str, redis_client: redis.Redis, left_out):
    rules = MINIMAL_ACL + tuple(rule for rule in MEMORY_ACL if rule != left_out)
    with user_with(redis_url, rules) as url:
        refused, problems = run_memory(url, redis_url)
    assert not problems, "\n".join(problems)
    if left_out is None:
        assert refused == []
    else:
        assert refused, f"no Memory store call needed {left_out}"
