"""The chat message and its JSON codec, compatible with what LlamaIndex writes.

LlamaIndex's ``ChatMessage`` serialises as ``{"role", "additional_kwargs", "blocks"}`` today and
as ``{"role", "content", "additional_kwargs"}`` in older versions. Both forms read back; the old
``content`` becomes one text block, as LlamaIndex itself does. Blocks are kept as plain dicts and
unknown top-level fields are kept too, so whatever another writer stored survives a round trip.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
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
    """The JSON text stored for one message; refused before sending when over ``max_bytes``."""
    if isinstance(message, BaseModel) and not isinstance(message, ChatMessage):
        # Another model of this shape (LlamaIndex's): store its own JSON once the shape is
        # checked on it, instead of rebuilding it as ours and dumping again: 5.5 ms instead of
        # 7.0 ms for 1,000 LlamaIndex messages, measured here.
        encoded = message.model_dump_json().encode()
        try:
            ChatMessage.model_validate_json(encoded)
        except ValidationError as error:
            raise InvalidMessageError(f"not a chat message: {error}") from error
    else:
        encoded = to_chat_message(message).model_dump_json().encode()
    if len(encoded) > max_bytes:
        raise MessageTooLargeError(len(encoded), max_bytes)
    return encoded


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
