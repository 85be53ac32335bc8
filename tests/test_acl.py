"""The store's minimal ACL: exactly the commands it needs, each one shown to be needed.

A user ``on >pw ~* -@all`` plus MINIMAL_ACL can run every store operation; a user without any
one of those commands gets a typed error (PermissionDeniedError, or a BatchError holding one)
on at least one operation, and an operation refused so changes nothing in Redis (the list and
its record, dumped before and after, and their expiries).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from atomic_chat_store import BatchError, PermissionDeniedError, RedisChatStore
from atomic_chat_store import operations as ops
from atomic_chat_store.keys import record_key
from atomic_chat_store.scripts import scripts
from fault_harness import msg, msgs

# What the store needs, for the README: ACL SETUSER <user> on ><password> ~<keys> -@all + these.
MINIMAL_ACL = (
    # sent by the store: writes, script loading after NOSCRIPT, transactions, reads, get_keys
    "+evalsha",
    "+script|load",
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

# The commands the Python side sends itself (base.py, store.py, operations.py).
STORE_COMMANDS = {"evalsha", "script|load", "multi", "exec", "lrange", "llen", "scan"}

KEY = "chat"
RECORD = record_key(KEY.encode())
SEEDED = [f"s{n}" for n in range(40)]
# An expiry of the store's own (600 s) would replace this one: a refused write leaves it.
SEEDED_TTL_MS = 50_000


def commands_the_scripts_call() -> set[str]:
    called: set[str] = set()
    for script in scripts().values():
        called |= {name.lower() for name in re.findall(r"rcall\('(\w+)'", script.source)}
    return called


def test_the_minimal_acl_is_what_the_store_sends_and_its_scripts_call() -> None:
    assert len(set(MINIMAL_ACL)) == len(MINIMAL_ACL)
    listed = {rule.removeprefix("+") for rule in MINIMAL_ACL}
    assert listed == STORE_COMMANDS | commands_the_scripts_call()


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
    """A PermissionDeniedError, or a BatchError whose every error is one."""
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
