"""The benchmark run: its server, its keys, the latency cells and the concurrency section.

Every key the run touches is under ``acs-bench:<uuid>:``; the run removes them when it ends,
on error and Ctrl-C too, and never flushes anything. Without a URL the run starts its own
redis-server (``atomic_chat_store.server.RedisServer``) and stops it at the end.

For one operation and one N, the systems take turns, one repetition each (A B C D, then
B C D A, ...), so drift of the machine lands on all of them alike. Before the timed
repetitions, one untimed pass per system on clients that count what they send gives the round
trips and checks the result (the list left in Redis and the returned value, against a Python
list). Between repetitions the conversation is put back to its starting state outside the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from ..connection import async_client_from_url, client_from_url, parse_url
from ..operations import StoreConfig
from ..scripts import scripts
from ..server import RedisServer
from . import concurrency, record
from .counting import Counter, counting_async_client, counting_client
from .data import BenchMessage, describe_difference, idents, make_conversation, make_message
from .machine import describe_machine
from .model import (
    ALL_SYSTEMS,
    EXTRA_SYSTEMS,
    LAST_COUNT,
    NO_SUCH_OPERATION,
    OPERATIONS,
    SYSTEM_LABELS,
    SYSTEMS,
    BenchConfig,
    BenchReport,
    Cell,
    ConcurrencyResult,
    RecordCost,
)
from .systems import (
    SEED_PACKAGE,
    AsyncStore,
    Call,
    Floor,
    OpArgs,
    Seed,
    SeedClasses,
    SyncStore,
    System,
    UnrecordedStore,
    load_seed,
)

# Called with (units done, units in all, what is running now).
ProgressCallback = Callable[[float, float, str], None]

KEY_PREFIX = "acs-bench"
SOCKET_TIMEOUT_S = 60.0
PUSH_CHUNK = 1000
# The systems whose writes record op ids.
RECORDING_SYSTEMS = frozenset({"sync", "async"})
# Outside the clock, to undo an insert by position: no JSON text contains a 0xFF byte.
MARK = b"\xffacs-bench-mark"


def new_prefix() -> str:
    return f"{KEY_PREFIX}:{uuid.uuid4().hex}:"


def remove_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (an incremental SCAN, never KEYS, never FLUSH*). On a
    Cluster, redis-py's ``RedisCluster.scan_iter`` scans every primary, and its ``delete``
    splits the keys by slot."""
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(client.delete(*batch))
            batch.clear()
    if batch:
        removed += int(client.delete(*batch))
    return removed


@dataclass
class _Run:
    config: BenchConfig
    url: str
    prefix: str
    loop: asyncio.AbstractEventLoop
    admin: redis.Redis
    seed: SeedClasses | None
    progress: ProgressCallback
    systems: dict[str, System] = field(default_factory=dict)
    counting: dict[str, System] = field(default_factory=dict)
    counter: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    # system -> why it could not be built (its cells and concurrency row are errors saying so)
    unavailable: dict[str, str] = field(default_factory=dict)
    units_done: float = 0.0
    units_total: float = 1.0

    def report_progress(self, extra: float, description: str) -> None:
        self.progress(min(self.units_done + extra, self.units_total), self.units_total, description)

    # -- state of a conversation, outside the clock ----------------------------------------

    def redis_key(self, local: str) -> str:
        return self.prefix + local

    def reset(self, local: str, messages: Sequence[BenchMessage]) -> None:
        reset_conversation(self.admin, self.redis_key(local), messages)

    def contents(self, local: str) -> list[str]:
        return idents(self.admin.lrange(self.redis_key(local), 0, -1))

    def restore(self, local: str, args: OpArgs, canonical: Sequence[BenchMessage]) -> None:
        restore_conversation(self.admin, self.redis_key(local), args, canonical)


def reset_conversation(client: redis.Redis, key: str, messages: Sequence[BenchMessage]) -> None:
    """Make ``key`` hold exactly ``messages`` (one round trip)."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(key)
    for first in range(0, len(messages), PUSH_CHUNK):
        pipe.rpush(key, *(m.payload for m in messages[first : first + PUSH_CHUNK]))
    pipe.execute()


def restore_conversation(
    client: redis.Redis, key: str, args: OpArgs, canonical: Sequence[BenchMessage]
) -> None:
    """Undo one correct operation on ``canonical`` cheaply (set_all and the reads leave nothing
    to undo); if that cannot work, rewrite the list."""
    raw: Any = client  # redis-py types values as str; bytes are what it sends anyway
    if args.op == "append":
        client.rpop(key)
    elif args.op == "insert_middle":
        pipe = raw.pipeline(transaction=False)
        pipe.lset(key, args.index, MARK)
        pipe.lrem(key, 1, MARK)
        pipe.execute()
    elif args.op == "delete_middle":
        removed = canonical[args.index]
        if args.index + 1 < len(canonical):
            after = canonical[args.index + 1]
            if raw.linsert(key, "BEFORE", after.payload, removed.payload) == -1:
                reset_conversation(client, key, canonical)
        else:
            client.rpush(key, removed.payload)
    elif args.op == "replace_middle":
        raw.lset(key, args.index, canonical[args.index].payload)
    elif args.op == "delete_last":
        client.rpush(key, canonical[-1].payload)


def expected_result(args: OpArgs, canonical: Sequence[BenchMessage]) -> tuple[list[str], Any]:
    """The list a Python list would hold after the operation, and the value to return.

    For append, insert and set, None is also accepted as the reply: the seed's methods (like
    ``BaseChatStore``'s) return nothing there.
    """
    ids = [m.ident for m in canonical]
    if args.op == "append":
        return [*ids, args.new.ident], len(ids) + 1
    if args.op == "insert_middle":
        return [*ids[: args.index], args.new.ident, *ids[args.index :]], len(ids) + 1
    if args.op == "delete_middle":
        return ids[: args.index] + ids[args.index + 1 :], ids[args.index]
    if args.op == "replace_middle":
        return [*ids[: args.index], args.new.ident, *ids[args.index + 1 :]], ids[args.index]
    if args.op == "delete_last":
        return ids[:-1], ids[-1]
    if args.op == "set_all":
        return [m.ident for m in args.target], len(args.target)
    if args.op == "get_all":
        return ids, ids
    if args.op == "get_last":
        return ids, ids[-LAST_COUNT:]
    raise ValueError(f"unknown operation {args.op!r}")


def check_result(
    args: OpArgs, canonical: Sequence[BenchMessage], after: list[str], reply: Any
) -> tuple[bool, str]:
    expected_list, expected_reply = expected_result(args, canonical)
    problems = []
    difference = describe_difference(expected_list, after)
    if difference:
        problems.append(difference)
    reply_may_be_none = args.op in ("append", "insert_middle", "set_all")
    if reply is None and reply_may_be_none:
        pass
    elif reply != expected_reply:
        if isinstance(expected_reply, list) and isinstance(reply, list):
            problems.append("returned " + (describe_difference(expected_reply, reply) or "?"))
        else:
            problems.append(f"returned {_short(reply)}, expected {_short(expected_reply)}")
    return not problems, "; ".join(problems)


@dataclass(frozen=True)
class Checked:
    """One untimed run of an operation: whether its result was right, and how long it took."""

    correct: bool
    detail: str  # what was wrong, if anything
    elapsed_s: float


def check_operation(
    admin: redis.Redis,
    system: System,
    args: OpArgs,
    local: str,
    canonical: Sequence[BenchMessage],
) -> Checked:
    """Put the conversation ``system.prefix + local`` to ``canonical``, run ``args`` on it once,
    check the list left and the reply against a Python list's, and put it back again."""
    key = system.prefix + local
    reset_conversation(admin, key, canonical)
    call = system.call(args, local)
    started = time.perf_counter()
    reply = system.run(call)
    elapsed = time.perf_counter() - started
    after = idents(admin.lrange(key, 0, -1))
    correct, detail = check_result(args, canonical, after, system.normalize(args, reply))
    reset_conversation(admin, key, canonical)
    return Checked(correct, detail, elapsed)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _CellRun:
    """One system's share of an (operation, N) group."""

    def __init__(self, system: System, counted: System, cell: Cell, local: str) -> None:
        self.system = system
        self.counted = counted
        self.cell = cell
        self.local = local
        self.spent = 0.0
        self.calls: dict[str, Call] = {}
        self.state = "canonical"  # or "replacement", after set_all
        self.full_reset = False  # the operation was wrong: rewrite the list after each repetition

    def done(self, config: BenchConfig) -> bool:
        if self.cell.status != "ok":
            return True
        taken = len(self.cell.samples)
        return taken >= config.repeat or (
            taken >= config.min_repeat and self.spent >= config.budget_s
        )


def _measure_group(
    run: _Run,
    op: str,
    size: int,
    canonical: list[BenchMessage],
    replacement: list[BenchMessage],
    new: BenchMessage,
    cells: dict[str, Cell],
) -> None:
    config = run.config
    index = size // 2
    base = OpArgs(op, size, index, new, canonical[index] if index < size else None)
    targets = {"canonical": canonical, "replacement": replacement}
    runs = []
    for name, system in run.systems.items():
        cell = cells.get(name)
        if cell is not None and cell.status == "ok":  # a system with the operation
            runs.append(_CellRun(system, run.counting[name], cell, f"{op}:{size}:{name}"))

    def describe(detail: str) -> str:
        return f"{op} N={size:,} {detail}"

    # Untimed pass: round trips and the result.
    for cell_run in runs:
        run.report_progress(0, describe(f"{cell_run.system.name}: checking"))
        cell = cell_run.cell
        args = OpArgs(op, size, index, new, base.pivot, replacement if op == "set_all" else ())
        try:
            run.counter.reset()  # only the counting clients count: the admin client does not
            checked = check_operation(run.admin, cell_run.counted, args, cell_run.local, canonical)
            cell.round_trips, cell.commands = run.counter.round_trips, run.counter.commands
            cell.correct, cell.detail = checked.correct, checked.detail
            cell_run.full_reset = not cell.correct
            if op == "set_all":
                for state, messages in targets.items():
                    state_args = OpArgs(op, size, index, new, base.pivot, messages)
                    cell_run.calls[state] = cell_run.system.call(state_args, cell_run.local)
            else:
                cell_run.calls["canonical"] = cell_run.system.call(base, cell_run.local)
        except Exception as error:
            cell.status, cell.error = "error", f"{type(error).__name__}: {error}"

    if op == "append":
        # The store's records at their op id window: each timed append also evicts the oldest id,
        # as in a conversation's steady state (see record.fill_record). The rows of the other
        # writes start with a record of one id (their untimed pass).
        for cell_run in runs:
            if cell_run.system.name in RECORDING_SYSTEMS and cell_run.cell.status == "ok":
                record.fill_record(run.admin, run.prefix, cell_run.local, new)
                run.reset(cell_run.local, canonical)

    # Timed repetitions, interleaved; the harness's own objects frozen out of the cyclic GC.
    with _harness_frozen():
        for repetition in range(config.repeat):
            active = [cell_run for cell_run in runs if not cell_run.done(config)]
            if not active:
                break
            shift = repetition % len(active)
            for cell_run in active[shift:] + active[:shift]:
                cell = cell_run.cell
                started = time.perf_counter()
                try:
                    if op == "set_all":
                        target = "replacement" if cell_run.state == "canonical" else "canonical"
                        elapsed, _ = cell_run.system.timed(cell_run.calls[target])
                        if cell_run.full_reset:
                            run.reset(cell_run.local, canonical)
                        else:
                            cell_run.state = target
                    else:
                        elapsed, _ = cell_run.system.timed(cell_run.calls["canonical"])
                        if cell_run.full_reset:
                            run.reset(cell_run.local, canonical)
                        else:
                            run.restore(cell_run.local, base, canonical)
                except Exception as error:
                    cell.status, cell.error = "error", f"{type(error).__name__}: {error}"
                    continue
                cell.samples.append(elapsed)
                cell_run.spent += time.perf_counter() - started
            run.report_progress(
                _group_fraction(runs, config) * len(runs), describe(f"repetition {repetition + 1}")
            )

    # Did the conversation really start from the same state every time?
    for cell_run in runs:
        cell = cell_run.cell
        cell.capped = cell.status == "ok" and len(cell.samples) < config.repeat
        if cell.status != "ok":
            continue
        try:
            expected = [m.ident for m in targets[cell_run.state]]
            drift = describe_difference(expected, run.contents(cell_run.local))
        except redis.RedisError as error:
            drift = f"could not be read back ({error})"
        if drift:
            cell.correct = False
            cell.detail = "; ".join(
                filter(None, [cell.detail, f"state between repetitions: {drift}"])
            )
    with contextlib.suppress(redis.RedisError):
        for cell_run in runs:  # the list and its record (the store's systems made one)
            run.admin.delete(*record.keys_of(run.admin, run.prefix, cell_run.local))


@contextlib.contextmanager
def _harness_frozen() -> Iterator[None]:
    """Move every object alive now (the conversations, the message objects, llama-index's
    modules: the harness) to the GC's permanent generation for the timed runs. Collections the
    operations trigger then scan what the operations allocate, not the harness: without this, a
    full collection over the harness's heap (about 100 ms here) lands inside whichever run
    allocates enough, e.g. every get of 10,000 messages, whatever the system."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _group_fraction(runs: Sequence[_CellRun], config: BenchConfig) -> float:
    fractions = []
    for cell_run in runs:
        if cell_run.done(config):
            fractions.append(1.0)
        else:
            by_count = len(cell_run.cell.samples) / config.repeat
            by_time = (
                cell_run.spent / config.budget_s
                if len(cell_run.cell.samples) >= config.min_repeat
                else 0.0
            )
            fractions.append(min(1.0, max(by_count, by_time)))
    return sum(fractions) / len(fractions) if fractions else 1.0


def _measure_latency(run: _Run) -> list[Cell]:
    config = run.config
    all_cells: list[Cell] = []
    for size in config.sizes:
        canonical = make_conversation("c", size, config.message_bytes)
        replacement = make_conversation("r", size, config.message_bytes)
        new = make_message("new", config.message_bytes)
        for op in OPERATIONS:
            names = _cell_systems(run, op)
            cells = {name: Cell(name, op, size) for name in names}
            for name in names:
                system = run.systems.get(name)
                if name in run.unavailable:
                    cells[name].status, cells[name].error = "error", run.unavailable[name]
                elif system is None:
                    cells[name].status = "not installed"
                elif not system.supports(op):
                    cells[name].status = NO_SUCH_OPERATION
                    cells[name].detail = _no_such_operation(run, name)
            _measure_group(run, op, size, canonical, replacement, new, cells)
            run.units_done += len(names)
            all_cells.extend(cells[name] for name in names)
    return all_cells


def _cell_systems(run: _Run, op: str) -> list[str]:
    """The systems with a cell for ``op``: the four always, an extra one where it has ``op``."""
    extra = [
        name
        for name in EXTRA_SYSTEMS
        if (system := run.systems.get(name)) is not None and system.supports(op)
    ]
    return [*SYSTEMS, *extra]


def _no_such_operation(run: _Run, name: str) -> str:
    if name == "seed" and run.seed is not None:
        return f"the seed ({SEED_PACKAGE} {run.seed.version}) has no such operation"
    return f"{SYSTEM_LABELS[name]} has no such operation"


def _measure_record_cost(run: _Run) -> RecordCost:
    config = run.config
    cost = RecordCost(window_size=StoreConfig().op_window_size)
    for size in config.sizes:
        run.report_progress(0, f"record cost: bytes at N={size:,}")
        cost.bytes.append(
            record.measure_record_bytes(run.admin, run.prefix, size, config.message_bytes)
        )
        run.units_done += 1
    run.report_progress(0, "record cost: time per call (INFO commandstats)")
    try:
        cost.calls = record.measure_calls(
            run.admin, run.prefix, config.repeat, config.message_bytes
        )
    except redis.RedisError as error:  # e.g. INFO refused by an ACL
        cost.error = f"{type(error).__name__}: {error}"
    run.units_done += 1
    return cost


def _measure_concurrency(run: _Run) -> list[ConcurrencyResult]:
    config = run.config
    plans = concurrency.make_plans(config)
    initial = concurrency.initial_conversation(config)
    initial_ids = [m.ident for m in initial]
    results = []
    for name in SYSTEMS:
        result = ConcurrencyResult(
            name,
            clients=config.clients,
            planned_ops=config.clients * config.client_ops,
            initial=config.concurrency_size,
        )
        results.append(result)
        system = run.systems.get(name)
        if name in run.unavailable:
            result.status, result.first_error = "error", run.unavailable[name]
            continue
        if system is None:
            result.status = "not installed"
            continue
        description = f"concurrency: {config.clients} clients on {name}"
        run.report_progress(0, description)

        def poll(description: str = description) -> None:  # while the clients run: Ctrl-C?
            run.report_progress(0, description)

        local = f"concurrency:{name}"
        try:
            run.reset(local, initial)
            started = time.perf_counter()
            # Both return once every client has stopped: the list no longer changes.
            if isinstance(system, AsyncStore):
                logs, result.timed_out = concurrency.run_tasks(
                    system, local, plans, config.concurrency_timeout_s, poll
                )
            else:
                logs, result.timed_out = concurrency.run_threads(
                    system, local, plans, config.concurrency_timeout_s, poll
                )
            result.elapsed_s = time.perf_counter() - started
            if result.timed_out:
                result.status = "timed out"
            concurrency.analyse(result, initial_ids, logs, run.contents(local))
            if isinstance(system, Floor):
                result.note = "LINDEX then LINSERT/LREM by value: 2 round trips per index operation"
        except Exception as error:
            result.status, result.first_error = "error", f"{type(error).__name__}: {error}"
        finally:
            with contextlib.suppress(redis.RedisError):
                run.admin.delete(run.redis_key(local))
        run.units_done += 1
    return results


def _build_systems(run: _Run, stack: contextlib.ExitStack) -> None:
    url, prefix, loop = run.url, run.prefix, run.loop

    def sync_client(counter: Counter | None = None) -> redis.Redis:
        client = (
            client_from_url(url, socket_timeout=SOCKET_TIMEOUT_S)
            if counter is None
            else counting_client(url, counter, socket_timeout=SOCKET_TIMEOUT_S)
        )
        stack.callback(client.close)
        # Connected before anything is timed or counted: on a Cluster, to every node.
        if isinstance(client, redis.cluster.RedisCluster):
            client.ping(target_nodes=redis.cluster.RedisCluster.ALL_NODES)
        else:
            client.ping()
        return client

    def async_client(counter: Counter | None = None) -> redis.asyncio.Redis:
        client = (
            async_client_from_url(url, socket_timeout=SOCKET_TIMEOUT_S)
            if counter is None
            else counting_async_client(url, counter, socket_timeout=SOCKET_TIMEOUT_S)
        )
        stack.callback(lambda: loop.run_until_complete(client.aclose()))
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            every_node = redis.asyncio.cluster.RedisCluster.ALL_NODES
            loop.run_until_complete(client.ping(target_nodes=every_node))
        else:
            loop.run_until_complete(client.ping())
        return client

    for counter, systems in ((None, run.systems), (run.counter, run.counting)):
        systems["sync"] = SyncStore(prefix, sync_client(counter))
        systems["async"] = AsyncStore(prefix, async_client(counter), loop)
        if run.seed is not None and "seed" not in run.unavailable:
            # The seed's async client is never used here, but given so the seed makes none.
            try:
                systems["seed"] = Seed(
                    prefix, run.seed, sync_client(counter), async_client(counter)
                )
            except Exception as error:  # e.g. a client of a kind it does not take
                run.unavailable["seed"] = (
                    f"the seed could not be built on this server: {type(error).__name__}: {error}"
                )
                run.systems.pop("seed", None)
        systems["floor"] = Floor(prefix, sync_client(counter))
        systems["unrecorded"] = UnrecordedStore(prefix, sync_client(counter))
    # Order of turns within a repetition, before rotation: as in SYSTEMS.
    run.systems = {name: run.systems[name] for name in ALL_SYSTEMS if name in run.systems}


@contextlib.contextmanager
def _event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def run_bench(
    config: BenchConfig,
    url: str | None = None,
    progress: ProgressCallback | None = None,
    *,
    seed: SeedClasses | bool | None = True,
) -> BenchReport:
    """Run the whole benchmark. ``seed=True`` loads the seed if it is installed; ``None`` or
    ``False`` leaves it out (it is then reported as not installed)."""
    config = config.validate()
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    wall_start = time.perf_counter()
    seed_classes = load_seed() if seed is True else (seed or None)
    prefix = new_prefix()

    # "standalone", "unix", "sentinel" or "cluster"; a bad URL fails here, before anything starts.
    kind = parse_url(url).kind if url is not None else "standalone"
    server_info: dict[str, Any] = {"mode": "url" if url else "private", "kind": kind}
    with contextlib.ExitStack() as stack:
        if url is None:
            server = RedisServer()
            stack.callback(server.stop)
            server.start()
            url = server.url
            server_info["binary"] = server.binary
        loop = stack.enter_context(_event_loop())
        admin = client_from_url(url, socket_timeout=SOCKET_TIMEOUT_S)
        stack.callback(admin.close)
        run = _Run(config, url, prefix, loop, admin, seed_classes, progress or _no_progress)
        # Registered before anything is written: runs last-in-first-out, before admin.close.
        stack.push(_Cleanup(run))

        admin.ping()
        for script in scripts().values():  # loaded once, so every EVALSHA finds it
            admin.script_load(script.source)
        machine = describe_machine(admin)
        server_info["version"] = machine.get("redis_server")
        _build_systems(run, stack)

        cell_count = sum(len(_cell_systems(run, op)) for op in OPERATIONS) * len(config.sizes)
        record_steps = len(config.sizes) + 1
        run.units_total = float(cell_count + record_steps + len(SYSTEMS))
        cells = _measure_latency(run)
        record_cost = _measure_record_cost(run)
        concurrency_results = _measure_concurrency(run)
        run.report_progress(0, "done")

    systems_info = {
        name: {
            "label": SYSTEM_LABELS[name],
            "installed": name != "seed" or seed_classes is not None,
            "version": seed_classes.version if name == "seed" and seed_classes else None,
        }
        for name in ALL_SYSTEMS
    }
    return BenchReport(
        config=config,
        server=server_info,
        machine=machine,
        systems=systems_info,
        cells=cells,
        concurrency=concurrency_results,
        started_at=started_at,
        wall_time_s=time.perf_counter() - wall_start,
        prefix=prefix,
        warnings=run.warnings,
        record_cost=record_cost,
    )


class CleanupWarning(RuntimeWarning):
    """The run ended by an exception and could not remove all of its keys."""


class _Cleanup:
    """The ExitStack's exit callback that removes the run's keys. It sees whether an exception
    is on its way out: without one, a failure becomes a warning of the report; with one (an
    error, Ctrl-C) there is no report, so it is a ``CleanupWarning`` instead."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def __call__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        prefix = self.run.prefix
        try:
            remove_prefix(self.run.admin, prefix)
        except redis.RedisError as error:
            self.report(f"could not remove the keys under {prefix!r}: {error}", exc is not None)
        except BaseException:  # e.g. a third Ctrl-C: the way out of a stuck clean-up
            self.report(f"removing the keys under {prefix!r} was cut short", raising=True)
            raise
        return False  # never swallows the exception

    def report(self, message: str, raising: bool) -> None:
        if raising:
            # stacklevel: report, __call__, ExitStack.__exit__, then the with in run_bench.
            warnings.warn(message, CleanupWarning, stacklevel=4)
        else:
            self.run.warnings.append(message)


def _no_progress(done: float, total: float, description: str) -> None:
    pass
