"""Shows, on a real Redis, what LlamaIndex's RedisChatStore (the seed) does that this store fixes.

Needs the seed: pip install 'atomic-chat-store[bench]'. Uses $REDIS_URL (touching only keys under
"seed-defects:", removed at the end), else a private redis-server.

    python examples/seed_defects.py
"""

from __future__ import annotations

import threading
import time

import redis
from llama_index.core.llms import ChatMessage
from llama_index.storage.chat_store.redis import RedisChatStore as SeedStore
from walkthrough import redis_url

from atomic_chat_store.llama_index import RedisChatStore as AtomicStore

PREFIX = "seed-defects:"


def commands(client: redis.Redis) -> int:
    # The seed runs no scripts, so the server's count of commands is exactly its round trips
    # (less the INFO itself).
    return int(client.info("stats")["total_commands_processed"])


def measure(label: str, client: redis.Redis, action) -> None:
    before = commands(client)
    start = time.perf_counter()
    action()
    elapsed = (time.perf_counter() - start) * 1000
    print(f"  {label:<52} {commands(client) - before - 1:>6} commands {elapsed:>9.2f} ms")


def run(url: str) -> None:
    client = redis.Redis.from_url(url)
    aclient = redis.asyncio.Redis.from_url(url)
    stores = {
        "seed (llama-index-storage-chat-store-redis)": SeedStore(
            redis_client=client, aredis_client=aclient, ttl=600
        ),
        "atomic-chat-store": AtomicStore(redis_client=client, aredis_client=aclient, ttl=600),
    }
    thousand = [ChatMessage(role="user", content=f"message {i}") for i in range(1000)]
    for name, store in stores.items():
        key = PREFIX + name.split()[0]
        print(name)
        store.set_messages(key, thousand[:1])  # warm up: connect, load scripts
        measure("set_messages of 1,000", client, lambda: store.set_messages(key, thousand))
        measure(
            "add_message at index 500 of 1,000",
            client,
            lambda: store.add_message(key, ChatMessage(content="x"), idx=500),
        )

        store.set_messages(key, [ChatMessage(content=f"m{i}") for i in range(3)])
        removed = store.delete_message(key, 1)
        left = [m.content for m in store.get_messages(key)]
        print(f"  delete_message(key, 1) on [m0, m1, m2] returns {type(removed).__name__}, leaves {left}")
        print(f"  TTL after that delete: {client.ttl(key)} s")

        store.set_messages(key, [])
        threads = [
            threading.Thread(
                target=lambda n=n: [
                    store.add_message(key, ChatMessage(content=f"{n}-{i}"), idx=0) for i in range(25)
                ]
            )
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        print(f"  4 threads x 25 inserts at index 0: {len(store.get_messages(key))} of 100 kept")
        client.delete(key)
    client.close()


if __name__ == "__main__":
    with redis_url() as url:
        run(url)
