"""Hypothesis drives the store and a plain Python list with the same operations: they must agree."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from atomic_chat_store import ChatMessage, RedisChatStore

TTL_MS = 120_000


@pytest.fixture
def machine_url(redis_url, redis_client):
    return redis_url


def test_store_behaves_like_a_list(machine_url):
    class ListMachine(RuleBasedStateMachine):
        counter = 0

        @initialize()
        def start(self):
            self.client = redis.Redis.from_url(machine_url)
            self.client.delete("prop")
            self.store = RedisChatStore(self.client, ttl=TTL_MS / 1000)
            self.model: list[str] = []

        def fresh(self) -> str:
            ListMachine.counter += 1
            return f"m{ListMachine.counter}"

        @rule()
        def append(self):
            text = self.fresh()
            assert self.store.add_message("prop", ChatMessage(content=text)) == len(self.model) + 1
            self.model.append(text)

        @rule(idx=st.integers(min_value=-40, max_value=40))
        def insert(self, idx):
            text = self.fresh()
            self.store.add_message("prop", ChatMessage(content=text), idx=idx)
            self.model.insert(idx, text)

        @rule(data=st.data())
        def delete_at(self, data):
            idx = data.draw(st.integers(min_value=-3, max_value=len(self.model) + 2))
            removed = self.store.delete_message("prop", idx)
            if 0 <= idx < len(self.model):
                assert removed is not None and removed.content == self.model.pop(idx)
            else:
                assert removed is None

        @rule()
        def delete_last(self):
            removed = self.store.delete_last_message("prop")
            if self.model:
                assert removed is not None and removed.content == self.model.pop()
            else:
                assert removed is None

        @rule(size=st.integers(min_value=0, max_value=30))
        def replace(self, size):
            texts = [self.fresh() for _ in range(size)]
            self.store.set_messages("prop", [ChatMessage(content=t) for t in texts])
            self.model = texts

        @precondition(lambda self: len(self.model) < 5)
        @rule()
        def delete_all(self):
            removed = self.store.delete_messages("prop")
            assert [m.content for m in removed or []] == self.model
            self.model = []

        @invariant()
        def same_list(self):
            if not hasattr(self, "store"):
                return
            assert [m.content for m in self.store.get_messages("prop")] == self.model
            assert self.store.count("prop") == len(self.model)
            if self.model:
                assert 0 < self.client.pttl("prop") <= TTL_MS
            else:
                assert self.client.exists("prop") == 0

        def teardown(self):
            if hasattr(self, "store"):
                self.client.delete("prop")
                self.client.close()

    ListMachine.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    ListMachine.TestCase().runTest()
