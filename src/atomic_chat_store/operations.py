"""Each store operation as a value, free of I/O: which script or command, with which keys and
arguments, and how the reply becomes the result.

``RedisChatStore`` and ``AsyncRedisChatStore`` build these values and only send them, so the
logic exists once. Validation happens while a value is built: bad input never reaches Redis.

A write's value carries its op id, made when the value is built unless the caller gives one: the
store sends the same value again after a lost reply, and its script, finding the id recorded,
returns the first reply instead of applying it twice. Sending the same value again, by hand after
an ``OutcomeUnknownError``, is as safe.
"""

from __future__ import annotations

import math
import re
import secrets
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
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidIndexError,
    InvalidKeyError,
    error_from_reply,
)
from .keys import decode_name, encode_name, record_key
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
# PEXPIRE takes any 64-bit count of ms, but the scripts read numbers as doubles: exact to 2^53.
MAX_TTL_MS = 2**53 - 1
DEFAULT_OP_WINDOW = timedelta(minutes=10)
DEFAULT_OP_WINDOW_SIZE = 1000
# A record holds two fields an op id: past this many, one conversation's record is megabytes.
MAX_OP_WINDOW_SIZE = 100_000
MAX_OP_ID_BYTES = 200


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """What every operation of one store shares: the namespace, and what every script's ARGV
    begins with after the op id (lua/includes/prelude.lua)."""

    namespace: str = ""
    ttl_ms: int = 0  # 0: writes leave the key's expiry alone
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_messages: int = 0  # 0: no bound
    op_window_ms: int = int(DEFAULT_OP_WINDOW.total_seconds() * 1000)
    op_window_size: int = DEFAULT_OP_WINDOW_SIZE
    wait_replicas: int = 0  # replicas each write waits for (WAIT), after its script

    @classmethod
    def build(
        cls,
        *,
        namespace: str = "",
        ttl: TTL | None = None,
        max_message_bytes: int | None = None,
        max_messages: int | None = None,
        op_window: TTL | None = None,
        op_window_size: int | None = None,
        wait_replicas: int | None = None,
    ) -> StoreConfig:
        if not isinstance(namespace, str):
            raise InvalidKeyError(f"namespace must be a str, not {type(namespace).__name__}")
        encode_name(namespace, "namespace")
        return cls(
            namespace=namespace,
            ttl_ms=ttl_to_ms(ttl),
            max_message_bytes=_count(
                "max_message_bytes", max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES, minimum=1
            ),
            max_messages=_count("max_messages", max_messages, 0, minimum=1),
            op_window_ms=ttl_to_ms(
                DEFAULT_OP_WINDOW if op_window is None else op_window, "op_window"
            ),
            op_window_size=_count(
                "op_window_size",
                op_window_size,
                DEFAULT_OP_WINDOW_SIZE,
                minimum=1,
                maximum=MAX_OP_WINDOW_SIZE,
            ),
            wait_replicas=_count("wait_replicas", wait_replicas, 0, minimum=0),
        )

    def redis_key(self, key: object) -> bytes:
        """The list holding conversation ``key``."""
        if not isinstance(key, str):
            raise InvalidKeyError(f"a chat key must be a str, not {type(key).__name__}")
        if not key:
            raise InvalidKeyError("a chat key must not be empty")
        return encode_name(self.namespace + key, "chat key")

    def keys(self, key: object) -> tuple[bytes, bytes]:
        """The conversation's list and its record, KEYS[1] and KEYS[2] of every script."""
        list_key = self.redis_key(key)
        return list_key, record_key(list_key)

    def argv(self, op_id: str, expected_version: int | None = None) -> tuple[Arg, ...]:
        """ARGV[1..7] of every script, in the order lua/includes/prelude.lua reads them."""
        return (
            op_id,
            self.ttl_ms,
            "" if expected_version is None else expected_version,
            self.max_messages,
            self.op_window_ms,
            self.op_window_size,
            self.wait_replicas,
        )


def _count(
    name: str, value: object, default: int, *, minimum: int, maximum: int = 2**53 - 1
) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise InvalidArgumentError(f"{name} must be in [{minimum}, {maximum}], not {value}")
    return value


def ttl_to_ms(ttl: TTL | None, name: str = "ttl") -> int:
    """Seconds (int or float, as LlamaIndex takes them) or a timedelta, as whole milliseconds,
    at least 1 and at most 2^53 - 1 (about 285,000 years)."""
    if ttl is None:
        return 0
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise InvalidArgumentTypeError(
            f"{name} must be seconds or a timedelta, not {type(ttl).__name__}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidArgumentError(f"{name} must be positive and finite, not {ttl!r}")
    milliseconds = max(1, round(seconds * 1000))
    if milliseconds > MAX_TTL_MS:
        raise InvalidArgumentError(f"{name} must be at most {MAX_TTL_MS} ms, not {ttl!r}")
    return milliseconds


def check_index(idx: object) -> int:
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise InvalidIndexError(f"an index must be an int, not {type(idx).__name__}")
    return idx


def new_op_id() -> str:
    """A fresh op id: 96 random bits, 16 URL-safe characters."""
    return secrets.token_urlsafe(12)


def check_op_id(op_id: object) -> str:
    """The caller's op id, or a new one. Any non-empty str of at most 200 UTF-8 bytes."""
    if op_id is None:
        return new_op_id()
    if not isinstance(op_id, str):
        raise InvalidArgumentTypeError(f"op_id must be a str, not {type(op_id).__name__}")
    try:
        size = len(op_id.encode())
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"op_id {op_id!r} holds a lone surrogate") from None
    if not 0 < size <= MAX_OP_ID_BYTES:
        raise InvalidArgumentError(
            f"op_id must hold 1 to {MAX_OP_ID_BYTES} bytes of UTF-8, not {size}"
        )
    return op_id


def check_version(version: object) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidArgumentTypeError(
            f"expected_version must be an int, not {type(version).__name__}"
        )
    if not 0 <= version < 2**53:
        raise InvalidArgumentError(f"expected_version must be in [0, 2^53), not {version}")
    return version


@dataclass(frozen=True, slots=True)
class Operation(Generic[R]):
    """One round trip: a script of ``lua/`` run by EVALSHA, or one plain command."""

    chat_key: str  # as the caller named it, for error messages
    keys: tuple[bytes, ...]
    args: tuple[Arg, ...]
    decode: Callable[[Any], R] = field(repr=False)
    script: str | None = None  # the name of lua/<script>.lua
    command: str | None = None  # or a plain command, sent as: command *keys *args
    op_id: str | None = None  # a write's id, recorded by its script with its reply

    def with_decoder(self, decode: Callable[[Any], T]) -> Operation[T]:
        """The same round trip, its reply decoded another way (the LlamaIndex drop-in's)."""
        return Operation(
            self.chat_key, self.keys, self.args, decode, self.script, self.command, self.op_id
        )

    @property
    def command_line(self) -> tuple[Arg, ...]:
        """The plain command as sent: name, keys, arguments."""
        if self.command is None:
            raise ValueError(f"{self.script} is a script, not a plain command")
        return (self.command, *self.keys, *self.args)

    def error(self, exc: Exception) -> Exception:
        """The typed error for what Redis answered, or ``exc`` itself when it is not ours."""
        if isinstance(exc, redis.ResponseError):
            return error_from_reply(exc, self.chat_key, self.op_id)
        return exc


def check_operations(operations: object) -> list[Operation[Any]]:
    if isinstance(operations, (str, bytes)) or not isinstance(operations, Iterable):
        raise InvalidArgumentTypeError(
            f"operations must be a list of Operation, not {type(operations).__name__}"
        )
    checked = list(operations)
    for position, operation in enumerate(checked):
        if not isinstance(operation, Operation):
            raise InvalidArgumentTypeError(
                f"operation #{position} must be an Operation (built by atomic_chat_store."
                f"operations), not {type(operation).__name__}"
            )
    return checked


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


def gather_results(operations: Sequence[Operation[Any]], outcomes: Sequence[Any]) -> list[Any]:
    """Results of operations sent one by one, each its result or typed error: BatchError when
    any failed (the others took effect)."""
    if any(isinstance(outcome, BaseException) for outcome in outcomes):
        raise BatchError(list(outcomes))
    return list(outcomes)


def as_bytes(raw: bytes | str) -> bytes:
    # Clients made with decode_responses=True hand back str.
    return raw.encode() if isinstance(raw, str) else raw


def _decode_elements(
    chat_key: str,
    raws: Sequence[bytes | str],
    removed: bool,
    position: Callable[[int, int], int] = lambda i, _: i,
) -> list[ChatMessage]:
    """Stored elements as messages; ``position(i, count)`` is element i's index in the list."""
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
                position(index, len(elements)),
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


def _write(
    config: StoreConfig,
    key: str,
    script: str,
    args: Sequence[Arg],
    decode: Callable[[Any], R],
    op_id: str | None,
    expected_version: int | None,
) -> Operation[R]:
    """A script that changes the conversation: its keys, the shared ARGV prefix, then ``args``."""
    checked_id = check_op_id(op_id)
    prefix = config.argv(checked_id, check_version(expected_version))
    return Operation(
        key, config.keys(key), (*prefix, *args), decode, script=script, op_id=checked_id
    )


def append(
    config: StoreConfig,
    key: str,
    messages: Sequence[object],
    *,
    op_id: str | None = None,
    expected_version: int | None = None,
) -> Operation[int]:
    """Append messages at the end; returns the new length."""
    encoded = encode_messages(messages, config.max_message_bytes)
    return _write(config, key, "append", encoded, _length, op_id, expected_version)


def add_message(
    config: StoreConfig,
    key: str,
    message: object,
    idx: int | None = None,
    *,
    op_id: str | None = None,
    expected_version: int | None = None,
) -> Operation[int]:
    """Append, or with ``idx`` insert by Python's ``list.insert`` rules; returns the new length."""
    encoded = encode_message(message, config.max_message_bytes)
    if idx is None:
        return _write(config, key, "append", (encoded,), _length, op_id, expected_version)
    index = check_index(idx)
    return _write(config, key, "insert", (index, encoded), _length, op_id, expected_version)


def set_messages(
    config: StoreConfig,
    key: str,
    messages: Sequence[object],
    *,
    op_id: str | None = None,
    expected_version: int | None = None,
) -> Operation[int]:
    """Replace the conversation; an empty list removes the key. Returns the new length."""
    encoded = encode_messages(messages, config.max_message_bytes)
    return _write(config, key, "set_all", encoded, _length, op_id, expected_version)


@dataclass(frozen=True, slots=True)
class Conversation:
    """Messages and the version of the conversation they were read from, read together."""

    messages: list[ChatMessage]
    version: int


# LRANGE takes 64-bit indexes and the scripts read them as at most 16 characters: past 2^48
# (far past any list) nothing changes.
_INDEX_LIMIT = 2**48


def lrange_bounds(start: int | None, stop: int | None) -> tuple[int, int]:
    """Python's ``[start:stop]`` as LRANGE's inclusive first and last index. A negative index
    counts from the end in both; only a stop of 0 needs spelling out (LRANGE's last -1 is the
    end, Python's stop 0 the beginning)."""
    first = 0 if start is None else max(-_INDEX_LIMIT, min(check_index(start), _INDEX_LIMIT))
    if stop is None:
        return first, -1
    stop = max(-_INDEX_LIMIT, min(check_index(stop), _INDEX_LIMIT))
    if stop == 0:
        return 1, 0  # always empty
    return first, stop - 1


def _positions(first: int, last: int) -> Callable[[int, int], int]:
    """Where element i of an LRANGE of first..last is in the list, for error messages: counted
    from the head when first is, else from the end when last is."""
    if first >= 0:
        return lambda i, _: first + i
    if last < 0:
        return lambda i, count: last - (count - 1 - i)
    return lambda i, _: i  # a range from the end to a head index: its place in the range


def get_messages(
    config: StoreConfig, key: str, start: int | None = None, stop: int | None = None
) -> Operation[list[ChatMessage]]:
    """The messages ``[start:stop]`` (Python's slice rules), oldest first: one LRANGE, and only
    what it returns is decoded."""
    first, last = lrange_bounds(start, stop)
    position = _positions(first, last)
    return Operation(
        key,
        (config.redis_key(key),),
        (first, last),
        lambda reply: _decode_elements(key, reply, removed=False, position=position),
        command="LRANGE",
    )


def get_conversation(
    config: StoreConfig, key: str, start: int | None = None, stop: int | None = None
) -> Operation[Conversation]:
    """The messages ``[start:stop]`` and the conversation's version, read by one script."""
    first, last = lrange_bounds(start, stop)
    position = _positions(first, last)

    def decode(reply: list[Any]) -> Conversation:
        version, raws = reply
        messages = _decode_elements(key, raws, removed=False, position=position)
        return Conversation(messages, int(version))

    return Operation(key, config.keys(key), (*config.argv(""), first, last), decode, script="read")


def version(config: StoreConfig, key: str) -> Operation[int]:
    """The conversation's version: 0 when there is none, 1 when no write of this store has
    touched it, else what its last write made it (it only grows, across deletes too)."""
    return Operation(key, config.keys(key), config.argv(""), int, script="version")


def delete_messages(
    config: StoreConfig,
    key: str,
    *,
    op_id: str | None = None,
    expected_version: int | None = None,
) -> Operation[list[ChatMessage] | None]:
    def decode(reply: list[bytes | str]) -> list[ChatMessage] | None:
        return _decode_elements(key, reply, removed=True) or None

    return _write(config, key, "delete_all", (), decode, op_id, expected_version)


def delete_message(
    config: StoreConfig,
    key: str,
    idx: int,
    *,
    op_id: str | None = None,
    expected_version: int | None = None,
) -> Operation[ChatMessage | None]:
    index = check_index(idx)
    decode = _decode_removed(key, index)
    return _write(config, key, "delete_at", (index,), decode, op_id, expected_version)


def replace_message(
    config: StoreConfig,
    key: str,
    idx: int,
    message: object,
    *,
    op_id: str | None = None,
    expected_version: int | None = None,
) -> Operation[ChatMessage | None]:
    """Put ``message`` in place of the one at ``0 <= idx < len`` and return that one; for any
    other index, None and nothing changes."""
    index = check_index(idx)
    encoded = encode_message(message, config.max_message_bytes)
    decode = _decode_removed(key, index)
    return _write(config, key, "replace_at", (index, encoded), decode, op_id, expected_version)


def delete_last_message(
    config: StoreConfig,
    key: str,
    *,
    op_id: str | None = None,
    expected_version: int | None = None,
) -> Operation[ChatMessage | None]:
    decode = _decode_removed(key, None)
    return _write(config, key, "delete_last", (), decode, op_id, expected_version)


def count(config: StoreConfig, key: str) -> Operation[int]:
    return Operation(key, (config.redis_key(key),), (), _length, command="LLEN")


def refresh_ttl(config: StoreConfig, key: str) -> Operation[bool]:
    """Push the expiry of a conversation (and its record) back to the store's TTL; False when
    the conversation is missing. Not recorded: refreshing twice is refreshing once."""
    if not config.ttl_ms:
        raise InvalidArgumentError("this store has no ttl to refresh")
    return Operation(key, config.keys(key), config.argv(""), bool, script="refresh_ttl")


def keys_pattern(config: StoreConfig) -> bytes:
    """The SCAN MATCH pattern of the namespace, its glob characters escaped."""
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", encode_name(config.namespace, "namespace")) + b"*"


def scan_command(config: StoreConfig, cursor: int, redis_type: str = "list") -> tuple[Arg, ...]:
    """One step of get_keys: the keys of the namespace holding ``redis_type`` (lists: the chat
    stores' conversations; hashes: the Memory store's), from ``cursor`` on."""
    return (
        "SCAN", cursor, "MATCH", keys_pattern(config), "COUNT", SCAN_COUNT, "TYPE", redis_type
    )  # fmt: skip


def chat_keys(config: StoreConfig, raws: Iterable[bytes | str]) -> list[str]:
    """SCAN's answer as chat keys: namespace stripped, sorted, without the repeats SCAN may give
    and without the store's own companion keys."""
    start = len(encode_name(config.namespace, "namespace"))
    names = (decode_name(as_bytes(raw)[start:]) for raw in raws)
    return sorted({name for name in names if name})
