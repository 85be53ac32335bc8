"""atomic-chat-store: chat histories in Redis, every edit one atomic Lua script, one round trip."""

from .aio import AsyncRedisChatStore
from .errors import (
    BatchError,
    ChatStoreError,
    CommandRefusedError,
    ConnectionRefusedByServerError,
    CorruptMessageError,
    DurabilityError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidIndexError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidUrlError,
    MessageTooLargeError,
    OpIdConflictError,
    OutcomeUnknownError,
    OutOfMemoryError,
    PermissionDeniedError,
    UnavailableError,
    VersionConflictError,
    WrongTypeError,
)
from .messages import ChatMessage
from .operations import Conversation
from .retry import RetryPolicy
from .store import RedisChatStore

__all__ = [
    "AsyncRedisChatStore",
    "BatchError",
    "ChatMessage",
    "ChatStoreError",
    "CommandRefusedError",
    "ConnectionRefusedByServerError",
    "Conversation",
    "CorruptMessageError",
    "DurabilityError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidIndexError",
    "InvalidKeyError",
    "InvalidMessageError",
    "InvalidUrlError",
    "MessageTooLargeError",
    "OpIdConflictError",
    "OutOfMemoryError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RedisChatStore",
    "RetryPolicy",
    "UnavailableError",
    "VersionConflictError",
    "WrongTypeError",
]
