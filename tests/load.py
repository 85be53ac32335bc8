"""Writers under load for the failover tests, and the checks of what they leave behind.

A ``Load`` runs writers against one URL while a test fails over, kills or migrates: each writer
is a thread with its own ``RedisChatStore``, or a task with its own ``AsyncRedisChatStore`` (all
tasks in one event loop, on a thread of their own). A writer edits its own conversation (append,
insert, delete at an index, delete the last) and now and then appends to a conversation it shares
with the other writers of its group. Every call is recorded with its times and its outcome.
Writers are bounded in count and time and stop by themselves.

After the load, ``check_load`` reads each conversation and its record (the op ids its scripts
recorded) from the master that holds it now, and replays every writer's calls on the model
(tests/model_checker.py). A write the old master acknowledged and the new one never saw is
*lost*: its op id is not in the record. The test says when losses are allowed (the window of a
split brain, for a store without ``wait_replicas``); outside it, any loss, any duplicate, any
wrong returned value or untyped error is a problem. ``DurabilityError`` (applied on a master,
not acknowledged by enough replicas) and ``OutcomeUnknownError`` are unknown outcomes: never
counted as acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from atomic_chat_store import (
    AsyncRedisChatStore,
    ChatMessage,
    ChatStoreError,
    OutcomeUnknownError,
    RedisChatStore,
)
from atomic_chat_store.errors import DurabilityError
from atomic_chat_store.keys import record_key
from model_checker import Append, DeleteAt, DeleteLast, Insert, ModelChecker

# The record must remember every op id of a test: a writer makes a few thousand at most.
OP_WINDOW_SIZE = 100_000
PAUSE = (0.003, 0.012)  # seconds between two calls of one writer
MAX_LENGTH = 150  # above it, a writer's own conversation only shrinks


class NotAcknowledged(Exception):
    """A call the analysis follows both ways: a no-op delete that may have run on a lost master."""


@dataclass(frozen=True)
class WriterSpec:
    name: str
    mode: str  # "sync": a thread with a RedisChatStore; "async": a task with an AsyncRedisChatStore
    wait_replicas: int
    own_key: str
    shared_key: str

    @property
    def group(self) -> str:
        return f"wait_replicas={self.wait_replicas}"


@dataclass
class Outcome:
    """One call of one writer."""

    writer: WriterSpec
    key: str
    operation: Any  # a model_checker operation
    op_id: str
    started: float
    ended: float
    returned: Any = None
    raised: BaseException | None = None

    @property
    def acknowledged(self) -> bool:
        return self.raised is None

    @property
    def changed_something(self) -> bool:
        """An acknowledged write that changed the conversation, so its op id was recorded (a
        delete that found nothing returns None and is not recorded)."""
        return self.acknowledged and self.returned is not None

    def __str__(self) -> str:
        outcome = repr(self.returned) if self.acknowledged else f"raised {self.raised!r}"
        return (
            f"{self.writer.name} {self.operation} op {self.op_id} "
            f"[{self.started:.3f}, {self.ended:.3f}] -> {outcome}"
        )


def writer_specs(
    prefix: str,
    *,
    modes: Sequence[str] = ("sync", "async"),
    waits: Sequence[int] = (0, 1),
    per_group: int = 2,
    key_for: Callable[[str], str] = lambda name: name,
) -> list[WriterSpec]:
    """``per_group`` writers for each mode and each ``wait_replicas``; writers of one
    ``wait_replicas`` share one conversation. ``key_for`` turns a name into a key (to put it
    in a chosen Cluster slot)."""
    specs = []
    for wait in waits:
        shared = key_for(f"{prefix}:shared:w{wait}")
        for mode in modes:
            for index in range(per_group):
                name = f"{prefix}:{mode}:w{wait}:{index}"
                specs.append(WriterSpec(name, mode, wait, key_for(name), shared))
    return specs


def message(text: str) -> ChatMessage:
    return ChatMessage(content=text)


@dataclass(frozen=True)
class Step:
    key: str
    operation: Any
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    op_id: str


class _WriterState:
    """What a writer knows of its own conversation: its length, from the replies it got."""

    def __init__(self, spec: WriterSpec, shared_share: float) -> None:
        self.spec = spec
        self.rng = random.Random(spec.name)
        self.shared_share = shared_share
        self.length: int | None = None  # unknown until a reply says
        self.count = 0

    def next_step(self) -> Step:
        self.count += 1
        text = op_id = f"{self.spec.name}:{self.count}"
        key = self.spec.own_key
        if self.rng.random() < self.shared_share:
            key = self.spec.shared_key
            return Step(key, Append(text), "add_message", (key, message(text)), {}, op_id)
        length, choice = self.length, self.rng.random()
        if length is not None and length > MAX_LENGTH:
            choice = 0.7 + 0.3 * choice
        if not length or choice < 0.4:
            return Step(key, Append(text), "add_message", (key, message(text)), {}, op_id)
        if choice < 0.65:
            index = self.rng.randint(0, length)
            kwargs = {"idx": index}
            return Step(
                key, Insert(index, text), "add_message", (key, message(text)), kwargs, op_id
            )
        if choice < 0.85:
            index = self.rng.randrange(length)
            return Step(key, DeleteAt(index), "delete_message", (key, index), {}, op_id)
        return Step(key, DeleteLast(), "delete_last_message", (key,), {}, op_id)

    def after(self, step: Step, returned: Any, raised: BaseException | None) -> None:
        if step.key != self.spec.own_key:
            return
        if raised is not None:
            self.length = None  # the next call on it appends, and its reply tells the length
        elif isinstance(step.operation, (Append, Insert)):
            self.length = returned
        elif returned is None or self.length is None:
            self.length = None
        else:
            self.length -= 1


class Load:
    """Writers running until ``stop()`` (or ``max_calls`` calls each, or ``max_seconds``)."""

    def __init__(
        self,
        url: str,
        specs: Sequence[WriterSpec],
        *,
        store_options: dict[str, Any] | None = None,
        shared_share: float = 0.2,
        max_calls: int = 10_000,
        max_seconds: float = 90.0,
    ) -> None:
        self.url = url
        self.specs = list(specs)
        self.store_options = {"op_window_size": OP_WINDOW_SIZE, **(store_options or {})}
        self.shared_share = shared_share
        self.max_calls = max_calls
        self.max_seconds = max_seconds
        self.outcomes: list[Outcome] = []  # list.append is atomic: threads append freely
        self.failures: list[str] = []  # a writer that died of something else than a call
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deadline = 0.0

    # -- running

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._deadline = time.monotonic() + self.max_seconds
        for spec in self.specs:
            if spec.mode == "sync":
                self._threads.append(threading.Thread(target=self._sync_writer, args=(spec,)))
        async_specs = [spec for spec in self.specs if spec.mode == "async"]
        if async_specs:
            self._threads.append(
                threading.Thread(target=lambda: asyncio.run(self._async_writers(async_specs)))
            )
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def stop(self, timeout: float = 45.0) -> None:
        """Ask the writers to stop and wait for them: a call in progress finishes first (within
        its retry budget)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        assert not alive, f"writers still running {timeout}s after stop: {alive}"
        assert not self.failures, f"writers failed: {self.failures}"

    def _store_kwargs(self, spec: WriterSpec) -> dict[str, Any]:
        return {"wait_replicas": spec.wait_replicas, **self.store_options}

    def _running(self, state: _WriterState) -> bool:
        return (
            not self._stop.is_set()
            and state.count < self.max_calls
            and time.monotonic() < self._deadline
        )

    def _record(self, spec: WriterSpec, step: Step, started: float, **outcome: Any) -> None:
        self.outcomes.append(
            Outcome(
                spec, step.key, step.operation, step.op_id, started, time.monotonic(), **outcome
            )
        )

    def _sync_writer(self, spec: WriterSpec) -> None:
        store = RedisChatStore.from_url(self.url, **self._store_kwargs(spec))
        state = _WriterState(spec, self.shared_share)
        try:
            while self._running(state):
                step = state.next_step()
                started = time.monotonic()
                method = getattr(store, step.method)
                try:
                    returned = method(*step.args, op_id=step.op_id, **step.kwargs)
                except Exception as error:
                    self._record(spec, step, started, raised=error)
                    state.after(step, None, error)
                else:
                    self._record(spec, step, started, returned=returned)
                    state.after(step, returned, None)
                time.sleep(state.rng.uniform(*PAUSE))
        except BaseException as error:
            self.failures.append(f"{spec.name}: {error!r}")
        finally:
            store.close()

    async def _async_writers(self, specs: Sequence[WriterSpec]) -> None:
        await asyncio.gather(*(self._async_writer(spec) for spec in specs))

    async def _async_writer(self, spec: WriterSpec) -> None:
        store = AsyncRedisChatStore.from_url(self.url, **self._store_kwargs(spec))
        state = _WriterState(spec, self.shared_share)
        try:
            while self._running(state):
                step = state.next_step()
                started = time.monotonic()
                method = getattr(store, step.method)
                try:
                    returned = await method(*step.args, op_id=step.op_id, **step.kwargs)
                except Exception as error:
                    self._record(spec, step, started, raised=error)
                    state.after(step, None, error)
                else:
                    self._record(spec, step, started, returned=returned)
                    state.after(step, returned, None)
                await asyncio.sleep(state.rng.uniform(*PAUSE))
        except BaseException as error:
            self.failures.append(f"{spec.name}: {error!r}")
        finally:
            await store.aclose()

    # -- waiting for progress

    def acknowledged_since(self, since: float) -> Counter[str]:
        """Acknowledged calls that started at or after ``since``, by writer."""
        return Counter(
            outcome.writer.name
            for outcome in list(self.outcomes)
            if outcome.acknowledged and outcome.started >= since
        )

    def wait_progress(self, since: float, calls: int = 10, timeout: float = 30.0) -> None:
        """Until every writer has had ``calls`` calls acknowledged that started after ``since``."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.acknowledged_since(since)
            behind = {spec.name: counts[spec.name] for spec in self.specs}
            if all(count >= calls for count in behind.values()):
                return
            if time.monotonic() > deadline or self.failures:
                raise AssertionError(
                    f"writers without {calls} acknowledged calls within {timeout}s: {behind}; "
                    f"failures: {self.failures}"
                )
            time.sleep(0.05)

    # -- what is where

    @property
    def keys(self) -> list[str]:
        return sorted({spec.own_key for spec in self.specs} | {s.shared_key for s in self.specs})


# ----------------------------------------------------------------------------------------------
# What Redis holds after the load


@dataclass
class Stored:
    texts: list[str]
    op_ids: set[str]  # the op ids the conversation's record holds


def stored_text(raw: bytes) -> str:
    return str(json.loads(raw)["blocks"][0]["text"])


def read_stored(client: redis.Redis, key: str) -> Stored:
    """The conversation and the op ids in its record, as ``client`` (a master) holds them."""
    name = key.encode()
    texts = [stored_text(raw) for raw in client.lrange(name, 0, -1)]
    fields = client.hkeys(record_key(name))
    op_ids = {field[2:].decode() for field in fields if field.startswith(b"o:")}
    return Stored(texts, op_ids)


# ----------------------------------------------------------------------------------------------
# Checks


@dataclass
class GroupReport:
    """What the writers of one ``wait_replicas`` saw, and what was lost."""

    group: str
    calls: int = 0
    acknowledged: int = 0
    lost: list[Outcome] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def lost_window(self, origin: float) -> tuple[float, float] | None:
        """When the lost writes were acknowledged, in seconds after ``origin``."""
        if not self.lost:
            return None
        return (
            min(o.ended for o in self.lost) - origin,
            max(o.ended for o in self.lost) - origin,
        )

    def summary(self, origin: float) -> str:
        window = self.lost_window(origin)
        lost = (
            f"{len(self.lost)} acknowledged writes lost, acknowledged {window[0]:+.2f} s to "
            f"{window[1]:+.2f} s after the event"
            if window
            else "no acknowledged write lost"
        )
        errors = ", ".join(f"{n} {name}" for name, n in sorted(self.errors.items())) or "none"
        latencies = sorted(self.latencies)
        median = statistics.median(latencies) if latencies else 0.0
        longest = latencies[-1] if latencies else 0.0
        return (
            f"{self.group}: {self.calls} calls, {self.acknowledged} acknowledged; {lost}; "
            f"errors: {errors}; latency median {median * 1000:.1f} ms, longest {longest:.2f} s"
        )


@dataclass
class LoadReport:
    groups: dict[str, GroupReport]
    problems: list[str]

    def group(self, wait_replicas: int) -> GroupReport:
        return self.groups[f"wait_replicas={wait_replicas}"]


def check_load(
    load: Load,
    stored: dict[str, Stored],
    *,
    losses_allowed: dict[int, tuple[float, float]] | None = None,
) -> LoadReport:
    """Check every conversation of ``load`` against the model. ``losses_allowed`` maps a
    ``wait_replicas`` to the interval in which a write of that group may have been acknowledged
    and lost (a split brain's window); elsewhere any loss is a problem."""
    allowed = losses_allowed or {}
    outcomes = sorted(load.outcomes, key=lambda outcome: outcome.started)
    groups = {spec.group: GroupReport(spec.group) for spec in load.specs}
    problems: list[str] = []
    for outcome in outcomes:
        group = groups[outcome.writer.group]
        group.calls += 1
        group.latencies.append(outcome.ended - outcome.started)
        if outcome.acknowledged:
            group.acknowledged += 1
        else:
            group.errors[type(outcome.raised).__name__] += 1
            if not isinstance(outcome.raised, ChatStoreError):
                problems.append(f"untyped error: {outcome}")

    by_key: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_key[outcome.key].append(outcome)
    shared_keys = {spec.shared_key for spec in load.specs}
    for key, calls in by_key.items():
        wait = calls[0].writer.wait_replicas
        window = allowed.get(wait)
        lost = [o for o in calls if o.changed_something and o.op_id not in stored[key].op_ids]
        for outcome in lost:
            if window is None or not window[0] <= outcome.ended <= window[1]:
                problems.append(f"acknowledged, then lost: {outcome}")
        groups[calls[0].writer.group].lost.extend(lost)
        if key in shared_keys:
            problems += _check_shared(key, calls, stored[key], set(id(o) for o in lost))
        else:
            problems += _check_own(key, calls, stored[key], set(id(o) for o in lost), window)
    return LoadReport(groups, problems)


def _check_own(
    key: str,
    calls: list[Outcome],
    stored: Stored,
    lost: set[int],
    window: tuple[float, float] | None,
) -> list[str]:
    """One writer's own conversation: its calls, minus the lost ones, replayed on the model must
    give every returned value and the list Redis holds."""
    checker = ModelChecker(
        unknown_outcome=(OutcomeUnknownError, DurabilityError, NotAcknowledged),
        typed_errors=(ChatStoreError,),
    )
    for outcome in calls:
        if id(outcome) in lost:
            continue
        if (
            window is not None
            and outcome.acknowledged
            and outcome.returned is None
            and window[0] <= outcome.ended <= window[1]
        ):
            # A delete that found nothing, in the window: on the lost master or on the new one.
            checker.record(outcome.operation, raised=NotAcknowledged())
            continue
        checker.record(outcome.operation, returned=outcome.returned, raised=outcome.raised)
    report = checker.check(stored.texts)
    return [] if report.ok else [f"{key}: {report}"]


def _check_shared(key: str, calls: list[Outcome], stored: Stored, lost: set[int]) -> list[str]:
    """A conversation several writers append to at once: each message once at most, each kept
    acknowledged append where its returned length says (appends only: nothing moves it), each
    writer's messages in its order, and the record and the list agreeing."""
    problems: list[str] = []
    counts = Counter(stored.texts)
    attempted = {outcome.operation.text: outcome for outcome in calls}
    for text, count in counts.items():
        if count > 1:
            problems.append(f"{key}: {text!r} stored {count} times")
        if text not in attempted:
            problems.append(f"{key}: {text!r} stored, never written")
    position = {text: index for index, text in enumerate(stored.texts)}
    for outcome in calls:
        text = outcome.operation.text
        in_record = outcome.op_id in stored.op_ids
        if (text in position) != in_record:
            problems.append(f"{key}: the list and the record disagree on {outcome}")
        kept = outcome.acknowledged and id(outcome) not in lost
        if kept and position.get(text) != outcome.returned - 1:
            problems.append(
                f"{key}: {outcome} but the message is at {position.get(text)} of "
                f"{len(stored.texts)}"
            )
    by_writer: dict[str, list[int]] = defaultdict(list)
    for outcome in calls:
        if outcome.operation.text in position:
            by_writer[outcome.writer.name].append(position[outcome.operation.text])
    for writer, positions in by_writer.items():
        if positions != sorted(positions):
            problems.append(f"{key}: the messages of {writer} are out of order")
    return problems


# ----------------------------------------------------------------------------------------------
# Measurements, printed at the end of the session


@pytest.fixture(scope="session")
def measurements(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Lines a test measured (a failover window, latencies): shown at the end of the run."""
    lines: list[str] = []
    yield lines
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not lines:
        return
    with capture.global_and_fixture_disabled():  # else the output is captured, and dropped
        reporter.write_line("")
        reporter.write_sep("-", "measured")
        for line in lines:
            reporter.write_line(line)
