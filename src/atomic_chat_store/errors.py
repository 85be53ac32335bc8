"""Every error the store raises derives from :class:`ChatStoreError`.

Errors about the caller's input are raised before anything is sent to Redis, and also derive
from the built-in exception a Python programmer would expect (``TypeError`` for a value of the
wrong type, ``ValueError`` for a value out of bounds), so existing ``except`` clauses keep working.

What Redis or a script answers becomes a typed error in one place, :func:`error_from_reply`.
Three families tell the caller what happened to a write:

- :class:`CommandRefusedError` and the script's checks (:class:`WrongTypeError`,
  :class:`VersionConflictError`, ...): nothing was applied;
- :class:`OutcomeUnknownError`: the retry budget ran out while the write may have been applied;
  send it again with the same ``op_id`` to apply it at most once and learn its reply;
- :class:`UnavailableError` (for reads, and writes known not to be applied): no server answered
  within the retry budget.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import redis


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


class InvalidArgumentError(ChatStoreError, ValueError):
    """A store option or argument out of its range (a TTL, an op id, a retry budget, ...)."""


class InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """A store option or argument of the wrong type."""


class InvalidUrlError(ChatStoreError, ValueError):
    """A Redis URL that cannot be used, refused before anything connects. ``part`` names what is
    wrong: ``scheme``, ``host``, ``port``, ``service name``, ``db``, ``path``, ``user info`` or
    ``query parameter``. The message never repeats a password."""

    def __init__(self, part: str, detail: str) -> None:
        super().__init__(f"invalid Redis URL, {part}: {detail}")
        self.part = part


class WrongTypeError(ChatStoreError):
    """The chat key holds a Redis value of another type than the store keeps messages in (a
    list; a hash for the Memory store); it was left untouched."""

    def __init__(self, key: str, redis_type: str | None = None) -> None:
        held = f"a {redis_type}" if redis_type else "a value of another type"
        super().__init__(
            f"key {key!r} holds {held}, not the store's messages; it was left as it is"
        )
        self.key = key
        self.redis_type = redis_type


class CommandRefusedError(ChatStoreError):
    """Redis refused the command before running it: nothing was applied. ``reason`` is what
    Redis said."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class PermissionDeniedError(CommandRefusedError):
    """The connection's ACL user may not run a command the operation needs (``command``);
    checked before the first write, so nothing was applied. See the README's minimal ACL."""

    def __init__(self, command: str, reason: str = "") -> None:
        super().__init__(
            f"the Redis user may not run {command.upper()}, which this operation needs; "
            "nothing was applied",
            reason,
        )
        self.command = command


class OutOfMemoryError(CommandRefusedError):
    """The server is at ``maxmemory`` and refused a write that would use more; nothing was
    applied. Deletes still run there: they free memory."""


class VersionConflictError(ChatStoreError):
    """The conversation's version is not ``expected``: another write came first. Nothing changed;
    read again (``get_conversation``), compute, and write with the new version."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(
            f"conversation {key!r} is at version {actual}, not {expected}; nothing was changed"
        )
        self.key = key
        self.expected = expected
        self.actual = actual


class OpIdConflictError(ChatStoreError):
    """The op id was already recorded for another kind of operation on this conversation;
    nothing was applied. Each write needs an id of its own."""

    def __init__(self, op_id: str, recorded_by: str) -> None:
        super().__init__(
            f"op id {op_id!r} was recorded by a {recorded_by} on this conversation; "
            "an op id names one write: nothing was applied"
        )
        self.op_id = op_id
        self.recorded_by = recorded_by


class UnavailableError(ChatStoreError):
    """No server answered within the retry budget (``attempts`` made, ``elapsed`` seconds).
    Raised as is for reads, and for writes known not to be applied; ``__cause__`` is the
    last error."""

    def __init__(self, message: str, attempts: int, elapsed: float) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.elapsed = elapsed


class ConnectionRefusedByServerError(UnavailableError):
    """The connection itself was refused for good: wrong credentials, or a TLS certificate that
    does not verify. Nothing was sent, and sending again cannot help; ``__cause__`` (and
    ``reason``) say why."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__(
            f"the connection was refused ({reason}); nothing was sent", attempts=1, elapsed=0.0
        )
        self.reason = reason


class OutcomeUnknownError(UnavailableError):
    """The retry budget ran out and the write may or may not have been applied.

    Send the same write again with ``op_id=`` this ``op_id`` (or the same ``Operation``): it is
    applied at most once, and returns its reply, as long as it comes within the store's op id
    window (``op_window``, 10 minutes by default). For ``execute_many``, ``op_ids`` holds every
    write's id: send the same operations again.
    """

    def __init__(
        self, op_id: str, attempts: int, elapsed: float, *, op_ids: Sequence[str] = ()
    ) -> None:
        self.op_ids = tuple(op_ids) or (op_id,)
        what = f"write {op_id!r}" if len(self.op_ids) == 1 else f"{len(self.op_ids)} writes"
        super().__init__(
            f"{what} may or may not have been applied: no reply after {attempts} attempt(s) in "
            f"{elapsed:.1f} s; send again with the same op id to apply at most once",
            attempts,
            elapsed,
        )
        self.op_id = op_id


class DurabilityError(ChatStoreError):
    """The write WAS applied, but fewer replicas than the store's ``wait_replicas`` acknowledged
    it within the retry budget: if the master fails now, it may be lost. ``reply`` is what the
    write returned (a list of results for ``execute_many``), ``acknowledged`` how many replicas
    had it, ``wanted`` how many the store waits for, ``op_ids`` the writes' ids: sending the same
    write again with its op id changes nothing and waits again."""

    def __init__(
        self, reply: object, acknowledged: int, wanted: int, op_ids: Sequence[str]
    ) -> None:
        super().__init__(
            f"the write was applied, but {acknowledged} of the {wanted} replica(s) the store "
            "waits for acknowledged it: a failover now could lose it"
        )
        self.reply = reply
        self.acknowledged = acknowledged
        self.wanted = wanted
        self.op_ids = tuple(op_ids)


class BatchError(ChatStoreError):
    """One or more operations of ``execute_many`` failed. ``results`` holds, in order, each
    operation's result or its typed error; ``errors`` maps the failed positions to their errors.

    ``applied`` is True when the others took effect: Redis runs every command of a MULTI/EXEC,
    it does not roll back. It is False when Redis refused the whole transaction while queueing
    it (out of memory, a command the ACL user may not run): then nothing was applied. ``cause``,
    when set, is why a transaction could not even start (MULTI refused: an ACL without it); its
    operations then ran one by one, each once, and ``results`` are theirs.
    """

    def __init__(
        self,
        results: list[object],
        *,
        applied: bool = True,
        cause: BaseException | None = None,
    ) -> None:
        self.results = results
        self.applied = applied
        self.cause = cause
        self.errors = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
        if cause is not None:
            message = (
                f"the transaction could not start ({cause}): the {len(results)} operations ran "
                f"one by one instead, each once; {len(self.errors)} failed"
            )
        else:
            first = min(self.errors)
            others = "the others took effect" if applied else "nothing was applied"
            message = (
                f"{len(self.errors)} of {len(results)} operations failed, {others}; "
                f"the first, #{first}: {self.errors[first]}"
            )
        super().__init__(message)


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


# What Redis appends to an error raised by a script: " script: <sha>, on @user_script:<line>."
# Redis: " script: <sha>, on @user_script:<line>."; Valkey: " script: on @user_script:<line>."
_SCRIPT_WHERE = re.compile(r" script: (\w+, )?on @\w+:\d+\.$")
_QUOTED_COMMAND = re.compile(r"'([^']+)' command")
# What Redis answers a script that calls a command its ACL user may not run, before any write of
# ours (the prelude checks every command that comes after one).
_SCRIPT_DENIED = "The user executing the script can't run this command"
_EXEC_ABORTED = "Transaction discarded because of: "


def error_from_reply(error: redis.ResponseError, key: str, op_id: str | None = None) -> Exception:
    """The typed error for what Redis answered about conversation ``key``; ``error`` itself
    when it is none of ours. A script's errors are ``ACS_<CODE> <details>``
    (lua/includes/prelude.lua)."""
    text = _SCRIPT_WHERE.sub("", str(error))
    # redis-py takes the code off the errors it has a class for, and keeps it as status_code.
    code = getattr(error, "status_code", None)
    if code:
        detail, text = text, f"{code} {text}"
    else:
        code, _, detail = text.partition(" ")
    if code in ("ACS_WRONGTYPE", "WRONGTYPE"):
        return WrongTypeError(key, detail.split()[0] if code == "ACS_WRONGTYPE" else None)
    if code == "ACS_VERSION":
        expected, actual = detail.split()
        return VersionConflictError(key, int(expected), int(actual))
    if code == "ACS_OPID":
        # The id as sent when known: Redis turns line breaks in an error into spaces.
        sent, _, script = detail.rpartition(" ")
        return OpIdConflictError(op_id if op_id is not None else sent, script)
    if code == "ACS_NOPERM":
        return PermissionDeniedError(detail, text)
    # Redis's NOPERM; Valkey, inside a script: "ACL failure in script: User u has no ..."
    if code == "NOPERM" or "no permissions to run" in text:
        quoted = _QUOTED_COMMAND.search(text)
        return PermissionDeniedError(quoted.group(1) if quoted else "a command", text)
    if _SCRIPT_DENIED in text:
        return PermissionDeniedError("a command the script reads with", text)
    if code == "EXECABORT" and _EXEC_ABORTED in detail:
        # The transaction was refused whole: type it by the refusal that aborted it.
        inner = redis.ResponseError(detail.split(_EXEC_ABORTED, 1)[1])
        typed = error_from_reply(inner, key, op_id)
        if typed is not inner:
            return typed
    if code == "ACS_BADARG":
        return InvalidArgumentError(f"a script refused its argument {detail} (a store bug?)")
    if code == "OOM":
        return OutOfMemoryError(
            "the Redis server is out of memory (maxmemory) and refused the write; nothing was "
            "applied. Deletes still run.",
            text,
        )
    if code in ("MISCONF", "READONLY", "EXECABORT"):
        return CommandRefusedError(f"Redis refused the command, nothing was applied: {text}", text)
    return error
