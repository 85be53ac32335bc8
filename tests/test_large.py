"""A 20,000-message conversation through every operation: past Lua's unpack limit."""

from __future__ import annotations

import pytest

from atomic_chat_store import ChatMessage

N = 20_000


@pytest.mark.slow
def test_every_operation_on_20000_messages(make_store, redis_client):
    store = make_store(ttl=600)
    expected = [f"m{i}" for i in range(N)]
    assert store.set_messages("big", [ChatMessage(content=t) for t in expected]) == N
    assert store.add_messages("more", [ChatMessage(content=t) for t in expected]) == N
    assert store.add_message("big", ChatMessage(content="tail")) == N + 1
    expected.append("tail")
    for idx in (N // 2, N - 3, 3):
        assert (
            store.add_message("big", ChatMessage(content=f"at{idx}"), idx=idx) == len(expected) + 1
        )
        expected.insert(idx, f"at{idx}")
    for idx in (N // 2, N - 3, 3):
        assert store.delete_message("big", idx).content == expected.pop(idx)
    assert store.delete_last_message("big").content == expected.pop()
    assert [m.content for m in store.get_messages("big")] == expected
    assert store.count("big") == N
    assert 0 < redis_client.pttl("big") <= 600_000
    assert [m.content for m in store.delete_messages("big")] == expected
    assert redis_client.exists("big") == 0
