"""``atomic-chat-store bench --url`` against a Sentinel-managed master and a 3-master Cluster:
every system's results are right, round trips are counted through each kind of client, and the
run removes its keys, on every primary of the Cluster, and nothing else.

The servers are started as tests/test_urls_servers.py starts them (its functions, module-scoped
fixtures of this module's own), on loopback, and stopped by pid at the end.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from atomic_chat_store.bench import OPERATIONS, SYSTEMS
from atomic_chat_store.bench import runner as bench_runner
from atomic_chat_store.bench.model import NO_SUCH_OPERATION
from atomic_chat_store.cli import main
from test_urls_servers import (
    CLUSTER_PASSWORD,
    ClusterSetup,
    SentinelSetup,
    cluster_urls,
    sentinel_urls,
    start_cluster,
    start_sentinel_setup,
)

SIZES = (10, 100)
REDUCED = [
    "--sizes", ",".join(map(str, SIZES)), "--repeat", "3", "--clients", "2",
    "--client-ops", "6", "--concurrency-size", "20", "--no-progress",
]  # fmt: skip
SEED_HAS_NO = ("replace_middle", "get_last")


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[SentinelSetup]:
    setup = start_sentinel_setup(tls=None)
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture(scope="module")
def cluster_setup() -> Iterator[ClusterSetup]:
    setup = start_cluster(tls=None)
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture
def fixed_prefix(monkeypatch: pytest.MonkeyPatch) -> str:
    """The run's key prefix, known in advance so that keys can be planted under it."""
    prefix = f"acs-bench:{uuid.uuid4().hex}:"
    monkeypatch.setattr(bench_runner, "new_prefix", lambda: prefix)
    return prefix


def check_results(data: dict[str, Any], kind: str) -> None:
    """Every cell of every system and N as on a single server: this store and the floor right in
    one round trip, the seed measured (wrong only where it always is) or without the operation,
    the concurrency section complete, the record cost measured."""
    assert data["server"]["mode"] == "url" and data["server"]["kind"] == kind
    assert data["server"]["version"], data["server"]
    found = {(c["system"], c["op"], c["size"]): c for c in data["results"]}
    for system in SYSTEMS:
        for op in OPERATIONS:
            for size in SIZES:
                cell = found.pop((system, op, size))
                if system == "seed" and op in SEED_HAS_NO:
                    assert cell["status"] == NO_SUCH_OPERATION, cell
                    continue
                assert cell["status"] == "ok", cell
                assert cell["samples"] == 3, cell
                assert cell["round_trips"] == (1 if system != "seed" else cell["round_trips"])
                if system == "seed" and op == "delete_middle":
                    assert cell["correct"] is False and "reversed" in cell["detail"], cell
                else:
                    assert cell["correct"] is True, cell
    assert set(found) == {("unrecorded", "append", size) for size in SIZES}
    for cell in found.values():
        assert cell["status"] == "ok" and cell["correct"] is True, cell
        assert cell["round_trips"] == 1, cell
    by_system = {result["system"]: result for result in data["concurrency"]}
    for system in ("sync", "async", "floor"):
        result = by_system[system]
        assert result["status"] == "ok" and result["completed_ops"] == result["planned_ops"]
        assert result["anomalies"] == 0, result
    assert by_system["seed"]["status"] == "ok", by_system["seed"]
    record = data["record_cost"]
    for row in record["bytes"]:
        assert row["error"] is None, row
        assert row["appended_op_ids"] == row["size"], row
        assert 0 < row["set_record_bytes"] < row["appended_record_bytes"], row
        assert row["deleted_record_bytes"] > row["appended_list_bytes"] / 2, row
    assert {row["size"] for row in record["bytes"]} == set(SIZES)


def test_bench_on_a_sentinel_url(
    sentinel_setup: SentinelSetup, fixed_prefix: str, tmp_path: Path
) -> None:
    url, db = sentinel_urls(sentinel_setup)["several sentinels, one down"]
    with sentinel_setup.master_client(db) as master:
        master.set("unrelated:key", "keep me")
        master.rpush(fixed_prefix + "planted", "removed with the run's keys")
        before = master.dbsize()
        try:
            assert main(["bench", "--url", url, "--out", str(tmp_path), *REDUCED]) == 0
            data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
            check_results(data, "sentinel")
            assert data["key_prefix"] == fixed_prefix
            assert list(master.scan_iter(match=fixed_prefix + "*")) == []
            assert master.get("unrelated:key") == b"keep me"
            assert master.dbsize() == before - 1
        finally:
            master.delete("unrelated:key")
    assert "sentinel" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_bench_on_a_cluster_url(
    cluster_setup: ClusterSetup, fixed_prefix: str, tmp_path: Path
) -> None:
    url = cluster_urls(cluster_setup)["every node"]
    nodes = [
        redis.Redis("127.0.0.1", port, password=CLUSTER_PASSWORD) for port in cluster_setup.ports
    ]
    try:
        # Keys under the run's prefix on every primary: the clean-up must scan them all.
        planted = [f"{fixed_prefix}planted:{n}" for n in range(30)]
        holders = set()
        for key in planted:
            with cluster_setup.node_holding(key) as node:
                node.rpush(key, b"removed with the run's keys")
                holders.add(node.connection_pool.connection_kwargs["port"])
        assert holders == set(cluster_setup.ports)
        with cluster_setup.node_holding("unrelated:key") as node:
            node.set("unrelated:key", "keep me")

        assert main(["bench", "--url", url, "--out", str(tmp_path), *REDUCED]) == 0

        data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
        check_results(data, "cluster")
        for node in nodes:
            assert list(node.scan_iter(match=fixed_prefix + "*")) == []
        with cluster_setup.node_holding("unrelated:key") as node:
            assert node.get("unrelated:key") == b"keep me"
            node.delete("unrelated:key")
    finally:
        for node in nodes:
            node.close()
