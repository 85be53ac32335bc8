"""The fault-injection tools do what they say, shown with raw redis-py (sync and asyncio), not
the store: the proxy's faults, the servers to hurt, and the model checker."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis
import redis.asyncio

from faults import (
    Fault,
    FaultProxy,
    KillableServer,
    Request,
    RespError,
    RespStream,
    Rule,
    acl_user,
    memory_limit,
    wait_until,
)
from model_checker import (
    Append,
    DeleteAll,
    DeleteAt,
    DeleteLast,
    Extend,
    Insert,
    ModelChecker,
    Read,
    Replace,
)
from servers import RunningServer


class Unknown(Exception):
    """Stands for the store's OutcomeUnknownError in the model checker's tests."""


class Typed(Exception):
    """Stands for the store's other typed errors."""


def direct(server: RunningServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


def through(proxy: FaultProxy, **options: Any) -> redis.Redis:
    """A client of the proxy; redis.Redis(...) built directly keeps redis-py's default Retry."""
    return redis.Redis(port=proxy.port, **{"socket_timeout": 5, **options})


# ----------------------------------------------------------------------------------------------
# RESP parsing and rules, no server


def test_requests_parse_from_pipelines_split_anywhere() -> None:
    pipeline = (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhe\r\nl\r\n"  # a value holding CRLF
        b"*1\r\n$4\r\nPING\r\n"
        b"ECHO inline\r\n"
    )
    expected = [(b"SET", b"k", b"he\r\nl"), (b"PING",), (b"ECHO", b"inline")]
    whole = RespStream(requests=True).feed(pipeline)
    assert [args for args, _ in whole] == expected
    assert b"".join(raw for _, raw in whole) == pipeline  # forwarded byte for byte
    stream, parsed = RespStream(requests=True), []
    for byte in pipeline:  # every possible split point
        parsed += stream.feed(bytes([byte]))
    assert parsed == whole


def test_replies_parse_resp2_and_resp3() -> None:
    replies = (
        b"+OK\r\n-ERR wrong\r\n:42\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n"
        b"_\r\n#t\r\n,1.5\r\n%1\r\n+k\r\n:2\r\n~1\r\n$1\r\nx\r\n>2\r\n+p\r\n+q\r\n"
        b"|1\r\n+ttl\r\n:3\r\n$0\r\n\r\n"
    )
    stream = RespStream()
    values = [
        value
        for chunk in (replies[:7], replies[7:30], replies[30:])
        for value, _ in stream.feed(chunk)
    ]
    assert values == [
        "OK",
        "ERR wrong",
        42,
        None,
        [b"a", [1]],
        None,
        True,
        1.5,
        ["k", 2],
        [b"x"],
        ["p", "q"],
        b"",
    ]
    assert isinstance(values[1], RespError) and not isinstance(values[0], RespError)


def test_a_rule_fires_a_bounded_number_of_times_by_seeded_chance() -> None:
    def firings(seed: int) -> list[int]:
        rule = Rule(Fault.DROP_REPLY_AND_CLOSE, "incrby", times=3, probability=0.3, seed=seed)
        requests = [Request((b"INCRBY", b"k", b"1"), 1), Request((b"GET", b"k"), 1)] * 40
        return [n for n, request in enumerate(requests) if rule.fires_on(request)]

    assert firings(7) == firings(7)
    assert firings(7) != firings(8)
    assert len(firings(7)) == 3
    assert all(n % 2 == 0 for n in firings(7))  # INCRBY only


# ----------------------------------------------------------------------------------------------
# The proxy's faults, sync


def test_the_proxy_forwards_and_pairs_replies_in_a_transaction(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    client = through(fault_proxy)
    with client.pipeline(transaction=True) as pipe:
        pipe.incr("n").incr("n").get("n")
        assert pipe.execute() == [1, 2, b"2"]
    replies = [
        (event.command, event.reply) for event in fault_proxy.events if event.kind == "reply"
    ]
    assert replies[-5:] == [
        ("MULTI", "OK"),
        ("INCRBY", "QUEUED"),
        ("INCRBY", "QUEUED"),
        ("GET", "QUEUED"),
        ("EXEC", [1, 2, b"2"]),
    ]
    assert fault_proxy.forwarded["INCRBY"] == 2 and fault_proxy.forwarded["EXEC"] == 1
    assert fault_proxy.fired() == []
    client.close()


def test_a_dropped_reply_makes_redis_py_default_retry_apply_twice(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.drop_reply("INCRBY")
    client = through(fault_proxy)  # redis.Redis(...) retries lost connections by default
    assert client.incr("counter") == 2  # the classic double apply: the bug the store fixes
    assert fault_redis.get("counter") == b"2"
    [dropped] = fault_proxy.fired(Fault.DROP_REPLY_AND_CLOSE, "INCRBY")
    assert dropped.reply == 1  # the server had applied it: this is the reply the client lost
    assert fault_proxy.forwarded["INCRBY"] == 2
    client.close()


def test_a_dropped_reply_without_retry_is_a_connection_error_after_the_write(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.drop_reply("INCRBY")
    client = through(fault_proxy, retry=None)
    with pytest.raises(redis.ConnectionError):
        client.incr("counter")
    assert fault_redis.get("counter") == b"1"
    assert client.incr("counter") == 2  # one fault only: the next call goes through
    client.close()


def test_a_dropped_reply_inside_a_transaction_loses_the_whole_exec(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.drop_reply("EXEC")
    client = through(fault_proxy, retry=None)
    with pytest.raises(redis.ConnectionError), client.pipeline(transaction=True) as pipe:
        pipe.rpush("list", "a").rpush("list", "b").execute()
    assert fault_redis.lrange("list", 0, -1) == [b"a", b"b"]
    client.close()


def test_a_hung_reply_times_out_after_the_write(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.hang_reply("INCRBY")
    client = through(fault_proxy, retry=None, socket_timeout=0.2)
    with pytest.raises(redis.TimeoutError):
        client.incr("counter")
    assert fault_redis.get("counter") == b"1"
    assert len(fault_proxy.fired(Fault.DROP_REPLY_AND_HANG)) == 1
    client.close()


def test_a_delayed_reply_arrives_late_or_times_out(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.delay_reply("GET", 0.3)
    patient = through(fault_proxy)
    started = time.monotonic()
    assert patient.get("k") is None
    assert time.monotonic() - started >= 0.25
    fault_proxy.delay_reply("INCRBY", 1.0)
    hasty = through(fault_proxy, retry=None, socket_timeout=0.2)
    with pytest.raises(redis.TimeoutError):
        hasty.incr("counter")
    assert fault_redis.get("counter") == b"1"  # the request went through at once
    patient.close()
    hasty.close()


def test_a_delayed_request_reaches_the_server_late(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.delay_request("SET", 1.0)
    client = through(fault_proxy, retry=None, socket_timeout=0.2)
    with pytest.raises(redis.TimeoutError):
        client.set("k", "v")
    assert fault_redis.get("k") is None
    wait_until(lambda: fault_redis.get("k") == b"v", timeout=5)
    assert len(fault_proxy.fired(Fault.DELAY_REQUEST, "SET")) == 1
    client.close()


def test_closing_before_the_request_means_the_server_never_sees_it(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.close_before("SET")
    client = through(fault_proxy, retry=None)
    client.ping()
    with pytest.raises(redis.ConnectionError):
        client.set("k", "v")
    assert fault_redis.exists("k") == 0
    assert fault_proxy.forwarded["SET"] == 0
    assert len(fault_proxy.fired(Fault.CLOSE_BEFORE_REQUEST, "SET")) == 1
    client.close()


def test_an_error_reply_comes_in_its_turn_and_the_server_never_sees_the_request(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.delay_reply("GET", 0.2)  # the injected error must still wait for the GET's reply
    fault_proxy.error_reply("INCRBY", "READONLY You can't write against a read only replica.")
    client = through(fault_proxy)
    with client.pipeline(transaction=False) as pipe:
        results = pipe.get("k").incr("counter").incr("counter").execute(raise_on_error=False)
    assert results[0] is None and isinstance(results[1], redis.ReadOnlyError) and results[2] == 1
    assert fault_redis.get("counter") == b"1"
    assert fault_proxy.forwarded["INCRBY"] == 1
    assert len(fault_proxy.fired(Fault.ERROR_REPLY, "INCRBY")) == 1
    client.close()


def test_a_predicate_picks_the_request_by_its_arguments(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.drop_reply(where=lambda request: b"op-2" in request.args)
    client = through(fault_proxy, retry=None)
    client.rpush("log", "op-1")
    with pytest.raises(redis.ConnectionError):
        client.rpush("log", "op-2")
    client.rpush("log", "op-3")
    assert fault_redis.lrange("log", 0, -1) == [b"op-1", b"op-2", b"op-3"]
    client.close()


def test_chance_faults_each_double_apply(fault_proxy: FaultProxy, fault_redis: redis.Redis) -> None:
    rule = fault_proxy.drop_reply("INCRBY", times=3, probability=0.3, seed=1)
    client = through(fault_proxy)
    for _ in range(20):
        client.incr("counter")
    assert 0 < rule.fired == len(fault_proxy.fired(Fault.DROP_REPLY_AND_CLOSE)) <= 3
    assert fault_redis.get("counter") == str(20 + rule.fired).encode()
    client.close()


def test_cut_all_breaks_a_command_in_flight_and_idle_connections(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    blocked = through(fault_proxy, retry=None)
    idle = through(fault_proxy, retry=None)
    idle.ping()
    errors: list[BaseException] = []

    def wait_on_empty_list() -> None:
        try:
            blocked.blpop(["nothing"], timeout=5)
        except redis.RedisError as error:
            errors.append(error)

    waiter = threading.Thread(target=wait_on_empty_list)
    waiter.start()
    wait_until(lambda: fault_proxy.forwarded["BLPOP"] == 1, timeout=5)
    assert fault_proxy.cut_all() == 2
    waiter.join(timeout=5)
    assert not waiter.is_alive()
    assert [type(error) for error in errors] == [redis.ConnectionError]
    connections = len([event for event in fault_proxy.events if event.kind == "connect"])
    assert idle.ping()  # the pool notices the closed connection and opens another
    assert (
        len([event for event in fault_proxy.events if event.kind == "connect"]) == connections + 1
    )
    blocked.close()
    idle.close()


def test_refusing_and_an_outage_that_ends_by_itself(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    client = through(fault_proxy, retry=None, socket_connect_timeout=1)
    fault_proxy.refuse_new(True)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    fault_proxy.refuse_new(False)
    assert client.ping()

    fault_proxy.outage(1.0)
    failures = 0

    def answers() -> bool:
        nonlocal failures
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            failures += 1
            return False

    wait_until(answers, timeout=10, interval=0.05)
    assert failures >= 1
    kinds = [event.kind for event in fault_proxy.events]
    assert "cut" in kinds and kinds.count("refused") >= 2
    client.close()


def test_stop_closes_every_connection_and_the_listener(fault_server: RunningServer) -> None:
    proxy = FaultProxy(fault_server.port).start()
    client = redis.Redis(port=proxy.port, retry=None, socket_timeout=2)
    client.ping()
    proxy.stop()
    assert not proxy._thread.is_alive()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()


# ----------------------------------------------------------------------------------------------
# The proxy's faults, asyncio (the proxy's own loop runs in its own thread)


async def test_async_default_retry_applies_a_dropped_reply_twice(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    fault_proxy.drop_reply("INCRBY")
    client = redis.asyncio.Redis(port=fault_proxy.port, socket_timeout=5)
    assert await client.incr("counter") == 2
    assert fault_redis.get("counter") == b"2"
    await client.aclose()


async def test_async_faults_without_retry(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    client = redis.asyncio.Redis(port=fault_proxy.port, retry=None, socket_timeout=0.2)
    fault_proxy.drop_reply("INCRBY")
    with pytest.raises(redis.ConnectionError):
        await client.incr("counter")
    fault_proxy.delay_reply("INCRBY", 1.0)
    with pytest.raises(redis.TimeoutError):
        await client.incr("counter")
    fault_proxy.close_before("INCRBY")
    with pytest.raises(redis.ConnectionError):
        await client.incr("counter")
    assert fault_redis.get("counter") == b"2"
    await client.aclose()


async def test_async_cut_all_breaks_a_command_in_flight(
    fault_proxy: FaultProxy, fault_redis: redis.Redis
) -> None:
    client = redis.asyncio.Redis(port=fault_proxy.port, retry=None, socket_timeout=5)
    waiting = asyncio.ensure_future(client.blpop(["nothing"], timeout=5))
    deadline = time.monotonic() + 5
    while fault_proxy.forwarded["BLPOP"] == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert fault_proxy.cut_all() == 1
    with pytest.raises(redis.ConnectionError):
        await asyncio.wait_for(waiting, timeout=5)
    await client.aclose()


# ----------------------------------------------------------------------------------------------
# Servers to hurt


def test_debug_sleep_from_another_connection_times_a_client_out(
    fault_server: RunningServer,
) -> None:
    sleeper = direct(fault_server)
    client = redis.Redis.from_url(fault_server.url, socket_timeout=0.2, retry=None)
    client.ping()
    slept: list[object] = []
    thread = threading.Thread(
        target=lambda: slept.append(sleeper.execute_command("DEBUG", "SLEEP", "1"))
    )
    thread.start()

    def timed_out() -> bool:
        try:
            client.ping()
        except redis.TimeoutError:
            return True
        return False

    wait_until(timed_out, timeout=5)
    thread.join(timeout=5)
    assert slept == [b"OK"]
    sleeper.close()
    client.close()


def test_kill_9_and_restart_keeps_every_acknowledged_write(killable_server: KillableServer) -> None:
    client = redis.Redis.from_url(killable_server.url, retry=None, socket_timeout=2)
    client.flushall()
    for n in range(50):
        client.rpush("log", n)
    killable_server.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    killable_server.restart()
    assert client.lrange("log", 0, -1) == [str(n).encode() for n in range(50)]
    client.flushall()
    client.close()


def test_a_killable_server_starts_restarts_and_stops_on_its_own() -> None:
    with KillableServer() as server:
        client = redis.Redis.from_url(server.url, retry=None, socket_timeout=2)
        client.set("k", "v")
        server.kill()
        server.restart()
        assert client.get("k") == b"v"
        client.close()
    assert answering_nothing(server.port)


def answering_nothing(port: int) -> bool:
    probe = redis.Redis(port=port, retry=None, socket_connect_timeout=1)
    try:
        probe.ping()
    except redis.ConnectionError:
        return True
    finally:
        probe.close()
    return False


def test_memory_limit_refuses_writes_then_is_restored(
    fault_server: RunningServer, fault_redis: redis.Redis
) -> None:
    before = fault_redis.config_get("maxmemory*")
    with memory_limit(fault_server.url, 1):
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            fault_redis.set("k", "v")
        assert fault_redis.get("k") is None  # reads still work
    assert fault_redis.config_get("maxmemory*") == before
    assert fault_redis.set("k", "v")


def test_acl_users_lack_what_their_rules_take_away(
    fault_server: RunningServer, fault_redis: redis.Redis
) -> None:
    with acl_user(fault_server.url, ["+@all", "-linsert"]) as url:
        user = redis.Redis.from_url(url)
        assert user.rpush("list", "a") == 1
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.linsert("list", "BEFORE", "a", "b")
        user.close()
    with acl_user(fault_server.url, ["+get"]) as url:  # an exact allow-list
        user = redis.Redis.from_url(url)
        assert user.get("missing") is None
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.set("k", "v")
        user.close()
    name = url.split("//")[1].split(":")[0]
    assert name.encode() not in fault_redis.acl_users()


# ----------------------------------------------------------------------------------------------
# The model checker, no server


def checker() -> ModelChecker:
    return ModelChecker(unknown_outcome=(Unknown,), typed_errors=(Typed,))


def test_a_faithful_history_is_consistent() -> None:
    model = checker()
    model.record(Append("a"), "1", returned=1)
    model.record(Extend(("b", "c")), "2", returned=3)
    model.record(Insert(0, "z"), "3", returned=4)
    model.record(DeleteAt(1), "4", returned="a")
    model.record(DeleteAt(9), "5", returned=None)
    model.record(DeleteLast(), "6", returned="c")
    model.record(Read(), returned=["z", "b"])
    assert model.check(["z", "b"]).ok
    model.record(Replace(("x", "y")), "7", returned=2)
    model.record(DeleteAll(), "8", returned=["x", "y"])
    model.record(DeleteAll(), "9", returned=None)
    model.assert_consistent([])


def test_lost_duplicated_unexpected_and_reordered_messages_are_named() -> None:
    model = checker()
    for n, text in enumerate("abc", start=1):
        model.record(Append(text), str(n), returned=n)
    report = model.check(["a", "b", "b", "d"])
    assert (report.lost, report.duplicated, report.unexpected) == (["c"], ["b"], ["d"])
    assert not report.ok and "lost: ['c']" in str(report)
    assert model.check(["c", "b", "a"]).reordered


def test_wrong_returned_values_and_untyped_errors_are_named() -> None:
    model = checker()
    model.record(Append("a"), "1", returned=2)
    model.record(Append("b"), "2", raised=ConnectionError("lost"))
    report = model.check(["a", "b"])
    assert (
        len(report.wrong_returns) == 1
        and "returned 2; the model expected 1" in report.wrong_returns[0]
    )
    assert len(report.untyped_errors) == 1 and "ConnectionError" in report.untyped_errors[0]
    assert not report.lost and not report.duplicated  # an untyped error still may have applied


def test_an_unknown_outcome_may_have_applied_once_and_a_typed_error_never() -> None:
    model = checker()
    model.record(Append("a"), "1", raised=Unknown())
    model.record(Append("b"), "2", raised=Typed())
    assert model.check([]).ok
    assert model.check(["a"]).ok
    assert model.check(["b"]).unexpected == ["b"]
    assert model.check(["a", "a"]).duplicated == ["a"]
    model.record(Append("c"), "3", returned=2)  # only the outcome where "a" applied explains 2
    assert model.check(["a", "c"]).ok
    assert model.check(["c"]).lost == ["a"]


def test_a_re_sent_op_id_applies_once_and_returns_the_first_reply() -> None:
    model = checker()
    model.record(Append("a"), "1", returned=1)
    model.record(Append("b"), "2", raised=Unknown())
    model.record(Append("b"), "2", returned=2)  # the caller re-sends the same operation
    model.record(Append("a"), "1", returned=1)
    model.assert_consistent(["a", "b"])
    assert model.check(["a", "b", "b"]).duplicated == ["b"]
    model.record(DeleteLast(), "3", returned="b")
    model.record(DeleteLast(), "3", returned="a")  # a re-send that applied again
    assert model.check(["a"]).wrong_returns


async def test_calls_are_recorded_with_what_they_returned_or_raised() -> None:
    class Message:
        def __init__(self, content: str) -> None:
            self.content = content

    async def delete_last() -> Message:
        return Message("a")

    model = checker()
    assert model.call(Append("a"), lambda: 1, "1").returned == 1
    assert isinstance(model.call(Append("b"), lambda: 1 / 0, "2").raised, ZeroDivisionError)
    assert model.call(Read(), lambda: [Message("a")]).returned == ["a"]
    assert (await model.acall(DeleteLast(), delete_last, "3")).returned == "a"
    report = model.check([])
    assert report.ok is False and len(report.untyped_errors) == 1
