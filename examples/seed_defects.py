"""Shows, on a real Redis, what LlamaIndex's RedisChatStore (the seed) does that this store fixes.

Needs the seed: pip install 'atomic-chat-store[bench]'. Uses $REDIS_URL (touching only keys under
"seed-defects:", removed at the end), else a private redis-server.

    python examples/seed_defects.py
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from llama_index.core.llms import ChatMessage
from llama_index.storage.chat_store.redis import RedisChatStore as SeedStore
from walkthrough import redis_url

from atomic_chat_store.llama_index import RedisChatStore as AtomicStore

PREFIX = "seed-defects:"


def commands(client: redis.Redis) -> int:
    # Every command the server ran, a script's own calls included (so the seed's figure is its
    # round trips; this store's round trips are asserted by the tests with MONITOR: one each).
    return int(client.info("stats")["total_commands_processed"])


def measure(label: str, client: redis.Redis, action: Callable[[], object]) -> None:
    before = commands(client)
    start = time.perf_counter()
    action()
    elapsed = (time.perf_counter() - start) * 1000
    ran = commands(client) - before - 1  # less the INFO itself
    print(f"  {label:<40} {ran:>6} commands run by the server {elapsed:>9.2f} ms")


def inserter(store: Any, key: str, number: int) -> Callable[[], None]:
    def insert() -> None:
        for i in range(25):
            store.add_message(key, ChatMessage(content=f"{number}-{i}"), idx=0)

    return insert


def show(name: str, store: Any, client: redis.Redis) -> None:
    key = PREFIX + name.split()[0]
    thousand = [ChatMessage(role="user", content=f"message {i}") for i in range(1000)]
    print(name)
    store.set_messages(key, thousand[:1])  # warm up: connect, load scripts
    measure("set_messages of 1,000", client, lambda: store.set_messages(key, thousand))
    middle = ChatMessage(content="x")
    measure(
        "add_message at index 500 of 1,000", client, lambda: store.add_message(key, middle, 500)
    )

    store.set_messages(key, [ChatMessage(content=f"m{i}") for i in range(3)])
    removed = store.delete_message(key, 1)
    left = [m.content for m in store.get_messages(key)]
    print(f"  delete_message(key, 1) on [m0, m1, m2]: {type(removed).__name__}, leaves {left}")
    print(f"  TTL after that delete: {client.ttl(key)} s")

    store.set_messages(key, [])
    threads = [threading.Thread(target=inserter(store, key, n)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    print(f"  4 threads x 25 inserts at index 0: {len(store.get_messages(key))} of 100 kept")
    client.delete(key)


def run(url: str) -> None:
    client = redis.Redis.from_url(url)
    aclient = redis.asyncio.Redis.from_url(url)
    show(
        "seed (llama-index-storage-chat-store-redis)",
        SeedStore(redis_client=client, aredis_client=aclient, ttl=600),
        client,
    )
    show(
        "atomic-chat-store",
        AtomicStore(redis_client=client, aredis_client=aclient, ttl=600),
        client,
    )
    client.close()


if __name__ == "__main__":
    with redis_url() as url:
        run(url)
