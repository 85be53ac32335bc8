"""The chat message and its JSON codec, compatible with what LlamaIndex writes.

LlamaIndex's ``ChatMessage`` serialises as ``{"role", "additional_kwargs", "blocks"}`` today and
as ``{"role", "content", "additional_kwargs"}`` in older versions. Both forms read back; the old
``content`` becomes one text block, as LlamaIndex itself does. Blocks are kept as plain dicts and
unknown top-level fields are kept too, so whatever another writer stored survives a round trip.

What a write stores reads back as the same value; nothing is converted on the way.

- A ``ChatMessage`` of ours, or a dict (validated into one first, by pydantic's rules for the
  model's own fields): every value it holds, in ``additional_kwargs``, in ``blocks`` and in extra
  top-level fields, must be JSON-native: a dict with ``str`` keys, a list, a ``str``, an ``int``,
  a finite ``float``, a ``bool`` or ``None`` (subclasses too, e.g. ``StrEnum``/``IntEnum``
  members, which read back equal). Refused with :class:`InvalidMessageError`, naming the field
  path and the type: tuples, sets, ``datetime``/``date``/``time``, ``Decimal``, ``UUID``,
  ``bytes`` (even valid UTF-8), other ``Enum`` members, NaN and ±infinity, pydantic models and
  any other object, functions, cycles, non-``str`` keys, and strings holding a lone surrogate
  (UTF-8 cannot encode one). Convert such values first: ``.isoformat()``, ``list(...)``,
  ``str(...)``, ``.model_dump(mode="json")``...
- The stored JSON may nest objects and arrays at most :data:`MAX_JSON_DEPTH` (100) levels deep,
  the message object itself being level 1 (so a list directly in ``additional_kwargs`` is at
  level 3). Real messages nest a handful of levels. pydantic writes up to about 254 levels but
  reads only 200 (counting the array a conversation is decoded as): without a limit, a message
  between the two would be written and then never read back. The limit also bounds the
  check's recursion far below Python's.
- Another pydantic model of this shape (LlamaIndex's ``ChatMessage``): stored as its own
  ``model_dump_json()`` writes it, as LlamaIndex's own store does, including that model's own
  conversions. llama-index-core 0.14.25 serialises ``additional_kwargs`` through its own
  serializer: pydantic models in it become dicts, ``bytes`` base64 text, and then pydantic's
  defaults apply (``datetime`` -> ISO text, ``set``/``tuple`` -> list, ``Decimal``/``UUID`` ->
  text, ``Enum`` -> its value, NaN/infinity -> ``null``, ``int`` keys -> text); those writes
  succeed, converted, as with the seed. What it cannot serialise (an ``object()``, a function, a
  lone surrogate, a cycle) raises :class:`InvalidMessageError` instead of pydantic's untyped
  ``PydanticSerializationError``. Its JSON must read back as a message and nest at most
  :data:`MAX_JSON_DEPTH` levels.

Checking is one walk over the message's values in Python: 0.39 µs for a typical 200-byte
message, 1.1 µs for one carrying a tool call (4 nested containers), measured here. pydantic's
``JsonValue`` in strict mode with ``allow_inf_nan=False``, the alternative, costs 1.3 and 2.7 µs
(its type discriminator is a Python call per value, and it builds a copy), stops depth only at
about 254 levels and lets lone surrogates in keys through. Calling the model's serializer
directly instead of ``model_dump_json()`` saves 0.3 µs, so a typical message encodes in about the
time it took before the check. Reads are not checked again: they decode in one pydantic call.
"""

from __future__ import annotations

import datetime
import decimal
import math
import operator
import uuid
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .errors import InvalidMessageError, MessageTooLargeError


class ChatMessage(BaseModel):
    """One message of a conversation: a role, content blocks and free-form extra data."""

    model_config = ConfigDict(extra="allow")

    role: str = "user"
    additional_kwargs: dict[str, Any] = Field(default_factory=dict)
    blocks: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _content_to_blocks(self) -> ChatMessage:
        # The older LlamaIndex form and the ``ChatMessage(content=...)`` constructor: ``content``
        # lands among the extra fields and becomes a text block. An "after" validator, because a
        # "before" one costs half as much again when a whole conversation is decoded.
        # With blocks beside it, ``content`` stays an extra field: nothing stored is dropped.
        extra = self.__pydantic_extra__
        if extra and "content" in extra and not self.blocks:
            content = extra.pop("content")
            if isinstance(content, str):
                self.blocks = [text_block(content)]
            elif isinstance(content, list) and all(isinstance(b, dict) for b in content):
                self.blocks = content
            elif content is not None:
                raise ValueError("content must be text or a list of blocks")
        return self

    @property
    def content(self) -> str:
        """The text of the message: its text blocks joined by newlines ("" when it has none)."""
        return "\n".join(
            block["text"]
            for block in self.blocks
            if block.get("block_type") == "text" and isinstance(block.get("text"), str)
        )


def text_block(text: str) -> dict[str, Any]:
    """A text block as LlamaIndex writes it."""
    return {"block_type": "text", "text": text}


_CONVERSATION = TypeAdapter(list[ChatMessage])
M = TypeVar("M")
_FIRST_BYTE, _LAST_BYTE = operator.itemgetter(0), operator.itemgetter(-1)

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def to_chat_message(message: object) -> ChatMessage:
    """Accept a ChatMessage, any pydantic model of that shape (LlamaIndex's), or a mapping."""
    if isinstance(message, ChatMessage):
        return message
    try:
        if isinstance(message, BaseModel):
            return ChatMessage.model_validate(message.model_dump(mode="json"))
        if isinstance(message, Mapping):
            return ChatMessage.model_validate(dict(message))
    except ValidationError as error:
        raise InvalidMessageError(f"not a chat message: {error}") from error
    raise InvalidMessageError(
        f"a message must be a ChatMessage, a pydantic model or a dict, not {type(message).__name__}"
    )


def encode_message(message: object, max_bytes: int) -> bytes:
    """The JSON text stored for one message; refused before sending when it would not read back
    as the same value (InvalidMessageError) or is over ``max_bytes`` (MessageTooLargeError)."""
    if isinstance(message, ChatMessage):
        encoded = _encode_ours(message)
    elif isinstance(message, BaseModel):
        encoded = _encode_other_model(message)
    else:
        encoded = _encode_ours(to_chat_message(message))
    if len(encoded) > max_bytes:
        raise MessageTooLargeError(len(encoded), max_bytes)
    return encoded


def _encode_ours(message: ChatMessage) -> bytes:
    if not _holds_only_json(message):
        raise InvalidMessageError(_message_problem(message))
    try:
        return _dump_json(message)
    except ValueError as error:  # PydanticSerializationError: a lone surrogate in a str
        raise InvalidMessageError(_message_problem(message, str(error))) from error


def _encode_other_model(message: BaseModel) -> bytes:
    """Another model of this shape (LlamaIndex's): store its own JSON once the shape is checked
    on it, instead of rebuilding it as ours and dumping again: 5.5 ms instead of 7.0 ms for
    1,000 LlamaIndex messages, measured here. Its serializers decide what it writes."""
    name = f"{type(message).__module__}.{type(message).__qualname__}"
    try:
        encoded = _dump_json(message)
    # PydanticSerializationError (a ValueError) for a value it cannot serialise; LlamaIndex's
    # serializer of additional_kwargs recurses in Python, so a RecursionError is possible too.
    except (ValueError, RecursionError) as error:
        raise InvalidMessageError(
            f"{name}.model_dump_json() failed, so it cannot be stored: {error}"
        ) from error
    try:
        stored = ChatMessage.model_validate_json(encoded)
    except ValidationError as error:
        raise InvalidMessageError(f"not a chat message: {error}") from error
    if not _holds_only_json(stored):  # JSON by construction: only the depth can be wrong
        raise InvalidMessageError(f"{name}: {_message_problem(stored)}")
    return encoded


def _dump_json(model: BaseModel) -> bytes:
    """``model.model_dump_json().encode()``, byte for byte, 0.3 µs sooner for a 200-byte message
    (0.67 µs against 0.98 µs, measured here): the model's serializer called with its defaults,
    without the dozen keyword arguments ``model_dump_json`` passes to it, and no str in between.
    A model that overrides ``model_dump_json`` gets it called."""
    if type(model).model_dump_json is BaseModel.model_dump_json:
        return model.__pydantic_serializer__.to_json(model)
    return model.model_dump_json().encode()


def encode_messages(messages: Sequence[object], max_bytes: int) -> list[bytes]:
    if isinstance(messages, (str, bytes, Mapping, BaseModel)) or not isinstance(messages, Sequence):
        raise InvalidMessageError(
            f"messages must be a list of messages, not {type(messages).__name__}"
        )
    return [encode_message(message, max_bytes) for message in messages]


def decode_message(raw: bytes) -> ChatMessage:
    """One stored element; raises pydantic's ValidationError when it is not a message."""
    return ChatMessage.model_validate_json(raw)


def decode_conversation(
    raws: Sequence[bytes],
    adapter: TypeAdapter[list[M]] = _CONVERSATION,  # type: ignore[assignment]
) -> list[M]:
    """A whole list in one validation call: its elements joined into one JSON array.

    ``adapter`` validates the array (LlamaIndex's drop-in passes one of its own model). Raises
    ValidationError, or ValueError when an element is not one JSON object: each must open with
    ``{`` and close with ``}`` (a truncated element would otherwise join with the next one), and
    the array must hold one message per element (``{...},{...}`` would otherwise pass as two).
    What these checks cannot see, fragments that complete each other across elements, takes a
    writer other than a JSON encoder; checking each element alone would double the cost.
    """
    if not raws:
        return []
    # The first and last byte of every element, in C: 0.05 ms per 1,000 (a loop of
    # startswith/endswith takes three times as long).
    try:
        first, last = set(map(_FIRST_BYTE, raws)), set(map(_LAST_BYTE, raws))
    except IndexError:  # an empty element
        first = last = set()
    if first != {ord("{")} or last != {ord("}")}:
        raise ValueError("an element is not one JSON object")
    messages = adapter.validate_json(b"[" + b",".join(raws) + b"]")
    if len(messages) != len(raws):
        raise ValueError("an element holds more or less than one JSON value")
    return messages


# -- the check on writes --------------------------------------------------------------------------

MAX_JSON_DEPTH = 100
"""The deepest a stored message may nest JSON objects and arrays, the message object being 1."""

_FIELD_ROOM = MAX_JSON_DEPTH - 1  # a field's value is at level 2: the message object is level 1
# Exact types first: subclasses, and everything refused, go through _other_is_json.
_SCALARS = frozenset((str, int, bool, type(None)))


def _holds_only_json(message: ChatMessage) -> bool:
    """Whether everything ``message`` holds reads back from JSON as itself (the fast check)."""
    role, kwargs, blocks = message.role, message.additional_kwargs, message.blocks
    if not (isinstance(role, str) and isinstance(kwargs, dict) and isinstance(blocks, list)):
        return False
    if kwargs and not _is_json(kwargs, _FIELD_ROOM):
        return False
    for block in blocks:
        if not (isinstance(block, dict) and _is_json(block, _FIELD_ROOM - 1)):
            return False
    extra = message.__pydantic_extra__
    if extra and not (_is_json(extra, MAX_JSON_DEPTH) and _shape_problem(message) is None):
        return False
    # A subclass's own fields (ours are the three above).
    return len(message.__dict__) == 3 or _is_json(message.__dict__, MAX_JSON_DEPTH)


def _shape_problem(message: ChatMessage) -> str | None:
    """What would not read back as a message: the fields as validated are right, but pydantic
    does not check a field reassigned since."""
    role, kwargs, blocks = message.role, message.additional_kwargs, message.blocks
    if not isinstance(role, str):
        return f"role: {_type_name(role)} is not a str"
    if not isinstance(kwargs, dict):
        return f"additional_kwargs: {_type_name(kwargs)} is not a dict"
    if not isinstance(blocks, list):
        return f"blocks: {_type_name(blocks)} is not a list"
    for index, block in enumerate(blocks):
        if not isinstance(block, dict):
            return f"blocks[{index}]: {_type_name(block)} is not a dict (a JSON object)"
    extra = message.__pydantic_extra__
    if extra and not blocks and "content" in extra:
        # ``content`` beside no blocks becomes the blocks on read (see _content_to_blocks).
        content = extra["content"]
        if not (
            content is None
            or isinstance(content, str)
            or (isinstance(content, list) and all(isinstance(block, dict) for block in content))
        ):
            return "content: with no blocks, content must be text or a list of blocks"
    return None


def _is_json(value: Any, room: int) -> bool:
    """Whether ``value`` is JSON-native, with containers at most ``room`` levels deep in it.

    No path and no cycle tracking: a cycle runs into the depth limit. Lone surrogates in str
    values are left to pydantic's serializer, which refuses them (it cannot write them as UTF-8);
    in keys it would replace them silently, so keys are checked here."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        if room <= 0:
            return False
        room -= 1
        for key, item in value.items():
            if not (type(key) is str or isinstance(key, str)):  # StrEnum keys read back equal
                return False
            if not (key.isascii() or _encodable(key)):
                return False
            if type(item) not in _SCALARS and not _is_json(item, room):
                return False
        return True
    if kind is list:
        if room <= 0:
            return False
        room -= 1
        # A loop, not all() over a generator: that costs more here.
        for item in value:  # noqa: SIM110
            if type(item) not in _SCALARS and not _is_json(item, room):
                return False
        return True
    if kind is float:
        return bool(value - value == 0.0)  # NaN and ±inf give NaN
    return _other_is_json(value, room)


def _other_is_json(value: object, room: int) -> bool:
    """Subclasses of the JSON types: written as the base type, and read back equal."""
    if isinstance(value, Enum) and not isinstance(value, (str, int)):
        return False
    if isinstance(value, str):  # StrEnum members, str subclasses: written as their text
        return value.isascii() or _encodable(value)
    if isinstance(value, int):  # IntEnum members, bool
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return _is_json(dict(value), room)
    if isinstance(value, list):
        return _is_json(list(value), room)
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# -- the explanation, on the slow path only -------------------------------------------------------

Path = tuple[str | int, ...]

_HINTS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    ((datetime.datetime, datetime.date, datetime.time), ".isoformat()"),
    (datetime.timedelta, ".total_seconds()"),
    (tuple, "list(...)"),
    ((set, frozenset), "sorted(...) or list(...)"),
    ((decimal.Decimal, uuid.UUID), "str(...)"),
    ((bytes, bytearray, memoryview), "base64 text, or .decode() for text"),
    (Enum, ".value"),
    (BaseModel, '.model_dump(mode="json")'),
)


def _message_problem(message: ChatMessage, fallback: str = "") -> str:
    """Why ``message`` cannot be stored as JSON that reads back the same, naming the path."""
    fields = {**message.__dict__, **(message.__pydantic_extra__ or {})}
    for name, value in fields.items():
        problem = _key_problem(name, ()) or _value_problem(value, (name,), MAX_JSON_DEPTH - 1, {})
        if problem:
            return problem
    problem = _shape_problem(message)
    return problem or f"the message cannot be stored as JSON: {fallback or 'unknown reason'}"


def _value_problem(
    value: object, path: Path, room: int, open_containers: dict[int, Path]
) -> str | None:
    """The first reason ``value``, at ``path``, cannot be stored; None when it can.
    ``open_containers``: the containers ``value`` is inside, by id, to name a cycle."""
    if isinstance(value, Enum) and not isinstance(value, (str, int)):
        return _not_json(value, path)
    if isinstance(value, str):
        return _surrogate_problem(value, f"{_format(path)}: the str")
    if value is None or isinstance(value, int):  # bool is an int
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return (
            f"{_format(path)}: float {value!r} is not a JSON value (JSON has no NaN or infinity);"
            " store None or a string instead"
        )
    if not isinstance(value, (dict, list)):
        return _not_json(value, path)
    if id(value) in open_containers:
        return (
            f"{_format(path)}: a cycle, this {_type_name(value)} is also "
            f"{_format(open_containers[id(value)])}, which contains it; JSON cannot hold cycles"
        )
    if room <= 0:
        return (
            f"{_format(path)}: JSON objects and arrays nested deeper than the limit of "
            f"{MAX_JSON_DEPTH} levels (the message object being level 1)"
        )
    open_containers[id(value)] = path
    try:
        if isinstance(value, dict):
            for key, item in value.items():
                problem = _key_problem(key, path) or _value_problem(
                    item, (*path, key), room - 1, open_containers
                )
                if problem:
                    return problem
        else:
            for index, item in enumerate(value):
                problem = _value_problem(item, (*path, index), room - 1, open_containers)
                if problem:
                    return problem
    finally:
        del open_containers[id(value)]
    return None


def _key_problem(key: object, path: Path) -> str | None:
    where = _format(path) if path else "the message"
    if not isinstance(key, str):
        return (
            f"{where}: key {key!r} ({_type_name(key)}) is not a str, and JSON object keys are "
            "strings; convert it first (e.g. str(key))"
        )
    return _surrogate_problem(key, f"{where}: the key {key!r}")


def _surrogate_problem(text: str, what: str) -> str | None:
    if text.isascii() or _encodable(text):
        return None
    position = next(i for i, char in enumerate(text) if "\ud800" <= char <= "\udfff")
    return (
        f"{what} holds a lone surrogate {text[position]!r} at position {position}, which UTF-8 "
        "cannot encode"
    )


def _not_json(value: object, path: Path) -> str:
    hint = next((hint for kinds, hint in _HINTS if isinstance(value, kinds)), None)
    return f"{_format(path)}: {_type_name(value)} is not a JSON value; convert it first" + (
        f" (e.g. {hint})" if hint else ""
    )


def _type_name(value: object) -> str:
    return type(value).__name__


def _format(path: Path) -> str:
    """``additional_kwargs['tool_calls'][0]``; a very deep path keeps its two ends."""
    name, *rest = path
    steps = [f"[{step!r}]" for step in rest]
    if len(steps) > 12:
        steps = [*steps[:6], f"...({len(steps) - 9} more)...", *steps[-3:]]
    return str(name) + "".join(steps)
