"""The TTL is refreshed by every write, inside the same script: never a separate EXPIRE."""

from __future__ import annotations

from datetime import timedelta

import pytest

from atomic_chat_store import ChatMessage
from atomic_chat_store.keys import record_key
from conftest import round_trips

TTL_SECONDS = 300


def m(text: str) -> ChatMessage:
    return ChatMessage(content=text)


WRITES = {
    "add_message": lambda s: s.add_message("chat", m("new")),
    "add_messages": lambda s: s.add_messages("chat", [m("x"), m("y")]),
    "insert": lambda s: s.add_message("chat", m("new"), idx=1),
    "delete_message": lambda s: s.delete_message("chat", 1),
    "delete_last_message": lambda s: s.delete_last_message("chat"),
    "set_messages": lambda s: s.set_messages("chat", [m("x"), m("y")]),
    "refresh_ttl": lambda s: s.refresh_ttl("chat"),
}


@pytest.mark.parametrize("write", WRITES, ids=list(WRITES))
def test_every_write_refreshes_the_ttl(make_store, redis_client, write):
    store = make_store(ttl=TTL_SECONDS)
    redis_client.rpush("chat", *[m(t).model_dump_json() for t in "abc"])
    redis_client.pexpire("chat", 5_000)  # as if the TTL had almost run out
    WRITES[write](store)
    assert TTL_SECONDS * 1000 - 5_000 < redis_client.pttl("chat") <= TTL_SECONDS * 1000


@pytest.mark.parametrize("write", [w for w in WRITES if w != "refresh_ttl"])
def test_the_refresh_happens_inside_the_script(make_store, redis_client, monitored, write):
    store = make_store(ttl=TTL_SECONDS)
    redis_client.rpush("chat", *[m(t).model_dump_json() for t in "abc"])
    WRITES[write](store)  # loads the script
    redis_client.rpush("chat", m("d").model_dump_json())
    with monitored() as seen:
        WRITES[write](store)
    assert [c.name for c in round_trips(seen)] == ["EVALSHA"]
    # The conversation's TTL, and its record's (the key after it, in the same slot): the same.
    expiries = [(c.args[1], c.args[2]) for c in seen if c.name == "PEXPIRE"]
    ttl = str(TTL_SECONDS * 1000).encode()
    assert expiries == [(b"chat", ttl), (record_key(b"chat"), ttl)]
    assert all(c.client == "lua" for c in seen if c.name in ("PEXPIRE", "EXPIRE"))


def test_without_a_ttl_writes_leave_the_expiry_alone(make_store, redis_client):
    store = make_store()
    store.add_message("chat", m("a"))
    assert redis_client.pttl("chat") == -1
    redis_client.pexpire("chat", 100_000)
    store.add_message("chat", m("b"), idx=0)
    assert 0 < redis_client.pttl("chat") <= 100_000
    with pytest.raises(ValueError):
        store.refresh_ttl("chat")


def test_ttl_takes_seconds_floats_and_timedeltas(make_store, redis_client):
    make_store(ttl=timedelta(minutes=2)).add_message("a", m("x"))
    make_store(ttl=100.5).add_message("b", m("x"))
    assert 119_000 < redis_client.pttl("a") <= 120_000
    assert 99_000 < redis_client.pttl("b") <= 100_500


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), True, "60"])
def test_a_bad_ttl_is_refused(make_store, ttl):
    with pytest.raises((TypeError, ValueError)):
        make_store(ttl=ttl)


def test_a_delete_out_of_range_or_of_nothing_changes_no_expiry(make_store, redis_client):
    store = make_store(ttl=TTL_SECONDS)
    redis_client.rpush("chat", m("a").model_dump_json())
    redis_client.pexpire("chat", 5_000)
    assert store.delete_message("chat", 5) is None
    assert 0 < redis_client.pttl("chat") <= 5_000
    assert redis_client.lrange("chat", 0, -1) == [m("a").model_dump_json().encode()]
    assert store.refresh_ttl("missing") is False
