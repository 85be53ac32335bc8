"""Replay what a test did to one conversation on a Python list, and say what went wrong.

A test records each call it made, in order, one at a time: the operation (small dataclasses
below, independent of the store's API), its operation id, and what the call returned or raised.
Messages are identified by a unique text each. An error may leave the outcome unknown (the
write may or may not have applied): the checker then follows both possibilities, with the rule of
exactly-once writes: calls sharing an op id are ONE operation, applied at most once, and a re-sent
one returns what the first application returned.

    checker = ModelChecker(unknown_outcome=(OutcomeUnknownError,), typed_errors=(ChatStoreError,))
    checker.call(Append("m1"), lambda: store.add_message(key, message("m1"), op_id="a"), "a")
    ...
    checker.assert_consistent(store.get_messages(key))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# ----------------------------------------------------------------------------------------------
# Operations: each applies itself to the model list and returns what the store should return.


class Operation(Protocol):
    def apply(self, messages: list[str]) -> Any: ...


@dataclass(frozen=True)
class Append:
    text: str

    def apply(self, messages: list[str]) -> int:
        messages.append(self.text)
        return len(messages)


@dataclass(frozen=True)
class Extend:
    texts: tuple[str, ...]

    def apply(self, messages: list[str]) -> int:
        messages.extend(self.texts)
        return len(messages)


@dataclass(frozen=True)
class Insert:
    """``list.insert`` rules: negative counts from the end, past the end appends."""

    index: int
    text: str

    def apply(self, messages: list[str]) -> int:
        messages.insert(self.index, self.text)
        return len(messages)


@dataclass(frozen=True)
class DeleteAt:
    """Removes ``0 <= index < len`` and returns it; otherwise None and nothing changes."""

    index: int

    def apply(self, messages: list[str]) -> str | None:
        return messages.pop(self.index) if 0 <= self.index < len(messages) else None


@dataclass(frozen=True)
class DeleteLast:
    def apply(self, messages: list[str]) -> str | None:
        return messages.pop() if messages else None


@dataclass(frozen=True)
class Replace:
    texts: tuple[str, ...]

    def apply(self, messages: list[str]) -> int:
        messages[:] = self.texts
        return len(messages)


@dataclass(frozen=True)
class DeleteAll:
    """Returns what the conversation held, or None when it held nothing."""

    def apply(self, messages: list[str]) -> list[str] | None:
        held = list(messages) or None
        messages.clear()
        return held


@dataclass(frozen=True)
class Read:
    """A read of the whole conversation, checked like a write's returned value."""

    def apply(self, messages: list[str]) -> list[str]:
        return list(messages)


# ----------------------------------------------------------------------------------------------


@dataclass
class Call:
    operation: Operation
    op_id: str | None = None  # calls sharing an op id are one operation
    returned: Any = None
    raised: BaseException | None = None


@dataclass
class Report:
    actual: list[str]
    expected: list[str]  # the model's outcome closest to ``actual``
    outcomes: int  # how many final lists the unknown outcomes allow
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # in Redis, in no model outcome
    reordered: bool = False
    wrong_returns: list[str] = field(default_factory=list)
    untyped_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        problems = (self.lost, self.duplicated, self.unexpected, self.wrong_returns)
        return not (any(problems) or self.reordered or self.untyped_errors)

    def __str__(self) -> str:
        if self.ok:
            return f"consistent with the model ({self.outcomes} possible outcome(s))"
        lines = [
            f"Redis holds {self.actual}",
            f"the closest of the model's {self.outcomes} possible outcome(s): {self.expected}",
        ]
        for label, items in (
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("unexpected", self.unexpected),
            ("wrong returned values", self.wrong_returns),
            ("untyped errors", self.untyped_errors),
        ):
            if items:
                lines.append(f"{label}: {items}")
        if self.reordered:
            lines.append("the same messages, in another order")
        return "\n".join(lines)


def texts_of(value: Any) -> Any:
    """A returned value in the model's terms: a message becomes its ``.content``, recursively
    through lists; anything else is kept."""
    if isinstance(value, (list, tuple)):
        return [texts_of(item) for item in value]
    return getattr(value, "content", value)


class _State:
    def __init__(self, messages: list[str], applied: dict[str, Any]) -> None:
        self.messages = messages
        self.applied = applied  # op id -> what its one application returned

    def after(self, call: Call) -> tuple[_State, Any]:
        messages = list(self.messages)
        result = call.operation.apply(messages)
        applied = dict(self.applied)
        if call.op_id is not None:
            applied[call.op_id] = result
        return _State(messages, applied), result

    def key(self) -> tuple[Any, ...]:
        return (tuple(self.messages), repr(sorted(self.applied.items())))


class ModelChecker:
    """``unknown_outcome``: the error types after which a write may or may not have applied.
    ``typed_errors``: the store's own error types; one that is not an unknown outcome means the
    write did not apply. Anything else raised is reported as an untyped error (and followed as an
    unknown outcome)."""

    max_outcomes = 10_000

    def __init__(
        self,
        initial: Sequence[str] = (),
        *,
        unknown_outcome: tuple[type[BaseException], ...] = (),
        typed_errors: tuple[type[BaseException], ...] = (),
        normalize: Callable[[Any], Any] = texts_of,
    ) -> None:
        self.initial = list(initial)
        self.unknown_outcome = unknown_outcome
        self.typed_errors = typed_errors
        self.normalize = normalize
        self.calls: list[Call] = []

    def record(
        self,
        operation: Operation,
        op_id: str | None = None,
        *,
        returned: Any = None,
        raised: BaseException | None = None,
    ) -> Call:
        call = Call(operation, op_id, self.normalize(returned), raised)
        self.calls.append(call)
        return call

    def call(
        self, operation: Operation, function: Callable[[], Any], op_id: str | None = None
    ) -> Call:
        """Run ``function`` (the store call), record what it returned or raised."""
        try:
            returned = function()
        except Exception as error:
            return self.record(operation, op_id, raised=error)
        return self.record(operation, op_id, returned=returned)

    async def acall(
        self, operation: Operation, function: Callable[[], Awaitable[Any]], op_id: str | None = None
    ) -> Call:
        try:
            returned = await function()
        except Exception as error:
            return self.record(operation, op_id, raised=error)
        return self.record(operation, op_id, returned=returned)

    def check(self, actual: Sequence[Any]) -> Report:
        """Compare the conversation as Redis holds it now with every outcome the calls allow."""
        states = [_State(list(self.initial), {})]
        wrong_returns: list[str] = []
        untyped: list[str] = []
        for number, call in enumerate(self.calls):
            described = f"#{number} {call.operation}" + (
                f" (op id {call.op_id})" if call.op_id else ""
            )
            error = call.raised
            maybe = error is not None and (
                isinstance(error, self.unknown_outcome) or not isinstance(error, self.typed_errors)
            )
            if error is not None and not isinstance(
                error, (*self.unknown_outcome, *self.typed_errors)
            ):
                untyped.append(f"{described} raised {type(error).__name__}: {error}")
            following: list[_State] = []
            expectations: list[Any] = []
            for state in states:
                if call.op_id is not None and call.op_id in state.applied:  # a re-send
                    expected = state.applied[call.op_id]
                    expectations.append(expected)
                    if error is not None or expected == call.returned:
                        following.append(state)
                    continue
                applied, expected = state.after(call)
                expectations.append(expected)
                if error is None:
                    if expected == call.returned:
                        following.append(applied)
                    continue
                following.append(state)
                if maybe:
                    following.append(applied)
            if not following:  # nothing explains the returned value: go on as if it were right
                wrong_returns.append(
                    f"{described} returned {call.returned!r}; the model expected "
                    + " or ".join(sorted({repr(e) for e in expectations}))
                )
                following = [
                    state if call.op_id in state.applied else state.after(call)[0]
                    for state in states
                ]
            states = list({state.key(): state for state in following}.values())
            if len(states) > self.max_outcomes:
                raise ValueError(f"more than {self.max_outcomes} outcomes to follow: fewer faults")
        return _compare(list(self.normalize(list(actual))), states, wrong_returns, untyped)

    def assert_consistent(self, actual: Sequence[Any]) -> Report:
        report = self.check(actual)
        assert report.ok, str(report)
        return report


def _compare(
    actual: list[str], states: list[_State], wrong_returns: list[str], untyped: list[str]
) -> Report:
    outcomes: set[tuple[str, ...]] = {tuple(state.messages) for state in states}

    def distance(outcome: tuple[str, ...]) -> tuple[int, bool]:
        differ = (Counter(outcome) - Counter(actual)) + (Counter(actual) - Counter(outcome))
        return sum(differ.values()), list(outcome) != actual

    closest: tuple[str, ...] = min(outcomes, key=distance)
    expected = list(closest)
    missing = Counter(expected) - Counter(actual)
    extra = Counter(actual) - Counter(expected)
    counts = Counter(actual)
    return Report(
        actual=actual,
        expected=expected,
        outcomes=len(outcomes),
        lost=sorted(missing.elements()),
        duplicated=sorted(text for text in extra.elements() if counts[text] > 1),
        unexpected=sorted(text for text in extra.elements() if counts[text] == 1),
        reordered=not missing and not extra and expected != actual,
        wrong_returns=wrong_returns,
        untyped_errors=untyped,
    )
