"""The conversations the benchmark stores: messages of a fixed stored size, each carrying an id
that every system's reply can be reduced to, so results compare across systems."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..messages import DEFAULT_MAX_MESSAGE_BYTES, ChatMessage, encode_message, text_block

# The id ends at the first "|" of the message text; the rest is padding.
SEPARATOR = "|"


@dataclass(frozen=True, slots=True)
class BenchMessage:
    """One message: its id, role and text; its JSON (this store's encoding) is ``payload``."""

    ident: str
    role: str
    text: str
    payload: bytes

    def ours(self) -> ChatMessage:
        return ChatMessage(role=self.role, blocks=[text_block(self.text)])


def make_message(ident: str, message_bytes: int, role: str = "user") -> BenchMessage:
    """A message whose stored JSON is ``message_bytes`` long (or as short as its id allows)."""
    if SEPARATOR in ident:
        raise ValueError(f"an id must not contain {SEPARATOR!r}")
    bare = ident + SEPARATOR
    overhead = len(_encode(role, bare))
    text = bare + "x" * max(0, message_bytes - overhead)
    return BenchMessage(ident, role, text, _encode(role, text))


def _encode(role: str, text: str) -> bytes:
    message = ChatMessage(role=role, blocks=[text_block(text)])
    return encode_message(message, DEFAULT_MAX_MESSAGE_BYTES)


def make_conversation(prefix: str, size: int, message_bytes: int) -> list[BenchMessage]:
    """``size`` messages ``<prefix>00000``, ``<prefix>00001``, ... alternating user/assistant."""
    width = max(5, len(str(size)))
    return [
        make_message(f"{prefix}{i:0{width}d}", message_bytes, "user" if i % 2 == 0 else "assistant")
        for i in range(size)
    ]


def ident_of_text(text: str) -> str:
    return text.split(SEPARATOR, 1)[0]


def ident_of_json(raw: bytes | str) -> str:
    """The id of a stored element, whichever writer (this store, LlamaIndex) encoded it."""
    try:
        data = json.loads(raw)
    except ValueError:
        return f"<not JSON: {bytes(raw[:20]) if isinstance(raw, bytes) else raw[:20]!r}>"
    if not isinstance(data, dict):
        return "<not a message>"
    blocks = data.get("blocks")
    if isinstance(blocks, list):
        for block in blocks:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                return ident_of_text(block["text"])
    content = data.get("content")
    if isinstance(content, str):
        return ident_of_text(content)
    return "<no text>"


def ident_of(value: Any) -> Any:
    """A reply reduced to what can be compared: message(s) to id(s); ints and None unchanged."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, (bytes, str)):
        return ident_of_json(value)
    if isinstance(value, (list, tuple)):
        return [ident_of(item) for item in value]
    content = getattr(value, "content", None)  # a ChatMessage, ours or LlamaIndex's
    if isinstance(content, str):
        return ident_of_text(content)
    return f"<{type(value).__name__}>"


def idents(raws: Iterable[bytes | str]) -> list[str]:
    return [ident_of_json(raw) for raw in raws]


def describe_difference(expected: Sequence[str], actual: Sequence[str]) -> str:
    """Why a list is wrong, in a few words ("" when it is right)."""
    if list(actual) == list(expected):
        return ""
    if len(actual) == len(expected) and list(actual) == list(reversed(expected)):
        return "list reversed"
    if sorted(actual) == sorted(expected):
        return "list reordered"
    missing = len(set(expected) - set(actual))
    extra = len(set(actual) - set(expected))
    return f"{len(actual)} messages instead of {len(expected)} ({missing} missing, {extra} extra)"
