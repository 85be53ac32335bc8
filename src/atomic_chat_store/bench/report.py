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
    FLOOR_DEFINITIONS,
    NO_SUCH_OPERATION,
    OPERATION_LABELS,
    OPERATIONS,
    SHORT_LABELS,
    SYSTEM_LABELS,
    SYSTEMS,
    BenchReport,
    Cell,
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
        for name in SYSTEMS:
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
                0.02, 0.97, f"{', '.join(missing)}: no such operation",
                transform=axes.transAxes, va="top", fontsize="small", color="dimgray",
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
    return names


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
