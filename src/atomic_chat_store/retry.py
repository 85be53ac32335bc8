"""The store's retry rule, free of I/O: which failures are worth sending an operation again, how
long to wait, and what to raise when the budget is spent.

Sending again is safe because every write carries its op id: its script returns the recorded
reply instead of applying it twice. redis-py's own ``Retry`` cannot be used for this: it has no
total time budget, does not answer NOSCRIPT, and cannot tell the caller whether a write may have
been applied. Its backoff classes are used as they are.
"""

from __future__ import annotations

import functools
import math
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff

from .errors import (
    BatchError,
    ChatStoreError,
    CommandRefusedError,
    ConnectionRefusedByServerError,
    DurabilityError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    OutcomeUnknownError,
    UnavailableError,
    error_from_reply,
)

# A failure after which the command may have run: the reply never came.
_REPLY_LOST: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)
# A ConnectionError that is an answer, not a lost connection: sending again cannot help.
_FINAL: tuple[type[BaseException], ...] = (
    redis.AuthenticationError,
    redis.exceptions.AuthorizationError,
)
# Refusals that say the command did not run, and that pass once the server or cluster settles:
# a demoted master (READONLY), a server loading its data (LOADING), a busy script (BUSY), a
# slot moving or a cluster electing (TRYAGAIN, CLUSTERDOWN, MASTERDOWN), a full pool.
_NOT_RUN: tuple[type[BaseException], ...] = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MaxConnectionsError,
    redis.exceptions.AskError,  # and MovedError: a slot moved, the command ran nowhere
    redis.exceptions.ClusterError,
    redis.exceptions.SlotNotCoveredError,
)
# A Cluster refusing what can never work, whatever is sent again.
_CLUSTER_FINAL: tuple[type[BaseException], ...] = (
    redis.exceptions.CrossSlotTransactionError,
    redis.exceptions.InvalidPipelineStack,
    redis.exceptions.ClusterCrossSlotError,
)


class BatchResend(Exception):
    """A reply of a pipeline asks for the whole batch to be sent again (``reason``: a NOSCRIPT,
    a demoted master); ``applied`` says whether writes of it ran meanwhile."""

    def __init__(self, reason: Exception, applied: bool) -> None:
        super().__init__(str(reason))
        self.reason = reason
        self.applied = applied


class TransactionNotStarted(Exception):
    """MULTI was refused, so the operations after it ran at once, each once, not as a
    transaction: ``replies`` are theirs."""

    def __init__(self, replies: list[Any], refusal: Exception) -> None:
        super().__init__(f"MULTI was refused: {refusal}")
        self.replies = replies
        self.refusal = refusal


class ReplicaShortfall(Exception):
    """A write applied on the master, which fewer replicas than wanted acknowledged (WAIT):
    sent again with its op id, it changes nothing and waits again, maybe on a new master."""

    def __init__(self, reply: Any, acknowledged: int, wanted: int) -> None:
        super().__init__(f"{acknowledged} of {wanted} replicas acknowledged the write")
        self.reply = reply
        self.acknowledged = acknowledged
        self.wanted = wanted


def _number(name: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentTypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < minimum:
        raise InvalidArgumentError(f"{name} must be a finite number >= {minimum}, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long the store keeps sending an operation again when no reply comes.

    At most ``attempts`` sends in all, and none started after ``timeout`` seconds from the first;
    between two, an exponential backoff with jitter from ``backoff_base`` seconds up to
    ``backoff_cap``. The default rides out an outage of 10 s with room to spare.
    ``RetryPolicy(attempts=1)`` never sends again. Loading the scripts after a ``NOSCRIPT`` reply
    is immediate, but counts as an attempt.
    """

    attempts: int = 50
    timeout: float = 20.0
    backoff_base: float = 0.02
    backoff_cap: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise InvalidArgumentTypeError(
                f"attempts must be an int, not {type(self.attempts).__name__}"
            )
        if self.attempts < 1:
            raise InvalidArgumentError(f"attempts must be at least 1, not {self.attempts}")
        _number("timeout", self.timeout, 0)
        _number("backoff_base", self.backoff_base, 0)
        _number("backoff_cap", self.backoff_cap, 0)

    def begin(
        self,
        operations: Sequence[Any],
        *,
        batch: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> Attempts:
        """The rule's state for sending ``operations`` (one, or a batch sent together; none for
        a read such as get_keys)."""
        return Attempts(self, operations, batch, clock)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it (redis-py wraps socket and TLS errors in its own)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_refused_connection(error: BaseException) -> bool:
    """A connection the server or the client refused for good: a certificate that does not
    verify. Sending again cannot help, and nothing was sent."""
    return isinstance(error, redis.ConnectionError) and any(
        isinstance(cause, ssl.SSLCertVerificationError) for cause in _causes(error)
    )


def is_lost_connection(error: BaseException) -> bool:
    """A connection that failed or broke (a timeout, a cut, a refusal, no master known): the
    command may have run, even when this try never reached a server (redis-py's own retries may
    have sent it before), and sending again may work."""
    if not isinstance(error, _REPLY_LOST) or isinstance(error, (*_FINAL, *_NOT_RUN)):
        return False
    return not is_refused_connection(error)


# Replies that say the command did not run, or ran on a master that has just stepped down
# (UNBLOCKED: a WAIT ended by a demotion), and that pass once the server settles.
_RETRIED_REPLIES = ("BUSY ", "LOADING ", "MASTERDOWN ", "UNBLOCKED ")


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, (redis.exceptions.NoScriptError, *_NOT_RUN, ReplicaShortfall)):
        return True
    if isinstance(error, redis.exceptions.RedisClusterException):
        # No node answered (the Cluster client could not even be made), or a slot map in motion.
        return not isinstance(error, _CLUSTER_FINAL)
    if isinstance(error, redis.ResponseError):
        return str(error).startswith(_RETRIED_REPLIES)
    return is_lost_connection(error)


@functools.lru_cache(maxsize=64)
def _backoff(cap: float, base: float) -> ExponentialWithJitterBackoff:
    """redis-py's backoff, made when a send first fails (it keeps no state between calls)."""
    return ExponentialWithJitterBackoff(cap=cap, base=base)


def _decoded(operation: Any, raw: Any) -> Any:
    """A reply as its operation's result, or as the typed error it stands for."""
    if isinstance(raw, Exception):
        return operation.error(raw)
    try:
        return operation.decode(raw)
    except ChatStoreError as error:
        return error


@dataclass
class Attempts:
    """One operation (or batch) on its way: call ``failed`` after each failure; it says how long
    to wait before the next send, or raises what the caller gets."""

    policy: RetryPolicy
    operations: Sequence[Any]
    batch: bool
    clock: Callable[[], float] = field(repr=False)
    count: int = 0
    started: float = 0.0
    # Whether an earlier send may have run: then a later refusal says nothing of the outcome.
    maybe_applied: bool = False
    # After a NOSCRIPT: load every script at once (one transaction: the server has them all or
    # none, so no later transaction of ours finds some and misses others, which would split it),
    # then send each script's source (EVAL), which cannot miss, instead of its SHA.
    load_scripts: bool = False
    send_source: bool = False
    # After a sign that the master moved (a MOVED or ASK on a connection the store chose itself, a
    # READONLY, too few replicas acknowledging): find the master again before the next send
    # rather than wait for the client to notice (a Sentinel pool only asks when it connects).
    rediscover: bool = False
    _shortfall: ReplicaShortfall | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def failed(self, error: Exception) -> float:
        """Seconds to wait before sending again; raises when there is no next time. Once it has
        set ``send_source``, the caller sends scripts by their source from then on."""
        self.count += 1
        if isinstance(error, BatchResend):
            self.maybe_applied = self.maybe_applied or error.applied
            error = error.reason
        if self._may_have_run(error):
            self.maybe_applied = True
        if not is_retryable(error):
            raise self._final(error) from error
        if isinstance(error, ReplicaShortfall):
            # Kept: whatever fails after, the write was applied, with this reply.
            self._shortfall = error
        self.rediscover = isinstance(
            error, (redis.exceptions.AskError, redis.exceptions.ReadOnlyError, ReplicaShortfall)
        ) or str(error).startswith("UNBLOCKED ")
        no_script = isinstance(error, redis.exceptions.NoScriptError)
        # EVAL both loads the script and runs it: no SCRIPT FLUSH can come in between.
        self.send_source = self.send_source or no_script
        self.load_scripts = no_script
        backoff = _backoff(self.policy.backoff_cap, self.policy.backoff_base)
        delay = 0.0 if no_script else backoff.compute(self.count)
        elapsed = self.clock() - self.started
        if self.count >= self.policy.attempts or elapsed + delay > self.policy.timeout:
            raise self._spent(elapsed) from error
        return delay

    def _may_have_run(self, error: Exception) -> bool:
        """Whether the send that failed may have applied a write."""
        if isinstance(error, ReplicaShortfall) or str(error).startswith("UNBLOCKED "):
            return True  # it was applied, on a master that may lose it
        return is_lost_connection(error)

    def _spent(self, elapsed: float) -> ChatStoreError:
        op_ids = tuple(op.op_id for op in self.operations if op.op_id is not None)
        if self._shortfall is not None:
            shortfall = self._shortfall
            if self.batch:
                reply: Any = [
                    _decoded(op, raw)
                    for op, raw in zip(self.operations, shortfall.reply, strict=True)
                ]
            else:
                reply = _decoded(self.operations[0], shortfall.reply)
            return DurabilityError(reply, shortfall.acknowledged, shortfall.wanted, op_ids)
        if self.maybe_applied and op_ids:
            return OutcomeUnknownError(op_ids[0], self.count, elapsed, op_ids=op_ids)
        return UnavailableError(
            f"no server answered within the retry budget ({self.count} attempt(s) in "
            f"{elapsed:.1f} s); nothing was applied",
            self.count,
            elapsed,
        )

    def _final(self, error: Exception) -> Exception:
        if isinstance(error, TransactionNotStarted):
            refusal: Exception = error.refusal
            if isinstance(refusal, redis.ResponseError):
                refusal = error_from_reply(refusal, "")
            results = [
                _decoded(op, raw) for op, raw in zip(self.operations, error.replies, strict=True)
            ]
            return BatchError(results, applied=True, cause=refusal)
        if isinstance(error, redis.ResponseError):
            single = self.operations[0] if len(self.operations) == 1 else None
            key, op_id = (single.chat_key, single.op_id) if single is not None else ("", None)
            typed = error_from_reply(error, key, op_id)
        elif isinstance(error, redis.AuthenticationError) or is_refused_connection(error):
            typed = ConnectionRefusedByServerError(error)
        else:
            typed = error
        writes = any(operation.op_id is not None for operation in self.operations)
        if (
            writes
            and self.maybe_applied
            and isinstance(typed, (CommandRefusedError, ConnectionRefusedByServerError))
        ):
            # Refused before any script ran, after a send whose reply was lost: that send may
            # have applied it. Only a send with the same op id can tell.
            return self._spent(self.clock() - self.started)
        if self.batch and isinstance(typed, ChatStoreError):
            # A whole batch refused (a transaction aborted while queueing): none of it applied.
            return BatchError([typed] * len(self.operations), applied=False)
        return typed
