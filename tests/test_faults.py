"""Faults on real servers, and every write checked against a model (a Python list).

Each scenario drives the same workload (tests/fault_harness.py: every kind of write, two
batches, reads) through a fault, records every call in a ModelChecker and compares the
conversation as Redis holds it (LRANGE on a direct client) with the model: nothing lost,
duplicated or reordered, every returned value right, every error typed.

The matrix: sync and async stores; a client the user built (redis-py's default Retry sends a
write again by itself) and the store's own (no redis-py retry: the store sends it again); and
``record``: "recorded" runs the scripts as they are, "unrecorded" the same scripts with their
replay test disabled (a write met again is applied again). The same scenario must be consistent
recorded and show the named anomalies unrecorded: so each test is shown to fail when op ids are
not recorded. Every fault is placed by a proxy rule or an event with an exact count, not by
chance, so that the unrecorded runs always go wrong. Both kinds of client exhibit the
duplicates: the user's because redis-py sends again, the store's own because the store does.

Faults that apply nothing (maxmemory, ACL refusals) have no unrecorded failure mode: those
tests show that the refusal comes before the first write. tests/test_fault_regressions.py
reproduces each defect of the code before exactly-once writes with that code's API (it fails
there), including the async store's first call on pooled connections the server closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio

import atomic_chat_store.base
from atomic_chat_store import (
    AsyncRedisChatStore,
    ChatStoreError,
    OutcomeUnknownError,
    OutOfMemoryError,
    PermissionDeniedError,
    RetryPolicy,
)
from atomic_chat_store import operations as ops
from atomic_chat_store.scripts import Script, scripts
from fault_harness import (
    CLIENTS,
    HOST,
    MODES,
    Step,
    Workload,
    background,
    carrying,
    debug_sleep,
    executing,
    load_scripts,
    msg,
    msgs,
    open_store,
    running,
    seed,
    seen,
    stored_texts,
    verdict,
)
from faults import Fault, FaultProxy, KillableServer, Request, acl_user, memory_limit, wait_until
from model_checker import Append, DeleteAt, Insert, ModelChecker, Read, Replace
from servers import RunningServer

Hook = Callable[[Workload, Step], None]

# ----------------------------------------------------------------------------------------------
# recorded / unrecorded

# The test in lua/includes/prelude.lua's begin() that returns a recorded reply instead of
# applying the write again.
REPLAY_TEST = "if op_id ~= '' and record.reply then"


def scripts_without_replay() -> dict[str, Script]:
    """Every script as the store loads it, its replay test replaced by ``if false then``: ids
    are still written to the record, but a write met again is applied again."""
    patched = {}
    for name, script in scripts().items():
        assert script.source.count(REPLAY_TEST) == 1, (
            f"lua/{name}.lua (with its includes) no longer holds the replay test "
            f"{REPLAY_TEST!r}: update REPLAY_TEST"
        )
        source = script.source.replace(REPLAY_TEST, "if false then")
        patched[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return patched


@pytest.fixture(params=["recorded", "unrecorded"])
def record(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Stores made in the test run the scripts as they are, or without their replay test."""
    if request.param == "unrecorded":
        patched = scripts_without_replay()
        monkeypatch.setattr(atomic_chat_store.base, "scripts", lambda: patched)
    return str(request.param)


def matrix(test: Callable[..., Any]) -> Callable[..., Any]:
    """sync/async x the user's client/the store's own (x ``record``, a fixture)."""
    test = pytest.mark.parametrize("client", CLIENTS)(test)
    return pytest.mark.parametrize("mode", MODES)(test)


def test_unrecorded_scripts_apply_a_write_met_again_twice(
    record: str, fault_server: RunningServer, fault_redis: redis.Redis
) -> None:
    """The fixture does what it says, with no fault: the same op id sent twice."""
    with open_store("sync", "own", fault_server.port, socket_timeout=2) as store:
        assert store.add_message("chat", msg("a"), op_id="once") == 1
        assert store.add_message("chat", msg("a"), op_id="once") == (
            1 if record == "recorded" else 2
        )
    assert stored_texts(fault_redis, "chat") == (["a"] if record == "recorded" else ["a", "a"])


# ----------------------------------------------------------------------------------------------
# Hooks: a fault around one step


def with_rule(arm: Callable[[], Any], fault: Fault, proxy: FaultProxy) -> Hook:
    """Arm a proxy rule just before the step, so that it meets the step's own request; check
    that the fault took effect."""

    def hook(workload: Workload, step: Step) -> None:
        before = len(proxy.fired(fault))
        arm()
        workload.perform(step)
        assert len(proxy.fired(fault)) == before + 1, f"the fault never met {step.name}"

    return hook


def then(
    proxy: FaultProxy, fault: Fault, action: Callable[[], object], arm: Callable[[], Any]
) -> Hook:
    """Arm a rule (a held reply: the server has applied the write), and once it took effect,
    ``action`` (cut, outage, kill), from another thread while the step waits."""

    def hook(workload: Workload, step: Step) -> None:
        before = len(proxy.fired(fault))
        arm()

        def act() -> None:
            wait_until(lambda: len(proxy.fired(fault)) > before, timeout=10, interval=0.005)
            action()

        with background(act):
            workload.perform(step)

    return hook


def repeatedly(
    action: Callable[[], object], stop: threading.Event, every: float, most: int
) -> None:
    """``action`` every ``every`` s (jittered) until ``stop``, at most ``most`` times, 10 s."""
    deadline = time.monotonic() + 10
    rng = random.Random(7)
    for _ in range(most):
        if stop.wait(every * rng.uniform(0.5, 1.5)) or time.monotonic() > deadline:
            return
        action()


def burst_with(workload: Workload, action: Callable[[], object], every: float, most: int) -> None:
    """A burst of appends while ``action`` repeats in another thread: faults at arbitrary
    points (an extra, chance-placed phase; the deterministic faults come before)."""
    stop = threading.Event()
    with background(lambda: repeatedly(action, stop, every, most)):
        try:
            workload.burst(40, prefix="burst")
        finally:
            stop.set()


def no_errors(workload: Workload) -> None:
    assert workload.raised() == [], [repr(error) for error in workload.raised()]


# ----------------------------------------------------------------------------------------------
# The proxy's faults


@matrix
def test_a_lost_reply_is_sent_again_and_applied_once(
    mode: str, client: str, record: str, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """The server applies the write, the proxy drops its reply and closes the connection."""
    load_scripts(fault_redis)
    proxy = fault_proxy

    def drop(where: Callable[[Request], bool]) -> Hook:
        return with_rule(lambda: proxy.drop_reply(where=where), Fault.DROP_REPLY_AND_CLOSE, proxy)

    hooks = {
        "set": drop(carrying("s0")),
        "wipe": drop(running("delete_all")),
        "append": drop(carrying("a0")),
        "extend": drop(carrying("e0")),
        "insert_mid": drop(carrying("i0")),
        "insert_end": drop(carrying("i3")),
        "delete_mid": drop(running("delete_at")),
        "delete_last": drop(running("delete_last")),
        "batch_tx": drop(executing),
        "batch_pipe": drop(carrying("c0")),
    }
    with open_store(mode, client, proxy.port, socket_timeout=2) as store:
        workload = Workload(store).run(hooks)
    no_errors(workload)
    # Unrecorded: a0, e0, i0, b0, c0 ... twice; delete_mid and delete_last remove a second one.
    verdict(workload.check(fault_redis), record, {"duplicated", "lost", "wrong_returns"})


@matrix
def test_a_hung_reply_times_out_and_the_write_is_sent_again(
    mode: str, client: str, record: str, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """The server applies it, the reply never comes, the connection stays open: a timeout."""
    load_scripts(fault_redis)
    proxy = fault_proxy

    def hang(where: Callable[[Request], bool]) -> Hook:
        return with_rule(lambda: proxy.hang_reply(where=where), Fault.DROP_REPLY_AND_HANG, proxy)

    hooks = {
        "append": hang(carrying("a0")),
        "delete_mid": hang(running("delete_at")),
        "batch_tx": hang(executing),
    }
    with open_store(mode, client, proxy.port, socket_timeout=0.2) as store:
        workload = Workload(store).run(hooks)
    no_errors(workload)
    verdict(workload.check(fault_redis), record, {"duplicated", "lost", "wrong_returns"})


@matrix
def test_a_reply_later_than_the_socket_timeout_is_not_applied_twice(
    mode: str, client: str, record: str, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """The reply comes, 1 s after the client's 0.2 s socket timeout: the client gave up."""
    load_scripts(fault_redis)
    proxy = fault_proxy

    def delay(where: Callable[[Request], bool]) -> Hook:
        return with_rule(
            lambda: proxy.delay_reply(None, 1.0, where=where), Fault.DELAY_REPLY, proxy
        )

    hooks = {
        "insert_mid": delay(carrying("i0")),
        "delete_last": delay(running("delete_last")),
        "batch_pipe": delay(carrying("c0")),
    }
    with open_store(mode, client, proxy.port, socket_timeout=0.2) as store:
        workload = Workload(store).run(hooks)
    no_errors(workload)
    verdict(workload.check(fault_redis), record, {"duplicated", "lost", "wrong_returns"})


@matrix
def test_connections_cut_during_a_burst_lose_and_duplicate_nothing(
    mode: str, client: str, record: str, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """Every connection cut while a write's reply is on its way (held 0.5 s by the proxy, so
    the cut surely falls after the server applied it); then cuts at arbitrary points of a
    burst of appends."""
    load_scripts(fault_redis)
    proxy = fault_proxy

    def cut(where: Callable[[Request], bool]) -> Hook:
        return then(
            proxy,
            Fault.DELAY_REPLY,
            proxy.cut_all,
            lambda: proxy.delay_reply(None, 0.5, where=where),
        )

    hooks = {
        "append": cut(carrying("a0")),
        "insert_mid": cut(carrying("i0")),
        "delete_head": cut(running("delete_at")),
        "batch_tx": cut(executing),
    }
    with open_store(mode, client, proxy.port, socket_timeout=2) as store:
        workload = Workload(store).run(hooks)
        burst_with(workload, proxy.cut_all, every=0.01, most=30)
    assert len([event for event in proxy.events if event.kind == "cut"]) >= len(hooks)
    no_errors(workload)
    verdict(workload.check(fault_redis), record, {"duplicated", "lost", "wrong_returns"})


@matrix
def test_an_outage_of_two_seconds_is_ridden_out_by_the_default_budget(
    mode: str, client: str, record: str, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """The transaction's EXEC is applied, then every connection is cut and new ones are refused
    for 2 s; the default RetryPolicy (20 s) sends it again once the proxy is back."""
    load_scripts(fault_redis)
    proxy = fault_proxy
    hooks = {
        "batch_tx": then(
            proxy,
            Fault.DELAY_REPLY,
            lambda: proxy.outage(2.0),
            lambda: proxy.delay_reply(None, 0.5, where=executing),
        )
    }
    with open_store(mode, client, proxy.port, socket_timeout=2) as store:
        workload = Workload(store).run(hooks)
    assert any(event.kind == "refused" for event in proxy.events)
    no_errors(workload)
    verdict(workload.check(fault_redis), record, {"duplicated", "lost", "wrong_returns"})


@matrix
def test_a_short_budget_ends_in_outcome_unknown_and_the_op_id_sent_again_applies_once(
    mode: str, client: str, record: str, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """RetryPolicy(attempts=3, timeout=1): the write is applied, its reply lost, and every new
    connection refused until the store gives up: OutcomeUnknownError naming the op id(s). Once
    the proxy is back, the caller sends the write again with that op id (a batch: the same
    Operation values); the reply must be the first application's."""
    load_scripts(fault_redis)
    proxy = fault_proxy

    def refused_until_given_up(where: Callable[[Request], bool]) -> Hook:
        def hook(workload: Workload, step: Step) -> None:
            before = len(proxy.fired(Fault.DELAY_REPLY))
            proxy.delay_reply(None, 0.5, where=where)

            def cut_off() -> None:
                wait_until(
                    lambda: len(proxy.fired(Fault.DELAY_REPLY)) > before, timeout=10, interval=0.005
                )
                proxy.refuse_new(True)
                proxy.cut_all()

            try:
                with background(cut_off):
                    calls = workload.perform(step)
            finally:
                proxy.refuse_new(False)
            error = calls[0].raised
            assert isinstance(error, OutcomeUnknownError), [call.raised for call in calls]
            if step.parts:
                assert step.operations is not None
                assert error.op_ids == tuple(o.op_id for o in step.operations if o.op_id)
                assert all(call.raised is error for call in calls)
            else:
                assert error.op_id == calls[0].op_id
            resent = workload.resend(step, error)
            assert [call.raised for call in resent] == [None] * len(resent)

        return hook

    hooks = {"append": refused_until_given_up(carrying("a0"))}
    if client == "own":
        # With the user's client, each of the store's attempts is redis-py's 10 retries (2.6 s
        # on average): one such write is enough there.
        hooks["batch_pipe"] = refused_until_given_up(carrying("c0"))
    budget = RetryPolicy(attempts=3, timeout=1.0)
    with open_store(mode, client, proxy.port, socket_timeout=2, retry=budget) as store:
        workload = Workload(store).run(hooks)
    unknown = [error for error in workload.raised() if isinstance(error, OutcomeUnknownError)]
    assert len(unknown) == (5 if client == "own" else 1)  # the append, and the batch of 4
    assert len(workload.raised()) == len(unknown)
    # Unrecorded: the re-sent append and batch apply a second time, and say so in their replies.
    verdict(workload.check(fault_redis), record, {"duplicated", "wrong_returns"})


# ----------------------------------------------------------------------------------------------
# Faults of the server itself


@matrix
def test_debug_sleep_times_out_the_client_and_nothing_is_applied_twice(
    mode: str, client: str, record: str, fault_server: RunningServer, fault_redis: redis.Redis
) -> None:
    """DEBUG SLEEP 0.5 from another connection, the store's socket_timeout 0.2: each targeted
    write reaches the sleeping server, times out and is sent again (by redis-py and/or the
    store) on new connections; the server wakes up and runs every copy."""
    load_scripts(fault_redis)

    def asleep(workload: Workload, step: Step) -> None:
        with debug_sleep(fault_server.port, 0.5):
            workload.perform(step)

    hooks = {"append": asleep, "batch_tx": asleep}
    with open_store(mode, client, fault_server.port, socket_timeout=0.2) as store:
        workload = Workload(store).run(hooks)
    no_errors(workload)
    verdict(workload.check(fault_redis), record, {"duplicated", "lost", "wrong_returns"})


def kill_clients(port: int, killer: redis.Redis | None = None) -> int:
    """CLIENT KILL TYPE normal SKIPME yes: every client connection but the killer's."""
    own = killer is None
    killer = killer or redis.Redis(host=HOST, port=port, socket_timeout=10, retry=None)
    try:
        return int(killer.client_kill_filter(_type="normal", skipme=True))
    finally:
        if own:
            killer.close()


@matrix
def test_client_kill_during_a_burst_loses_and_duplicates_nothing(
    mode: str,
    client: str,
    record: str,
    fault_server: RunningServer,
    fault_proxy: FaultProxy,
    fault_redis: redis.Redis,
) -> None:
    """CLIENT KILL TYPE normal SKIPME yes from another connection, right after the server ran a
    write and before it sent the reply. Made certain: the server sleeps (DEBUG SLEEP 0.3), the
    write reaches it (the proxy forwarded it: the proxy only watches, it injects nothing), then
    the CLIENT KILL; the server wakes, runs the write, then the kill, whose victims' replies
    are still unsent. Then kills at arbitrary points of a burst."""
    load_scripts(fault_redis)
    port, proxy = fault_server.port, fault_proxy

    def killed_after_running(where: Callable[[Request], bool]) -> Hook:
        def hook(workload: Workload, step: Step) -> None:
            kills: list[int] = []
            # Connected before the sleep: a connection accepted after it would be served after
            # the server had already sent the write's reply.
            killer = redis.Redis(host=HOST, port=port, socket_timeout=10, retry=None)
            killer.ping()
            forwarded = seen(proxy, "request", where)

            def kill() -> None:
                wait_until(lambda: seen(proxy, "request", where) > forwarded, 5, interval=0.002)
                # The proxy logs a request just before it writes it: a margin for the bytes to
                # reach the server's socket before the killer's.
                time.sleep(0.02)
                kills.append(kill_clients(port, killer))

            try:
                with debug_sleep(port, 0.3), background(kill):
                    workload.perform(step)
            finally:
                killer.close()
            assert kills and kills[0] >= 2  # the store's connection (proxied), the sleeper's

        return hook

    hooks = {
        "append": killed_after_running(carrying("a0")),
        "insert_mid": killed_after_running(carrying("i0")),
        "batch_tx": killed_after_running(executing),
    }
    with open_store(mode, client, proxy.port, socket_timeout=2) as store:
        workload = Workload(store).run(hooks)
        burst_with(workload, lambda: kill_clients(port), every=0.01, most=30)
    no_errors(workload)
    verdict(workload.check(fault_redis), record, {"duplicated", "lost", "wrong_returns"})


@matrix
def test_script_flush_during_a_burst_surfaces_no_noscript_and_applies_once(
    mode: str,
    client: str,
    record: str,
    fault_server: RunningServer,
    fault_proxy: FaultProxy,
    fault_redis: redis.Redis,
) -> None:
    """SCRIPT FLUSH from another connection: before a write (NOSCRIPT: the store sends it again
    as EVAL of its source); in the middle of a pipeline (its first write ran, the next ones meet
    NOSCRIPT: the whole batch is sent again, and the first must replay); then flushes at
    arbitrary points of a burst."""
    load_scripts(fault_redis)
    proxy = fault_proxy
    flusher = redis.Redis.from_url(fault_server.url)

    def flushed_before(workload: Workload, step: Step) -> None:
        flusher.script_flush()
        workload.perform(step)

    def flushed_within(workload: Workload, step: Step) -> None:
        # The pipeline's second EVALSHA waits 0.3 s in the proxy; the flush comes once the
        # first one's reply has come back (it ran).
        before = len(proxy.fired(Fault.DELAY_REQUEST))
        proxy.delay_request(None, 0.3, where=running("delete_at"))
        first = carrying("c0")

        def flush() -> None:
            wait_until(
                lambda: (
                    len(proxy.fired(Fault.DELAY_REQUEST)) > before
                    and seen(proxy, "reply", first) > 0
                ),
                timeout=5,
                interval=0.002,
            )
            flusher.script_flush()

        with background(flush):
            workload.perform(step)

    hooks = {"append": flushed_before, "insert_mid": flushed_before, "batch_pipe": flushed_within}
    try:
        with open_store(mode, client, proxy.port, socket_timeout=2) as store:
            workload = Workload(store).run(hooks)
            burst_with(workload, flusher.script_flush, every=0.005, most=60)
    finally:
        flusher.close()
    assert proxy.forwarded["EVAL"] >= len(hooks)  # the store sent the scripts' source
    no_errors(workload)
    # Unrecorded: c0, which ran before the flush, is appended again.
    verdict(workload.check(fault_redis), record, {"duplicated", "wrong_returns"})


@matrix
def test_kill_9_after_a_write_applied_and_restart_applies_it_once(
    mode: str, client: str, record: str, killable_server: KillableServer
) -> None:
    """A server with appendonly yes, appendfsync always: the write is applied (and on disk:
    the reply is sent only after the fsync), the proxy holds its reply, the server is killed
    with SIGKILL and restarted on the same port and data. The store rides out the restart
    (refused connections, then NOSCRIPT: the script cache is gone) and sends the write again:
    the record came back from the AOF, so it replays. Then a kill in the middle of a burst."""
    direct = redis.Redis.from_url(killable_server.url)
    key = f"chat-{uuid.uuid4().hex[:8]}"  # the server keeps its data across tests
    load_scripts(direct)

    def kill_and_restart() -> None:
        killable_server.kill()
        killable_server.restart()

    with FaultProxy(killable_server.port) as proxy:

        def killed(where: Callable[[Request], bool]) -> Hook:
            return then(
                proxy,
                Fault.DROP_REPLY_AND_HANG,
                kill_and_restart,
                lambda: proxy.hang_reply(where=where),
            )

        hooks = {"insert_mid": killed(carrying("i0")), "batch_tx": killed(executing)}
        try:
            with open_store(mode, client, proxy.port, socket_timeout=2) as store:
                workload = Workload(store, key).run(hooks)

                def kill_midway() -> None:
                    wait_until(lambda: len(workload.calls) >= 30, timeout=10, interval=0.002)
                    kill_and_restart()

                with background(kill_midway):
                    workload.burst(40, prefix="burst")
            no_errors(workload)
            report = workload.check(direct)
        finally:
            direct.delete(key)
            direct.close()
    verdict(report, record, {"duplicated", "lost", "wrong_returns"})


# ----------------------------------------------------------------------------------------------
# Refusals: nothing applied (no unrecorded failure mode)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("mode", MODES)
def test_at_maxmemory_deletes_run_and_other_writes_are_refused_whole(
    mode: str, client: str, fault_server: RunningServer, fault_redis: redis.Redis
) -> None:
    """maxmemory 1 (noeviction): deletes run (their scripts allow OOM: they free memory),
    every other write raises OutOfMemoryError and changes nothing; a transaction holding one
    is refused whole (BatchError, applied False); a pipeline runs its deletes."""
    before = ["set", "append", "extend", "insert_mid", "insert_head", "insert_end"]
    limited = [
        "append", "insert_mid", "extend", "set", "delete_mid", "delete_head", "delete_out",
        "delete_last", "read", "batch_tx", "batch_pipe", "count", "wipe", "read_end",
    ]  # fmt: skip
    with open_store(mode, client, fault_server.port, socket_timeout=2) as store:
        workload = Workload(store).run(names=before)
        done = len(workload.calls)
        with memory_limit(fault_server.url, 1):
            workload.run(names=limited)
            outcome = [
                type(call.raised).__name__ if call.raised else "ok"
                for call in workload.calls[done:]
            ]
            assert outcome == [
                *["OutOfMemoryError"] * 4,  # append, insert, extend, set
                *["ok"] * 5,  # the deletes, the read
                *["OutOfMemoryError"] * 6,  # the transaction: all of it
                "OutOfMemoryError", "ok", "OutOfMemoryError", "ok",  # the pipeline
                "ok", "ok", "ok",  # count, delete everything, read
            ]  # fmt: skip
            tx_error = workload.calls[done + 9].raised
            assert isinstance(tx_error, OutOfMemoryError)
    workload.checker.assert_consistent(stored_texts(fault_redis, "chat"))


@pytest.mark.parametrize("missing", ["linsert", "lrem", "pexpire"])
@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("mode", MODES)
def test_a_user_without_a_command_a_write_needs_is_refused_before_anything_changes(
    mode: str, client: str, missing: str, fault_server: RunningServer, fault_redis: redis.Redis
) -> None:
    """An ACL user with every command but ``missing``: the writes that may need it raise
    PermissionDeniedError naming it (a batch: BatchError holding it) and change nothing, no
    mark left behind; the others and reads work. PEXPIRE is needed by every write (the
    record's expiry), LINSERT by every insert, LREM by every delete at an index."""
    initial = ["s0", "s1", "s2", "s3", "s4", "s5"]
    seed(fault_redis, "chat", initial)
    refused_steps = {
        "linsert": {"insert_mid", "insert_head", "insert_neg", "insert_end"},
        "lrem": {"delete_mid", "delete_head", "delete_out"},
        "pexpire": {
            "append", "extend", "insert_mid", "insert_head", "insert_neg", "insert_end",
            "delete_mid", "delete_head", "delete_out", "delete_last",
        },
    }[missing]  # fmt: skip
    names = [
        "append", "extend", "insert_mid", "insert_head", "insert_neg", "insert_end", "delete_mid",
        "delete_head", "delete_out", "delete_last", "read", "batch_tx", "batch_pipe", "count",
        "read_end",
    ]  # fmt: skip
    with acl_user(fault_server.url, ["+@all", f"-{missing}"]) as url:
        username, password = urlsplit(url).username, urlsplit(url).password
        with open_store(
            mode, client, fault_server.port, socket_timeout=2, username=username, password=password
        ) as store:
            workload = Workload(store, initial=initial)
            refused = []
            for name in names:
                done = len(workload.calls)
                for call in workload.run(names=[name]).calls[done:]:
                    if call.raised is not None:
                        assert isinstance(call.raised, PermissionDeniedError), repr(call.raised)
                        assert call.raised.command == missing
                        refused.append(name)
            reread = store.get_messages("chat")
    assert set(refused) - {"batch_tx", "batch_pipe"} == refused_steps
    assert {"batch_tx", "batch_pipe"} <= set(refused)
    raw = fault_redis.lrange("chat", 0, -1)
    assert not [element for element in raw if b"\xff" in element], "a mark was left behind"
    workload.checker.assert_consistent(stored_texts(fault_redis, "chat"))
    assert [m.content for m in reread] == stored_texts(fault_redis, "chat")


# ----------------------------------------------------------------------------------------------
# asyncio cancellation


async def poll(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        await asyncio.sleep(0.005)


def async_store(client: str, port: int) -> AsyncRedisChatStore:
    if client == "user":
        return AsyncRedisChatStore(redis.asyncio.Redis(host=HOST, port=port, socket_timeout=2))
    return AsyncRedisChatStore.from_url(f"redis://{HOST}:{port}/0", socket_timeout=2)


async def close_async_store(store: AsyncRedisChatStore, client: str) -> None:
    if client == "user":
        await store.client.aclose()
    await store.aclose()


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_cancelled_write_sent_again_with_its_op_id_applies_once(
    client: str, record: str, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """A task cancelled while its write's reply is held by the proxy (the server applied it)
    or lost in a hung connection: sent again with the same op id (a batch: the same values),
    it applies at most once and returns the first reply. The client goes on at once: no call
    reads the reply of the cancelled one (they would, were the connection put back in the
    pool with the reply still due)."""
    load_scripts(fault_redis)
    proxy = fault_proxy
    checker: ModelChecker = ModelChecker(
        unknown_outcome=(OutcomeUnknownError, asyncio.CancelledError),
        typed_errors=(ChatStoreError,),
    )
    store = async_store(client, proxy.port)
    key = "chat"

    async def cancelled(coroutine: Any, fault: Fault) -> None:
        before = len(proxy.fired(fault))
        task = asyncio.ensure_future(coroutine)
        await poll(lambda: len(proxy.fired(fault)) > before)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def goes_on(tag: str) -> None:
        await checker.acall(Read(), lambda: store.get_messages(key))
        await checker.acall(Append(tag), lambda: store.add_message(key, msg(tag)))

    try:
        await checker.acall(
            Replace(("s0", "s1", "s2")), lambda: store.set_messages(key, msgs("s0", "s1", "s2"))
        )
        # 1. behind a reply held 0.5 s
        proxy.delay_reply(None, 0.5, where=carrying("a0"))
        await cancelled(store.add_message(key, msg("a0"), op_id="cancel-a0"), Fault.DELAY_REPLY)
        checker.record(Append("a0"), "cancel-a0", raised=asyncio.CancelledError())
        await goes_on("after-a0")
        await checker.acall(
            Append("a0"), lambda: store.add_message(key, msg("a0"), op_id="cancel-a0"), "cancel-a0"
        )
        # 2. behind a hung reply, an insert in the middle
        proxy.hang_reply(where=carrying("i0"))
        await cancelled(
            store.add_message(key, msg("i0"), 2, op_id="cancel-i0"), Fault.DROP_REPLY_AND_HANG
        )
        checker.record(Insert(2, "i0"), "cancel-i0", raised=asyncio.CancelledError())
        await goes_on("after-i0")
        await checker.acall(
            Insert(2, "i0"),
            lambda: store.add_message(key, msg("i0"), 2, op_id="cancel-i0"),
            "cancel-i0",
        )
        # 3. a transaction behind a held EXEC reply, sent again as the same values
        batch = [
            ops.add_message(store.config, key, msg("b0")),
            ops.delete_message(store.config, key, 1),
        ]
        models = [Append("b0"), DeleteAt(1)]
        proxy.delay_reply(None, 0.5, where=executing)
        await cancelled(store.execute_many(batch), Fault.DELAY_REPLY)
        for model, operation in zip(models, batch, strict=True):
            checker.record(model, operation.op_id, raised=asyncio.CancelledError())
        await goes_on("after-b0")
        results = await store.execute_many(batch)
        for model, operation, result in zip(models, batch, results, strict=True):
            checker.record(model, operation.op_id, returned=result)
        await goes_on("end")
    finally:
        await close_async_store(store, client)
    others = [c.raised for c in checker.calls if c.raised is not None]
    assert all(isinstance(error, asyncio.CancelledError) for error in others), others
    report = checker.check(stored_texts(fault_redis, key))
    verdict(report, record, {"duplicated", "wrong_returns"})
