"""RedisMemoryStore against LlamaIndex's reference AsyncDBChatStore, SQLAlchemyChatStore (SQLite
in memory, llama-index-core's own code): random sequences of every method, with random keys,
statuses, limits, offsets and counts, on both stores; every result compared after each call, and
every conversation (both statuses, each status, counts, keys) now and then and at the end.

Where the two differ by design (README, "RedisMemoryStore"):
- ``delete_message(key, idx)``: ours takes a position in ``get_messages(key, status=None)``, SQL
  a row id; the test maps the position to the id of the row at that position, read from the
  SQL table in the order SQL reads it (timestamp, id), and an outside position to no row.
- ``add_messages(key, [])``: SQL fails (it inserts a row without a key); ours changes nothing.
- Negative counts: refused by ours (test_memory_store.py), so never drawn here.
"""

from __future__ import annotations

import asyncio
import collections
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
import redis
import sqlalchemy.exc
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from llama_index.core.llms import ChatMessage
from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus
from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore
from sqlalchemy import select

from atomic_chat_store.llama_index import RedisMemoryStore

ACTIVE, ARCHIVED = MessageStatus.ACTIVE, MessageStatus.ARCHIVED
CHAT_KEYS = ("a", "b")
KEYS = st.sampled_from(CHAT_KEYS)
STATUS = st.sampled_from([ACTIVE, ARCHIVED])
STATUS_OR_BOTH = st.sampled_from([ACTIVE, ARCHIVED, None])
COUNT = st.integers(0, 6)
OPTIONAL_COUNT = st.none() | COUNT
ROLES = st.sampled_from(["user", "assistant", "system", "tool"])
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
MESSAGE = st.tuples(ROLES, TEXT)
ALL = ((None, None),)
PAGES = ((None, None), (2, 1), (1, 3))  # (limit, offset)
# A conversation to start from: messages of both statuses, interleaved.
HISTORY = st.lists(st.tuples(MESSAGE, STATUS), max_size=8)


def dumped(result: Any) -> Any:
    """What is compared: a message as its whole model (role, blocks, additional_kwargs); other
    results (None, counts) as they are."""
    if isinstance(result, ChatMessage):
        return result.model_dump()
    if isinstance(result, list):
        return [dumped(item) for item in result]
    return result


class Differential(RuleBasedStateMachine):
    redis_url: ClassVar[str]
    # What the runs exercised, across examples: (what, whether it found something to act on).
    seen: ClassVar[collections.Counter[tuple[str, bool]]] = collections.Counter()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.sql = SQLAlchemyChatStore(
            table_name="memory", async_database_uri="sqlite+aiosqlite:///:memory:"
        )
        self.ours = RedisMemoryStore(
            redis_url=self.redis_url, namespace=f"differential-{uuid.uuid4().hex}:"
        )
        self.made = 0  # every message is told apart by a number

    def run(self, call: Callable[[AsyncDBChatStore], Awaitable[Any]]) -> tuple[Any, Any]:
        """The same call on SQL, then on ours."""
        return (
            self.loop.run_until_complete(call(self.sql)),
            self.loop.run_until_complete(call(self.ours)),
        )

    def same(self, call: Callable[[AsyncDBChatStore], Awaitable[Any]], what: str = "") -> Any:
        theirs, ours = self.run(call)
        assert dumped(ours) == dumped(theirs)
        if what:
            self.seen[what, ours not in (None, [], 0)] += 1
        return ours

    def total(self, key: str) -> int:
        return int(self.loop.run_until_complete(self.ours.count_messages(key, status=None)))

    @initialize(histories=st.tuples(HISTORY, HISTORY))
    def start_from(self, histories: tuple[list[Any], list[Any]]) -> None:
        for key, history in zip(CHAT_KEYS, histories, strict=True):
            for message, status in history:
                self.add_message(key, message, status)

    def messages(self, drawn: list[tuple[str, str]]) -> list[ChatMessage]:
        made = []
        for role, text in drawn:
            self.made += 1
            made.append(ChatMessage(role=role, content=f"{self.made}:{text}"))
        return made

    # -- writes -----------------------------------------------------------------------------------

    @rule(key=KEYS, message=MESSAGE, status=STATUS)
    def add_message(self, key: str, message: tuple[str, str], status: MessageStatus) -> None:
        (new,) = self.messages([message])
        self.same(lambda store: store.add_message(key, new, status=status))

    @rule(key=KEYS, drawn=st.lists(MESSAGE, max_size=4), status=STATUS)
    def add_messages(self, key: str, drawn: list[tuple[str, str]], status: MessageStatus) -> None:
        new = self.messages(drawn)
        if new:
            self.same(lambda store: store.add_messages(key, new, status=status))
            return
        # SQL inserts a row without a key, and fails; ours changes nothing. Neither changed.
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            self.loop.run_until_complete(self.sql.add_messages(key, new, status=status))
        assert self.loop.run_until_complete(self.ours.add_messages(key, new, status)) is None
        self.compare(key)

    @rule(key=KEYS, drawn=st.lists(MESSAGE, max_size=5), status=STATUS)
    def set_messages(self, key: str, drawn: list[tuple[str, str]], status: MessageStatus) -> None:
        new = self.messages(drawn)
        self.same(lambda store: store.set_messages(key, new, status=status))

    @rule(key=KEYS, drawn=st.integers(-2, 20))
    def delete_message(self, key: str, drawn: int) -> None:
        # Mostly a position of the conversation; its length, past it, or negative at times.
        position = drawn if drawn < 0 else drawn % (self.total(key) + 2)
        ids = self.loop.run_until_complete(self.sql_row_ids(key))
        row_id = ids[position] if 0 <= position < len(ids) else -1  # -1: no row
        theirs = self.loop.run_until_complete(self.sql.delete_message(key, row_id))
        ours = self.loop.run_until_complete(self.ours.delete_message(key, position))
        assert dumped(ours) == dumped(theirs)
        self.seen["delete_message", ours is not None] += 1

    @rule(key=KEYS, status=STATUS_OR_BOTH)
    def delete_messages(self, key: str, status: MessageStatus | None) -> None:
        self.seen["delete_messages", self.total(key) > 0] += 1
        self.same(lambda store: store.delete_messages(key, status=status))

    @rule(key=KEYS, n=COUNT)
    def delete_oldest_messages(self, key: str, n: int) -> None:
        self.same(lambda store: store.delete_oldest_messages(key, n), "delete_oldest_messages")

    @rule(key=KEYS, n=COUNT)
    def archive_oldest_messages(self, key: str, n: int) -> None:
        self.same(lambda store: store.archive_oldest_messages(key, n), "archive_oldest_messages")

    # -- reads ------------------------------------------------------------------------------------

    @rule(key=KEYS, status=STATUS_OR_BOTH, limit=OPTIONAL_COUNT, offset=OPTIONAL_COUNT)
    def get_messages(
        self, key: str, status: MessageStatus | None, limit: int | None, offset: int | None
    ) -> None:
        self.same(lambda store: store.get_messages(key, status=status, limit=limit, offset=offset))

    @rule(key=KEYS, status=STATUS_OR_BOTH)
    def count_messages(self, key: str, status: MessageStatus | None) -> None:
        self.same(lambda store: store.count_messages(key, status=status), "count_messages")

    @rule()
    def get_keys(self) -> None:
        theirs, ours = self.run(lambda store: store.get_keys())
        assert ours == sorted(theirs)

    @rule(key=KEYS)
    def compare(self, key: str, pages: tuple[tuple[int | None, int | None], ...] = ALL) -> None:
        """The whole conversation (or pages of it): both statuses in order, each status, and
        the counts."""
        for status in (None, ACTIVE, ARCHIVED):
            for limit, offset in pages:
                what = f"get_messages {status} {'paged' if limit or offset else 'all'}"
                self.same(
                    lambda store, s=status, li=limit, o=offset: store.get_messages(
                        key, status=s, limit=li, offset=o
                    ),
                    what,
                )
            self.same(lambda store, s=status: store.count_messages(key, status=s))

    async def sql_row_ids(self, key: str) -> list[int]:
        """The SQL ids of the conversation's rows, in the order SQL reads them (timestamp, id):
        the row at each position of get_messages(key, status=None)."""
        session_factory, table = await self.sql._initialize()
        query = select(table.c.id).where(table.c.key == key)
        async with session_factory() as session:
            rows = await session.execute(query.order_by(table.c.timestamp, table.c.id))
            return [row[0] for row in rows.fetchall()]

    def teardown(self) -> None:
        try:
            for key in CHAT_KEYS:
                self.compare(key, PAGES)
            self.get_keys()
            for key in CHAT_KEYS:
                self.loop.run_until_complete(self.ours.delete_messages(key))
        finally:
            if self.sql._async_engine is not None:
                self.loop.run_until_complete(self.sql._async_engine.dispose())
            # Closes the Redis store's client of this loop (its loop shutting down).
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


def test_redis_memory_store_behaves_as_sqlalchemy_chat_store(
    redis_url: str, redis_client: redis.Redis
) -> None:
    Differential.redis_url = redis_url
    Differential.seen.clear()
    # The same 60 programs on every run, so that what they cover (asserted below) is too; set
    # ATOMIC_CHAT_STORE_DIFFERENTIAL_EXAMPLES to run that many new random ones instead.
    examples = os.environ.get("ATOMIC_CHAT_STORE_DIFFERENTIAL_EXAMPLES")
    run_state_machine_as_test(
        Differential,
        settings=settings(
            max_examples=int(examples) if examples else 60,
            derandomize=not examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # Every method met conversations it had something to do with, often enough to matter.
    seen = Differential.seen
    acted = {what for (what, found), count in seen.items() if found and count >= 10}
    for what in (
        "delete_message", "delete_messages", "delete_oldest_messages", "archive_oldest_messages",
        "count_messages", *(f"get_messages {status} {how}" for how in ("paged", "all")
                            for status in (None, ACTIVE, ARCHIVED)),
    ):  # fmt: skip
        assert what in acted, f"{what}: {sorted(seen.items(), key=str)}"
    # Nothing left but records of deleted conversations, which expire.
    assert all(b"\xff" in key for key in redis_client.keys("differential-*"))
