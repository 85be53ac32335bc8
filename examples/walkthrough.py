"""Every operation of atomic-chat-store, once, on a real Redis.

Uses $REDIS_URL when it is set (only keys under "walkthrough:" are touched, and removed at the
end); otherwise starts a private redis-server (127.0.0.1, no persistence) and stops it after.

    python examples/walkthrough.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

from atomic_chat_store import (
    AsyncRedisChatStore,
    ChatMessage,
    RedisChatStore,
    VersionConflictError,
)
from atomic_chat_store.server import RedisServer


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with RedisServer() as server:
        print(f"started a private redis-server at {server.url}")
        yield server.url


def show(label: str, value: object) -> None:
    print(f"{label:<44} {value}")


def sync_walkthrough(url: str) -> None:
    with RedisChatStore.from_url(url, ttl=3600, namespace="walkthrough:") as store:
        key = "user-42"
        show(
            "add_message -> new length",
            store.add_message(key, ChatMessage(role="system", content="Be brief.")),
        )
        show(
            "add_messages -> new length",
            store.add_messages(
                key,
                [
                    ChatMessage(role="user", content="Hello"),
                    {"role": "assistant", "content": "Hi! How can I help?"},
                ],
            ),
        )
        show(
            "add_message(idx=1) inserts",
            store.add_message(key, ChatMessage(role="user", content="(inserted)"), idx=1),
        )
        show("get_messages", [f"{m.role}: {m.content}" for m in store.get_messages(key)])
        show("count", store.count(key))
        show("TTL in ms, set by the same script", store.client.pttl(f"walkthrough:{key}"))
        show("delete_message(1) -> removed", store.delete_message(key, 1).content)
        show("delete_message(99) -> out of range", store.delete_message(key, 99))
        show("delete_last_message -> removed", store.delete_last_message(key).content)
        show(
            "replace_message(0) -> replaced",
            store.replace_message(
                key, 0, ChatMessage(role="system", content="Be very brief.")
            ).content,
        )
        show(
            "get_messages(key, -1): the last one", [m.content for m in store.get_messages(key, -1)]
        )
        conversation = store.get_conversation(key)
        show("get_conversation -> version", conversation.version)
        show(
            "add_message(expected_version=) -> length",
            store.add_message(
                key, ChatMessage(content="only if unchanged"), expected_version=conversation.version
            ),
        )
        try:
            store.add_message(
                key, ChatMessage(content="stale"), expected_version=conversation.version
            )
        except VersionConflictError as error:
            show("a stale expected_version", f"VersionConflictError (now {error.actual})")
        show(
            "the same op_id twice -> applied once",
            [store.add_message(key, ChatMessage(content="once"), op_id="walk-1") for _ in range(2)],
        )
        show(
            "set_messages -> new length",
            store.set_messages(key, [ChatMessage(content="fresh start")]),
        )
        show("get_keys (namespace stripped)", store.get_keys())
        show(
            "delete_messages -> what it held", [m.content for m in store.delete_messages(key) or []]
        )
        show("get_messages of a missing key", store.get_messages(key))


async def async_walkthrough(url: str) -> None:
    async with AsyncRedisChatStore.from_url(url, namespace="walkthrough:") as store:
        await store.set_messages("async", [ChatMessage(content=f"m{i}") for i in range(3)])
        await store.add_message("async", ChatMessage(content="first"), idx=0)
        show("async get_messages", [m.content for m in await store.get_messages("async")])
        await store.delete_messages("async")


def main() -> None:
    with redis_url() as url:
        sync_walkthrough(url)
        asyncio.run(async_walkthrough(url))


if __name__ == "__main__":
    main()
