"""Hypothesis drives the store and a plain Python list with the same operations, every one of
them: writes (sent again with their op id, or with a stale version, now and then), range reads,
versions, a bounded history. They must agree after every step."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from atomic_chat_store import ChatMessage, RedisChatStore, VersionConflictError

TTL_MS = 120_000
INDEX = st.one_of(st.none(), st.integers(min_value=-25, max_value=25))


@pytest.fixture
def machine_url(redis_url, redis_client):
    return redis_url


@pytest.mark.parametrize("bound", [None, 6], ids=["unbounded", "max_messages=6"])
def test_store_behaves_like_a_list(machine_url, bound):
    class ListMachine(RuleBasedStateMachine):
        counter = 0

        @initialize()
        def start(self):
            self.client = redis.Redis.from_url(machine_url)
            self.client.flushdb()
            self.store = RedisChatStore(self.client, ttl=TTL_MS / 1000, max_messages=bound)
            self.model: list[str] = []
            self.version = 0
            self.highest = 0  # every version a write gave, deleted conversations' too
            self.last_write = None  # (call, reply): sent again, it must answer the same

        def fresh(self) -> str:
            ListMachine.counter += 1
            return f"m{ListMachine.counter}"

        def bounded(self) -> None:
            if bound is not None:
                del self.model[:-bound]

        def wrote(self, call, reply, changed=True):
            """After a write: the version grew above every one before exactly when something
            changed; 0 when no conversation is left."""
            version = self.store.version("prop")
            if not self.model:
                assert version == 0
            elif changed:
                assert version > self.highest
            else:
                assert version == self.version
            self.version = version
            self.highest = max(self.highest, version)
            self.last_write = (call, reply) if changed else None

        @rule()
        def append(self):
            text, op_id = self.fresh(), self.fresh()
            self.model.append(text)
            self.bounded()

            def call():
                return self.store.add_message("prop", ChatMessage(content=text), op_id=op_id)

            reply = call()
            assert reply == len(self.model)
            self.wrote(call, reply)

        @rule(size=st.integers(min_value=0, max_value=4))
        def append_many(self, size):
            new, op_id = [self.fresh() for _ in range(size)], self.fresh()
            self.model.extend(new)
            self.bounded()

            def call():
                messages = [ChatMessage(content=t) for t in new]
                return self.store.add_messages("prop", messages, op_id=op_id)

            reply = call()
            assert reply == len(self.model)
            self.wrote(call, reply, changed=bool(new))

        @rule(idx=st.integers(min_value=-40, max_value=40))
        def insert(self, idx):
            text, op_id = self.fresh(), self.fresh()
            self.model.insert(idx, text)
            self.bounded()

            def call():
                message = ChatMessage(content=text)
                return self.store.add_message("prop", message, idx=idx, op_id=op_id)

            reply = call()
            assert reply == len(self.model)
            self.wrote(call, reply)

        @rule(data=st.data())
        def delete_at(self, data):
            idx = data.draw(st.integers(min_value=-3, max_value=len(self.model) + 2))
            op_id = self.fresh()

            def call():
                removed = self.store.delete_message("prop", idx, op_id=op_id)
                return removed and removed.content

            reply = call()
            if 0 <= idx < len(self.model):
                assert reply == self.model.pop(idx)
                self.wrote(call, reply)
            else:
                assert reply is None
                self.wrote(call, reply, changed=False)

        @rule(data=st.data())
        def replace_at(self, data):
            idx = data.draw(st.integers(min_value=-3, max_value=len(self.model) + 2))
            text, op_id = self.fresh(), self.fresh()

            def call():
                message = ChatMessage(content=text)
                replaced = self.store.replace_message("prop", idx, message, op_id=op_id)
                return replaced and replaced.content

            reply = call()
            if 0 <= idx < len(self.model):
                assert reply == self.model[idx]
                self.model[idx] = text
                self.wrote(call, reply)
            else:
                assert reply is None
                self.wrote(call, reply, changed=False)

        @rule()
        def delete_last(self):
            op_id = self.fresh()

            def call():
                removed = self.store.delete_last_message("prop", op_id=op_id)
                return removed and removed.content

            reply = call()
            if self.model:
                assert reply == self.model.pop()
                self.wrote(call, reply)
            else:
                assert reply is None
                self.wrote(call, reply, changed=False)

        @rule(size=st.integers(min_value=0, max_value=12))
        def set_all(self, size):
            new, op_id = [self.fresh() for _ in range(size)], self.fresh()
            changed = bool(new or self.model)
            self.model = new
            self.bounded()

            def call():
                messages = [ChatMessage(content=t) for t in new]
                return self.store.set_messages("prop", messages, op_id=op_id)

            reply = call()
            assert reply == len(self.model)
            self.wrote(call, reply, changed=changed)

        @precondition(lambda self: len(self.model) < 5)
        @rule()
        def delete_all(self):
            op_id = self.fresh()

            def call():
                return [m.content for m in self.store.delete_messages("prop", op_id=op_id) or []]

            reply = call()
            assert reply == self.model
            changed = bool(self.model)
            self.model = []
            self.wrote(call, reply, changed=changed)

        @precondition(lambda self: self.last_write is not None)
        @rule()
        def send_the_last_write_again(self):
            call, reply = self.last_write
            assert call() == reply
            assert self.store.version("prop") == self.version  # nothing ran again

        @precondition(lambda self: self.version > 0)
        @rule()
        def write_with_a_stale_version(self):
            with pytest.raises(VersionConflictError):
                self.store.add_message(
                    "prop", ChatMessage(content="never"), expected_version=self.version - 1
                )

        @rule()
        def write_with_the_version_read(self):
            conversation = self.store.get_conversation("prop")
            assert [m.content for m in conversation.messages] == self.model
            assert conversation.version == self.version
            text = self.fresh()
            self.store.add_message(
                "prop", ChatMessage(content=text), expected_version=conversation.version
            )
            self.model.append(text)
            self.bounded()
            self.wrote(None, None)
            self.last_write = None

        @rule(start=INDEX, stop=INDEX)
        def read_a_range(self, start, stop):
            got = [m.content for m in self.store.get_messages("prop", start, stop)]
            assert got == self.model[start:stop]

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
                self.client.flushdb()
                self.client.close()

    ListMachine.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    ListMachine.TestCase().runTest()
