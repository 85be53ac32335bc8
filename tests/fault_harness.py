"""Drive a store through faults and judge what it did against a model (a Python list).

- ``open_store``: a store as the matrix of the fault tests makes it: sync or async (the async
  store behind a blocking adapter, on a private event loop), on a client the user built
  (``redis.Redis(host, port, ...)``: redis-py's default Retry) or on its own (``from_url``: no
  redis-py retry, only the store's);
- ``Workload``: one fixed sequence of every kind of write (set, delete all, append, extend,
  inserts at the head, middle, end and negative indexes, deletes at the head, middle and out of
  range, delete last, two batches) and reads, each recorded in a ``ModelChecker``; a test puts
  a fault around any step by name (``hooks``);
- ``carrying``/``running``/``executing``: predicates that pick a step's request in the proxy;
- ``verdict``: consistent with "recorded" op ids, at least the named anomalies without.

Only the API that the code before exactly-once writes also has is used at import time, so
that tests/test_fault_regressions.py runs against that code too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from atomic_chat_store import (
    AsyncRedisChatStore,
    BatchError,
    ChatMessage,
    ChatStoreError,
    RedisChatStore,
    errors,
)
from atomic_chat_store import operations as ops
from faults import FaultProxy, Request, wait_until
from model_checker import (
    Append,
    Call,
    DeleteAll,
    DeleteAt,
    DeleteLast,
    Extend,
    Insert,
    ModelChecker,
    Read,
    Replace,
    Report,
)

HOST = "127.0.0.1"
MODES = ("sync", "async")
# "user": redis.Redis(host, port, ...) built by the caller, with redis-py's default Retry (10
# retries on ConnectionError and TimeoutError): redis-py itself sends a write again.
# "own": the store's client from a URL (redis-py gives a pool from a URL no retry): only the
# store sends again.
CLIENTS = ("user", "own")
# Found by name: the code before exactly-once writes has no such error.
OUTCOME_UNKNOWN: tuple[type[BaseException], ...] = tuple(
    getattr(errors, name) for name in ("OutcomeUnknownError",) if hasattr(errors, name)
)


def msg(text: str) -> ChatMessage:
    return ChatMessage(content=text)


def msgs(*texts: str) -> list[ChatMessage]:
    return [msg(text) for text in texts]


def stored_texts(client: redis.Redis, key: str) -> list[str]:
    """The conversation as Redis holds it (LRANGE): each message's text; anything that is not
    a message (a mark left behind) as its repr, so the checker reports it."""
    texts = []
    for raw in client.lrange(key, 0, -1):
        try:
            texts.append(json.loads(raw)["blocks"][0]["text"])
        except (ValueError, KeyError, IndexError, TypeError):
            texts.append(repr(raw))
    return texts


def seed(client: redis.Redis, key: str, texts: Sequence[str]) -> None:
    client.rpush(key, *[msg(text).model_dump_json() for text in texts])


def redis_url(port: int, username: str | None = None, password: str | None = None) -> str:
    credentials = f"{username}:{password}@" if username else ""
    return f"redis://{credentials}{HOST}:{port}/0"


# ----------------------------------------------------------------------------------------------
# The stores of the matrix


class BlockingAsync:
    """An AsyncRedisChatStore called from sync code: each coroutine runs to completion on a
    private event loop (the same loop for every call, as an application's would be)."""

    def __init__(self, store: AsyncRedisChatStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute
        return lambda *args, **kwargs: self.loop.run_until_complete(attribute(*args, **kwargs))


@contextmanager
def open_store(
    mode: str,
    client: str,
    port: int,
    *,
    socket_timeout: float,
    username: str | None = None,
    password: str | None = None,
    **store_options: Any,
) -> Iterator[Any]:
    """A store on 127.0.0.1:``port`` (a server or a FaultProxy): ``mode`` sync or async (then
    behind BlockingAsync), ``client`` "user" or "own" (see CLIENTS); closed on exit."""
    assert mode in MODES and client in CLIENTS
    auth = {"username": username, "password": password} if username else {}
    url = redis_url(port, username, password)
    if mode == "sync":
        if client == "user":
            user_client = redis.Redis(host=HOST, port=port, socket_timeout=socket_timeout, **auth)
            try:
                yield RedisChatStore(user_client, **store_options)
            finally:
                user_client.close()
        else:
            store = RedisChatStore.from_url(url, socket_timeout=socket_timeout, **store_options)
            try:
                yield store
            finally:
                store.close()
        return
    loop = asyncio.new_event_loop()
    try:
        if client == "user":
            async_client = redis.asyncio.Redis(
                host=HOST, port=port, socket_timeout=socket_timeout, **auth
            )
            try:
                yield BlockingAsync(AsyncRedisChatStore(async_client, **store_options), loop)
            finally:
                loop.run_until_complete(async_client.aclose())
        else:
            async_store = AsyncRedisChatStore.from_url(
                url, socket_timeout=socket_timeout, **store_options
            )
            try:
                yield BlockingAsync(async_store, loop)
            finally:
                loop.run_until_complete(async_store.aclose())
    finally:
        loop.close()


# ----------------------------------------------------------------------------------------------
# Picking a step's request in the proxy


def text_needle(text: str) -> bytes:
    return f'"text":"{text}"'.encode()


def carrying(text: str) -> Callable[[Request], bool]:
    """The EVALSHA whose arguments hold the message ``text``."""
    needle = text_needle(text)
    return lambda request: request.name == "EVALSHA" and any(needle in arg for arg in request.args)


def running(script: str) -> Callable[[Request], bool]:
    """An EVALSHA of ``script`` (lua/<script>.lua) as the store sends it now: call it after any
    monkeypatch of the scripts."""
    from atomic_chat_store import base  # not in the code before exactly-once writes

    sha = base.scripts()[script].sha.encode()
    return lambda request: request.name == "EVALSHA" and request.args[1:2] == (sha,)


def executing(request: Request) -> bool:
    """The EXEC of a transaction."""
    return request.name == "EXEC"


def seen(proxy: FaultProxy, kind: str, where: Callable[[Request], bool]) -> int:
    """How many requests the proxy forwarded (``kind`` "request") or answered ("reply") that
    ``where`` picks."""
    return len(
        [
            event
            for event in proxy.events
            if event.kind == kind and where(Request(event.args, event.connection))
        ]
    )


def load_scripts(client: redis.Redis) -> None:
    """Load the scripts the store will send (as monkeypatched), so that a rule armed on a
    step's EVALSHA meets the request that runs, not a NOSCRIPT answer."""
    from atomic_chat_store import base

    for script in base.scripts().values():
        client.script_load(script.source)


# ----------------------------------------------------------------------------------------------
# The workload


@dataclass(frozen=True)
class Count:
    """The model of ``count``: the length, nothing changes."""

    def apply(self, messages: list[str]) -> int:
        return len(messages)


@dataclass
class Step:
    """One call of the workload. ``send(op_id)`` makes it (op_id None: the store makes one);
    a batch has ``parts`` instead: (model, build(config) -> Operation) each."""

    name: str
    model: Any = None
    send: Callable[[str | None], Any] | None = None
    parts: list[tuple[Any, Callable[[Any], Any]]] = field(default_factory=list)
    transaction: bool = True
    operations: list[Any] | None = None  # a batch's Operation values, built on first send
    op_id: str | None = None  # the caller's own op id for this step, else the store makes one


def new_checker(initial: Sequence[str] = ()) -> ModelChecker:
    return ModelChecker(initial, unknown_outcome=OUTCOME_UNKNOWN, typed_errors=(ChatStoreError,))


class Workload:
    """Every kind of write and read on conversation ``key`` through ``store``, each recorded in
    ``checker``. ``run(hooks)`` performs the steps in order; a hook ``hook(workload, step)``
    replaces ``workload.perform(step)`` for its step, to put a fault around it."""

    def __init__(
        self, store: Any, key: str = "chat", *, initial: Sequence[str] = (), tag: str = ""
    ) -> None:
        self.store = store
        self.key = key
        self.tag = tag or uuid.uuid4().hex[:8]
        self.checker = new_checker(initial)
        self.steps = self._steps()
        self.by_name = {step.name: step for step in self.steps}

    def _steps(self) -> list[Step]:
        store, key = self.store, self.key

        def with_id(op_id: str | None) -> dict[str, str]:
            return {} if op_id is None else {"op_id": op_id}

        def single(name: str, model: Any, send: Callable[[dict[str, str]], Any]) -> Step:
            return Step(name, model, lambda op_id: send(with_id(op_id)))

        return [
            single(
                "set_p",
                Replace(("p0", "p1")),
                lambda i: store.set_messages(key, msgs("p0", "p1"), **i),
            ),
            single("wipe", DeleteAll(), lambda i: store.delete_messages(key, **i)),
            single("wipe_empty", DeleteAll(), lambda i: store.delete_messages(key, **i)),
            single(
                "set",
                Replace(("s0", "s1", "s2", "s3", "s4")),
                lambda i: store.set_messages(key, msgs("s0", "s1", "s2", "s3", "s4"), **i),
            ),
            single("append", Append("a0"), lambda i: store.add_message(key, msg("a0"), **i)),
            single(
                "extend",
                Extend(("e0", "e1")),
                lambda i: store.add_messages(key, msgs("e0", "e1"), **i),
            ),
            single(
                "insert_mid", Insert(3, "i0"), lambda i: store.add_message(key, msg("i0"), 3, **i)
            ),
            single(
                "insert_head", Insert(0, "i1"), lambda i: store.add_message(key, msg("i1"), 0, **i)
            ),
            single(
                "insert_neg", Insert(-2, "i2"), lambda i: store.add_message(key, msg("i2"), -2, **i)
            ),
            Step(
                "insert_end",
                Insert(100, "i3"),
                lambda op_id: store.add_message(key, msg("i3"), 100, op_id=op_id),
                op_id=f"insert-end-{self.tag}",  # a caller's own op id, on one step
            ),
            single("delete_mid", DeleteAt(4), lambda i: store.delete_message(key, 4, **i)),
            single("delete_head", DeleteAt(0), lambda i: store.delete_message(key, 0, **i)),
            single("delete_out", DeleteAt(99), lambda i: store.delete_message(key, 99, **i)),
            single("delete_last", DeleteLast(), lambda i: store.delete_last_message(key, **i)),
            Step("read", Read(), lambda _: store.get_messages(key)),
            Step(
                "batch_tx",
                parts=[
                    (Append("b0"), lambda c: ops.add_message(c, key, msg("b0"))),
                    (Insert(1, "b1"), lambda c: ops.add_message(c, key, msg("b1"), 1)),
                    (DeleteAt(3), lambda c: ops.delete_message(c, key, 3)),
                    (DeleteLast(), lambda c: ops.delete_last_message(c, key)),
                    (Append("b2"), lambda c: ops.add_message(c, key, msg("b2"))),
                    (Count(), lambda c: ops.count(c, key)),
                ],
                transaction=True,
            ),
            Step(
                "batch_pipe",
                parts=[
                    (Append("c0"), lambda c: ops.add_message(c, key, msg("c0"))),
                    (DeleteAt(1), lambda c: ops.delete_message(c, key, 1)),
                    (Insert(-1, "c1"), lambda c: ops.add_message(c, key, msg("c1"), -1)),
                    (Count(), lambda c: ops.count(c, key)),
                ],
                transaction=False,
            ),
            Step("count", Count(), lambda _: store.count(key)),
            Step("read_end", Read(), lambda _: store.get_messages(key)),
        ]

    # -- running ----------------------------------------------------------------------------------

    def run(
        self,
        hooks: dict[str, Callable[[Workload, Step], None]] | None = None,
        names: Sequence[str] | None = None,
    ) -> Workload:
        hooks = hooks or {}
        unknown = set(hooks) - set(self.by_name)
        assert not unknown, f"hooks for no step: {unknown}"
        for step in self.steps if names is None else [self.by_name[name] for name in names]:
            hook = hooks.get(step.name)
            if hook is None:
                self.perform(step)
            else:
                hook(self, step)
        return self

    def perform(self, step: Step, op_id: str | None = None) -> list[Call]:
        """Make the step's call (again, with ``op_id``, to re-send it); record it."""
        if step.parts:
            return self._perform_batch(step, resend=op_id is not None)
        assert step.send is not None
        send, op_id = step.send, op_id or step.op_id
        call = self.checker.call(step.model, lambda: send(op_id), op_id)
        if isinstance(call.raised, OUTCOME_UNKNOWN) and call.op_id is None:
            call.op_id = call.raised.op_id  # type: ignore[attr-defined]
        return [call]

    def resend(self, step: Step, error: BaseException) -> list[Call]:
        """Send again what ended in ``error`` (OutcomeUnknownError): with its op id, or for a
        batch the same Operation values."""
        assert isinstance(error, OUTCOME_UNKNOWN), error
        return self.perform(step, op_id=error.op_id)  # type: ignore[attr-defined]

    def _perform_batch(self, step: Step, *, resend: bool) -> list[Call]:
        if step.operations is None or not resend:
            step.operations = [build(self.store.config) for _, build in step.parts]
        operations = step.operations
        results: list[Any]
        try:
            results = list(self.store.execute_many(operations, transaction=step.transaction))
        except BatchError as error:
            results = list(error.results)
        except Exception as error:
            results = [error] * len(operations)
        calls = []
        for (model, _), operation, result in zip(step.parts, operations, results, strict=True):
            op_id = getattr(operation, "op_id", None)
            if isinstance(result, BaseException):
                calls.append(self.checker.record(model, op_id, raised=result))
            else:
                calls.append(self.checker.record(model, op_id, returned=result))
        return calls

    def burst(self, count: int, prefix: str = "x") -> None:
        """``count`` appends, one call each."""
        for n in range(count):
            text = f"{prefix}{n}"
            self.checker.call(
                Append(text), lambda text=text: self.store.add_message(self.key, msg(text))
            )

    # -- judging ----------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        return self.checker.calls

    def raised(self) -> list[BaseException]:
        return [call.raised for call in self.calls if call.raised is not None]

    def check(self, direct: redis.Redis) -> Report:
        """The conversation as Redis holds it now (LRANGE on ``direct``) against the model."""
        return self.checker.check(stored_texts(direct, self.key))


def anomalies(report: Report) -> set[str]:
    kinds = {
        "lost": report.lost,
        "duplicated": report.duplicated,
        "unexpected": report.unexpected,
        "reordered": report.reordered,
        "wrong_returns": report.wrong_returns,
        "untyped_errors": report.untyped_errors,
    }
    return {kind for kind, found in kinds.items() if found}


def verdict(report: Report, record: str, expected: set[str]) -> None:
    """With op ids recorded: consistent. Without: not, with at least the ``expected`` kinds of
    anomaly (so the test is shown to fail when ids are not recorded)."""
    if record == "recorded":
        assert report.ok, str(report)
        return
    assert not report.ok, f"the unrecorded scripts should have gone wrong: {report}"
    assert expected <= anomalies(report), (
        f"expected {sorted(expected)} among the anomalies, found {sorted(anomalies(report))}:\n"
        f"{report}"
    )


# ----------------------------------------------------------------------------------------------
# Threads and the server's state


@contextmanager
def background(action: Callable[[], object], *, timeout: float = 30.0) -> Iterator[None]:
    """Run ``action`` in a thread for the block; on exit, join it (bounded) and raise what it
    raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=run, name="fault", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout)
    assert not thread.is_alive(), f"the fault thread did not end within {timeout}s"
    if failures:
        raise failures[0]


def server_asleep(port: int) -> bool:
    """True while the server answers nothing (DEBUG SLEEP): a PING times out at 50 ms."""
    probe = redis.Redis(host=HOST, port=port, socket_timeout=0.05, retry=None)
    try:
        probe.ping()
    except redis.TimeoutError:
        return True
    finally:
        probe.close()
    return False


@contextmanager
def debug_sleep(port: int, seconds: float) -> Iterator[None]:
    """The server sleeps (DEBUG SLEEP, from a connection of its own) from the start of the
    block; the block's calls reach it asleep. Waits for the sleeper on exit."""
    sleeper = redis.Redis(host=HOST, port=port, socket_timeout=seconds + 10, retry=None)
    sleeper.ping()

    def sleep() -> None:
        # Killed in its sleep (CLIENT KILL TYPE normal): the sleep happened all the same.
        with contextlib.suppress(redis.ConnectionError):
            sleeper.execute_command("DEBUG", "SLEEP", seconds)

    try:
        with background(sleep):
            wait_until(lambda: server_asleep(port), timeout=5, interval=0.005)
            yield
    finally:
        sleeper.close()
