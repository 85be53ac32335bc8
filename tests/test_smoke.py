from atomic_chat_store import ChatMessage, RedisChatStore
from conftest import round_trips


def test_one_round_trip_per_append(redis_url, redis_client, monitored):
    store = RedisChatStore.from_url(redis_url)
    store.add_message("chat", ChatMessage(content="warm up"))
    with monitored() as seen:
        store.add_message("chat", ChatMessage(content="hello"))
    assert [c.name for c in round_trips(seen)] == ["EVALSHA"]
    assert "RPUSH" in [c.name for c in seen if c.client == "lua"]
