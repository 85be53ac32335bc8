"""The message codec alone, without a server: what a write refuses, what it stores, how it reads.

Everything here is pure Python (``messages.py`` does no I/O), so these tests need no Redis, as
h11's are run with bytes alone. The same refusals through a store, checked on Redis, are in
test_bad_input.py.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import re
import uuid
from collections import OrderedDict
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from llama_index.core.llms import ChatMessage as LlamaChatMessage
from pydantic import BaseModel, ValidationError

from atomic_chat_store import ChatMessage, InvalidMessageError, MessageTooLargeError
from atomic_chat_store.messages import (
    MAX_JSON_DEPTH,
    decode_conversation,
    decode_message,
    encode_message,
    encode_messages,
    text_block,
)

LIMIT = 4 * 1024 * 1024


class Colour(enum.Enum):
    RED = 1


class Weight(float, enum.Enum):
    LIGHT = 0.5


class Role(str, enum.Enum):
    USER = "user"


class Level(enum.IntEnum):
    HIGH = 3


def cycle_list() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def cycle_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["again"] = [loop]
    return loop


def nested_lists(levels: int) -> Any:
    """``levels`` lists, one inside the other, around a 0."""
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def json_depth(value: Any) -> int:
    """How deep a parsed JSON value nests objects and arrays (a scalar: 0)."""
    if isinstance(value, dict):
        return 1 + max(map(json_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(json_depth, value), default=0)
    return 0


def encode(message: object) -> bytes:
    return encode_message(message, LIMIT)


def assert_same(read: Any, written: Any) -> None:
    """Equal, and of the same JSON type all the way down (``1 == 1.0 == True`` in Python)."""
    assert read == written
    if isinstance(written, bool) or written is None:
        assert read is written
    elif isinstance(written, (int, float, str)):
        base = next(kind for kind in (bool, int, float, str) if isinstance(written, kind))
        assert type(read) is base, (read, written)
    elif isinstance(written, dict):
        assert type(read) is dict and list(read) == list(written)
        for key in written:
            assert_same(read[key], written[key])
    else:
        assert type(read) is list and len(read) == len(written)
        for item_read, item_written in zip(read, written, strict=True):
            assert_same(item_read, item_written)


# -- what a write refuses -------------------------------------------------------------------------

# (id, value, what the error names: the type, and a hint where there is one)
REFUSED = [
    ("tuple", (1, 2), "tuple is not a JSON value; convert it first (e.g. list(...))"),
    ("set", {1}, "set is not a JSON value"),
    ("frozenset", frozenset({1}), "frozenset is not a JSON value"),
    ("datetime", datetime.datetime(2024, 1, 2, 3, 4), "datetime is not a JSON value; "),
    ("date", datetime.date(2024, 1, 2), "date is not a JSON value; convert it first (e.g. .iso"),
    ("time", datetime.time(3, 4), "time is not a JSON value; convert it first (e.g. .isoformat"),
    ("timedelta", datetime.timedelta(1), "timedelta is not a JSON value"),
    ("decimal", decimal.Decimal("1.5"), "Decimal is not a JSON value; convert it first (e.g. str"),
    ("uuid", uuid.UUID(int=1), "UUID is not a JSON value"),
    ("utf8-bytes", b"valid text", "bytes is not a JSON value"),
    ("other-bytes", b"\xff\xfe", "bytes is not a JSON value"),
    ("bytearray", bytearray(b"x"), "bytearray is not a JSON value"),
    ("enum", Colour.RED, "Colour is not a JSON value; convert it first (e.g. .value)"),
    ("float-enum", Weight.LIGHT, "Weight is not a JSON value"),
    ("nan", math.nan, "float nan is not a JSON value (JSON has no NaN or infinity)"),
    ("inf", math.inf, "float inf is not a JSON value"),
    ("-inf", -math.inf, "float -inf is not a JSON value"),
    ("object", object(), "object is not a JSON value; convert it first"),
    ("lambda", lambda: None, "function is not a JSON value"),
    ("builtin", len, "builtin_function_or_method is not a JSON value"),
    (
        "model",
        ChatMessage(),
        "ChatMessage is not a JSON value; convert it first (e.g. .model_dump(",
    ),
    ("list-cycle", cycle_list(), "[1]: a cycle, this list is also"),
    ("dict-cycle", cycle_dict(), "['again'][0]: a cycle, this dict is also"),
    ("int-key", {1: "one"}, "key 1 (int) is not a str"),
    ("none-key", {None: "none"}, "key None (NoneType) is not a str"),
    ("tuple-key", {(1, 2): "pair"}, "key (1, 2) (tuple) is not a str"),
    ("surrogate", "a\ud800b", "the str holds a lone surrogate '\\ud800' at position 1"),
    ("surrogate-key", {"k\udfff": 1}, "the key 'k\\udfff' holds a lone surrogate"),
    ("5000-deep", nested_lists(5000), f"nested deeper than the limit of {MAX_JSON_DEPTH} levels"),
    ("in-a-list", [1, "two", {"three": datetime.date(2024, 1, 2)}], "[2]['three']: date is"),
]
REFUSED_IDS = [case[0] for case in REFUSED]


def places(value: Any) -> list[tuple[str, object, str]]:
    """Every place a message holds free-form values: (where, message, the path named)."""
    return [
        (
            "additional_kwargs",
            ChatMessage(additional_kwargs={"k": value}),
            "additional_kwargs['k']",
        ),
        (
            "block",
            ChatMessage(blocks=[text_block("t"), {"block_type": "x", "k": value}]),
            "blocks[1]['k']",
        ),
        ("extra field", ChatMessage(content="t", k=value), "k"),
        (
            "dict",
            {"role": "user", "content": "t", "additional_kwargs": {"k": value}},
            "additional_kwargs['k']",
        ),
        ("dict extra field", {"role": "user", "k": value}, "k"),
    ]


@pytest.mark.parametrize(("name", "value", "named"), REFUSED, ids=REFUSED_IDS)
def test_a_value_json_cannot_hold_as_itself_is_refused_naming_its_path_and_type(
    name: str, value: Any, named: str
) -> None:
    for where, message, path in places(value):
        with pytest.raises(InvalidMessageError) as raised:
            encode(message)
        text = str(raised.value)
        assert text.startswith(path), (where, text)
        assert named in text, (where, text)
        assert isinstance(raised.value, TypeError)  # InvalidMessageError stays a TypeError


@pytest.mark.parametrize(("name", "value", "named"), REFUSED, ids=REFUSED_IDS)
def test_one_bad_message_refuses_the_whole_list(name: str, value: Any, named: str) -> None:
    good = ChatMessage(content="fine")
    with pytest.raises(InvalidMessageError, match="additional_kwargs"):
        encode_messages([good, ChatMessage(additional_kwargs={"k": value}), good], LIMIT)


def test_a_deep_path_is_shortened_but_keeps_both_ends() -> None:
    with pytest.raises(InvalidMessageError) as raised:
        encode(ChatMessage(additional_kwargs={"deep": nested_lists(5000)}))
    path = str(raised.value).split(": ", 1)[0]
    assert path.startswith("additional_kwargs['deep'][0][0]") and path.endswith("[0][0]")
    assert len(path) < 100


def test_a_subclass_field_is_checked_too() -> None:
    class Stamped(ChatMessage):
        when: Any = None

    assert encode(Stamped(content="t", when="2024-01-02")).endswith(b'"when":"2024-01-02"}')
    with pytest.raises(InvalidMessageError, match=r"^when: datetime is not a JSON value"):
        encode(Stamped(content="t", when=datetime.datetime(2024, 1, 2)))


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("role", 5, "role: int is not a str"),
        ("additional_kwargs", ["k"], "additional_kwargs: list is not a dict"),
        ("blocks", "text", "blocks: str is not a list"),
        ("blocks", [text_block("t"), "text"], "blocks[1]: str is not a dict"),
    ],
)
def test_a_field_reassigned_to_what_would_not_read_back_is_refused(
    field: str, value: Any, named: str
) -> None:
    message = ChatMessage(content="t")
    setattr(message, field, value)  # pydantic does not validate an assignment
    with pytest.raises(InvalidMessageError, match=re.escape(named)):
        encode(message)


def test_content_that_would_not_read_back_as_blocks_is_refused() -> None:
    message = ChatMessage()
    assert message.__pydantic_extra__ is not None
    message.__pydantic_extra__["content"] = 5  # beside no blocks, read back as blocks
    with pytest.raises(InvalidMessageError, match="content"):
        encode(message)
    message.__pydantic_extra__["content"] = "text"
    assert decode_message(encode(message)).content == "text"


def test_values_that_are_not_messages_are_refused() -> None:
    for value in (5, "text", ["a"], {"role": 5}, {"blocks": "nope"}, {"content": 3}):
        with pytest.raises(InvalidMessageError):
            encode(value)
    for not_a_list in ("text", ChatMessage(), {"role": "user"}, 7):
        with pytest.raises(InvalidMessageError):
            encode_messages(not_a_list, LIMIT)  # type: ignore[arg-type]


def test_the_size_limit_still_applies() -> None:
    with pytest.raises(MessageTooLargeError):
        encode_message(ChatMessage(content="x" * 1000), 1000)


# -- what a write stores --------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()  # no surrogates: hypothesis leaves them out of text by default
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values, key=st.text(max_size=8))
def test_json_values_read_back_as_the_same_values(value: Any, key: str) -> None:
    message = ChatMessage(
        role="assistant",
        additional_kwargs={key: value},
        blocks=[text_block("t"), {"block_type": "custom", "data": value}],
        extra_field=value,
    )
    stored = encode(message)
    assert stored == message.model_dump_json().encode()
    for read in (decode_message(stored), decode_conversation([stored, stored])[1]):
        assert_same(read.additional_kwargs, {key: value})
        assert_same(read.blocks[1], {"block_type": "custom", "data": value})
        assert_same(read.model_extra, {"extra_field": value})
    assert_same(json.loads(stored)["additional_kwargs"], {key: value})


bad_leaves = st.sampled_from(
    [math.nan, math.inf, (1,), frozenset(), b"b", datetime.date(2024, 1, 2), Colour.RED, "\ud800"]
)
mixed_values = st.recursive(
    json_scalars | bad_leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.text(max_size=3) | st.integers(0, 2) | st.just("\udc00"), children, max_size=3
        )
    ),
    max_leaves=12,
)


def is_json_native(value: Any) -> bool:
    """The rule, stated as simply as possible (no depth: these values stay shallow)."""
    if isinstance(value, str):
        return "\ud800" not in value and "\udc00" not in value
    if isinstance(value, float):
        return math.isfinite(value)
    if value is None or isinstance(value, (bool, int)):  # Colour is a plain Enum, not an int
        return True
    if isinstance(value, list):
        return all(map(is_json_native, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json_native(k) for k in value) and all(
            map(is_json_native, value.values())
        )
    return False


@settings(max_examples=300, deadline=None)
@given(value=mixed_values)
def test_exactly_the_json_native_values_are_stored_and_every_refusal_names_a_path(
    value: Any,
) -> None:
    message = ChatMessage(additional_kwargs={"v": value})
    if is_json_native(value):
        assert decode_message(encode(message)).additional_kwargs == {"v": value}
    else:
        with pytest.raises(InvalidMessageError, match=r"^additional_kwargs\['v'\]"):
            encode(message)


def test_subclasses_of_json_types_read_back_equal() -> None:
    written = {
        "str-enum": Role.USER,
        "int-enum": Level.HIGH,
        "ordered": OrderedDict(a=1),
        "bool": True,
        "big": 2**100,
        "negative-zero": -0.0,
        "text": "héllo \u2028 ✓ 😀 \x00",
        Role.USER: "a str-enum key",
    }
    read = decode_message(encode(ChatMessage(role=Role.USER, additional_kwargs=written)))
    assert read.additional_kwargs == written
    assert read.role == "user"


def test_a_dict_message_is_validated_into_our_model_first() -> None:
    stored = encode({"role": "user", "content": "hi", "additional_kwargs": {"n": 1}})
    assert (
        stored == ChatMessage(content="hi", additional_kwargs={"n": 1}).model_dump_json().encode()
    )


# -- the depth limit ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "levels_allowed"),
    [
        # the message object is level 1 and its field level 2: lists nest from level 3 there
        ("additional_kwargs", MAX_JSON_DEPTH - 2),
        ("extra field", MAX_JSON_DEPTH - 1),  # the list is the field's value: level 2
        ("block", MAX_JSON_DEPTH - 3),  # blocks, then the block, then its value
    ],
)
def test_the_depth_limit_counts_the_message_object_as_level_1(
    where: str, levels_allowed: int
) -> None:
    def message(levels: int) -> ChatMessage:
        value = nested_lists(levels)
        if where == "additional_kwargs":
            return ChatMessage(additional_kwargs={"k": value})
        if where == "extra field":
            return ChatMessage(k=value)
        return ChatMessage(blocks=[{"block_type": "x", "k": value}])

    deepest = encode(message(levels_allowed))
    assert json_depth(json.loads(deepest)) == MAX_JSON_DEPTH
    # It reads back, alone and within a conversation (one array more).
    assert decode_message(deepest) == message(levels_allowed)
    assert decode_conversation([deepest] * 3) == [message(levels_allowed)] * 3
    with pytest.raises(InvalidMessageError, match=f"deeper than the limit of {MAX_JSON_DEPTH}"):
        encode(message(levels_allowed + 1))


def test_the_limit_is_well_above_use_and_below_what_reads_back() -> None:
    # Past 200 levels pydantic's JSON reader refuses a conversation: a write deeper than that
    # would succeed and leave a conversation that no longer reads.
    assert 50 <= MAX_JSON_DEPTH <= 150
    too_deep = json.dumps({"role": "user", "additional_kwargs": {"k": nested_lists(198)}})
    with pytest.raises(ValidationError, match="recursion limit"):
        decode_conversation([too_deep.encode()])


# -- LlamaIndex's messages: its own JSON, its failures typed --------------------------------------


class ToolCall(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any]


LLAMA_STORED_AS_IT_WRITES = [
    # llama-index-core serialises additional_kwargs itself: models to dicts, bytes to base64,
    # then pydantic's defaults convert the rest. What it stores is what its own store stores.
    ("tool-call models", [ToolCall(id="c1", name="f", arguments={"q": 1})]),
    ("datetime", datetime.datetime(2024, 1, 2, 3, 4)),
    ("bytes", b"\xff"),
    ("set", {1}),
    ("nan", math.nan),
    ("int keys", {1: "one"}),
    ("98 levels", nested_lists(MAX_JSON_DEPTH - 2)),
]


@pytest.mark.parametrize(("name", "value"), LLAMA_STORED_AS_IT_WRITES)
def test_llama_index_messages_are_stored_as_llama_index_writes_them(name: str, value: Any) -> None:
    message = LlamaChatMessage(role="assistant", content="t", additional_kwargs={"k": value})
    stored = encode(message)
    assert stored == message.model_dump_json().encode()
    assert LlamaChatMessage.model_validate_json(stored).content == "t"


def test_what_llama_index_does_with_a_datetime_and_a_model() -> None:
    message = LlamaChatMessage(
        content="t",
        additional_kwargs={
            "when": datetime.datetime(2024, 1, 2, 3, 4),
            "call": ToolCall(id="c", name="f", arguments={}),
        },
    )
    assert json.loads(encode(message))["additional_kwargs"] == {
        "when": "2024-01-02T03:04:00",
        "call": {"id": "c", "name": "f", "arguments": {}},
    }


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("object", object(), "Unable to serialize unknown type: <class 'object'>"),
        ("function", len, "builtin_function_or_method"),
        ("cycle", cycle_list(), "RecursionError"),
        ("surrogate", "\ud800", "surrogates not allowed"),
        ("5000 levels", nested_lists(5000), "RecursionError"),
        ("99 levels", nested_lists(MAX_JSON_DEPTH - 1), "deeper than the limit"),
        ("250 levels", nested_lists(250), "recursion limit exceeded"),
    ],
)
def test_what_llama_index_cannot_store_is_refused_typed(name: str, value: Any, named: str) -> None:
    message = LlamaChatMessage(content="t", additional_kwargs={"k": value})
    with pytest.raises(InvalidMessageError) as raised:
        encode(message)
    assert named in str(raised.value)
    assert "ChatMessage" in str(raised.value)


def test_stored_bytes_are_model_dump_json_byte_for_byte() -> None:
    ours = [
        ChatMessage(content='héllo \u2028 "quoted" ✓ 😀 \\ /'),
        ChatMessage(
            role="tool", content="42", additional_kwargs={"f": 1e16, "g": 1.5e-7, "n": None}
        ),
        ChatMessage(blocks=[{"block_type": "image", "url": "https://example.com/x.png"}], t=[1]),
    ]
    for message in ours:
        assert encode(message) == message.model_dump_json().encode()
        llama = LlamaChatMessage.model_validate(message.model_dump())
        assert encode(llama) == llama.model_dump_json().encode()


# -- reads ----------------------------------------------------------------------------------------


def test_content_reads_back_as_one_text_block_and_blocks_are_kept() -> None:
    old_form = b'{"role":"user","content":"hi","additional_kwargs":{}}'
    assert decode_message(old_form).blocks == [text_block("hi")]
    assert decode_message(old_form).content == "hi"
    beside = b'{"role":"user","content":"kept","blocks":[{"block_type":"text","text":"b"}]}'
    read = decode_message(beside)
    assert (read.content, read.model_extra) == ("b", {"content": "kept"})
    unknown = b'{"role":"user","blocks":[{"block_type":"future","x":[1]}],"trace":"t"}'
    assert decode_message(unknown).model_dump_json().encode() == (
        b'{"role":"user","additional_kwargs":{},"blocks":[{"block_type":"future","x":[1]}],'
        b'"trace":"t"}'
    )


@pytest.mark.parametrize(
    "elements",
    [
        [b""],
        [b"[1]"],
        [b"not json"],
        [b'{"role":5}'],
        [b'{"role":"a"},{"role":"b"}'],  # two messages in one element
        [b'{"role":"a","additional_kwargs":{"k":[1', b"2]}}"],  # halves of one
        [b' {"role":"a"}'],  # valid alone, refused by the joined read (the store retries each)
    ],
)
def test_a_conversation_with_an_element_that_is_not_one_message_does_not_decode(
    elements: list[bytes],
) -> None:
    good = encode(ChatMessage(content="ok"))
    with pytest.raises(ValueError):
        decode_conversation([good, *elements, good])


def test_decode_message_reads_one_element_and_refuses_others() -> None:
    assert decode_message(b' {"role":"a"}\n').role == "a"
    for raw in (b"", b"[1]", b'{"role":5}', b'{"role":"a"},{"role":"b"}'):
        with pytest.raises(ValidationError):
            decode_message(raw)
    assert decode_conversation([]) == []
