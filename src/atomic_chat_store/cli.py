"""The ``atomic-chat-store`` command. ``atomic-chat-store bench`` measures this store against
LlamaIndex's RedisChatStore (the seed) and raw redis-py commands (the floor); see ``--help``."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import redis

from .errors import ChatStoreError

if TYPE_CHECKING:
    from rich.table import Table as RichTable

    from .bench import ProgressCallback
    from .bench.report import Table

PROG = "atomic-chat-store"


def _int_list(text: str) -> tuple[int, ...]:
    """Only parsing: whether the numbers are acceptable is BenchConfig.validate's to say."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None


def _version() -> str:
    try:
        return metadata.version("atomic-chat-store")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chat histories in Redis: every edit one atomic Lua script, one round trip.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench",
        help="measure this store against LlamaIndex's RedisChatStore and raw redis-py",
        description=(
            "Measure this store (sync and async) against LlamaIndex's RedisChatStore (the seed) "
            "and the cheapest raw redis-py commands (the floor), side by side, against one Redis "
            "server: latency, round trips and correctness of each operation at each "
            "conversation length, then K concurrent clients on one conversation. Without --url "
            "a private redis-server is started on a free 127.0.0.1 port and removed at the end."
        ),
        epilog=(
            "With --url, only keys under acs-bench:<uuid>: are written, and they are removed at "
            "the end (on error and Ctrl-C too); nothing is flushed. Defaults: sizes "
            "10,100,1000,10000, 200-byte messages, 200 runs per cell or 5 s, 8 clients. --quick: "
            "sizes 10,100,1000, 15 runs or 0.3 s per cell, 4 clients; any option given "
            "explicitly wins over the preset."
        ),
    )
    bench.add_argument(
        "--url",
        help=(
            "use this Redis server instead of starting a private one: redis://, rediss://, "
            "unix://, redis+sentinel://host:port[,host:port...]/service, "
            "redis+cluster://host:port[,host:port...] (and rediss+ for TLS)"
        ),
    )
    bench.add_argument(
        "--sizes",
        type=_int_list,
        metavar="N,N,...",
        help="conversation lengths (default 10,100,1000,10000)",
    )
    bench.add_argument(
        "--message-bytes",
        type=int,
        metavar="BYTES",
        help="stored size of each message (default 200)",
    )
    bench.add_argument(
        "--repeat",
        type=int,
        metavar="RUNS",
        help="timed runs per cell, at most (default 200)",
    )
    bench.add_argument(
        "--min-repeat", type=int, metavar="RUNS",
        help="timed runs per cell, at least, whatever the budget (default 3)",
    )  # fmt: skip
    bench.add_argument(
        "--budget", type=float, metavar="SECONDS",
        help="time per cell (one system, operation and N) after which runs stop (default 5)",
    )  # fmt: skip
    bench.add_argument(
        "--clients",
        type=int,
        metavar="K",
        help="concurrent clients (threads) (default 8)",
    )
    bench.add_argument(
        "--client-ops", type=int, metavar="OPS",
        help="operations per concurrent client (default 60)",
    )  # fmt: skip
    bench.add_argument(
        "--concurrency-size", type=int, metavar="N",
        help="messages in the conversation the concurrent clients start from (default 100)",
    )  # fmt: skip
    bench.add_argument(
        "--concurrency-timeout", type=float, metavar="SECONDS",
        help="time limit of the concurrency section, per system (default 60)",
    )  # fmt: skip
    bench.add_argument("--quick", action="store_true", help="small sizes, few runs: for CI")
    bench.add_argument(
        "--out", type=Path, metavar="DIR", help="write results.json, report.md and PNG plots here"
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument(
        "--random-seed", type=int, metavar="SEED", help="seed of the concurrency section"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.command == "bench":
        return _bench(args, f"{PROG} {shlex.join(args_list)}")
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse refuses first
    return 2  # pragma: no cover


class _Interrupts:
    """SIGINT and SIGTERM during a run, recorded rather than raised.

    Python's own SIGINT handler raises KeyboardInterrupt at whatever bytecode runs, which can be
    inside a ``__del__`` or a weakref callback, where it is printed and dropped ("Exception
    ignored in ..."), or inside the run's clean-up, which it then cuts short. Here the handler
    only records the signal; ``check``, called by the progress callback between repetitions
    and between phases, raises KeyboardInterrupt there, so the run's clean-up then runs whole
    (a signal during the clean-up is recorded too). The third signal raises at once: the way
    out of a run that is stuck.
    """

    ESCAPE = 3

    def __init__(self) -> None:
        self.received: list[int] = []

    def record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if len(self.received) >= self.ESCAPE:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.received:
            raise KeyboardInterrupt

    @property
    def exit_status(self) -> int:
        """128 + the first signal's number, as a shell reports a process a signal ended."""
        return 128 + (self.received[0] if self.received else signal.SIGINT)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The handlers, for SIGINT and SIGTERM, while the block runs (main thread only:
        elsewhere Python delivers no signals and refuses handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self.record) for signum in _SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _bench(args: argparse.Namespace, command: str) -> int:
    from rich.console import Console

    from .bench import BenchConfig, CleanupWarning, run_bench
    from .bench.report import write_outputs
    from .connection import parse_url
    from .errors import InvalidUrlError
    from .server import ServerNotFoundError, ServerStartError

    out, err = Console(), Console(stderr=True)
    if not out.is_terminal:  # a pipe or a file: wide enough for the tables not to wrap
        out = Console(width=max(out.width, 180))
    base = BenchConfig.quick_preset() if args.quick else BenchConfig()
    try:
        config = base.with_changes(
            sizes=args.sizes,
            message_bytes=args.message_bytes,
            repeat=args.repeat,
            min_repeat=args.min_repeat,
            budget_s=args.budget,
            clients=args.clients,
            client_ops=args.client_ops,
            concurrency_size=args.concurrency_size,
            concurrency_timeout_s=args.concurrency_timeout,
            random_seed=args.random_seed,
        ).validate()
    except ValueError as error:
        err.print(f"[red]{PROG} bench: {error}[/]")
        return 2
    if args.url is not None:
        try:
            parse_url(args.url)  # a bad URL is a usage error, told before anything starts
        except InvalidUrlError as error:
            err.print(f"[red]{PROG} bench: --url: {error}[/]")
            return 2

    started = time.monotonic()
    interrupts = _Interrupts()
    cleanup_failures: list[str] = []
    try:
        with (
            _warnings_collected(CleanupWarning, cleanup_failures),
            interrupts.installed(),
            _progress(err, not args.no_progress, interrupts) as progress,
        ):
            report = run_bench(config, url=args.url, progress=progress)
            interrupts.check()  # a signal during the run's last steps: honoured too
    except KeyboardInterrupt:
        if cleanup_failures:
            err.print(f"[red]{PROG} bench: interrupted; its clean-up failed:[/]")
        elif len(interrupts.received) >= interrupts.ESCAPE:
            err.print(
                f"[red]{PROG} bench: interrupted {len(interrupts.received)} times; its clean-up "
                "may have been cut short (keys under acs-bench:<uuid>: may remain)[/]"
            )
        else:
            done = "its keys were removed" + (" and its server stopped" if args.url is None else "")
            err.print(f"[yellow]{PROG} bench: interrupted; {done}[/]")
        _print_cleanup_failures(err, cleanup_failures)
        return interrupts.exit_status
    except (ServerNotFoundError, ServerStartError) as error:
        err.print(f"[red]{PROG} bench: could not start a Redis server: {error}[/]")
        _print_cleanup_failures(err, cleanup_failures)
        return 1
    except (redis.RedisError, ChatStoreError, OSError) as error:
        err.print(f"[red]{PROG} bench: {type(error).__name__}: {error}[/]")
        _print_cleanup_failures(err, cleanup_failures)
        return 1
    report.command = command

    print_report(out, report)
    if args.out is not None:
        written = write_outputs(report, args.out)
        out.print(f"\nWrote {', '.join(path.name for path in written)} to {args.out}")
    out.print(f"Wall time {time.monotonic() - started:.1f} s")
    return 0


@contextmanager
def _warnings_collected(category: type[Warning], into: list[str]) -> Iterator[None]:
    """Warnings of ``category`` raised in the block go to ``into``, as text, each time; the
    others are shown as they would have been."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        try:
            yield
        finally:
            others = [w for w in caught if not issubclass(w.category, category)]
            into.extend(str(w.message) for w in caught if issubclass(w.category, category))
    for other in others:
        warnings.showwarning(other.message, other.category, other.filename, other.lineno)


def _print_cleanup_failures(console: Any, failures: Sequence[str]) -> None:
    for failure in failures:
        console.print(f"[red]{PROG} bench: clean-up: {failure}[/]")


@contextmanager
def _progress(console: Any, enabled: bool, interrupts: _Interrupts) -> Iterator[ProgressCallback]:
    """The runner's progress callback: it raises KeyboardInterrupt once a signal was recorded
    (the runner calls it between repetitions and phases), and feeds a rich progress bar when
    ``enabled``."""
    if not enabled:

        def check(done: float, total: float, description: str) -> None:
            interrupts.check()

        yield check
        return
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting", total=None)

        def update(done: float, total: float, description: str) -> None:
            interrupts.check()
            progress.update(task, completed=done, total=total, description=description)

        yield update


def print_report(console: Any, report: Any) -> None:
    """The run's tables on the terminal: the same tables, columns and rows as report.md."""
    from .bench.report import (
        call_cost_table,
        concurrency_table,
        describe_server,
        headline_table,
        notes,
        record_bytes_table,
        record_notes,
        record_time_table,
        target_table,
    )

    machine = report.machine
    console.print(
        f"\n[bold]atomic-chat-store bench[/] — {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"Python {machine.get('python')}, redis-py {machine.get('redis_py')}, "
        f"Redis {describe_server(report.server)}"
    )
    # A section per operation: a new one where the first column (the operation) changes.
    console.print(
        _rich_table("Median latency per operation", headline_table(report), sections=True)
    )

    targets = target_table(report)
    colors = {"MET": "green", "MISSED": "red"}
    for row in targets.rows:
        row[-1] = f"[{colors.get(row[-1], 'yellow')}]{row[-1]}[/]"
    console.print(_rich_table("Targets (this run's numbers, sync store)", targets))

    if report.record_cost is not None:
        console.print(
            _rich_table("Op id record: bytes per conversation", record_bytes_table(report))
        )
        console.print(_rich_table("Op id record: time per append", record_time_table(report)))
        console.print(_rich_table("Where an append's time goes", call_cost_table(report)))
        for line in record_notes(report):
            console.print(f"[dim]• {line}[/]")

    title = f"Concurrency: {report.config.clients} clients on one conversation"
    console.print(_rich_table(title, concurrency_table(report)))

    for line in notes(report):
        console.print(f"[dim]• {line}[/]")
    for warning in report.warnings:
        console.print(f"[yellow]warning: {warning}[/]")


def _rich_table(title: str, table: Table, sections: bool = False) -> RichTable:
    """A rich table of a ``bench.report.Table``: its columns' alignment, its wrong rows red."""
    from rich.table import Table as RichTable

    rendered = RichTable(title=title, title_justify="left")
    for column in table.columns:
        rendered.add_column(column.title, justify="left" if column.align == "l" else "right")
    previous = None
    for number, row in enumerate(table.rows):
        if sections and previous is not None and row[0] != previous:
            rendered.add_section()
        previous = row[0]
        wrong = number < len(table.wrong) and table.wrong[number]
        rendered.add_row(*row, style="red" if wrong else None)
    return rendered
