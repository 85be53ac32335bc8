"""What a benchmark run is asked to do, what it found, and the arithmetic on it (percentiles,
ratios, targets). No I/O here."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

OPERATIONS: tuple[str, ...] = (
    "append",
    "insert_middle",
    "delete_middle",
    "replace_middle",
    "delete_last",
    "set_all",
    "get_all",
    "get_last",
)
OPERATION_LABELS: dict[str, str] = {
    "append": "append",
    "insert_middle": "insert at the middle",
    "delete_middle": "delete at the middle",
    "replace_middle": "replace at the middle",
    "delete_last": "delete last",
    "set_all": "set all",
    "get_all": "get all",
    "get_last": "last 20 of N",
}
LAST_COUNT = 20  # get_last reads the last this many: get_messages(key, -20)

# A cell's status when the system has no method for the operation (the seed: replace, ranges).
NO_SUCH_OPERATION = "no such operation"

SYSTEMS: tuple[str, ...] = ("sync", "async", "seed", "floor")
# Measured beside the others in the groups of the operations they have, reported in the record
# cost section and the detail tables only. "unrecorded": this store's append sent with an empty
# op id, which its script then does not record (it still bumps the version); bench-only, to
# measure what recording the op id costs. Never a public option of the store.
EXTRA_SYSTEMS: tuple[str, ...] = ("unrecorded",)
ALL_SYSTEMS: tuple[str, ...] = SYSTEMS + EXTRA_SYSTEMS
SYSTEM_LABELS: dict[str, str] = {
    "sync": "this store (sync)",
    "async": "this store (async)",
    "seed": "seed (llama-index RedisChatStore)",
    "floor": "floor (raw redis-py)",
    "unrecorded": "this store (sync), op id not recorded (bench only)",
}
SHORT_LABELS: dict[str, str] = {
    "sync": "store",
    "async": "store async",
    "seed": "seed",
    "floor": "floor",
    "unrecorded": "store, no op id",
}

# What the floor sends for each operation: the cheapest raw redis-py call that could do it in one
# round trip, with no atomicity. Payloads are encoded before the clock starts; replies are not
# decoded. The floor knows the list (every repetition starts from the same conversation), so it
# can name the element at the middle by value.
FLOOR_DEFINITIONS: dict[str, str] = {
    "append": "RPUSH key payload",
    "insert_middle": "LINSERT key BEFORE <payload now at the middle> payload (scan from the head)",
    "delete_middle": "LREM key 1 <payload now at the middle> (scan from the head)",
    "delete_last": "RPOP key",
    "set_all": "pipeline, no MULTI: DEL key + RPUSH key p1 ... pN (1 round trip, 2 commands)",
    "get_all": "LRANGE key 0 -1, replies left as bytes (no JSON decoding)",
    "replace_middle": "LSET key <middle index> payload",
    "get_last": f"LRANGE key -{LAST_COUNT} -1, replies left as bytes (no JSON decoding)",
}

TARGET_SIZE = 1000


@dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[int, ...] = (10, 100, 1000, 10000)
    message_bytes: int = 200
    repeat: int = 200  # timed repetitions per cell, at most
    min_repeat: int = 3  # at least, whatever the budget
    budget_s: float = 5.0  # per cell (one system, one operation, one N): stop repeating after
    clients: int = 8
    client_ops: int = 60  # operations per concurrent client
    concurrency_size: int = 100  # messages in the conversation the clients start from
    concurrency_timeout_s: float = 60.0  # per system
    random_seed: int = 0
    quick: bool = False

    @classmethod
    def quick_preset(cls) -> BenchConfig:
        return cls(
            sizes=(10, 100, 1000),
            repeat=15,
            min_repeat=3,
            budget_s=0.3,
            clients=4,
            client_ops=15,
            concurrency_size=30,
            concurrency_timeout_s=15.0,
            quick=True,
        )

    def with_changes(self, **changes: Any) -> BenchConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def validate(self) -> BenchConfig:
        """This config with its sizes sorted, or ValueError naming what is wrong. The one check
        of the settings: the command line only parses numbers and leaves the rest to this."""
        if not self.sizes or any(size < 1 for size in self.sizes):
            raise ValueError(f"sizes must be positive integers: {list(self.sizes)}")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"sizes must not repeat: {list(self.sizes)}")
        at_least_one = {
            "message bytes": self.message_bytes,
            "repeat": self.repeat,
            "min repeat": self.min_repeat,
            "clients": self.clients,
            "concurrency size": self.concurrency_size,
        }
        for name, value in at_least_one.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1: {value}")
        if self.client_ops < 0:  # 0: the clients start and do nothing
            raise ValueError(f"client ops must be at least 0: {self.client_ops}")
        seconds = {"budget": self.budget_s, "concurrency timeout": self.concurrency_timeout_s}
        for name, time_s in seconds.items():
            if not (time_s > 0 and math.isfinite(time_s)):  # NaN fails the first test
                raise ValueError(f"{name} must be a positive number of seconds: {time_s}")
        return replace(self, sizes=tuple(sorted(self.sizes)))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sizes"] = list(self.sizes)
        return data


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: with fewer than 1/(1-fraction) samples, the largest one."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Cell:
    """One (system, operation, N): its timings, round trips and whether it got the right result."""

    system: str
    op: str
    size: int
    status: str = "ok"  # "ok", "not installed", NO_SUCH_OPERATION or "error"
    samples: list[float] = field(default_factory=list)
    round_trips: int | None = None
    commands: int | None = None
    correct: bool | None = None
    detail: str = ""  # why the result is wrong, or what is worth knowing
    capped: bool = False  # fewer repetitions than asked: the time budget ran out
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def p99(self) -> float | None:
        return percentile(self.samples, 0.99) if self.samples else None

    @property
    def ops_per_s(self) -> float | None:
        total = sum(self.samples)
        return len(self.samples) / total if self.samples and total > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "op": self.op,
            "size": self.size,
            "status": self.status,
            "samples": len(self.samples),
            "median_s": self.median,
            "p99_s": self.p99,
            "mean_s": statistics.fmean(self.samples) if self.samples else None,
            "min_s": min(self.samples) if self.samples else None,
            "max_s": max(self.samples) if self.samples else None,
            "ops_per_s": self.ops_per_s,
            "round_trips": self.round_trips,
            "commands": self.commands,
            "correct": self.correct,
            "detail": self.detail,
            "capped": self.capped,
            "error": self.error,
        }


@dataclass
class ConcurrencyResult:
    system: str
    # "ok", "timed out" (stopped by the time limit: the counts are of the operations done),
    # "not installed" or "error"
    status: str = "ok"
    clients: int = 0
    planned_ops: int = 0
    completed_ops: int = 0
    op_errors: int = 0
    first_error: str | None = None
    elapsed_s: float = 0.0
    timed_out: bool = False
    initial: int = 0
    expected_length: int = 0
    final_length: int = 0
    lost: int = 0  # should remain, missing
    duplicated: int = 0  # extra copies of a message
    resurrected: int = 0  # reported deleted, still there
    unknown: int = 0  # in the list, never written by anyone
    out_of_order: int = 0  # neighbours, within one writer's sequence, in the wrong order
    note: str = ""

    @property
    def anomalies(self) -> int:
        return self.lost + self.duplicated + self.resurrected + self.unknown + self.out_of_order

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["anomalies"] = self.anomalies
        return data


@dataclass
class Target:
    name: str
    description: str
    status: str  # "met", "missed" or "not measured"
    value: str  # the measured number, as text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RecordBytes:
    """For one N: ``MEMORY USAGE <key> SAMPLES 0`` of a conversation's list and of its record
    (the hash beside it holding its version and its op ids with their replies), for a
    conversation written by one set_messages, one written by N single appends, and the latter's
    record once delete_messages removed it. ``*_op_ids``: op ids the record holds then."""

    size: int
    set_list_bytes: int | None = None
    set_record_bytes: int | None = None
    set_op_ids: int | None = None
    appended_list_bytes: int | None = None
    appended_record_bytes: int | None = None
    appended_op_ids: int | None = None
    deleted_record_bytes: int | None = None
    deleted_op_ids: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallCost:
    """One kind of append call: what the server spends on it (``INFO commandstats``: usec over
    calls of EVALSHA, or of RPUSH, across a pass of them alone) and what building it takes in
    Python (the store's operation value: the message encoded, the op id made; median)."""

    name: str  # "recorded", "unrecorded" or "rpush"
    calls: int = 0
    server_us: float | None = None
    build_us: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RecordCost:
    """What recording op ids costs: bytes per conversation, and time per append (the cells of the
    append groups, where the store with and without op ids and the floor took turns, plus
    ``calls``: the server's and Python's share)."""

    window_size: int
    bytes: list[RecordBytes] = field(default_factory=list)
    calls: list[CallCost] = field(default_factory=list)
    error: str | None = None  # why ``calls`` could not be measured (e.g. INFO forbidden)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_size": self.window_size,
            "bytes": [row.to_dict() for row in self.bytes],
            "calls": [call.to_dict() for call in self.calls],
            "error": self.error,
        }


@dataclass
class BenchReport:
    config: BenchConfig
    server: dict[str, Any]  # "mode": "private" | "url", "version", ...
    machine: dict[str, Any]
    systems: dict[str, dict[str, Any]]  # name -> {"label", "installed", "version"}
    cells: list[Cell]
    concurrency: list[ConcurrencyResult]
    started_at: str
    wall_time_s: float
    prefix: str
    warnings: list[str] = field(default_factory=list)
    command: str = ""
    record_cost: RecordCost | None = None

    def cell(self, system: str, op: str, size: int) -> Cell | None:
        for cell in self.cells:
            if (cell.system, cell.op, cell.size) == (system, op, size):
                return cell
        return None

    def ratio(self, numerator: str, denominator: str, op: str, size: int) -> float | None:
        """median(numerator) / median(denominator) for one operation and N."""
        top, bottom = self.cell(numerator, op, size), self.cell(denominator, op, size)
        if top is None or bottom is None or top.median is None or not bottom.median:
            return None
        return top.median / bottom.median

    def ratios(self) -> list[dict[str, Any]]:
        rows = []
        for size in self.config.sizes:
            for op in OPERATIONS:
                for store in ("sync", "async"):
                    rows.append(
                        {
                            "op": op,
                            "size": size,
                            "store": store,
                            "seed_over_store": self.ratio("seed", store, op, size),
                            "store_over_floor": self.ratio(store, "floor", op, size),
                        }
                    )
        return rows

    def targets(self) -> list[Target]:
        return evaluate_targets(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 2,
            "command": self.command,
            "started_at": self.started_at,
            "wall_time_s": self.wall_time_s,
            "config": self.config.to_dict(),
            "server": self.server,
            "machine": self.machine,
            "systems": self.systems,
            "operations": {op: OPERATION_LABELS[op] for op in OPERATIONS},
            "floor_definitions": FLOOR_DEFINITIONS,
            "key_prefix": self.prefix,
            "results": [cell.to_dict() for cell in self.cells],
            "ratios": self.ratios(),
            "targets": [target.to_dict() for target in self.targets()],
            "concurrency": [result.to_dict() for result in self.concurrency],
            "record_cost": None if self.record_cost is None else self.record_cost.to_dict(),
            "warnings": self.warnings,
        }


def _speedup_target(report: BenchReport, name: str, op: str, factor: float, what: str) -> Target:
    description = f"{what} of {TARGET_SIZE:,} at least {factor:g}\u00d7 faster than the seed"
    ratio = report.ratio("seed", "sync", op, TARGET_SIZE)
    if ratio is None:
        return Target(name, description, "not measured", f"N={TARGET_SIZE:,} not measured")
    return Target(name, description, "met" if ratio >= factor else "missed", f"{ratio:,.1f}\u00d7")


def evaluate_targets(report: BenchReport) -> list[Target]:
    """The project's targets, checked against this run's own numbers (the sync store)."""
    targets: list[Target] = []

    counted = [
        cell
        for cell in report.cells
        if cell.system in ("sync", "async") and cell.status == "ok" and cell.round_trips is not None
    ]
    over = [cell for cell in counted if cell.round_trips != 1]
    description = "this store: one round trip per operation at every N (sync and async)"
    if not counted:
        targets.append(Target("one_round_trip", description, "not measured", "-"))
    elif over:
        worst_cell = max(over, key=lambda cell: cell.round_trips or 0)
        targets.append(
            Target(
                "one_round_trip",
                description,
                "missed",
                f"{len(over)} cells over 1; worst {worst_cell.round_trips} "
                f"({worst_cell.system} {worst_cell.op} N={worst_cell.size:,})",
            )
        )
    else:
        targets.append(
            Target("one_round_trip", description, "met", f"1 in all {len(counted)} cells")
        )

    description = "append within 1.3\u00d7 of one raw RPUSH (the floor), at every N"
    append_ratios = {
        size: ratio
        for size in report.config.sizes
        if (ratio := report.ratio("sync", "floor", "append", size)) is not None
    }
    if not append_ratios:
        targets.append(Target("append_vs_rpush", description, "not measured", "-"))
    else:
        worst_size = max(append_ratios, key=lambda size: append_ratios[size])
        worst = append_ratios[worst_size]
        store, floor = (
            report.cell("sync", "append", worst_size),
            report.cell("floor", "append", worst_size),
        )
        extra_us = (
            (store.median - floor.median) * 1e6
            if store and floor and store.median and floor.median
            else 0.0
        )
        targets.append(
            Target(
                "append_vs_rpush",
                description,
                "met" if worst <= 1.3 else "missed",
                f"worst {worst:.2f}\u00d7 ({extra_us:+.0f} \u00b5s, N={worst_size:,}); "
                + ", ".join(f"{r:.2f}\u00d7" for r in append_ratios.values()),
            )
        )
    targets.append(
        _speedup_target(report, "insert_middle_1000", "insert_middle", 500, "insert at the middle")
    )
    targets.append(
        _speedup_target(report, "delete_middle_1000", "delete_middle", 5, "delete at the middle")
    )
    targets.append(_speedup_target(report, "set_all_1000", "set_all", 50, "set"))
    targets.append(_speedup_target(report, "get_all_1000", "get_all", 3, "get"))
    return targets
