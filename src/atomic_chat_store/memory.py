"""The operations of the Memory store (LlamaIndex's ``AsyncDBChatStore``) as values, free of I/O.

LlamaIndex's ``Memory`` keeps each message ACTIVE (its short-term queue) or ARCHIVED (flushed out
of it), in the order they were added. A conversation ``key`` of namespace ``ns`` is four keys,
all in the Cluster slot of the first (lua/includes/memory.lua):

- ``ns + key``: a hash, seq -> the message's JSON (LlamaIndex's ``model_dump_json()``);
- its record (op ids, version), as for every conversation (``keys.record_key``);
- ``companion_key(ns + key, b"active")``: a sorted set of the ACTIVE messages' seqs;
- ``companion_key(ns + key, b"archived")``: the same for the ARCHIVED ones.

A seq orders messages by insertion; archiving moves a seq from one set to the other, so a
message keeps its place in time. Every write is one script of ``lua/memory_*.lua``, every read
one script or one command. The values built here are sent by ``RedisChatStore.execute`` or
``AsyncRedisChatStore.execute`` (retries, exactly-once op ids); they decode into this package's
``ChatMessage``, and ``decode_messages`` / ``decode_removed`` decode into another model of that
shape (LlamaIndex's, in ``atomic_chat_store.llama_index.RedisMemoryStore``).

Counts (``n``, ``limit``, ``offset``) are ints >= 0: a negative one is refused
(``InvalidArgumentError``), where SQLite would read it as "no limit" and Postgres refuse it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from .errors import CorruptMessageError, InvalidArgumentError, InvalidArgumentTypeError
from .keys import companion_key, record_key
from .messages import ChatMessage, decode_conversation, encode_messages
from .operations import Arg, Operation, StoreConfig, as_bytes, check_index, check_op_id

ACTIVE = "active"
ARCHIVED = "archived"
STATUSES = (ACTIVE, ARCHIVED)
DEFAULT_NAMESPACE = "memory:"
# Counts past this change nothing (no conversation is that long) and stay exact in the
# scripts' doubles, offset + limit included.
_COUNT_LIMIT = 2**48
# What a model's JSON validation raises on data it cannot read: pydantic's ValidationError (a
# ValueError), or what one of LlamaIndex's validators lets through.
_REJECTED = (ValueError, TypeError, AttributeError)


# A model of a chat message: this package's ChatMessage, or LlamaIndex's.
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


def memory_keys(config: StoreConfig, key: str) -> tuple[bytes, bytes, bytes, bytes]:
    """KEYS[1..4] of every memory script: the hash of messages, its record, the ACTIVE set and
    the ARCHIVED set, all in one Cluster slot."""
    messages = config.redis_key(key)
    return (
        messages,
        record_key(messages),
        companion_key(messages, ACTIVE.encode()),
        companion_key(messages, ARCHIVED.encode()),
    )


def check_status(status: object, *, allow_both: bool) -> str:
    """``'active'`` or ``'archived'`` from LlamaIndex's ``MessageStatus`` (or its value);
    ``''`` for None, both statuses, where ``allow_both``."""
    if status is None and allow_both:
        return ""
    value = status.value if isinstance(status, Enum) else status
    if not isinstance(value, str):
        raise InvalidArgumentTypeError(
            f"status must be a MessageStatus{' or None' if allow_both else ''}, "
            f"not {type(status).__name__}"
        )
    if value not in STATUSES:
        raise InvalidArgumentError(f"status must be 'active' or 'archived', not {value!r}")
    return value


def check_count(name: str, value: object) -> int:
    """A count of messages: an int >= 0 (``True`` is refused), capped where nothing changes."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise InvalidArgumentError(f"{name} must be >= 0, not {value}")
    return min(value, _COUNT_LIMIT)


@functools.cache
def _list_adapter(model: type[Any]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def decode_messages(
    key: str,
    reply: Sequence[Any],
    model: type[M],
    *,
    removed: bool,
    first: int = 0,
) -> list[M]:
    """A script's ``{seqs, JSON texts}`` as messages of ``model``, in one validation call.

    An element that does not decode raises ``CorruptMessageError`` naming the key, its position
    (``first`` + its place in the reply: its position in what was asked for) and its seq; with
    ``removed`` (a delete), ``.removed_elements`` holds every element removed.
    """
    seqs, raws = reply
    elements = [None if raw is None else as_bytes(raw) for raw in raws]
    if None not in elements:
        try:
            return decode_conversation(elements, _list_adapter(model))  # type: ignore[arg-type]
        except _REJECTED:
            pass
    # Decode one at a time, to name the first element at fault.
    messages = []
    kept = [element for element in elements if element is not None]
    for index, (seq, element) in enumerate(zip(seqs, elements, strict=True)):
        seq_text = as_bytes(seq).decode()
        if element is None:
            reason = f"seq {seq_text} is listed but the hash holds no message for it"
        else:
            try:
                messages.append(model.model_validate_json(element))
                continue
            except _REJECTED as error:
                reason = f"seq {seq_text}: {_first_line(error)}"
        raise CorruptMessageError(
            key,
            first + index,
            element or b"",
            reason,
            removed=removed,
            removed_elements=kept if removed else None,
        )
    return messages


def decode_removed(key: str, reply: Any, model: type[M]) -> M | None:
    """delete_message's reply: ``{seq, JSON text}`` as a message of ``model``; None for nil."""
    if reply is None:
        return None
    seq, raw = reply
    messages = decode_messages(key, [[seq], [raw]], model, removed=True)
    return messages[0]


def _first_line(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        found = errors()
        if found:
            return str(found[0].get("msg", error))
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _operation(
    config: StoreConfig,
    key: str,
    script: str,
    args: Sequence[Arg],
    decode: Callable[[Any], R],
    op_id: str | None,
) -> Operation[R]:
    """One memory script: its four keys, the shared ARGV prefix (op id ``''`` for a read), then
    ``args``."""
    if config.max_messages:
        raise InvalidArgumentError("the Memory store keeps no bound: max_messages must be unset")
    keys = memory_keys(config, key)
    return Operation(key, keys, (*config.argv(op_id or ""), *args), decode, script, op_id=op_id)


def _write(
    config: StoreConfig,
    key: str,
    script: str,
    args: Sequence[Arg],
    decode: Callable[[Any], R],
    op_id: str | None,
) -> Operation[R]:
    return _operation(config, key, script, args, decode, check_op_id(op_id))


def get_messages(
    config: StoreConfig,
    key: str,
    status: object = ACTIVE,
    limit: int | None = None,
    offset: int | None = None,
) -> Operation[list[ChatMessage]]:
    """The messages of ``status`` (None: both, interleaved in insertion order), oldest first;
    ``offset`` and ``limit`` apply after the status filter. One script."""
    wanted = check_status(status, allow_both=True)
    first = 0 if offset is None else check_count("offset", offset)
    most: Arg = "" if limit is None else check_count("limit", limit)

    def decode(reply: Any) -> list[ChatMessage]:
        return decode_messages(key, reply, ChatMessage, removed=False, first=first)

    return _operation(config, key, "memory_read", (wanted, first, most), decode, None)


def count_messages(config: StoreConfig, key: str, status: object = ACTIVE) -> Operation[int]:
    """The number of messages of ``status`` (None: both): one ZCARD, or one HLEN."""
    wanted = check_status(status, allow_both=True)
    messages, _, active, archived = memory_keys(config, key)
    counted, command = {
        ACTIVE: (active, "ZCARD"),
        ARCHIVED: (archived, "ZCARD"),
        "": (messages, "HLEN"),
    }[wanted]
    return Operation(key, (counted,), (), int, command=command)


def add_messages(
    config: StoreConfig,
    key: str,
    messages: Sequence[object],
    status: object = ACTIVE,
    *,
    op_id: str | None = None,
) -> Operation[int]:
    """Add ``messages`` of ``status`` after every message; returns the number of messages of
    the conversation afterwards (both statuses). None changes nothing."""
    wanted = check_status(status, allow_both=False)
    encoded = encode_messages(messages, config.max_message_bytes)
    return _write(config, key, "memory_add", (wanted, *encoded), int, op_id)


def set_messages(
    config: StoreConfig,
    key: str,
    messages: Sequence[object],
    status: object = ACTIVE,
    *,
    op_id: str | None = None,
) -> Operation[int]:
    """Replace the conversation, both statuses, by ``messages`` of ``status``; ``[]`` removes
    it. Returns the number of messages afterwards."""
    wanted = check_status(status, allow_both=False)
    encoded = encode_messages(messages, config.max_message_bytes)
    return _write(config, key, "memory_set", (wanted, *encoded), int, op_id)


def delete_messages(
    config: StoreConfig, key: str, status: object = None, *, op_id: str | None = None
) -> Operation[int]:
    """Remove the messages of ``status`` (None: the whole conversation); returns how many."""
    wanted = check_status(status, allow_both=True)
    return _write(config, key, "memory_delete", (wanted,), int, op_id)


def delete_message(
    config: StoreConfig, key: str, idx: int, *, op_id: str | None = None
) -> Operation[ChatMessage | None]:
    """Remove and return the message at position ``idx`` of ``get_messages(key, status=None)``
    (both statuses, insertion order), for ``0 <= idx < count``; otherwise None, and nothing
    changes (a negative ``idx`` does not count from the end)."""
    index = check_index(idx)

    def decode(reply: Any) -> ChatMessage | None:
        return decode_removed(key, reply, ChatMessage)

    return _write(config, key, "memory_delete_at", (index,), decode, op_id)


def _take_oldest(
    config: StoreConfig, key: str, script: str, n: int, op_id: str | None
) -> Operation[list[ChatMessage]]:
    count = check_count("n", n)
    removed = script == "memory_delete_oldest"

    def decode(reply: Any) -> list[ChatMessage]:
        return decode_messages(key, reply, ChatMessage, removed=removed)

    return _write(config, key, script, (count,), decode, op_id)


def delete_oldest_messages(
    config: StoreConfig, key: str, n: int, *, op_id: str | None = None
) -> Operation[list[ChatMessage]]:
    """Remove the ``n`` oldest ACTIVE messages (archived ones are never touched) and return
    them, oldest first."""
    return _take_oldest(config, key, "memory_delete_oldest", n, op_id)


def archive_oldest_messages(
    config: StoreConfig, key: str, n: int, *, op_id: str | None = None
) -> Operation[list[ChatMessage]]:
    """Make the ``n`` oldest ACTIVE messages ARCHIVED, each keeping its place in time, and
    return them, oldest first."""
    return _take_oldest(config, key, "memory_archive_oldest", n, op_id)
