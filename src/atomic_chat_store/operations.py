"""Each store operation as a value, free of I/O: which script or command, with which keys and
arguments, and how the reply becomes the result.

``RedisChatStore`` and ``AsyncRedisChatStore`` build these values and only send them, so the
logic exists once. Validation happens while a value is built: bad input never reaches Redis.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, TypeVar

import redis
from pydantic import ValidationError

from .errors import (
    BatchError,
    ChatStoreError,
    CorruptMessageError,
    InvalidIndexError,
    InvalidKeyError,
    WrongTypeError,
)
from .messages import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ChatMessage,
    decode_conversation,
    decode_message,
    encode_message,
    encode_messages,
)

R = TypeVar("R")
T = TypeVar("T")
Arg = bytes | str | int
TTL = int | float | timedelta

# Scan batch for get_keys: large enough that a big keyspace takes few round trips, small enough
# that each SCAN call stays short on the server.
SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """What every operation of one store shares."""

    namespace: str = ""
    ttl_ms: int = 0  # 0: writes leave the key's expiry alone
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    @classmethod
    def build(
        cls, *, namespace: str = "", ttl: TTL | None = None, max_message_bytes: int | None = None
    ) -> StoreConfig:
        if not isinstance(namespace, str):
            raise InvalidKeyError(f"namespace must be a str, not {type(namespace).__name__}")
        limit = DEFAULT_MAX_MESSAGE_BYTES if max_message_bytes is None else max_message_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"max_message_bytes must be a positive int, not {limit!r}")
        return cls(namespace=namespace, ttl_ms=ttl_to_ms(ttl), max_message_bytes=limit)

    def redis_key(self, key: object) -> str:
        if not isinstance(key, str):
            raise InvalidKeyError(f"a chat key must be a str, not {type(key).__name__}")
        if not key:
            raise InvalidKeyError("a chat key must not be empty")
        return self.namespace + key


def ttl_to_ms(ttl: TTL | None) -> int:
    """Seconds (int or float, as LlamaIndex takes them) or a timedelta, as whole milliseconds."""
    if ttl is None:
        return 0
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise TypeError(f"ttl must be seconds or a timedelta, not {type(ttl).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"ttl must be positive, not {ttl!r}")
    return max(1, round(seconds * 1000))


def check_index(idx: object) -> int:
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise InvalidIndexError(f"an index must be an int, not {type(idx).__name__}")
    return idx


@dataclass(frozen=True, slots=True)
class Operation(Generic[R]):
    """One round trip: a script of ``lua/`` run by EVALSHA, or one plain command."""

    chat_key: str  # as the caller named it, for error messages
    keys: tuple[str, ...]
    args: tuple[Arg, ...]
    decode: Callable[[Any], R] = field(repr=False)
    script: str | None = None  # the name of lua/<script>.lua
    command: str | None = None  # or a plain command, sent as: command *keys *args

    def with_decoder(self, decode: Callable[[Any], T]) -> Operation[T]:
        """The same round trip, its reply decoded another way (the LlamaIndex drop-in's)."""
        return Operation(self.chat_key, self.keys, self.args, decode, self.script, self.command)

    @property
    def command_line(self) -> tuple[Arg, ...]:
        """The plain command as sent: name, keys, arguments."""
        if self.command is None:
            raise ValueError(f"{self.script} is a script, not a plain command")
        return (self.command, *self.keys, *self.args)

    def error(self, exc: Exception) -> Exception:
        """The typed error for what Redis answered, or ``exc`` itself when it is not ours."""
        text = str(exc)
        if text.startswith("ACS_WRONGTYPE"):
            return WrongTypeError(self.chat_key, text.split()[1] if " " in text else None)
        if text.startswith("WRONGTYPE"):
            return WrongTypeError(self.chat_key)
        return exc


def decode_replies(operations: Sequence[Operation[Any]], replies: Sequence[Any]) -> list[Any]:
    """A pipeline's replies as results, in order; any failure raises BatchError with them all."""
    results: list[Any] = []
    for operation, reply in zip(operations, replies, strict=True):
        try:
            if isinstance(reply, Exception):
                raise operation.error(reply)
            results.append(operation.decode(reply))
        except (ChatStoreError, redis.RedisError) as error:
            results.append(error)
    if any(isinstance(result, BaseException) for result in results):
        raise BatchError(results)
    return results


def as_bytes(raw: bytes | str) -> bytes:
    # Clients made with decode_responses=True hand back str.
    return raw.encode() if isinstance(raw, str) else raw


def _decode_elements(
    chat_key: str, raws: Sequence[bytes | str], removed: bool
) -> list[ChatMessage]:
    elements = [as_bytes(raw) for raw in raws]
    try:
        return decode_conversation(elements)
    except (ValidationError, ValueError):
        pass
    # The fast path refused: decode one element at a time, naming the first one at fault. An
    # element the fast path refuses can still be a valid message (JSON with spaces around it).
    messages = []
    for index, element in enumerate(elements):
        try:
            messages.append(decode_message(element))
        except ValidationError as error:
            reason = error.errors()[0]["msg"] if error.errors() else str(error)
            raise CorruptMessageError(
                chat_key,
                index,
                element,
                reason,
                removed=removed,
                removed_elements=elements if removed else None,
            ) from None
    return messages


def _decode_removed(chat_key: str, index: int | None) -> Callable[[Any], ChatMessage | None]:
    def decode(reply: bytes | str | None) -> ChatMessage | None:
        if reply is None:
            return None
        element = as_bytes(reply)
        try:
            return decode_message(element)
        except ValidationError as error:
            raise CorruptMessageError(
                chat_key, -1 if index is None else index, element, str(error), removed=True
            ) from None

    return decode


def _length(reply: int) -> int:
    return int(reply)


def append(config: StoreConfig, key: str, messages: Sequence[object]) -> Operation[int]:
    """Append messages at the end; returns the new length."""
    encoded = encode_messages(messages, config.max_message_bytes)
    return Operation(key, (config.redis_key(key),), (config.ttl_ms, *encoded), _length, "append")


def add_message(
    config: StoreConfig, key: str, message: object, idx: int | None = None
) -> Operation[int]:
    """Append, or with ``idx`` insert by Python's ``list.insert`` rules; returns the new length."""
    redis_key = config.redis_key(key)
    encoded = encode_message(message, config.max_message_bytes)
    if idx is None:
        return Operation(key, (redis_key,), (config.ttl_ms, encoded), _length, "append")
    return Operation(
        key, (redis_key,), (check_index(idx), encoded, config.ttl_ms), _length, "insert"
    )


def set_messages(config: StoreConfig, key: str, messages: Sequence[object]) -> Operation[int]:
    """Replace the conversation; an empty list removes the key. Returns the new length."""
    encoded = encode_messages(messages, config.max_message_bytes)
    return Operation(key, (config.redis_key(key),), (config.ttl_ms, *encoded), _length, "replace")


def get_messages(config: StoreConfig, key: str) -> Operation[list[ChatMessage]]:
    return Operation(
        key,
        (config.redis_key(key),),
        (0, -1),
        lambda reply: _decode_elements(key, reply, removed=False),
        command="LRANGE",
    )


def delete_messages(config: StoreConfig, key: str) -> Operation[list[ChatMessage] | None]:
    def decode(reply: list[bytes | str]) -> list[ChatMessage] | None:
        return _decode_elements(key, reply, removed=True) or None

    return Operation(key, (config.redis_key(key),), (), decode, "delete_all")


def delete_message(config: StoreConfig, key: str, idx: int) -> Operation[ChatMessage | None]:
    index = check_index(idx)
    return Operation(
        key,
        (config.redis_key(key),),
        (index, config.ttl_ms),
        _decode_removed(key, index),
        "delete_at",
    )


def delete_last_message(config: StoreConfig, key: str) -> Operation[ChatMessage | None]:
    return Operation(
        key, (config.redis_key(key),), (config.ttl_ms,), _decode_removed(key, None), "delete_last"
    )


def count(config: StoreConfig, key: str) -> Operation[int]:
    return Operation(key, (config.redis_key(key),), (), _length, command="LLEN")


def refresh_ttl(config: StoreConfig, key: str) -> Operation[bool]:
    """Push the expiry of a conversation back to the store's TTL; False when the key is missing."""
    if not config.ttl_ms:
        raise ValueError("this store has no ttl to refresh")
    return Operation(key, (config.redis_key(key),), (config.ttl_ms,), bool, command="PEXPIRE")


def keys_pattern(config: StoreConfig) -> str:
    """The SCAN MATCH pattern of the namespace, its glob characters escaped."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", config.namespace) + "*"


def chat_keys(config: StoreConfig, raws: Iterable[bytes | str]) -> list[str]:
    """SCAN's answer as chat keys: namespace stripped, sorted, without the repeats SCAN may give."""
    start = len(config.namespace)
    return sorted({as_bytes(raw).decode()[start:] for raw in raws})
