"""atomic-chat-store: chat histories in Redis, every edit one atomic Lua script, one round trip."""

from .aio import AsyncRedisChatStore
from .errors import (
    BatchError,
    ChatStoreError,
    CorruptMessageError,
    InvalidIndexError,
    InvalidKeyError,
    InvalidMessageError,
    MessageTooLargeError,
    WrongTypeError,
)
from .messages import ChatMessage
from .store import RedisChatStore

__all__ = [
    "AsyncRedisChatStore",
    "BatchError",
    "ChatMessage",
    "ChatStoreError",
    "CorruptMessageError",
    "InvalidIndexError",
    "InvalidKeyError",
    "InvalidMessageError",
    "MessageTooLargeError",
    "RedisChatStore",
    "WrongTypeError",
]
