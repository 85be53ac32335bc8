"""Every error the store raises derives from :class:`ChatStoreError`.

Errors about the caller's input are raised before anything is sent to Redis, and also derive
from the built-in exception a Python programmer would expect (``TypeError`` for a value of the
wrong type, ``ValueError`` for a value out of bounds), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

from collections.abc import Sequence


class ChatStoreError(Exception):
    """Base class of every error raised by atomic-chat-store."""


class InvalidKeyError(ChatStoreError, ValueError):
    """A chat key that is not a non-empty ``str``."""


class InvalidIndexError(ChatStoreError, TypeError):
    """An index that is not an ``int`` (``bool`` is refused too)."""


class InvalidMessageError(ChatStoreError, TypeError):
    """A value that is neither a ChatMessage, a model of that shape, nor a dict of that shape."""


class MessageTooLargeError(ChatStoreError, ValueError):
    """A message whose JSON encoding is larger than the store's ``max_message_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message is {size} bytes encoded, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class WrongTypeError(ChatStoreError):
    """The chat key holds a Redis value that is not a list; it was left untouched."""

    def __init__(self, key: str, redis_type: str | None = None) -> None:
        held = f"a {redis_type}" if redis_type else "a value of another type"
        super().__init__(f"key {key!r} holds {held}, not a list of messages; it was left as it is")
        self.key = key
        self.redis_type = redis_type


class BatchError(ChatStoreError):
    """One or more operations of ``execute_many`` failed. The others took effect: Redis runs
    every command of a MULTI/EXEC, it does not roll back. ``results`` holds, in order, each
    operation's result or its typed error; ``errors`` maps the failed positions to their errors.
    """

    def __init__(self, results: list[object]) -> None:
        self.results = results
        self.errors = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
        first = min(self.errors)
        super().__init__(
            f"{len(self.errors)} of {len(results)} operations failed, the others took effect; "
            f"the first, #{first}: {self.errors[first]}"
        )


class CorruptMessageError(ChatStoreError):
    """A stored element that is not a valid message.

    On a read the element stays where it is in Redis. A delete removes what it was asked to
    remove, so nothing is lost it hands the bytes back: ``removed`` is True and
    ``removed_elements`` holds every element it removed, in order (the whole conversation for
    ``delete_messages``). ``raw`` is the bad element, ``index`` its position (-1: the last one).
    """

    def __init__(
        self,
        key: str,
        index: int,
        raw: bytes,
        reason: str,
        *,
        removed: bool = False,
        removed_elements: Sequence[bytes] | None = None,
    ) -> None:
        fate = "it was removed; see .removed_elements" if removed else "it was left in place"
        super().__init__(
            f"element {index} of key {key!r} is not a valid message ({reason}); {fate}: "
            f"{raw[:80]!r}"
        )
        self.key = key
        self.index = index
        self.raw = raw
        self.reason = reason
        self.removed = removed
        self.removed_elements: list[bytes] = (
            list(removed_elements) if removed_elements is not None else [raw] if removed else []
        )


class InvalidUrlError(ChatStoreError, ValueError):
    """A Redis URL that cannot be used, refused before anything connects. ``part`` names what is
    wrong: ``scheme``, ``host``, ``port``, ``service name``, ``db``, ``path``, ``user info`` or
    ``query parameter``. The message never repeats a password."""

    def __init__(self, part: str, detail: str) -> None:
        super().__init__(f"invalid Redis URL, {part}: {detail}")
        self.part = part
