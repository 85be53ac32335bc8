"""The parts that need no server, tested without one: key names, operations as values, the
error table, the retry rule."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot as redis_key_slot

from atomic_chat_store import ChatMessage
from atomic_chat_store import operations as ops
from atomic_chat_store.errors import (
    BatchError,
    ConnectionRefusedByServerError,
    DurabilityError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidKeyError,
    OpIdConflictError,
    OutcomeUnknownError,
    OutOfMemoryError,
    PermissionDeniedError,
    UnavailableError,
    VersionConflictError,
    WrongTypeError,
    error_from_reply,
)
from atomic_chat_store.keys import companion_key, decode_name, hash_tag, key_slot, record_key
from atomic_chat_store.retry import RetryPolicy

MESSAGE = ChatMessage(content="hi")

# -- keys -----------------------------------------------------------------------------------------


@given(st.binary(max_size=12).filter(lambda key: b"\xff" not in key))
def test_a_record_hashes_to_its_conversations_slot(key):
    assert key_slot(key) == redis_key_slot(key)
    record = record_key(key)
    assert record.startswith(key) and b"\xff" in record[len(key) :]
    assert redis_key_slot(record) == redis_key_slot(key)


def test_keys_with_braces_keep_their_slot():
    rng = random.Random(7)
    for _ in range(20_000):
        key = bytes(rng.choice(b"{}ab:") for _ in range(rng.randint(1, 9)))
        for name in (b"rec", b"x"):
            assert redis_key_slot(companion_key(key, name)) == redis_key_slot(key), key


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        (b"a", None),
        (b"{a}b", b"a"),
        (b"x{}{a}", None),
        (b"{a", None),
        (b"}{a}", b"a"),
        (b"{{a}}", b"{a"),
    ],
)
def test_hash_tags_follow_redis_rules(key, tag):
    assert hash_tag(key) == tag
    assert key_slot(key) == redis_key_slot(key)


def test_a_tagged_key_needs_no_extra_bytes():
    assert record_key(b"{user:1}:chat") == b"{user:1}:chat\xffacs:rec"


def test_names_that_are_not_utf8_round_trip_and_companions_are_skipped():
    name = decode_name(b"caf\xe9")
    assert name == "caf\udce9"
    assert ops.StoreConfig().redis_key(name) == b"caf\xe9"
    assert decode_name(record_key(b"chat")) is None


@pytest.mark.parametrize("key", ["", "\ud800", "a\udcffb", 3, None, b"chat"])
def test_keys_the_store_cannot_address_are_refused(key):
    with pytest.raises(InvalidKeyError):
        ops.append(ops.StoreConfig(), key, [MESSAGE])


def test_scanned_names_lose_the_namespace_and_the_records():
    config = ops.StoreConfig(namespace="ns:")
    found = [b"ns:b", b"ns:a", b"ns:a", record_key(b"ns:a"), b"ns:", b"ns:\xe9"]
    assert ops.chat_keys(config, found) == ["a", "b", "\udce9"]
    assert ops.keys_pattern(ops.StoreConfig(namespace="a*[b]?\\")) == rb"a\*\[b\]\?\\*"


# -- operations as values -------------------------------------------------------------------------


def test_every_write_carries_the_argv_prefix_and_an_op_id():
    config = ops.StoreConfig.build(ttl=60, max_messages=5, op_window=30, op_window_size=7)
    writes = [
        ops.add_message(config, "k", MESSAGE),
        ops.add_message(config, "k", MESSAGE, 2),
        ops.append(config, "k", [MESSAGE]),
        ops.set_messages(config, "k", [MESSAGE]),
        ops.delete_message(config, "k", 1),
        ops.delete_last_message(config, "k"),
        ops.delete_messages(config, "k"),
    ]
    ids = set()
    for write in writes:
        assert write.keys == (b"k", record_key(b"k"))
        assert write.op_id is not None and len(write.op_id) == 16
        assert write.args[:7] == (write.op_id, 60_000, "", 5, 30_000, 7, 0)
        ids.add(write.op_id)
    assert len(ids) == len(writes)


def test_a_given_op_id_and_version_are_sent():
    write = ops.delete_message(ops.StoreConfig(), "k", 3, op_id="mine", expected_version=12)
    assert write.op_id == "mine" and write.args[0] == "mine" and write.args[2] == 12
    assert write.args[7:] == (3,)


@pytest.mark.parametrize(
    ("op_id", "error"),
    [
        ("", InvalidArgumentError),
        ("x" * 201, InvalidArgumentError),
        ("\ud800", InvalidArgumentError),
        (7, InvalidArgumentTypeError),
        (b"id", InvalidArgumentTypeError),
    ],
)
def test_bad_op_ids_are_refused(op_id, error):
    with pytest.raises(error):
        ops.append(ops.StoreConfig(), "k", [MESSAGE], op_id=op_id)


@pytest.mark.parametrize(
    ("version", "error"),
    [(-1, InvalidArgumentError), (2**53, InvalidArgumentError), (True, InvalidArgumentTypeError)],
)
def test_bad_versions_are_refused(version, error):
    with pytest.raises(error):
        ops.delete_last_message(ops.StoreConfig(), "k", expected_version=version)


@pytest.mark.parametrize(
    ("ttl", "milliseconds"),
    [
        (None, 0),
        (1, 1000),
        (0.0001, 1),
        (timedelta(hours=1), 3_600_000),
        (2**53 // 1000 - 1, (2**53 // 1000 - 1) * 1000),
    ],
)
def test_ttls_become_whole_milliseconds(ttl, milliseconds):
    assert ops.ttl_to_ms(ttl) == milliseconds


@pytest.mark.parametrize(
    "ttl", [0, -1, float("nan"), float("inf"), 10**14, timedelta(days=-1), True, "60"]
)
def test_ttls_pexpire_would_refuse_are_refused_before_anything_is_sent(ttl):
    with pytest.raises((InvalidArgumentError, InvalidArgumentTypeError)):
        ops.StoreConfig.build(ttl=ttl)


@pytest.mark.parametrize(
    "options",
    [
        {"max_messages": 0},
        {"max_messages": 1.5},
        {"op_window_size": 0},
        {"op_window": 0},
        {"max_message_bytes": 0},
        {"namespace": "a\udcffb"},
    ],
)
def test_bad_store_options_are_refused(options):
    with pytest.raises((InvalidArgumentError, InvalidKeyError)):
        ops.StoreConfig.build(**options)


def test_refresh_ttl_needs_a_ttl_and_records_nothing():
    with pytest.raises(InvalidArgumentError):
        ops.refresh_ttl(ops.StoreConfig(), "k")
    refresh = ops.refresh_ttl(ops.StoreConfig.build(ttl=5), "k")
    assert refresh.op_id is None and refresh.args[0] == "" and refresh.script == "refresh_ttl"


@pytest.mark.parametrize("batch", [[1], "abc", [ops.count(ops.StoreConfig(), "k"), None], 5])
def test_a_batch_must_be_operations(batch):
    with pytest.raises(InvalidArgumentTypeError):
        ops.check_operations(batch)


def test_a_batch_decodes_in_order_and_reports_every_failure():
    config = ops.StoreConfig()
    batch = [ops.count(config, "a"), ops.append(config, "b", [MESSAGE]), ops.count(config, "c")]
    assert ops.decode_replies(batch, [2, 5, 0]) == [2, 5, 0]
    with pytest.raises(BatchError) as raised:
        ops.decode_replies(batch, [2, redis.ResponseError("ACS_WRONGTYPE hash"), 0])
    assert raised.value.applied and list(raised.value.errors) == [1]
    assert isinstance(raised.value.results[1], WrongTypeError)
    assert raised.value.results[1].key == "b"


# -- the error table ------------------------------------------------------------------------------

WHERE = " script: 0123456789abcdef0123456789abcdef01234567, on @user_script:12."


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("ACS_WRONGTYPE hash" + WHERE, WrongTypeError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", WrongTypeError),
        ("ACS_VERSION 12 15" + WHERE, VersionConflictError),
        ("ACS_OPID my id with spaces append" + WHERE, OpIdConflictError),
        ("ACS_NOPERM linsert" + WHERE, PermissionDeniedError),
        ("NOPERM this user has no permissions to run the 'evalsha' command", PermissionDeniedError),
        ("OOM command not allowed when used memory > 'maxmemory'.", OutOfMemoryError),
        ("ACS_BADARG ttl 1e+17" + WHERE, InvalidArgumentError),
    ],
)
def test_replies_become_typed_errors(reply, expected):
    typed = error_from_reply(redis.ResponseError(reply), "chat")
    assert type(typed) is expected
    assert "script:" not in str(typed)


def test_errors_redis_py_has_a_class_for_are_typed_too():
    # redis-py takes "OOM " off the message and keeps it as status_code.
    oom = redis.exceptions.OutOfMemoryError("command not allowed", status_code="OOM")
    assert isinstance(error_from_reply(oom, "chat"), OutOfMemoryError)
    denied = redis.exceptions.NoPermissionError(
        "this user has no permissions to run the 'evalsha' command", status_code="NOPERM"
    )
    assert error_from_reply(denied, "chat").command == "evalsha"


def test_typed_errors_carry_their_details():
    conflict = error_from_reply(redis.ResponseError("ACS_VERSION 12 15" + WHERE), "chat")
    assert (conflict.key, conflict.expected, conflict.actual) == ("chat", 12, 15)
    reused = error_from_reply(redis.ResponseError("ACS_OPID my id append" + WHERE), "chat")
    assert (reused.op_id, reused.recorded_by) == ("my id", "append")
    denied = error_from_reply(
        redis.ResponseError("NOPERM no permissions to run the 'evalsha' command"), "c"
    )
    assert denied.command == "evalsha"
    other = redis.ResponseError("ERR something else")
    assert error_from_reply(other, "chat") is other


# -- the retry rule -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def attempts(policy=None, operations=None, batch=False):
    clock, policy = Clock(), policy or RetryPolicy()
    operations = operations or [ops.append(ops.StoreConfig(), "k", [MESSAGE])]
    return policy.begin(operations, batch=batch, clock=clock), clock


def test_a_lost_reply_is_sent_again_until_the_time_budget_runs_out():
    rule, clock = attempts(RetryPolicy(attempts=1000, timeout=10, backoff_cap=0.5))
    waited = 0.0
    with pytest.raises(OutcomeUnknownError) as raised:
        while True:
            delay = rule.failed(redis.ConnectionError("lost"))
            assert 0 <= delay <= 0.5
            waited += delay
            clock.now = waited
    assert waited <= 10 and raised.value.op_id == rule.operations[0].op_id
    assert raised.value.op_ids == (raised.value.op_id,)
    assert isinstance(raised.value, UnavailableError)
    assert isinstance(raised.value.__cause__, redis.ConnectionError)


def test_the_attempt_budget_counts_every_send():
    rule, _ = attempts(RetryPolicy(attempts=3))
    rule.failed(redis.TimeoutError())
    rule.failed(redis.TimeoutError())
    with pytest.raises(OutcomeUnknownError) as raised:
        rule.failed(redis.TimeoutError())
    assert raised.value.attempts == 3


def test_refusals_that_say_nothing_ran_end_as_unavailable_not_unknown():
    rule, _ = attempts(RetryPolicy(attempts=2))
    rule.failed(redis.exceptions.ReadOnlyError("READONLY You can't write against a replica"))
    with pytest.raises(UnavailableError) as raised:
        rule.failed(redis.exceptions.BusyLoadingError("LOADING"))
    assert type(raised.value) is UnavailableError


def test_noscript_asks_for_the_scripts_sources_at_once():
    rule, _ = attempts()
    assert not rule.send_source
    assert rule.failed(redis.exceptions.NoScriptError("NOSCRIPT")) == 0
    assert rule.send_source
    rule.failed(redis.ConnectionError())
    assert rule.send_source  # for the rest of this operation's sends


@pytest.mark.parametrize(
    "error",
    [
        redis.AuthenticationError("invalid password"),
        redis.ResponseError("ERR unknown command"),
        redis.ResponseError("ACS_WRONGTYPE hash"),
        ValueError("a bug"),
    ],
)
def test_answers_are_not_retried(error):
    rule, _ = attempts()
    with pytest.raises(Exception) as raised:
        rule.failed(error)
    assert rule.count == 1
    if isinstance(error, redis.AuthenticationError):  # typed: the connection itself refused
        assert isinstance(raised.value, ConnectionRefusedByServerError)
        assert raised.value.reason is error
    else:
        assert not isinstance(raised.value, UnavailableError)


def test_a_certificate_that_does_not_verify_is_not_retried():
    import ssl

    rule, _ = attempts()
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as cause:
            raise redis.ConnectionError("Error connecting") from cause
    except redis.ConnectionError as error:
        with pytest.raises(ConnectionRefusedByServerError):
            rule.failed(error)
    assert rule.count == 1


def test_a_refused_connection_may_still_follow_a_lost_reply():
    # redis-py retries by default inside one of the store's sends: an earlier try of that send
    # may have been applied before the connection was refused. For a write: unknown.
    from redis.sentinel import MasterNotFoundError

    rule, _ = attempts(RetryPolicy(attempts=2))
    rule.failed(MasterNotFoundError("No master found for 'svc'"))
    with pytest.raises(OutcomeUnknownError):
        rule.failed(MasterNotFoundError("No master found for 'svc'"))
    read, _ = attempts(RetryPolicy(attempts=1), operations=[ops.count(ops.StoreConfig(), "a")])
    with pytest.raises(UnavailableError) as raised:
        read.failed(MasterNotFoundError("No master found for 'svc'"))
    assert type(raised.value) is UnavailableError


@pytest.mark.parametrize(
    "then",
    [
        redis.exceptions.OutOfMemoryError("OOM", status_code="OOM"),
        redis.ConnectionError("Error 111 connecting"),
    ],
)
def test_a_shortfall_then_any_failure_still_says_the_write_was_applied(then):
    from atomic_chat_store.retry import ReplicaShortfall

    rule, _ = attempts(RetryPolicy(attempts=2))
    rule.failed(ReplicaShortfall(7, 0, 1))  # applied, not acknowledged
    with pytest.raises(DurabilityError) as raised:
        rule.failed(then)
    assert raised.value.reply == 7 and raised.value.acknowledged == 0


def test_a_read_refused_after_a_lost_reply_keeps_its_typed_error():
    rule, _ = attempts(operations=[ops.count(ops.StoreConfig(), "a")])
    rule.failed(redis.ConnectionError("lost"))
    with pytest.raises(PermissionDeniedError):
        rule.failed(redis.exceptions.NoPermissionError("no permissions to run the 'llen' command"))


@pytest.mark.parametrize(
    ("applied", "expected"), [(True, OutcomeUnknownError), (False, UnavailableError)]
)
def test_a_batch_sent_again_may_have_applied_some_of_it(applied, expected):
    from atomic_chat_store.retry import BatchResend

    config = ops.StoreConfig()
    batch = [ops.append(config, "a", [MESSAGE]), ops.append(config, "b", [MESSAGE])]
    rule, _ = attempts(RetryPolicy(attempts=1), operations=batch, batch=True)
    with pytest.raises(expected) as raised:
        rule.failed(BatchResend(redis.exceptions.ReadOnlyError("READONLY"), applied))
    assert type(raised.value) is expected


def test_an_op_id_conflict_names_the_id_as_sent():
    reply = redis.ResponseError("ACS_OPID line  break append" + WHERE)
    assert error_from_reply(reply, "chat", "line\r\nbreak").op_id == "line\r\nbreak"


def test_a_wait_ended_by_a_demotion_is_sent_again_to_the_new_master():
    rule, _ = attempts()
    rule.failed(
        redis.ResponseError(
            "UNBLOCKED force unblock from blocking operation, "
            "instance state changed (master -> replica?)"
        )
    )
    assert rule.rediscover and rule.maybe_applied


def test_a_refusal_after_a_lost_reply_leaves_the_outcome_unknown():
    # The first send may have run; the second is refused before any script runs: only a send
    # with the same op id can tell what happened.
    rule, _ = attempts()
    rule.failed(redis.ConnectionError("lost"))
    with pytest.raises(OutcomeUnknownError):
        rule.failed(redis.exceptions.OutOfMemoryError("OOM command not allowed"))


def test_a_refused_transaction_is_a_batch_error_with_nothing_applied():
    config = ops.StoreConfig()
    batch = [ops.append(config, "a", [MESSAGE]), ops.count(config, "a")]
    rule, _ = attempts(operations=batch, batch=True)
    with pytest.raises(BatchError) as raised:
        rule.failed(redis.exceptions.OutOfMemoryError("OOM command not allowed"))
    assert not raised.value.applied
    assert all(isinstance(e, OutOfMemoryError) for e in raised.value.results)


def test_a_batch_outcome_names_every_write():
    config = ops.StoreConfig()
    batch = [
        ops.append(config, "a", [MESSAGE]),
        ops.count(config, "a"),
        ops.delete_messages(config, "b"),
    ]
    rule, _ = attempts(RetryPolicy(attempts=1), operations=batch, batch=True)
    with pytest.raises(OutcomeUnknownError) as raised:
        rule.failed(redis.TimeoutError())
    assert raised.value.op_ids == (batch[0].op_id, batch[2].op_id)


def test_reads_end_as_unavailable():
    rule, _ = attempts(RetryPolicy(attempts=1), operations=[ops.count(ops.StoreConfig(), "a")])
    with pytest.raises(UnavailableError) as raised:
        rule.failed(redis.ConnectionError())
    assert type(raised.value) is UnavailableError


@pytest.mark.parametrize(
    "options",
    [
        {"attempts": 0},
        {"attempts": 1.5},
        {"timeout": -1},
        {"timeout": float("nan")},
        {"backoff_cap": "1"},
    ],
)
def test_bad_retry_policies_are_refused(options):
    with pytest.raises((InvalidArgumentError, InvalidArgumentTypeError)):
        RetryPolicy(**options)
