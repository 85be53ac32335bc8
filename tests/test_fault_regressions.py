"""The defects exactly-once writes fixed, each reproduced on a real server.

These use only the API the store had before op ids (no ``op_id=``, no RetryPolicy, errors
found by name), so that they run against that code too and fail there:

- a write retried by redis-py (its default Retry, DEBUG SLEEP 0.6 past a socket_timeout of
  0.2) applied twice: appended twice, inserted twice, a delete at 0 or of the last message
  removing a second one;
- CLIENT KILL between a write and its reply: the append applied twice;
- the async store's first call on each pooled connection the server closed (idle timeout,
  restart) raising ConnectionError;
- SCRIPT FLUSH racing calls surfacing NoScriptError;
- an ACL user without LINSERT: the insert left its mark in the list and lost a message;
- maxmemory: deletes refused although they free memory.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import redis.asyncio

from atomic_chat_store import AsyncRedisChatStore, BatchError, ChatStoreError
from atomic_chat_store import operations as ops
from fault_harness import (
    CLIENTS,
    HOST,
    MODES,
    Count,
    background,
    carrying,
    debug_sleep,
    msg,
    msgs,
    new_checker,
    open_store,
    seed,
    seen,
    stored_texts,
)
from faults import (
    Fault,
    FaultProxy,
    KillableServer,
    Request,
    acl_user,
    memory_limit,
    wait_until,
)
from model_checker import Append, DeleteAt, DeleteLast, Extend, Insert, ModelChecker
from servers import RunningServer

KEY = "chat"
INITIAL = ["m0", "m1", "m2"]


def record_batch(checker: ModelChecker, models: list[Any], send: Callable[[], list[Any]]) -> None:
    try:
        results: list[Any] = send()
    except BatchError as error:
        results = list(error.results)
    except Exception as error:
        results = [error] * len(models)
    for model, result in zip(models, results, strict=True):
        if isinstance(result, BaseException):
            checker.record(model, raised=result)
        else:
            checker.record(model, returned=result)


RETRIED_WRITES = ["append", "insert", "append many", "execute_many", "delete at 0", "delete last"]


def retried_write(write: str, store: Any, checker: ModelChecker, key: str = KEY) -> None:
    """One write on [m0, m1, m2] at ``key``, recorded in ``checker``."""
    if write == "append":
        checker.call(Append("x"), lambda: store.add_message(key, msg("x")))
    elif write == "insert":
        checker.call(Insert(1, "x"), lambda: store.add_message(key, msg("x"), 1))
    elif write == "append many":
        checker.call(Extend(("x", "y")), lambda: store.add_messages(key, msgs("x", "y")))
    elif write == "execute_many":
        batch = [
            ops.add_message(store.config, key, msg("x")),
            ops.add_message(store.config, key, msg("y"), 0),
            ops.count(store.config, key),
        ]
        record_batch(
            checker, [Append("x"), Insert(0, "y"), Count()], lambda: store.execute_many(batch)
        )
    elif write == "delete at 0":
        checker.call(DeleteAt(0), lambda: store.delete_message(key, 0))
    else:
        checker.call(DeleteLast(), lambda: store.delete_last_message(key))


@pytest.mark.parametrize(
    ("mode", "write"),
    [("sync", write) for write in RETRIED_WRITES]
    + [("async", "append"), ("async", "execute_many")],
)
def test_a_write_redis_py_sends_again_after_a_timeout_is_applied_once(
    mode: str,
    write: str,
    fault_server: RunningServer,
    fault_proxy: FaultProxy,
    fault_redis: redis.Redis,
) -> None:
    """The user's client (redis-py's default Retry), socket_timeout 0.2; the server sleeps 0.6 s
    (DEBUG SLEEP from another connection) while the write reaches it: redis-py times out and
    sends it again, and the server, once awake, runs every copy. A batch goes through a proxy
    that starts the sleep when the batch's MULTI comes (a round trip may come before it)."""
    seed(fault_redis, KEY, INITIAL)
    seed(fault_redis, "warm-up", INITIAL)
    checker = new_checker(INITIAL)
    with open_store(mode, "user", fault_proxy.port, socket_timeout=0.2) as store:
        # The same write elsewhere first: connected, and its script loaded (else the sleeping
        # server would answer NOSCRIPT to every copy, and only the last one would run).
        retried_write(write, store, new_checker(INITIAL), "warm-up")
        if write == "execute_many":
            asleep = sleep_when_sent(fault_proxy, fault_server.port, "MULTI", 0.6)
        else:
            asleep = debug_sleep(fault_server.port, 0.6)
        with asleep:
            retried_write(write, store, checker)
    checker.assert_consistent(stored_texts(fault_redis, KEY))


@contextmanager
def sleep_when_sent(proxy: FaultProxy, port: int, command: str, seconds: float) -> Iterator[None]:
    """DEBUG SLEEP ``seconds`` from the moment the proxy receives ``command``, which it holds
    0.15 s so that it reaches the server asleep."""
    before = len(proxy.fired(Fault.DELAY_REQUEST, command))
    proxy.delay_request(command, 0.15)
    sleeper = redis.Redis(host=HOST, port=port, socket_timeout=seconds + 10, retry=None)
    sleeper.ping()

    def sleep() -> None:
        wait_until(
            lambda: len(proxy.fired(Fault.DELAY_REQUEST, command)) > before, 5, interval=0.002
        )
        sleeper.execute_command("DEBUG", "SLEEP", seconds)

    try:
        with background(sleep):
            yield
    finally:
        sleeper.close()


def test_client_kill_between_writes_and_their_replies_duplicates_nothing(
    fault_server: RunningServer, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """A burst of appends, each killed (CLIENT KILL TYPE normal SKIPME yes) after the server ran
    it and before it sent the reply (the server sleeps, the append reaches it through a proxy
    that only watches, then the kill: once awake it runs both in that order)."""
    port = fault_server.port
    checker = new_checker()
    with open_store("sync", "user", fault_proxy.port, socket_timeout=2) as store:
        store.count(KEY)
        for n in range(3):
            text = f"k{n}"
            killer = redis.Redis(host=HOST, port=port, socket_timeout=10, retry=None)
            killer.ping()  # connected before the sleep: it must be served with the append
            forwarded = seen(fault_proxy, "request", carrying(text))

            def kill(text: str = text, forwarded: int = forwarded, killer: Any = killer) -> None:
                wait_until(
                    lambda: seen(fault_proxy, "request", carrying(text)) > forwarded,
                    5,
                    interval=0.002,
                )
                time.sleep(0.02)  # logged just before written: let it reach the server first
                killer.client_kill_filter(_type="normal", skipme=True)

            try:
                with debug_sleep(port, 0.3), background(kill):
                    checker.call(Append(text), lambda text=text: store.add_message(KEY, msg(text)))
            finally:
                killer.close()
    checker.assert_consistent(stored_texts(fault_redis, KEY))


POOL = 4


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("drop", ["idle timeout", "restart"])
async def test_the_async_stores_first_call_on_each_pooled_connection_after_a_drop_succeeds(
    drop: str, client: str, fault_server: RunningServer, killable_server: KillableServer
) -> None:
    """The async store, on its own client or the user's: POOL connections pooled (POOL calls
    at once, each held 0.2 s by a proxy that only watches), then all closed by the server: idle
    past ``CONFIG SET timeout 1``, or kill -9 and restart. The next POOL calls at once, one per
    pooled connection, must all succeed. (The user's client, with redis-py's default Retry,
    managed before the store retried; the store's own raised ConnectionError.)"""
    port = fault_server.port if drop == "idle timeout" else killable_server.port
    admin = redis.Redis(host=HOST, port=port)
    key = f"chat-{uuid.uuid4().hex[:8]}"
    name = f"pooled-{uuid.uuid4().hex[:8]}"

    def pooled() -> int:
        return len([c for c in admin.client_list() if c["name"] == name])

    async def poll(condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"not true within {timeout}s"
            await asyncio.sleep(0.02)

    with FaultProxy(port) as proxy:
        user_client = redis.asyncio.Redis(
            host=HOST, port=proxy.port, socket_timeout=2, client_name=name
        )
        if client == "user":
            store = AsyncRedisChatStore(user_client)
        else:
            store = AsyncRedisChatStore.from_url(proxy.url, socket_timeout=2, client_name=name)
        try:
            proxy.delay_reply("LLEN", 0.2, times=POOL)
            assert await asyncio.gather(*[store.count(key) for _ in range(POOL)]) == [0] * POOL
            assert len(proxy.fired(Fault.DELAY_REPLY, "LLEN")) == POOL
            assert pooled() == POOL
            if drop == "idle timeout":
                admin.config_set("timeout", 1)
                try:
                    await poll(lambda: pooled() == 0, timeout=10)
                finally:
                    admin.config_set("timeout", 0)
            else:
                killable_server.kill()
                killable_server.restart()
            texts = [f"m{n}" for n in range(POOL)]
            replies = await asyncio.gather(
                *[store.add_message(key, msg(text)) for text in texts], return_exceptions=True
            )
            assert not [r for r in replies if isinstance(r, BaseException)], replies
            assert sorted(replies) == list(range(1, POOL + 1))
            assert sorted(stored_texts(admin, key)) == texts
        finally:
            await store.aclose()
            await user_client.aclose()
            admin.delete(key)
            admin.close()


def sends_a_script(request: Request) -> bool:
    return request.name in ("EVALSHA", "EVAL")


@pytest.mark.parametrize("mode", MODES)
def test_script_flush_racing_calls_surfaces_no_noscript(
    mode: str, fault_server: RunningServer, fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    """SCRIPT FLUSH lands before each of the first two sends of a script (each held 0.2 s by
    the proxy, the flush in that time): after the first NOSCRIPT the script is loaded and sent
    again, and the second send meets a flushed cache too (the code before op ids sent EVALSHA
    again: NOSCRIPT; the store now sends EVAL, which cannot miss). Then the same for a
    pipeline."""
    flusher = redis.Redis.from_url(fault_server.url)
    checker = new_checker()

    def flush_each(times: int) -> None:
        for n in range(1, times + 1):
            wait_until(lambda n=n: len(fault_proxy.fired(Fault.DELAY_REQUEST)) >= n, 5, 0.002)
            flusher.script_flush()

    try:
        with open_store(mode, "own", fault_proxy.port, socket_timeout=2) as store:
            fault_proxy.delay_request(None, 0.2, times=2, where=sends_a_script)
            with background(lambda: flush_each(2)):
                checker.call(Append("x"), lambda: store.add_message(KEY, msg("x")))
            fault_proxy.clear_log()
            fault_proxy.delay_request(None, 0.2, times=2, where=sends_a_script)
            with background(lambda: flush_each(2)):
                record_batch(
                    checker,
                    [Append("y"), Append("z")],
                    lambda: store.execute_many(
                        [
                            ops.add_message(store.config, KEY, msg("y")),
                            ops.add_message(store.config, KEY, msg("z")),
                        ],
                        transaction=False,
                    ),
                )
    finally:
        flusher.close()
    assert [repr(c.raised) for c in checker.calls if c.raised is not None] == []
    checker.assert_consistent(stored_texts(fault_redis, KEY))


@pytest.mark.parametrize("mode", MODES)
def test_a_user_without_linsert_is_refused_an_insert_before_anything_changes(
    mode: str, fault_server: RunningServer, fault_redis: redis.Redis
) -> None:
    """The insert swaps the element at the index for a mark, then needs LINSERT: refused there,
    it used to leave the mark in place of the element, which was lost."""
    seed(fault_redis, KEY, ["a", "b", "c", "d"])
    with acl_user(fault_server.url, ["+@all", "-linsert"]) as url:
        credentials = url.split("//", 1)[1].split("@", 1)[0]
        username, password = credentials.split(":", 1)
        with open_store(
            mode, "own", fault_server.port, socket_timeout=2, username=username, password=password
        ) as store:
            try:
                store.add_message(KEY, msg("x"), 2)
            except Exception as error:  # judged below, after the list
                raised: Exception | None = error
            else:
                raised = None
            assert stored_texts(fault_redis, KEY) == ["a", "b", "c", "d"]
            assert isinstance(raised, ChatStoreError), repr(raised)
            assert [m.content for m in store.get_messages(KEY)] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("mode", MODES)
def test_deletes_run_at_maxmemory(
    mode: str, fault_server: RunningServer, fault_redis: redis.Redis
) -> None:
    seed(fault_redis, KEY, ["a", "b", "c", "d", "e"])
    with (
        open_store(mode, "own", fault_server.port, socket_timeout=2) as store,
        memory_limit(fault_server.url, 1),
    ):
        assert store.delete_message(KEY, 1).content == "b"
        assert store.delete_last_message(KEY).content == "e"
        assert [m.content for m in store.delete_messages(KEY)] == ["a", "c", "d"]
    assert fault_redis.exists(KEY) == 0
