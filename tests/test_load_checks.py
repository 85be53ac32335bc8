"""The checks of tests/load.py find what they must: a lost, duplicated or misplaced write, a
wrong returned value, an untyped error; and count a DurabilityError as unknown, never lost.
No server: the outcomes and what Redis holds are written out by hand."""

from __future__ import annotations

from typing import Any

import redis

from atomic_chat_store import ChatMessage, OutcomeUnknownError
from atomic_chat_store.errors import DurabilityError
from load import Load, Outcome, Stored, WriterSpec, check_load
from model_checker import Append, DeleteLast, Insert

WRITER = WriterSpec("w", "sync", 0, "own", "shared")
OTHER = WriterSpec("v", "sync", 0, "own-v", "shared")
DURABLE = WriterSpec("d", "sync", 1, "own-d", "shared-d")


def load_of(*outcomes: Outcome) -> Load:
    specs = sorted({outcome.writer for outcome in outcomes}, key=lambda spec: spec.name)
    load = Load("redis://127.0.0.1:1/0", specs)
    load.outcomes.extend(outcomes)
    return load


def call(
    writer: WriterSpec,
    key: str,
    operation: Any,
    op_id: str,
    at: float,
    returned: Any = None,
    raised: BaseException | None = None,
) -> Outcome:
    return Outcome(writer, key, operation, op_id, at, at + 0.01, returned, raised)


def own_calls() -> list[Outcome]:
    return [
        call(WRITER, "own", Append("a"), "1", 1.0, 1),
        call(WRITER, "own", Insert(0, "b"), "2", 2.0, 2),
        call(WRITER, "own", DeleteLast(), "3", 3.0, ChatMessage(content="a")),
        call(WRITER, "own", Append("c"), "4", 4.0, 2),
    ]


def test_a_consistent_conversation_has_no_problem():
    report = check_load(load_of(*own_calls()), {"own": Stored(["b", "c"], {"1", "2", "3", "4"})})
    assert report.problems == []
    assert report.group(0).acknowledged == 4 and not report.group(0).lost


def test_a_write_lost_outside_the_window_is_a_problem_and_inside_it_is_counted():
    calls = own_calls()
    stored = {"own": Stored(["b"], {"1", "2", "3"})}  # "c" (op 4, at 4.0) never reached it
    report = check_load(load_of(*calls), stored)
    assert any("acknowledged, then lost" in problem for problem in report.problems)
    allowed = check_load(load_of(*calls), stored, losses_allowed={0: (3.5, 4.5)})
    assert allowed.problems == []
    assert [outcome.op_id for outcome in allowed.group(0).lost] == ["4"]
    assert allowed.group(0).lost_window(3.5) is not None


def test_a_wrong_returned_value_is_a_problem():
    calls = own_calls()
    calls[3] = call(WRITER, "own", Append("c"), "4", 4.0, 5)
    report = check_load(load_of(*calls), {"own": Stored(["b", "c"], {"1", "2", "3", "4"})})
    assert any("wrong returned values" in problem for problem in report.problems)


def test_an_untyped_error_is_a_problem():
    calls = [
        *own_calls(),
        call(WRITER, "own", Append("d"), "5", 5.0, raised=redis.ConnectionError()),
    ]
    report = check_load(load_of(*calls), {"own": Stored(["b", "c"], {"1", "2", "3", "4"})})
    assert any("untyped error" in problem for problem in report.problems)


def test_a_durability_error_is_unknown_never_lost():
    applied_then_lost = DurabilityError(1, 0, 1, ("1",))
    calls = [
        call(DURABLE, "own-d", Append("a"), "1", 1.0, raised=applied_then_lost),
        call(DURABLE, "own-d", Append("b"), "2", 2.0, 1),
        call(DURABLE, "own-d", Append("c"), "3", 3.0, raised=OutcomeUnknownError("3", 1, 0.1)),
    ]
    stored = {"own-d": Stored(["b", "c"], {"2", "3"})}
    report = check_load(load_of(*calls), stored)
    assert report.problems == []
    assert report.group(1).lost == [] and report.group(1).acknowledged == 1


def shared(writer: WriterSpec, text: str, at: float, returned: int) -> Outcome:
    return call(writer, "shared", Append(text), text, at, returned)


def test_the_shared_conversation_is_checked_for_duplicates_places_and_order():
    calls = [
        shared(WRITER, "w1", 1.0, 1),
        shared(OTHER, "v1", 1.5, 2),
        shared(WRITER, "w2", 2.0, 3),
    ]
    good = check_load(load_of(*calls), {"shared": Stored(["w1", "v1", "w2"], {"w1", "v1", "w2"})})
    assert good.problems == []
    twice = check_load(
        load_of(*calls), {"shared": Stored(["w1", "v1", "w2", "w2"], {"w1", "v1", "w2"})}
    )
    assert any("stored 2 times" in problem for problem in twice.problems)
    moved = check_load(load_of(*calls), {"shared": Stored(["v1", "w1", "w2"], {"w1", "v1", "w2"})})
    assert any("but the message is at" in problem for problem in moved.problems)
    unrecorded = check_load(load_of(*calls), {"shared": Stored(["w1", "v1", "w2"], {"w1", "v1"})})
    assert any("disagree" in problem for problem in unrecorded.problems)
    stranger = check_load(
        load_of(*calls), {"shared": Stored(["w1", "v1", "w2", "x"], {"w1", "v1", "w2"})}
    )
    assert any("never written" in problem for problem in stranger.problems)
