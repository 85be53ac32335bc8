"""Run one test body through both stores: the async store behind a blocking adapter."""

from __future__ import annotations

import asyncio
from typing import Any

from atomic_chat_store import AsyncRedisChatStore, RedisChatStore


class BlockingAsyncStore:
    """Calls an AsyncRedisChatStore's coroutines to completion on a private event loop."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.store = AsyncRedisChatStore.from_url(url, **kwargs)  # may refuse its arguments
        self.loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute
        return lambda *args, **kwargs: self.loop.run_until_complete(attribute(*args, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.store.aclose())
        self.loop.close()


def make_store(kind: str, url: str, **kwargs: Any) -> Any:
    if kind == "sync":
        return RedisChatStore.from_url(url, **kwargs)
    return BlockingAsyncStore(url, **kwargs)
