"""A run's results as files: ``results.json``, ``report.md`` (Markdown tables) and PNG plots
(matplotlib's Agg canvas, without pyplot, so no global backend is touched). The rows of the
tables are built here once and rendered both as Markdown and, by the CLI, on the terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import (
    ALL_SYSTEMS,
    FLOOR_DEFINITIONS,
    NO_SUCH_OPERATION,
    OPERATION_LABELS,
    OPERATIONS,
    SHORT_LABELS,
    SYSTEM_LABELS,
    SYSTEMS,
    BenchReport,
    Cell,
    RecordBytes,
    RecordCost,
)


@dataclass(frozen=True)
class Column:
    """One column of a table, the same on the terminal and in Markdown."""

    title: str
    align: str = "r"  # "l" for text, "r" for numbers


@dataclass
class Table:
    columns: Sequence[Column]
    rows: list[list[str]]
    # per row: a result in it is wrong (or, in the concurrency table, the system timed out)
    wrong: list[bool] = field(default_factory=list)


def _text(title: str) -> Column:
    return Column(title, "l")


HEADLINE_COLUMNS = (
    _text("operation"),
    Column("N"),
    Column("store"),
    Column("store async"),
    Column("seed"),
    Column("floor"),
    Column("seed ÷ store"),
    Column("store ÷ floor"),
    Column("round trips (store/seed/floor)"),
    Column("right? (store/seed/floor)"),
)
DETAIL_COLUMNS = (
    Column("N"),
    _text("system"),
    Column("median"),
    Column("p99"),
    Column("ops/s"),
    Column("round trips"),
    Column("commands"),
    Column("runs"),
    Column("right?"),
    _text("note"),
)
CONCURRENCY_COLUMNS = (
    _text("system"),
    Column("ops done"),
    Column("time"),
    Column("final / expected length"),
    Column("lost"),
    Column("duplicated"),
    Column("deleted but back"),
    Column("out of order"),
    Column("op errors"),
    _text("note"),
)
TARGET_COLUMNS = (_text("target"), Column("measured"), _text("status"))

PLOT_COLORS = {"sync": "tab:blue", "async": "tab:cyan", "seed": "tab:red", "floor": "tab:gray"}


def describe_server(server: dict[str, Any]) -> str:
    """'7.0.15 (private server)', '7.2.4 (url server, cluster)'."""
    kind = server.get("kind")
    shown = "" if kind in (None, "standalone") else f", {kind}"
    return f"{server.get('version')} ({server.get('mode')} server{shown})"


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        micro = seconds * 1e6
        return f"{micro:.3g} µs" if micro < 100 else f"{micro:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio >= 100:
        return f"{ratio:,.0f}\u00d7"
    if ratio >= 10:
        return f"{ratio:.1f}\u00d7"
    return f"{ratio:.2f}\u00d7"


def format_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


# Where a system has no such operation, its cells say so in every column (not "-", which
# would read as a measurement that failed).
NO_OP = "no op"


def _latency(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    if cell.status != "ok":
        return cell.status
    return format_time(cell.median) + ("*" if cell.capped else "")


def _round_trips(cell: Cell | None) -> str:
    if cell is not None and cell.status == NO_SUCH_OPERATION:
        return NO_OP
    if cell is None or cell.status != "ok" or cell.round_trips is None:
        return "-"
    return f"{cell.round_trips:,}"


def _right(cell: Cell | None) -> str:
    if cell is not None and cell.status == NO_SUCH_OPERATION:
        return NO_OP
    if cell is None or cell.status != "ok" or cell.correct is None:
        return "-"
    return "yes" if cell.correct else "NO"


def _seed_ratio(report: BenchReport, op: str, size: int) -> str:
    seed = report.cell("seed", op, size)
    if seed is not None and seed.status == NO_SUCH_OPERATION:
        return "no such op"
    return format_ratio(report.ratio("seed", "sync", op, size))


def _wrong(cell: Cell | None) -> bool:
    return cell is not None and cell.status == "ok" and cell.correct is False


RIGHT_SYSTEMS = ("sync", "seed", "floor")  # in the headline's round trips and right? columns


def headline_table(report: BenchReport) -> Table:
    table = Table(HEADLINE_COLUMNS, [])
    for op in OPERATIONS:
        for size in report.config.sizes:
            cells = {name: report.cell(name, op, size) for name in SYSTEMS}
            table.wrong.append(any(_wrong(cells[name]) for name in RIGHT_SYSTEMS))
            table.rows.append(
                [
                    OPERATION_LABELS[op],
                    f"{size:,}",
                    _latency(cells["sync"]),
                    _latency(cells["async"]),
                    _latency(cells["seed"]),
                    _latency(cells["floor"]),
                    _seed_ratio(report, op, size),
                    format_ratio(report.ratio("sync", "floor", op, size)),
                    "/".join(_round_trips(cells[name]) for name in RIGHT_SYSTEMS),
                    "/".join(_right(cells[name]) for name in RIGHT_SYSTEMS),
                ]
            )
    return table


def detail_table(report: BenchReport, op: str) -> Table:
    table = Table(DETAIL_COLUMNS, [])
    for size in report.config.sizes:
        for name in ALL_SYSTEMS:
            cell = report.cell(name, op, size)
            if cell is None:
                continue
            notes = []
            if cell.detail:
                notes.append(cell.detail)
            if cell.capped:
                notes.append(f"time budget: {len(cell.samples)} of {report.config.repeat} runs")
            if cell.error:
                notes.append(cell.error)
            ok = cell.status == "ok"
            table.wrong.append(_wrong(cell))
            table.rows.append(
                [
                    f"{size:,}",
                    SHORT_LABELS[name],
                    _latency(cell),
                    format_time(cell.p99) if ok else "-",
                    format_rate(cell.ops_per_s) if ok else "-",
                    _round_trips(cell),
                    f"{cell.commands:,}" if ok and cell.commands is not None else "-",
                    str(len(cell.samples)) if ok else "-",
                    _right(cell),
                    "; ".join(notes),
                ]
            )
    return table


def concurrency_table(report: BenchReport) -> Table:
    timed_out = [result.status == "timed out" for result in report.concurrency]
    return Table(CONCURRENCY_COLUMNS, _concurrency_rows(report), timed_out)


def _concurrency_rows(report: BenchReport) -> list[list[str]]:
    rows = []
    for result in report.concurrency:
        if result.status not in ("ok", "timed out"):
            rows.append(
                [SHORT_LABELS[result.system], result.status, *["-"] * 7, result.first_error or ""]
            )
            continue
        notes = [result.note] if result.note else []
        if result.timed_out:
            notes.append(
                f"TIMED OUT: stopped by the {report.config.concurrency_timeout_s:g} s time limit"
            )
        if result.first_error:
            notes.append(result.first_error)
        rows.append(
            [
                SHORT_LABELS[result.system],
                f"{result.completed_ops:,} / {result.planned_ops:,}",
                format_time(result.elapsed_s),
                f"{result.final_length:,} / {result.expected_length:,}",
                f"{result.lost:,}",
                f"{result.duplicated:,}",
                f"{result.resurrected + result.unknown:,}",
                f"{result.out_of_order:,}",
                f"{result.op_errors:,}",
                "; ".join(notes),
            ]
        )
    return rows


RECORD_BYTES_COLUMNS = (
    Column("N"),
    Column("list, bytes"),
    Column("record after 1 set_messages"),
    Column("% of list"),
    Column("record after N appends (op ids)"),
    Column("% of list"),
    Column("record after delete_messages (op ids)"),
    Column("% of the list deleted"),
)
RECORD_TIME_COLUMNS = (
    Column("N"),
    Column("store append, op id recorded"),
    Column("store append, no op id"),
    Column("floor RPUSH"),
    Column("recorded ÷ RPUSH"),
    Column("no op id ÷ RPUSH"),
    Column("recording adds"),
)
CALL_COST_COLUMNS = (
    _text("call"),
    Column("server time per call"),
    Column("calls counted"),
    Column("built in Python (median)"),
)
CALL_LABELS = {
    "recorded": "store append, op id recorded (record full: evicts the oldest id)",
    "unrecorded": "store append, no op id (records nothing, bumps the version)",
    "rpush": "floor RPUSH",
}


def format_bytes(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"


def _percent(part: int | None, whole: int | None) -> str:
    if part is None or not whole:
        return "-"
    share = 100 * part / whole
    return f"{share:.0f} %" if share >= 10 else f"{share:.2g} %"


def _with_ids(count: int | None, ids: int | None) -> str:
    if count is None:
        return "-"
    return f"{count:,}" + ("" if ids is None else f" ({ids:,})")


def record_bytes_table(report: BenchReport) -> Table:
    table = Table(RECORD_BYTES_COLUMNS, [])
    cost = report.record_cost
    for row in cost.bytes if cost is not None else []:
        if row.error is not None:
            table.rows.append([f"{row.size:,}", "error", *["-"] * 5, row.error])
            table.wrong.append(True)
            continue
        table.wrong.append(False)
        table.rows.append(
            [
                f"{row.size:,}",
                format_bytes(row.appended_list_bytes),
                _with_ids(row.set_record_bytes, row.set_op_ids),
                _percent(row.set_record_bytes, row.set_list_bytes),
                _with_ids(row.appended_record_bytes, row.appended_op_ids),
                _percent(row.appended_record_bytes, row.appended_list_bytes),
                _with_ids(row.deleted_record_bytes, row.deleted_op_ids),
                _percent(row.deleted_record_bytes, row.appended_list_bytes),
            ]
        )
    return table


def record_time_table(report: BenchReport) -> Table:
    """The append cells of the latency section: the store with and without its op id recorded,
    and the floor, which took turns in the same repetitions."""
    table = Table(RECORD_TIME_COLUMNS, [])
    for size in report.config.sizes:
        cells = [report.cell(name, "append", size) for name in ("sync", "unrecorded", "floor")]
        if all(cell is None for cell in cells):
            continue
        recorded, unrecorded, _ = cells
        extra = "-"
        if recorded and unrecorded and recorded.median and unrecorded.median:
            difference = recorded.median - unrecorded.median
            extra = ("\u2212" if difference < 0 else "+") + format_time(abs(difference))
        table.rows.append(
            [
                f"{size:,}",
                *(_latency(cell) for cell in cells),
                format_ratio(report.ratio("sync", "floor", "append", size)),
                format_ratio(report.ratio("unrecorded", "floor", "append", size)),
                extra,
            ]
        )
    return table


def call_cost_table(report: BenchReport) -> Table:
    table = Table(CALL_COST_COLUMNS, [])
    cost = report.record_cost
    for call in cost.calls if cost is not None else []:
        table.rows.append(
            [
                CALL_LABELS.get(call.name, call.name),
                format_time(None if call.server_us is None else call.server_us / 1e6),
                f"{call.calls:,}",
                "payload encoded beforehand"
                if call.name == "rpush"
                else format_time(None if call.build_us is None else call.build_us / 1e6),
            ]
        )
    return table


def record_notes(report: BenchReport) -> list[str]:
    """What the record-cost tables mean, and what they say about a delete."""
    cost = report.record_cost
    if cost is None:
        return []
    window = f"{cost.window_size:,}"
    lines = [
        "Every write of this store records its op id and its reply in a hash beside the "
        f"conversation (its record), for a window of the newest {window} ids (older ones leave "
        "32 at a time) and 10 minutes, so that a write sent again (a retry after a lost reply) "
        "is applied once. Bytes: `MEMORY USAGE <key> SAMPLES 0` (exact) of the list and of its "
        "record; the record of a conversation written by one set_messages holds 1 op id, by N "
        f"single appends min(N, {window}) to min(N, {window} + 32).",
        "After delete_messages the record keeps the removed messages, as the reply of that op "
        "id, until it expires with the window (10 minutes after the delete): a deleted "
        "conversation's bytes stay in Redis that long"
        + (
            f" ({format_bytes(last.deleted_record_bytes)} bytes for {last.size:,} messages here)."
            if (last := _last_measured(cost)) is not None
            else "."
        ),
        "Time: the append rows of the latency section, where the store's append, the same "
        "append sent with an empty op id (built by hand, bench only: the script then records "
        "nothing but still bumps the version) and the floor's RPUSH took turns; before them the "
        "store's records were filled to the window, so each timed append also evicts the "
        "oldest id (a conversation's steady state).",
        "Server time per call: `INFO commandstats` (usec ÷ calls of EVALSHA, or RPUSH) over "
        "passes of one kind of call alone; built in Python: the store's operation value "
        "(message encoded to JSON, op id made), the median of "
        "1,000. What the server and Python do not account for is the wire: the EVALSHA "
        "request is larger than RPUSH's, and redis-py handles it through more code.",
    ]
    if cost.error:
        lines.append(f"The time per call could not be measured: {cost.error}")
    return lines


def _last_measured(cost: RecordCost) -> RecordBytes | None:
    measured = [row for row in cost.bytes if row.deleted_record_bytes is not None]
    return measured[-1] if measured else None


def target_table(report: BenchReport) -> Table:
    rows = [[t.description, t.value, t.status.upper()] for t in report.targets()]
    return Table(TARGET_COLUMNS, rows)


def notes(report: BenchReport) -> list[str]:
    config = report.config
    lines = [
        "Latency is the median of the timed runs; p99 is nearest-rank (with fewer than 100 runs, "
        "the slowest). ops/s = runs ÷ their total time, one client, one operation at a time.",
        f"Each cell runs up to {config.repeat} times and stops early, after at least "
        f"{config.min_repeat}, once it has spent {config.budget_s:g} s; "
        "* marks the cells it cut short.",
        "Systems take turns within each repetition (A B C D, then B C D A, ...), so drift of the "
        "machine lands on all of them alike; ratios are of medians.",
        "Round trips and commands are counted in a separate, untimed run on instrumented clients: "
        "a round trip is one write the client then waits on (a command, or a whole pipeline); a "
        "script's own calls inside Redis do not count.",
        "Right? compares the list left in Redis and the returned value with what a Python list "
        "gives; append, insert and set may return nothing (the seed's methods do not).",
        f"Every run starts from a conversation of exactly N messages of {config.message_bytes} "
        "bytes of JSON; the state is restored between runs outside the clock.",
        "During the timed runs the harness's own objects are frozen out of Python's cyclic GC "
        "(gc.freeze): collections still run, over what the operations allocate only.",
    ]
    missing = {(cell.system, cell.op) for cell in report.cells if cell.status == NO_SUCH_OPERATION}
    for name in SYSTEMS:
        ops = [OPERATION_LABELS[op] for op in OPERATIONS if (name, op) in missing]
        if ops:
            lines.append(
                f"The {SHORT_LABELS[name]} has no such operation as {' or '.join(ops)}: its "
                f"cells there say so ({NO_OP!r} in the round trips and right? columns); "
                "nothing failed."
            )
    if not report.systems.get("seed", {}).get("installed", True):
        lines.append(
            "The seed (llama-index-storage-chat-store-redis) is not installed: "
            "pip install 'atomic-chat-store[bench]'."
        )
    return lines


def markdown_table(table: Table) -> str:
    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    aligns = ("---:" if column.align == "r" else "---" for column in table.columns)
    separator = "| " + " | ".join(aligns) + " |"
    titles = [column.title for column in table.columns]
    return "\n".join([line(titles), separator, *(line(row) for row in table.rows)])


def render_markdown(report: BenchReport, plots: Sequence[str] = ()) -> str:
    machine, config = report.machine, report.config
    server = report.server
    out = [
        "# atomic-chat-store bench",
        "",
        f"Run {report.started_at}, {report.wall_time_s:.0f} s"
        + (f": `{report.command}`" if report.command else "")
        + ("  (quick mode)" if config.quick else ""),
        "",
        "## Machine",
        "",
        markdown_table(
            Table(
                (_text(""), _text("")),
                [
                    ["CPU", str(machine.get("cpu"))],
                    ["cores", str(machine.get("cores"))],
                    ["platform", str(machine.get("platform"))],
                    ["Python", str(machine.get("python"))],
                    ["redis-py", f"{machine.get('redis_py')} (hiredis {machine.get('hiredis')})"],
                    ["Redis server", describe_server(server)],
                    ["pydantic", str(machine.get("pydantic"))],
                    [
                        "seed",
                        f"llama-index-storage-chat-store-redis {machine.get('seed')}, "
                        f"llama-index-core {machine.get('llama_index_core')}",
                    ],
                ],
            )
        ),
        "",
        "## Latency",
        "",
        f"Conversation lengths N = {', '.join(f'{s:,}' for s in config.sizes)}; "
        f"messages of {config.message_bytes} bytes. "
        "store = this store (sync), store async = `AsyncRedisChatStore`, seed = LlamaIndex's "
        "`RedisChatStore`, floor = the cheapest raw redis-py command (below). "
        "seed ÷ store: how many times faster this store is; store ÷ floor: what it costs over "
        "the floor.",
        "",
        markdown_table(headline_table(report)),
        "",
        "## Targets",
        "",
        "Checked against this run's own numbers, with the sync store.",
        "",
        markdown_table(target_table(report)),
        "",
        "## What the op id record costs",
        "",
        *(line + "\n" for line in record_notes(report)),
        "### Bytes per conversation",
        "",
        markdown_table(record_bytes_table(report)),
        "",
        "### Time per append",
        "",
        markdown_table(record_time_table(report)),
        "",
        "### Where an append's time goes",
        "",
        markdown_table(call_cost_table(report)),
        "",
        "## Concurrency",
        "",
        f"{config.clients} clients at once on one conversation of {config.concurrency_size} "
        f"messages, {config.client_ops} operations each (append a unique message, insert at a "
        "random index, delete at a random index, chosen at random); threads sharing one client "
        "for the sync systems, tasks on one event loop for the async store. Lost: should remain, "
        "missing. Deleted but back: a delete reported it removed, yet it is there (or a message "
        "nobody wrote). Out of order: neighbours within one writer's messages (the starting "
        "conversation, each client's appends) in the wrong order.",
        "",
        markdown_table(concurrency_table(report)),
        "",
        "## Every cell",
        "",
    ]
    for op in OPERATIONS:
        out += [f"### {OPERATION_LABELS[op]}", "", f"Floor: `{FLOOR_DEFINITIONS[op]}`", ""]
        out += [markdown_table(detail_table(report, op)), ""]
    out += [
        "## The floor",
        "",
        "The cheapest raw redis-py calls that could do each operation in one "
        "round trip, with no atomicity. Payloads are encoded before the clock starts and "
        "replies are not decoded: the floor is the wire and the server, nothing else.",
        "",
    ]
    out += [f"- {OPERATION_LABELS[op]}: `{FLOOR_DEFINITIONS[op]}`" for op in OPERATIONS]
    out += ["", "## Method", ""]
    out += [f"- {line}" for line in notes(report)]
    out += [f"- Keys used: `{report.prefix}*`, removed at the end."]
    if report.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in report.warnings]
    if plots:
        out += ["", "## Plots", ""]
        out += [f"![{name}]({name})" for name in plots]
    out.append("")
    return "\n".join(out)


def write_plots(report: BenchReport, directory: Path) -> list[str]:
    """Median latency against N, log-log, one line per system: one PNG per operation and one
    with them all. Returns the file names."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    time_labels = FuncFormatter(lambda value, _: format_time(value))

    def draw(axes: Any, op: str) -> None:
        plotted: list[float] = []
        for name in SYSTEMS:
            points = [
                (cell.size, cell.median)
                for size in report.config.sizes
                if (cell := report.cell(name, op, size)) is not None
                and cell.status == "ok"
                and cell.median
            ]
            if points:
                sizes, medians = zip(*points, strict=True)
                plotted.extend(medians)
                axes.plot(
                    sizes,
                    medians,
                    marker="o",
                    label=SYSTEM_LABELS[name],
                    color=PLOT_COLORS[name],
                )
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xticks(report.config.sizes, [f"{size:,}" for size in report.config.sizes])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(time_labels)
        # On a narrow range 1-2-5 leaves too few labelled ticks: label the minor ones too.
        narrow = bool(plotted) and max(plotted) < 3 * min(plotted)
        axes.yaxis.set_minor_formatter(time_labels if narrow else NullFormatter())
        missing = [
            SHORT_LABELS[name]
            for name in SYSTEMS
            if any(
                (cell := report.cell(name, op, size)) is not None
                and cell.status == NO_SUCH_OPERATION
                for size in report.config.sizes
            )
        ]
        if missing:
            axes.text(
                0.98, 0.03, f"{', '.join(missing)}: no such operation",
                transform=axes.transAxes, ha="right", va="bottom", fontsize="small",
                color="dimgray", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
            )  # fmt: skip
        axes.set_title(OPERATION_LABELS[op])
        axes.set_xlabel("messages in the conversation (N)")
        axes.set_ylabel("median latency")
        axes.grid(True, which="both", alpha=0.3)

    names = []
    for op in OPERATIONS:
        figure = Figure(figsize=(6.4, 4.4), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        draw(axes, op)
        axes.legend(fontsize="small")
        name = f"latency-{op.replace('_', '-')}.png"
        figure.savefig(directory / name, dpi=110)
        names.append(name)

    figure = Figure(figsize=(20, 8.5), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(2, (len(OPERATIONS) + 1) // 2)
    for axes, op in zip(grid.flat, OPERATIONS, strict=True):
        draw(axes, op)
    handles, labels = grid.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    figure.savefig(directory / "latency-all.png", dpi=100)
    names.append("latency-all.png")
    if report.record_cost is not None and report.record_cost.bytes:
        names.append(_plot_record_cost(report, report.record_cost, directory))
    return names


def _plot_record_cost(report: BenchReport, cost: RecordCost, directory: Path) -> str:
    """Bytes of a conversation's list and record against N; the append's median with and
    without its op id recorded, and RPUSH's, against N."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    figure = Figure(figsize=(12, 4.6), layout="constrained")
    FigureCanvasAgg(figure)
    memory, time_axes = figure.subplots(1, 2)
    sizes = [row.size for row in cost.bytes]
    series = {
        "list (N messages)": ("appended_list_bytes", "tab:gray", "o"),
        "record after 1 set_messages": ("set_record_bytes", "tab:green", "s"),
        f"record after N appends (≥ min(N, {cost.window_size:,}) op ids)": (
            "appended_record_bytes",
            "tab:blue",
            "o",
        ),
        "record after delete_messages": ("deleted_record_bytes", "tab:red", "^"),
    }
    for label, (attribute, color, marker) in series.items():
        points = [
            (row.size, value)
            for row in cost.bytes
            if (value := getattr(row, attribute)) is not None and value > 0
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            memory.plot(xs, ys, marker=marker, color=color, label=label)
    memory.set_yscale("log")
    memory.yaxis.set_major_formatter(FuncFormatter(lambda value, _: _short_bytes(value)))
    memory.set_ylabel("MEMORY USAGE (bytes)")
    memory.set_title("bytes per conversation")

    lines = {
        "sync": ("store append, op id recorded", "tab:blue"),
        "unrecorded": ("store append, no op id", "tab:purple"),
        "floor": ("floor RPUSH", "tab:gray"),
    }
    for name, (label, color) in lines.items():
        points = [
            (size, cell.median)
            for size in report.config.sizes
            if (cell := report.cell(name, "append", size)) is not None and cell.median
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            time_axes.plot(xs, ys, marker="o", color=color, label=label)
    time_axes.set_ylim(bottom=0)
    time_axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: format_time(value)))
    time_axes.set_ylabel("median latency")
    time_axes.set_title("time per append")
    for axes in (memory, time_axes):
        axes.set_xscale("log")
        axes.set_xticks(sizes, [f"{size:,}" for size in sizes])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("messages in the conversation (N)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
    name = "record-cost.png"
    figure.savefig(directory / name, dpi=100)
    return name


def _short_bytes(value: float) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


def write_outputs(report: BenchReport, directory: str | Path) -> list[Path]:
    """results.json, the plots and report.md in ``directory`` (made if missing)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    data = report.to_dict()
    plots = write_plots(report, out)
    data["plots"] = plots
    results.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = out / "report.md"
    markdown.write_text(render_markdown(report, plots), encoding="utf-8")
    return [results, markdown, *(out / name for name in plots)]
