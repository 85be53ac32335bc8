"""``atomic-chat-store bench``: the whole command, in process and as a subprocess, on a private
server and against the tests' server through --url."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from atomic_chat_store.bench import OPERATIONS, SYSTEMS, BenchConfig, CleanupWarning, run_bench
from atomic_chat_store.bench import runner as bench_runner
from atomic_chat_store.bench.counting import Counter
from atomic_chat_store.bench.data import make_conversation, make_message
from atomic_chat_store.bench.model import NO_SUCH_OPERATION
from atomic_chat_store.bench.systems import OpArgs
from atomic_chat_store.cli import _Interrupts, main
from atomic_chat_store.server import RedisServer

QUICK_SIZES = (10, 100, 1000)
TINY = ["--sizes", "10", "--repeat", "3", "--clients", "2", "--client-ops", "6", "--no-progress"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def results(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "results.json").read_text(encoding="utf-8"))


def cells(data: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [r for r in data["results"] if all(r[k] == v for k, v in match.items())]


def bench_keys(client: redis.Redis, prefix: str = "acs-bench:") -> list[bytes]:
    return list(client.scan_iter(match=prefix + "*", count=1000))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-quick")
    assert main(["bench", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out, results(out)


# The seed (llama-index-storage-chat-store-redis 0.8) has no replace and no range read.
SEED_HAS_NO = ("replace_middle", "get_last")


def expected_status(cell: dict[str, Any]) -> str:
    return NO_SUCH_OPERATION if cell["system"] == "seed" and cell["op"] in SEED_HAS_NO else "ok"


def test_quick_run_has_every_system_operation_and_size(quick_run):
    _, data = quick_run
    assert data["config"]["quick"] is True
    assert data["config"]["sizes"] == list(QUICK_SIZES)
    assert data["server"]["mode"] == "private"
    for system in SYSTEMS:
        for op in OPERATIONS:
            for size in QUICK_SIZES:
                found = cells(data, system=system, op=op, size=size)
                assert len(found) == 1, (system, op, size)
                cell = found[0]
                if system == "seed" and op in SEED_HAS_NO:
                    assert cell["status"] == NO_SUCH_OPERATION, cell
                    assert cell["samples"] == 0 and cell["error"] is None, cell
                    assert "has no such operation" in cell["detail"], cell
                    continue
                assert cell["status"] == "ok", cell
                assert cell["samples"] >= data["config"]["min_repeat"]
                assert 0 < cell["median_s"] <= cell["p99_s"]
                assert cell["ops_per_s"] > 0


def test_this_store_is_one_round_trip_and_right_everywhere(quick_run):
    _, data = quick_run
    for system in ("sync", "async"):
        for cell in cells(data, system=system):
            assert cell["round_trips"] == 1, cell
            assert cell["commands"] == 1, cell
            assert cell["correct"] is True, cell
    round_trip_target = next(t for t in data["targets"] if t["name"] == "one_round_trip")
    assert round_trip_target["status"] == "met"


def test_seed_delete_at_the_middle_is_marked_wrong(quick_run):
    _, data = quick_run
    for cell in cells(data, system="seed", op="delete_middle"):
        assert cell["correct"] is False, cell
        assert "reversed" in cell["detail"]
    # Its other operations are right when alone, just slow: many round trips.
    for op in ("append", "insert_middle", "delete_last", "set_all", "get_all"):
        for cell in cells(data, system="seed", op=op):
            assert cell["correct"] is True, cell
    for op in SEED_HAS_NO:
        for cell in cells(data, system="seed", op=op):
            assert cell["correct"] is None and cell["round_trips"] is None, cell
    for cell in cells(data, system="seed", op="insert_middle"):
        assert cell["round_trips"] > cell["size"]
    for cell in cells(data, system="seed", op="set_all"):
        assert cell["round_trips"] > cell["size"]


def test_floor_is_one_round_trip(quick_run):
    _, data = quick_run
    for cell in cells(data, system="floor"):
        assert cell["round_trips"] == 1, cell
        assert cell["correct"] is True, cell
        assert cell["commands"] == (2 if cell["op"] == "set_all" else 1)


def test_replace_and_last_20_rows(quick_run):
    """Both new rows are measured on the store (sync and async) and the floor, checked against a
    Python list, one round trip each; the seed's cells say it has no such operation, in the
    report's tables too, never as an error or an empty cell."""
    out, data = quick_run
    for op in SEED_HAS_NO:
        for system in ("sync", "async", "floor"):
            for cell in cells(data, system=system, op=op):
                assert cell["status"] == "ok" and cell["correct"] is True, cell
                assert cell["round_trips"] == 1 and cell["commands"] == 1, cell
        for ratio in (r for r in data["ratios"] if r["op"] == op):
            assert ratio["seed_over_store"] is None and ratio["store_over_floor"] > 0, ratio
    assert data["floor_definitions"]["replace_middle"].startswith("LSET key")
    assert data["floor_definitions"]["get_last"].startswith("LRANGE key -20 -1")
    report = (out / "report.md").read_text(encoding="utf-8")
    for label in ("replace at the middle", "last 20 of N"):
        rows = [line for line in report.splitlines() if line.startswith(f"| {label} |")]
        assert len(rows) == len(QUICK_SIZES), label
        for row in rows:
            columns = [column.strip() for column in row.strip("|").split("|")]
            assert columns[4] == NO_SUCH_OPERATION, row  # the seed's latency
            assert columns[6] == "no such op", row  # seed ÷ store
            assert columns[8] == "1/no op/1" and columns[9] == "yes/no op/yes", row
    assert "The seed has no such operation as replace at the middle or last 20 of N" in report


def test_the_check_catches_a_wrong_replace_or_last_20():
    """The correctness pass compares against a Python list: a replace that leaves the old
    message, returns the new one or puts it elsewhere, and a range read of the wrong end, fail."""
    canonical = make_conversation("c", 30, 100)
    new = make_message("new", 100)
    ids = [m.ident for m in canonical]
    replace = OpArgs("replace_middle", 30, 15, new, canonical[15])
    right = [*ids[:15], "new", *ids[16:]]
    assert bench_runner.check_result(replace, canonical, right, ids[15]) == (True, "")
    assert not bench_runner.check_result(replace, canonical, ids, ids[15])[0]
    assert not bench_runner.check_result(replace, canonical, right, "new")[0]
    elsewhere = [*ids[:14], "new", *ids[15:]]
    del elsewhere[15]
    assert not bench_runner.check_result(replace, canonical, elsewhere, ids[15])[0]
    last = OpArgs("get_last", 30, 15, new, canonical[15])
    assert bench_runner.check_result(last, canonical, ids, ids[-20:]) == (True, "")
    correct, detail = bench_runner.check_result(last, canonical, ids, ids[:20])
    assert not correct and detail.startswith("returned")
    assert not bench_runner.check_result(last, canonical, ids, ids[-19:])[0]


def test_record_cost_section(quick_run):
    """Bytes of the list and of its record for every N, written by one set_messages and by N
    appends, and after delete_messages; the append with and without its op id recorded, beside
    RPUSH, in the same interleaved groups; the server's and Python's share of each call."""
    out, data = quick_run
    record = data["record_cost"]
    assert record["error"] is None and record["window_size"] == 1000
    rows = {row["size"]: row for row in record["bytes"]}
    assert set(rows) == set(QUICK_SIZES)
    message_bytes = data["config"]["message_bytes"]
    for size, row in rows.items():
        assert row["error"] is None, row
        assert row["set_op_ids"] == 1
        # The newest 1,000 ids at least; older ones leave 32 at a time.
        assert min(size, 1000) <= row["appended_op_ids"] <= min(size, 1000 + 32)
        assert min(size + 1, 1000) <= row["deleted_op_ids"] <= min(size + 1, 1000 + 32)
        assert row["set_list_bytes"] >= size * message_bytes
        assert row["appended_list_bytes"] >= size * message_bytes
        assert 0 < row["set_record_bytes"] < row["appended_record_bytes"]
        # The record keeps what delete_messages removed, as the reply of its op id.
        assert row["deleted_record_bytes"] > row["appended_record_bytes"] + size * message_bytes
    calls = {call["name"]: call for call in record["calls"]}
    assert set(calls) == {"recorded", "unrecorded", "rpush"}
    for name, call in calls.items():
        # A private server: only the bench's own calls are counted.
        assert call["calls"] == 5 * data["config"]["repeat"], call
        assert call["server_us"] > 0, call
        assert (call["build_us"] is None) == (name == "rpush"), call
    for size in QUICK_SIZES:
        [unrecorded] = cells(data, system="unrecorded", op="append", size=size)
        assert unrecorded["status"] == "ok" and unrecorded["correct"] is True, unrecorded
        assert unrecorded["round_trips"] == 1 and unrecorded["commands"] == 1
        assert unrecorded["samples"] >= data["config"]["min_repeat"]
    assert {c["op"] for c in cells(data, system="unrecorded")} == {"append"}
    assert data["systems"]["unrecorded"]["label"].endswith("(bench only)")
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in (
        "## What the op id record costs",
        "### Bytes per conversation",
        "### Time per append",
        "### Where an append's time goes",
    ):
        assert heading in report
    assert "After delete_messages the record keeps the removed messages" in report
    assert "record-cost.png" in data["plots"]


def test_the_unrecorded_append_records_nothing(redis_url, redis_client):
    """The bench's append without an op id changes the list and the version, and leaves no op id
    in the record; fill_record fills a record to its window, as the timed appends start from."""
    from atomic_chat_store.bench import record
    from atomic_chat_store.bench.systems import SyncStore, UnrecordedStore

    prefix = f"acs-bench:{uuid.uuid4().hex}:"
    conversation = make_conversation("c", 5, 100)
    new = make_message("new", 100)
    unrecorded = UnrecordedStore(prefix, redis_client)
    recorded = SyncStore(prefix, redis_client)
    args = OpArgs("append", 5, 2, new, conversation[2])
    for system in (unrecorded, recorded):
        list_key, record_key = record.keys_of(redis_client, prefix, system.name)
        bench_runner.reset_conversation(redis_client, list_key.decode(), conversation)
        assert system.run(system.call(args, system.name)) == 6
        assert redis_client.lindex(list_key, -1) == new.payload
        fields = set(redis_client.hkeys(record_key))
        assert b"v" in fields  # the version is bumped either way
        op_ids = [field for field in fields if field.startswith(b"o:")]
        assert len(op_ids) == (0 if system is unrecorded else 1), fields
    with pytest.raises(ValueError, match="no such operation"):
        unrecorded.call(OpArgs("delete_last", 5, 2, new, None), "x")

    record.fill_record(redis_client, prefix, "filled", new)
    list_key, record_key = record.keys_of(redis_client, prefix, "filled")
    assert redis_client.llen(list_key) == 1000
    assert sum(1 for _ in redis_client.hscan_iter(record_key, match="o:*")) == 1000


def test_concurrency_section(quick_run):
    _, data = quick_run
    by_system = {r["system"]: r for r in data["concurrency"]}
    assert set(by_system) == set(SYSTEMS)
    for system in ("sync", "async"):
        result = by_system[system]
        assert result["status"] == "ok"
        assert result["completed_ops"] == result["planned_ops"] > 0
        assert result["anomalies"] == 0, result
        assert result["final_length"] == result["expected_length"]
    assert by_system["seed"]["status"] == "ok"


def test_targets_ratios_and_files(quick_run):
    out, data = quick_run
    names = {t["name"] for t in data["targets"]}
    assert names == {
        "one_round_trip",
        "append_vs_rpush",
        "insert_middle_1000",
        "delete_middle_1000",
        "set_all_1000",
        "get_all_1000",
    }
    assert all(t["status"] in ("met", "missed") for t in data["targets"])
    assert {r["op"] for r in data["ratios"]} == set(OPERATIONS)
    machine = data["machine"]
    for field in ("cpu", "cores", "python", "redis_py", "redis_server"):
        assert machine[field], field
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Machine", "## Latency", "## Targets", "## Concurrency", "## The floor"):
        assert heading in report
    assert data["plots"]
    for name in data["plots"]:
        png = (out / name).read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 1000, name
        assert f"]({name})" in report


def test_python_dash_m_bench_quick(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "atomic_chat_store", "bench", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Targets" in completed.stdout
    assert "Concurrency" in completed.stdout
    data = results(tmp_path)
    # Every system and operation, and the append without op id recorded, at every N.
    assert len(data["results"]) == (len(SYSTEMS) * len(OPERATIONS) + 1) * len(QUICK_SIZES)
    assert "Op id record: bytes per conversation" in completed.stdout
    assert data["command"].startswith("atomic-chat-store bench --quick")


def test_url_mode_touches_only_its_own_keys(redis_url, redis_client, tmp_path):
    redis_client.set("unrelated:key", "keep me")
    redis_client.rpush("acs-bench:someone-else:chat", "not ours")
    before = redis_client.dbsize()

    assert main(["bench", "--url", redis_url, "--out", str(tmp_path), *TINY]) == 0

    data = results(tmp_path)
    assert data["server"]["mode"] == "url"
    prefix = data["key_prefix"]
    assert prefix.startswith("acs-bench:") and prefix.endswith(":")
    assert bench_keys(redis_client, prefix) == []
    assert redis_client.get("unrelated:key") == b"keep me"
    assert redis_client.lrange("acs-bench:someone-else:chat", 0, -1) == [b"not ours"]
    assert redis_client.dbsize() == before
    assert all(c["status"] == expected_status(c) for c in data["results"])


def test_keys_are_removed_when_interrupted(redis_url, redis_client):
    redis_client.set("unrelated:key", "keep me")
    calls = []

    def interrupt(done: float, total: float, description: str) -> None:
        calls.append(description)
        if len(calls) == 8:
            assert bench_keys(redis_client), "the run should have written keys by now"
            raise KeyboardInterrupt

    config = BenchConfig(sizes=(10, 100), repeat=5, clients=2, client_ops=4)
    with pytest.raises(KeyboardInterrupt):
        run_bench(config, url=redis_url, progress=interrupt)
    assert len(calls) == 8
    assert bench_keys(redis_client) == []
    assert redis_client.get("unrelated:key") == b"keep me"


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_keys_are_removed_on_one_signal(redis_url, redis_client, signum, status):
    """One Ctrl-C (or SIGTERM) is enough: the run stops at its next step, removes its keys
    and exits with 128 + the signal's number."""
    redis_client.set("unrelated:key", "keep me")
    process = subprocess.Popen(
        [sys.executable, "-m", "atomic_chat_store", "bench", "--url", redis_url,
         "--sizes", "10,100,1000", "--repeat", "200", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not bench_keys(redis_client) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        assert bench_keys(redis_client), "the run never wrote a key"
        process.send_signal(signum)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == status, stderr[-3000:]
    assert took < 15, f"{took:.1f} s from the signal to the exit"
    assert "interrupted" in stderr
    assert "Exception ignored" not in stderr
    assert bench_keys(redis_client) == []
    assert redis_client.get("unrelated:key") == b"keep me"


def test_signals_are_recorded_until_the_third():
    interrupts = _Interrupts()
    interrupts.check()  # nothing received: nothing raised
    interrupts.record(signal.SIGTERM, None)
    interrupts.record(signal.SIGINT, None)  # recorded only, e.g. during the clean-up
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()
    with pytest.raises(KeyboardInterrupt):
        interrupts.record(signal.SIGINT, None)  # the third: at once
    assert interrupts.exit_status == 128 + signal.SIGTERM


def _failing_removal(client: redis.Redis, prefix: str) -> int:
    raise redis.ConnectionError("the server went away")


def test_cleanup_failure_is_reported_when_interrupted(monkeypatch, redis_url, redis_client):
    monkeypatch.setattr(bench_runner, "remove_prefix", _failing_removal)

    def interrupt(done: float, total: float, description: str) -> None:
        if description.startswith("insert_middle"):
            raise KeyboardInterrupt

    config = BenchConfig(sizes=(10,), repeat=3, clients=2, client_ops=4)
    try:
        with (
            pytest.warns(CleanupWarning, match="could not remove the keys under"),
            pytest.raises(KeyboardInterrupt),
        ):
            run_bench(config, url=redis_url, progress=interrupt)
    finally:
        assert bench_runner.remove_prefix is _failing_removal
        monkeypatch.undo()
        bench_runner.remove_prefix(redis_client, "acs-bench:")


def test_cli_says_when_the_cleanup_failed(monkeypatch, redis_url, redis_client, capsys):
    """Ctrl-C (a real SIGINT, to this process) while the keys cannot be removed: the CLI must not
    claim they were."""
    monkeypatch.setattr(bench_runner, "remove_prefix", _failing_removal)
    describe_machine = bench_runner.describe_machine

    def describe_then_interrupt(client: redis.Redis) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGINT)  # recorded by the CLI; raised at the next step
        return describe_machine(client)

    monkeypatch.setattr(bench_runner, "describe_machine", describe_then_interrupt)
    try:
        assert main(["bench", "--url", redis_url, *TINY]) == 130
    finally:
        monkeypatch.undo()
        bench_runner.remove_prefix(redis_client, "acs-bench:")
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "interrupted; its clean-up failed" in err
    assert "could not remove the keys under 'acs-bench:" in err
    assert "were removed" not in err


class RecordingServer(RedisServer):
    started: list[RecordingServer] = []  # noqa: RUF012

    def start(self) -> RecordingServer:
        super().start()
        self.started_directory = self.directory
        RecordingServer.started.append(self)
        return self


@pytest.mark.parametrize("interrupted", [False, True])
def test_private_server_is_removed(monkeypatch, interrupted):
    RecordingServer.started.clear()
    monkeypatch.setattr(bench_runner, "RedisServer", RecordingServer)

    def progress(done: float, total: float, description: str) -> None:
        if interrupted and description.startswith("insert_middle"):
            raise KeyboardInterrupt

    config = BenchConfig(sizes=(10,), repeat=3, clients=2, client_ops=4)
    if interrupted:
        with pytest.raises(KeyboardInterrupt):
            run_bench(config, progress=progress)
    else:
        report = run_bench(config, progress=progress)
        assert report.server["mode"] == "private"
    [server] = RecordingServer.started
    assert server._process is None
    assert server.started_directory and not os.path.exists(server.started_directory)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_seed_not_installed(monkeypatch, redis_url, tmp_path):
    monkeypatch.setattr(bench_runner, "load_seed", lambda: None)
    assert main(["bench", "--url", redis_url, "--out", str(tmp_path), *TINY]) == 0
    data = results(tmp_path)
    assert data["systems"]["seed"]["installed"] is False
    seed_cells = cells(data, system="seed")
    assert len(seed_cells) == len(OPERATIONS)
    assert all(c["status"] == "not installed" for c in seed_cells)
    assert (
        next(r for r in data["concurrency"] if r["system"] == "seed")["status"] == "not installed"
    )
    assert all(c["status"] == "ok" for c in data["results"] if c["system"] != "seed")
    assert "not installed" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_round_trip_counter_agrees_with_monitor(redis_url, redis_client, monitored):
    """The bench counts round trips on instrumented clients; MONITOR must see the same."""
    import asyncio

    from atomic_chat_store.bench.counting import counting_async_client, counting_client
    from atomic_chat_store.bench.systems import (
        AsyncStore,
        Floor,
        Seed,
        SyncStore,
        UnrecordedStore,
        load_seed,
    )
    from atomic_chat_store.scripts import scripts

    prefix = f"acs-bench:{uuid.uuid4().hex}:"
    counter = Counter()
    loop = asyncio.new_event_loop()
    seed = load_seed()
    assert seed is not None
    clients = [counting_client(redis_url, counter) for _ in range(4)]
    async_clients = [counting_async_client(redis_url, counter) for _ in range(2)]
    systems = [
        SyncStore(prefix, clients[0]),
        AsyncStore(prefix, async_clients[0], loop),
        Seed(prefix, seed, clients[1], async_clients[1]),
        Floor(prefix, clients[2]),
        UnrecordedStore(prefix, clients[3]),
    ]
    conversation = make_conversation("c", 10, 100)
    replacement = make_conversation("r", 10, 100)
    new = make_message("new", 100)
    try:
        for client in clients:
            client.ping()  # connected before MONITOR starts: no handshake inside it
        for async_client in async_clients:
            loop.run_until_complete(async_client.ping())
        for script in scripts().values():  # no NOSCRIPT retry inside it either
            redis_client.script_load(script.source)
        for system in systems:
            for op in OPERATIONS:
                if not system.supports(op):
                    assert (system.name == "seed" and op in SEED_HAS_NO) or (
                        system.name == "unrecorded" and op != "append"
                    )
                    continue
                key = f"{op}:{system.name}"
                pipe = redis_client.pipeline(transaction=False)
                pipe.delete(prefix + key)
                pipe.rpush(prefix + key, *(m.payload for m in conversation))
                pipe.execute()
                args = OpArgs(op, 10, 5, new, conversation[5], replacement)
                call = system.call(args, key)
                counter.reset()
                with monitored() as seen:
                    system.run(call)
                sent = [c for c in seen if c.client != "lua"]
                assert counter.commands == len(sent), (system.name, op, [c.name for c in sent])
                if system.name in ("sync", "async", "unrecorded"):
                    assert counter.round_trips == 1
                    reads = ("get_all", "get_last")
                    assert [c.name for c in sent] == ["LRANGE" if op in reads else "EVALSHA"]
    finally:
        for client in clients:
            client.close()
        for async_client in async_clients:
            loop.run_until_complete(async_client.aclose())
        loop.close()
        bench_runner.remove_prefix(redis_client, prefix)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--sizes", "ten"], "not a comma-separated list of integers"),
        (["bench", "--sizes", "0,10"], "sizes must be positive integers"),
        (["bench", "--sizes", "10,10"], "sizes must not repeat"),
        (["bench", "--repeat", "0"], "repeat must be at least 1"),
        (["bench", "--client-ops", "-1"], "client ops must be at least 0"),
        (["bench", "--budget", "-1"], "budget must be a positive number of seconds"),
        (["bench", "--concurrency-timeout", "nan"], "must be a positive number of seconds"),
        ([], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_the_cli_and_the_config_agree_on_zero_client_ops(redis_url, tmp_path):
    """BenchConfig.validate is the one judge: 0 operations per client is a valid config."""
    argv = ["bench", "--url", redis_url, "--out", str(tmp_path), *TINY, "--client-ops", "0"]
    assert main(argv) == 0
    assert all(r["planned_ops"] == 0 for r in results(tmp_path)["concurrency"])


def test_report_tables_flag_wrong_rows_from_the_cells():
    """The terminal highlights a headline row from the cells' own verdicts, with the columns
    report.md uses: one spec for both."""
    from atomic_chat_store.bench import BenchReport, Cell
    from atomic_chat_store.bench.report import HEADLINE_COLUMNS, headline_table, markdown_table

    config = BenchConfig(sizes=(10,))
    found = [
        Cell(name, op, 10, samples=[1e-4], correct=True) for name in SYSTEMS for op in OPERATIONS
    ]
    for cell in found:
        if cell.system == "seed" and cell.op == "delete_middle":
            cell.correct = False
    report = BenchReport(config, {}, {}, {}, found, [], "", 0.0, "acs-bench:x:")
    table = headline_table(report)
    assert table.columns == HEADLINE_COLUMNS
    assert table.wrong == [op == "delete_middle" for op in OPERATIONS]
    separator = markdown_table(table).splitlines()[1]
    assert separator == "| --- | " + " | ".join(["---:"] * (len(HEADLINE_COLUMNS) - 1)) + " |"


class _SlowStore:
    """A store whose every call takes a while, counting the calls that ran."""

    def __init__(self, asynchronous: bool) -> None:
        self.calls = 0
        self.asynchronous = asynchronous

    def _call(self) -> Any:
        if self.asynchronous:

            async def slow() -> None:
                await asyncio.sleep(0.02)
                self.calls += 1

            return slow()
        time.sleep(0.02)
        self.calls += 1
        return None

    def add_message(self, key: str, message: Any, idx: int | None = None) -> Any:
        return self._call()

    def delete_message(self, key: str, idx: int) -> Any:
        return self._call()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["threads", "tasks"])
def test_timed_out_clients_are_stopped_before_the_analysis(asynchronous):
    from atomic_chat_store.bench import concurrency
    from atomic_chat_store.bench.systems import AsyncStore, SyncStore

    config = BenchConfig(clients=3, client_ops=200, concurrency_size=10)
    plans = concurrency.make_plans(config)
    store = _SlowStore(asynchronous)
    loop = asyncio.new_event_loop()
    try:
        kind = AsyncStore if asynchronous else SyncStore
        system: Any = kind.__new__(kind)  # no client: the slow store stands in
        system.prefix, system.store, system.loop = "acs-bench:x:", store, loop
        run = concurrency.run_tasks if asynchronous else concurrency.run_threads
        started = time.monotonic()
        logs, timed_out = run(system, "k", plans, 0.3)
        assert time.monotonic() - started < 5
        assert timed_out
        assert not [t for t in threading.enumerate() if t.name.startswith("acs-bench-client")]
        done = store.calls
        time.sleep(0.1)
        assert store.calls == done, "a client kept going after the run returned"
        assert 0 < sum(log.completed for log in logs) == done < 3 * 200
    finally:
        loop.close()


def test_a_poll_that_raises_stops_the_clients():
    from atomic_chat_store.bench import concurrency
    from atomic_chat_store.bench.systems import SyncStore

    plans = concurrency.make_plans(BenchConfig(clients=2, client_ops=500, concurrency_size=10))
    store = _SlowStore(asynchronous=False)
    system: Any = SyncStore.__new__(SyncStore)
    system.prefix, system.store = "acs-bench:x:", store

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        concurrency.run_threads(system, "k", plans, 60.0, interrupt)
    done = store.calls
    time.sleep(0.1)
    assert store.calls == done < 2 * 500


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:1", "scheme 'http' is not supported"),
        ("redis+cluster://127.0.0.1:1/3", "a Redis Cluster has only db 0"),
        ("redis+sentinel://127.0.0.1:1/bad name", "service name"),
    ],
)
def test_a_bad_url_is_a_usage_error(url, message, capsys):
    # Refused before a server is started or anything connects: a usage error, status 2.
    assert main(["bench", "--url", url, *TINY]) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_a_seed_that_cannot_be_built_says_so(monkeypatch, redis_url, tmp_path):
    """A seed that refuses the run's clients (as it could a client kind it does not know) is
    reported in its cells and its concurrency row; the rest of the run goes on."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("this client is not a redis.Redis")

    monkeypatch.setattr(bench_runner, "Seed", refuse)
    assert main(["bench", "--url", redis_url, "--out", str(tmp_path), *TINY]) == 0
    data = results(tmp_path)
    for cell in data["results"]:
        if cell["system"] == "seed":
            assert cell["status"] == "error", cell
            assert cell["error"].startswith("the seed could not be built on this server: "), cell
            assert "not a redis.Redis" in cell["error"]
        else:
            assert cell["status"] == "ok" and cell["correct"] is True, cell
    seed = next(r for r in data["concurrency"] if r["system"] == "seed")
    assert seed["status"] == "error" and "could not be built" in seed["first_error"]


def test_unreachable_url_fails_cleanly(capsys):
    # Port 1 on the loopback: nothing listens there.
    assert main(["bench", "--url", "redis://127.0.0.1:1/0", *TINY]) == 1
    assert "ConnectionError" in capsys.readouterr().err


def test_help_and_version(capsys):
    assert main(["--version"]) == 0
    assert "atomic-chat-store" in capsys.readouterr().out
    assert main(["bench", "--help"]) == 0
    assert "--url" in capsys.readouterr().out
