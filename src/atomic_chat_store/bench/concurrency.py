"""K clients on one conversation at once: each appends unique messages, inserts at random indexes
and deletes at random indexes, for a bounded number of operations and a bounded time. Then the
final list is compared with what should remain: messages lost, duplicated, deleted ones back, and
each writer's messages (the starting conversation, each client's appends) out of order.

Threads for the sync systems (sharing one client and its connection pool, as an application
would); tasks on the run's event loop for the async store. The floor has no single command that
works by index: it reads the element there (LINDEX) and then names it by value (LINSERT or
LREM), two round trips with nothing in between held.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .data import BenchMessage, ident_of, make_message
from .model import BenchConfig, ConcurrencyResult
from .systems import AsyncStore, Floor, System

POLL_S = 0.1  # how often the waiting caller looks at the clock and calls its poll
STOP_GRACE_S = 90.0  # for the clients to finish the step they are in once told to stop

# One step of one client: ("append" | "insert" | "delete", index, message or None).
Step = tuple[str, int, BenchMessage | None]


@dataclass
class ClientLog:
    appended: list[str] = field(default_factory=list)
    inserted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # what the system said it removed
    completed: int = 0
    errors: int = 0
    first_error: str | None = None

    def record_error(self, error: Exception) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(error).__name__}: {error}"


def make_plans(config: BenchConfig) -> list[list[Step]]:
    """Each client's steps, the same for every system (seeded)."""
    plans = []
    for client in range(config.clients):
        rng = random.Random(config.random_seed * 1000 + client)
        steps: list[Step] = []
        for number in range(config.client_ops):
            kind = ("append", "insert", "delete")[rng.randrange(3)]
            if kind == "delete":
                steps.append((kind, rng.randrange(config.concurrency_size), None))
            else:
                ident = f"{kind[0]}{client:03d}-{number:05d}"
                message = make_message(ident, config.message_bytes)
                steps.append((kind, rng.randrange(config.concurrency_size + 1), message))
        plans.append(steps)
    return plans


def _sync_step(system: System, key: str) -> Callable[[str, int, BenchMessage | None], str | None]:
    """A function doing one step on a sync system; returns the id a delete removed."""
    if isinstance(system, Floor):
        client: Any = system.client  # redis-py types values as str; it takes bytes too

        def floor_step(kind: str, index: int, message: BenchMessage | None) -> str | None:
            if kind == "append" and message is not None:
                client.rpush(key, message.payload)
            elif kind == "insert" and message is not None:
                pivot = client.lindex(key, index)
                if pivot is None:
                    client.rpush(key, message.payload)
                else:
                    client.linsert(key, "BEFORE", pivot, message.payload)
            else:
                found = client.lindex(key, index)
                if found is not None and client.lrem(key, 1, found) == 1:
                    return str(ident_of(found))
            return None

        return floor_step

    def store_step(kind: str, index: int, message: BenchMessage | None) -> str | None:
        reply, deletes = _store_call(system, key, kind, index, message)
        return _removed(reply) if deletes else None

    return store_step


def _store_call(
    system: System, key: str, kind: str, index: int, message: BenchMessage | None
) -> tuple[Any, bool]:
    """One step on a system with the ``BaseChatStore`` method names (this store, sync or async,
    and the seed): the reply, or for the async store an awaitable of it, and whether the step
    is a delete (whose reply is the message removed)."""
    store: Any = system.store  # type: ignore[attr-defined]
    if kind == "append" and message is not None:
        return store.add_message(key, system.message(message)), False
    if kind == "insert" and message is not None:
        return store.add_message(key, system.message(message), idx=index), False
    return store.delete_message(key, index), True


def _removed(reply: Any) -> str | None:
    """The id of the message a delete says it removed."""
    return None if reply is None else str(ident_of(reply))


def _apply(log: ClientLog, kind: str, message: BenchMessage | None, removed: str | None) -> None:
    if kind == "append" and message is not None:
        log.appended.append(message.ident)
    elif kind == "insert" and message is not None:
        log.inserted.append(message.ident)
    elif removed is not None:
        log.deleted.append(removed)
    log.completed += 1


def _nothing() -> None:
    pass


def run_threads(
    system: System,
    key: str,
    plans: Sequence[Sequence[Step]],
    timeout_s: float,
    poll: Callable[[], None] = _nothing,
) -> tuple[list[ClientLog], bool]:
    """The clients as threads; returns their logs and whether the time limit stopped them.

    Every client checks a shared stop event before each step; it is set at the time limit or
    when ``poll`` (called every ``POLL_S`` while waiting: the run's Ctrl-C check) raises, and
    every thread is then joined, so no client writes once this returns or raises."""
    step = _sync_step(system, system.api_key(key))
    logs = [ClientLog() for _ in plans]
    barrier = threading.Barrier(len(plans))
    stop = threading.Event()

    def client(number: int) -> None:
        log = logs[number]
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=min(10.0, timeout_s))
        for kind, index, message in plans[number]:
            if stop.is_set():
                return
            try:
                removed = step(kind, index, message)
            except Exception as error:
                log.record_error(error)
                continue
            _apply(log, kind, message, removed)

    threads = [
        threading.Thread(
            target=client, args=(number,), name=f"acs-bench-client-{number}", daemon=True
        )
        for number in range(len(plans))
    ]
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.start()
    timed_out = False
    try:
        for thread in threads:
            while thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                thread.join(timeout=min(POLL_S, left))
                poll()
            if timed_out:
                break
    finally:
        stop.set()
        stopping = time.monotonic() + STOP_GRACE_S
        for thread in threads:
            thread.join(timeout=max(0.0, stopping - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError(
            f"clients still running {STOP_GRACE_S:g} s after they were told to stop; "
            "their results would be read while they change"
        )
    return logs, timed_out


def run_tasks(
    system: AsyncStore,
    key: str,
    plans: Sequence[Sequence[Step]],
    timeout_s: float,
    poll: Callable[[], None] = _nothing,
) -> tuple[list[ClientLog], bool]:
    """The clients as tasks on the system's loop; as ``run_threads``: a stop flag checked before
    each step, set at the time limit or when ``poll`` raises, and every task finished (or, past
    ``STOP_GRACE_S``, cancelled) before this returns or raises."""
    api_key = system.api_key(key)
    logs = [ClientLog() for _ in plans]
    loop = system.loop
    stop = asyncio.Event()

    async def client(number: int) -> None:
        log = logs[number]
        for kind, index, message in plans[number]:
            if stop.is_set():
                return
            try:
                pending, deletes = _store_call(system, api_key, kind, index, message)
                reply = await pending
            except Exception as error:
                log.record_error(error)
                continue
            _apply(log, kind, message, _removed(reply) if deletes else None)

    async def everyone() -> None:
        await asyncio.gather(*(client(number) for number in range(len(plans))))

    async def wait(task: asyncio.Task[None], timeout: float) -> None:
        await asyncio.wait({task}, timeout=timeout)

    async def cancel(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    task = loop.create_task(everyone())
    deadline = time.monotonic() + timeout_s
    timed_out = False
    try:
        while not task.done():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            loop.run_until_complete(wait(task, min(POLL_S, left)))
            if not task.done():
                poll()
    finally:
        stop.set()
        loop.run_until_complete(wait(task, STOP_GRACE_S))
        if not task.done():
            loop.run_until_complete(cancel(task))
    if task.cancelled():
        raise RuntimeError(
            f"clients still running {STOP_GRACE_S:g} s after they were told to stop: cancelled"
        )
    task.result()  # the clients catch their errors: anything here is the harness's own
    return logs, timed_out


def analyse(
    result: ConcurrencyResult,
    initial: Sequence[str],
    logs: Sequence[ClientLog],
    final: Sequence[str],
) -> ConcurrencyResult:
    written = set(initial)
    for log in logs:
        written.update(log.appended)
        written.update(log.inserted)
    deleted = collections.Counter(ident for log in logs for ident in log.deleted)
    counts = collections.Counter(final)
    expected = {ident for ident in written if not deleted[ident]}

    result.expected_length = len(expected)
    result.final_length = len(final)
    for ident in written:
        seen = counts.get(ident, 0)
        if ident in expected:
            result.lost += int(seen == 0)
            result.duplicated += max(0, seen - 1)
        elif seen:
            result.resurrected += 1
            result.duplicated += seen - 1
    result.unknown = sum(seen for ident, seen in counts.items() if ident not in written)

    sequences: list[Sequence[str]] = [initial, *(log.appended for log in logs)]
    for sequence in sequences:
        rank = {ident: position for position, ident in enumerate(sequence)}
        previous = -1
        seen_once: set[str] = set()
        for ident in final:
            if ident in rank and ident not in seen_once:
                seen_once.add(ident)
                if rank[ident] < previous:
                    result.out_of_order += 1
                previous = rank[ident]

    result.completed_ops = sum(log.completed for log in logs)
    result.op_errors = sum(log.errors for log in logs)
    result.first_error = next((log.first_error for log in logs if log.first_error), None)
    return result


def initial_conversation(config: BenchConfig) -> list[BenchMessage]:
    width = max(5, len(str(config.concurrency_size)))
    return [
        make_message(f"k{i:0{width}d}", config.message_bytes, "user" if i % 2 == 0 else "assistant")
        for i in range(config.concurrency_size)
    ]
