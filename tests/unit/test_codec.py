"""Codec tests: transparent round trips by annotation, refusals, signed pickle, custom serializers.

Transparency: a decoded value equals the original and has the same type, recursively.
Annotated types live at module level, as they would in user code: the codec resolves them with
``typing.get_type_hints`` against the function's module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, NewType, Optional, TypedDict
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachedeco.core.codec.annotations import return_annotation
from cachedeco.core.codec.base import Codec, decoder
from cachedeco.core.codec.factory import make_codec
from cachedeco.core.codec.json import _JsonCodec, _ModelJsonCodec, _TypedJsonCodec
from cachedeco.core.codec.signed_pickle import SignedPickleCodec as _SignedPickleCodec
from cachedeco.errors import CacheError, ConfigurationError, SerializationError

NAME = "tests.unit.test_codec.f"
SECRET = "s3cret-of-at-least-32-bytes-for-hmac"


# ---- user types -----------------------------------------------------------------------------

class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Planet(enum.Enum):
    EARTH = (5.97, 6.37)
    MARS = (0.642, 3.39)


class Perm(enum.Flag):
    R = 1
    W = 2


UserId = NewType("UserId", int)
When = NewType("When", dt.datetime)


class Name(str):
    pass


@dataclasses.dataclass
class Event:
    when: dt.datetime
    ids: list[UUID]
    amount: Decimal
    tags: frozenset[str]
    point: tuple[int, int]
    color: Color
    note: str | None = None


@dataclasses.dataclass
class Node:
    name: str
    children: list[Node] = dataclasses.field(default_factory=list)
    parent: Optional[Node] = None  # noqa: UP045 - the typing spelling is covered on purpose


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    owner: str
    _balance: Decimal
    opened: dt.date = dt.date(2020, 1, 1)
    audit: list[dt.datetime] = dataclasses.field(init=False, default_factory=list)


class Item(pydantic.BaseModel):
    id: UUID
    at: dt.datetime
    qty: int
    price: Decimal


class StrictItem(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)  # Python mode refuses text for these
    at: dt.datetime
    id: UUID


@dataclasses.dataclass
class Holder:
    item: StrictItem


class Aliased(pydantic.BaseModel):
    user_id: int = pydantic.Field(alias="userId")
    seen: dt.date


@dataclasses.dataclass
class Basket:
    item: Item
    items: dict[str, Item]


class Point(NamedTuple):
    x: int
    when: dt.datetime


class Row(TypedDict):
    id: UUID
    at: dt.datetime
    n: int


Broken = dataclasses.make_dataclass("Broken", [("when", dt.datetime), ("x", "Missing")])


def returning(annotation: Any) -> Callable[[], Any]:
    """A function whose return annotation is `annotation`."""
    def f() -> None:
        """Stand-in for a decorated function."""
    f.__annotations__ = {"return": annotation}
    return f


def unannotated() -> None:
    """A function without annotations (they are removed below)."""


def string_forward_ref() -> None:
    """A function whose return annotation cannot be resolved (set below)."""


unannotated.__annotations__ = {}
string_forward_ref.__annotations__ = {"return": "Missing"}


async def async_returning_datetime() -> dt.datetime:
    """An async def: its annotation is the awaited type."""
    return dt.datetime(2020, 1, 1)


def codec_for(annotation: Any) -> Codec:
    return make_codec("orjson", func=returning(annotation), name=NAME)


def roundtrip(annotation: Any, value: Any) -> Any:
    codec = codec_for(annotation)
    return codec.loads(codec.dumps(value))


def assert_same(expected: Any, actual: Any) -> None:
    """Equal, same type, recursively (containers, dataclasses, pydantic models)."""
    assert type(actual) is type(expected), (expected, actual)
    assert actual == expected
    if isinstance(expected, dt.datetime | dt.time):  # the same offset; a named zone kept
        assert actual.utcoffset() == expected.utcoffset(), (expected, actual)
        if isinstance(expected.tzinfo, ZoneInfo):  # (pydantic has a UTC class of its own)
            assert actual.tzinfo is expected.tzinfo, (expected, actual)
    if isinstance(expected, dict):
        assert len(actual) == len(expected)
        for (k1, v1), (k2, v2) in zip(expected.items(), actual.items(), strict=True):
            assert_same(k1, k2)
            assert_same(v1, v2)
    elif isinstance(expected, list | tuple):
        for a, b in zip(expected, actual, strict=True):
            assert_same(a, b)
    elif isinstance(expected, set | frozenset):
        assert {(type(x), x) for x in actual} == {(type(x), x) for x in expected}
    elif dataclasses.is_dataclass(expected):
        for field in dataclasses.fields(expected):
            assert_same(getattr(expected, field.name), getattr(actual, field.name))
    elif isinstance(expected, pydantic.BaseModel):
        assert_same(dict(expected), dict(actual))


# ---- transparency ---------------------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")
AMSTERDAM_LMT = dt.timezone(dt.timedelta(minutes=19, seconds=32))
U1, U2 = UUID(int=1), UUID("12345678-1234-5678-1234-567812345678")
EVENT = Event(dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC), [U1, U2],
              Decimal("12.50"), frozenset({"a", "b"}), (3, 4), Color.BLUE)
STRICT = StrictItem(at=dt.datetime(2024, 1, 2, tzinfo=dt.UTC), id=U1)
ITEM = Item(id=U1, at=dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), qty=3,
            price=Decimal("9.99"))

TYPED_CASES: list[tuple[Any, Any]] = [
    (dt.datetime, dt.datetime(2024, 2, 29, 23, 59, 59, 999999)),
    (dt.datetime, dt.datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=dt.UTC)),
    (dt.datetime, dt.datetime(2024, 7, 1, 12, 0, tzinfo=PARIS)),
    (dt.datetime, dt.datetime(1900, 1, 1, 0, 0, 0, 5, tzinfo=AMSTERDAM_LMT)),
    (dt.datetime, dt.datetime.min),
    (dt.date, dt.date(1999, 12, 31)),
    (dt.date, dt.datetime(1999, 12, 31, 1, 2)),  # a datetime is a date: it stays a datetime
    (dt.time, dt.time(1, 2, 3, 4)),
    (dt.time, dt.time(1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=-5)))),
    (UUID, U2),
    (Decimal, Decimal("1.10")),
    (Decimal, Decimal("-0.000")),
    (Decimal, Decimal("1E+30")),
    (Decimal, Decimal("3.141592653589793238462643383279")),
    (Color, Color.RED),
    (Priority, Priority.HIGH),
    (Planet, Planet.MARS),
    (Perm, Perm.R | Perm.W),
    (Name, Name("ada")),
    (tuple, (1, "a", None)),
    (tuple[int, ...], (1, 2, 3)),
    (tuple[()], ()),
    (tuple[int, str], (1, "a")),
    (tuple[dt.date, UUID], (dt.date(2020, 1, 1), U1)),
    (list[dt.datetime], [dt.datetime(2020, 1, 1), dt.datetime(2021, 1, 1, tzinfo=dt.UTC)]),
    (set, {1, "a"}),
    (frozenset, frozenset({1, 2})),
    (set[int], {1, 2, 3}),
    (frozenset[str], frozenset({"x", "y"})),
    (set[tuple[int, int]], {(1, 2), (3, 4)}),
    (dict[int, str], {1: "a", -2: "b"}),
    (dict[UserId, str], {UserId(7): "a"}),
    (dict[float, str], {1.5: "a", 2.0: "b"}),
    (dict[bool, int], {True: 1, False: 0}),
    (dict[UUID, dt.date], {U1: dt.date(2020, 1, 1)}),
    (dict[dt.date, list[int]], {dt.date(2020, 1, 1): [1, 2]}),
    (dict[Color, int], {Color.RED: 1, Color.BLUE: 2}),
    (dict[Priority, int], {Priority.LOW: 1}),
    (dict[Literal["a", "b"], int], {"a": 1, "b": 2}),
    (dict[str, Decimal], {"a": Decimal("1.1"), "b": Decimal("0")}),
    (dict[str, dict[int, tuple[Decimal, ...]]], {"x": {1: (Decimal("1"), Decimal("2.5"))}}),
    (Optional[dt.datetime], dt.datetime(2020, 1, 1)),  # noqa: UP045
    (dt.datetime | None, None),
    (Literal["a", "b"], "b"),
    (Literal[Color.RED, 1], Color.RED),
    (Literal[Color.RED, 1], 1),
    (When, When(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))),
    (Annotated[Decimal, "money"], Decimal("5.00")),
    (int | Decimal, 3),
    (int | Decimal, Decimal("3.5")),
    (list[dt.date] | dict[str, UUID], [dt.date(2020, 1, 1)]),
    (list[dt.date] | dict[str, UUID], {"a": U1}),
    (Sequence[dt.date], [dt.date(2020, 1, 1)]),
    (Mapping[int, Decimal], {1: Decimal("1")}),
    (Event, EVENT),
    (list[Event], [EVENT, dataclasses.replace(EVENT, note="second")]),
    (dict[str, Event], {"e": EVENT}),
    (Node, Node("root", [Node("a"), Node("b", [Node("c")])], Node("up"))),
    (Item, ITEM),
    (list[Item], [ITEM, ITEM.model_copy(update={"qty": 4})]),
    (Optional[Item], ITEM),  # noqa: UP045
    (Aliased, Aliased(userId=5, seen=dt.date(2020, 1, 1))),
    (Basket, Basket(ITEM, {"i": ITEM})),
    (Point, Point(1, dt.datetime(2020, 1, 1))),
    (list[Point], [Point(1, dt.datetime(2020, 1, 1))]),
    (Row, Row(id=U1, at=dt.datetime(2020, 1, 1), n=1)),
    # a model inside another type is validated from JSON, as the whole-value model is: a
    # strict one's every hit was a decode error before
    (StrictItem, STRICT),
    (list[StrictItem], [STRICT, STRICT]),
    (dict[str, StrictItem | None], {"a": STRICT, "b": None}),
    (Holder, Holder(STRICT)),
    (StrictItem | Event, STRICT),
]


@pytest.mark.parametrize(("annotation", "value"), TYPED_CASES, ids=repr)
def test_typed_round_trip_is_equal_and_same_type(annotation: Any, value: Any) -> None:
    assert_same(value, roundtrip(annotation, value))


def test_aware_datetime_keeps_its_offset() -> None:
    value = dt.datetime(2024, 7, 1, 12, 0, 0, 7, tzinfo=PARIS)
    restored = roundtrip(dt.datetime, value)
    assert restored.utcoffset() == value.utcoffset()
    assert restored.microsecond == 7
    assert roundtrip(dt.datetime, dt.datetime(2020, 1, 1)).tzinfo is None


def test_a_datetime_in_a_named_zone_comes_back_in_that_zone() -> None:
    # its offset alone came back (a fixed +02:00): a day later it was an hour off across DST
    new_york = ZoneInfo("America/New_York")
    second_one_thirty = dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=new_york)  # EST
    for value in (dt.datetime(2024, 10, 26, 12, 0, tzinfo=PARIS), second_one_thirty):
        restored = roundtrip(dt.datetime, value)
        assert restored.tzinfo is value.tzinfo
        assert (restored.fold, restored.utcoffset()) == (value.fold, value.utcoffset())
        assert restored + dt.timedelta(days=1) == value + dt.timedelta(days=1)
        assert (restored + dt.timedelta(days=1)).hour == (value + dt.timedelta(days=1)).hour
    stored = orjson.loads(codec_for(dt.datetime).dumps(dt.datetime(2024, 1, 1, tzinfo=PARIS)))
    assert stored == "2024-01-01T00:00:00+01:00[Europe/Paris]"
    assert roundtrip(dt.date, dt.datetime(2024, 1, 1, tzinfo=PARIS)).tzinfo is PARIS
    assert roundtrip(dict[str, dt.datetime], {"a": second_one_thirty})["a"].tzinfo is new_york
    with pytest.raises(SerializationError, match="cannot decode"):
        codec_for(dt.datetime).loads(b'"2024-01-01T00:00:00+01:00[Nowhere/Atlantis]"')


def test_dataclass_private_and_init_false_fields_survive() -> None:
    account = Account("ada", Decimal("10.00"))
    account.audit.append(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    assert_same(account, roundtrip(Account, account))


@dataclasses.dataclass
class Scaled:
    amount: float
    rate: dataclasses.InitVar[float]  # an argument __post_init__ uses, and no field

    def __post_init__(self, rate: float) -> None:
        self.amount *= rate


@dataclasses.dataclass(frozen=True, slots=True)
class ScaledByDefault:
    amount: float
    when: dt.date
    rate: dataclasses.InitVar[int] = 2

    def __post_init__(self, rate: int) -> None:
        object.__setattr__(self, "amount", self.amount * rate)


def test_a_dataclass_with_initvars_comes_back_as_stored_without_its_constructor() -> None:
    # its arguments were not stored, and __post_init__ already made the fields: running it
    # again failed (a required InitVar) or applied it twice (amount 40 for 20)
    assert_same(Scaled(10.0, 2.0), roundtrip(Scaled, Scaled(10.0, 2.0)))
    value = ScaledByDefault(10.0, dt.date(2020, 1, 1))
    assert roundtrip(ScaledByDefault, value).amount == 20.0
    assert_same([value], roundtrip(list[ScaledByDefault], [value]))


def test_unresolvable_dataclass_field_is_left_untyped() -> None:
    value = Broken(dt.datetime(2020, 1, 1), {"raw": 1})
    assert_same(value, roundtrip(Broken, value))


def test_async_function_annotation_is_the_awaited_type() -> None:
    codec = make_codec("orjson", func=async_returning_datetime, name=NAME)
    assert_same(dt.datetime(2020, 1, 1), codec.loads(codec.dumps(dt.datetime(2020, 1, 1))))


def test_classmethod_and_staticmethod_objects_are_unwrapped() -> None:
    def f() -> dt.date:
        """Annotated."""
        return dt.date(2020, 1, 1)

    def g(cls: type) -> dt.time:
        """Annotated, with a cls."""
        return dt.time()
    assert return_annotation(staticmethod(f)) is dt.date
    assert return_annotation(classmethod(g)) is dt.time


def test_unresolvable_return_annotation_is_refused_naming_it() -> None:
    # decoding to a guess would make every hit return another type than the miss
    with pytest.raises(ConfigurationError, match="'Missing'"):
        return_annotation(string_forward_ref, NAME)
    with pytest.raises(ConfigurationError, match="'Missing'"):
        make_codec("orjson", func=string_forward_ref, name=NAME)
    codec = make_codec("pickle", func=string_forward_ref, name=NAME, secret=SECRET)
    assert codec.loads(codec.dumps({"a": 1})) == {"a": 1}  # pickle needs no annotation


def test_bare_base_model_annotation_is_left_as_json() -> None:
    # "some model": rebuilding a bare BaseModel would drop every field
    assert type(codec_for(pydantic.BaseModel)) is _JsonCodec
    assert roundtrip(pydantic.BaseModel, ITEM) == orjson.loads(codec_for(Any).dumps(ITEM))


@pytest.mark.parametrize("value", [None, 0, 0.0, "", [], {}, False])
def test_falsy_values_round_trip(value: Any) -> None:
    assert_same(value, roundtrip(Any, value))
    assert_same(value, roundtrip(type(value), value))
    codec = make_codec("orjson", name=NAME)
    assert_same(value, codec.loads(codec.dumps(value)))


def test_none_from_a_function_annotated_without_optional_stays_none() -> None:
    assert roundtrip(dt.datetime, None) is None
    assert roundtrip(Event, None) is None
    assert roundtrip(Item, None) is None


# ---- the hit path ---------------------------------------------------------------------------

@pytest.mark.parametrize("annotation", [
    Any, dict, list, str, int, float, bool, None, dict[str, Any], list[int],
    dict[str, list[dict[str, float]]], Optional[int], int | str, Literal["a", 1],  # noqa: UP045
    NewType("Label", str), Annotated[int, "meta"], Sequence[str],
])
def test_json_typed_annotations_decode_with_orjson_alone(annotation: Any) -> None:
    assert type(codec_for(annotation)) is _JsonCodec


def test_unannotated_function_returns_exactly_what_orjson_loads_returns() -> None:
    codec = make_codec("orjson", func=unannotated, name=NAME)
    assert type(codec) is _JsonCodec
    values = [{"a": [1, 2.5, None, True]}, {1: "int key"}, (1, 2), Decimal("1.5"),
              dt.datetime(2020, 1, 1, tzinfo=dt.UTC), {3, 4}, U1, Color.RED, EVENT, ITEM]
    for value in values:
        data = codec.dumps(value)
        assert_same(orjson.loads(data), codec.loads(data))
    assert codec.loads(b'{"k":[1,"2",3.0]}') == orjson.loads(b'{"k":[1,"2",3.0]}')


@pytest.mark.parametrize(("annotation", "value", "said"), [
    (Any, EVENT, "type tests.unit.test_codec.Event, which a cache hit returns as type dict"),
    (Any, [1, {"a": (1, 2)}], "type tuple, which a cache hit returns as type list"),
    (Any, {1: "a"}, "type int, which a cache hit returns as type str"),
    (dict[str, Any], {"a": [dt.datetime(2020, 1, 1)]}, "datetime.datetime, which a cache hit "
                                                       "returns as type str"),
    (list[Event], [EVENT, dataclasses.replace(EVENT, color=Color.RED)], None),
    (Event, EVENT, None),
    (Any, {"a": [1, 2.5, None, "s", True]}, None),
])
def test_a_type_only_hits_would_change_is_logged_once(
        annotation: Any, value: Any, said: str | None,
        caplog: pytest.LogCaptureFixture) -> None:
    # an unannotated function's dataclass comes back as a dict: only hits would show it
    codec = codec_for(annotation)
    with caplog.at_level("WARNING", logger="cachedeco"):
        codec.dumps(None)  # a None first says nothing of the values to come
        codec.dumps(value)
        codec.dumps(value)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ([] if said is None else [lines[0]])
    if said is not None:
        assert said in lines[0] and "annotate its return type" in lines[0]
        assert "12.50" not in lines[0] and "'a'" not in lines[0]  # types, never values


def test_typed_and_model_codecs_are_chosen_at_construction() -> None:
    assert type(codec_for(dt.datetime)) is _TypedJsonCodec
    assert type(codec_for(Item)) is _ModelJsonCodec
    assert type(codec_for(Optional[Item])) is _TypedJsonCodec  # noqa: UP045


# ---- refusals -------------------------------------------------------------------------------

class Opaque:
    pass


@pytest.mark.parametrize(("value", "type_name"), [
    (Opaque(), "Opaque"),
    ({"a": [Opaque()]}, "Opaque"),
    (b"raw", "bytes"),
    (2**64, "64-bit"),
    ({"n": [-(2**70)]}, "64-bit"),
    (float("nan"), "NaN"),
    ([1.0, float("inf")], "NaN"),
    ({"a": {"b": float("-inf")}}, "NaN"),
    (Event, "type"),
    # orjson refuses aware times unless annotated (older orjson says "timezone")
    (dt.time(1, tzinfo=dt.UTC), "tzinfo|timezone"),
])
def test_unserializable_value_raises_serialization_error(value: Any, type_name: str) -> None:
    codec = make_codec("orjson", name=NAME)
    with pytest.raises(SerializationError) as info:
        codec.dumps(value)
    err = info.value
    assert isinstance(err, TypeError)
    assert isinstance(err, CacheError)
    assert err.function == NAME
    assert NAME in str(err)
    assert re.search(type_name, str(err))
    assert type(value).__qualname__ in str(err)
    assert "serializer=" in str(err)


def test_finite_floats_next_to_none_are_fine() -> None:
    codec = make_codec("orjson", name=NAME)
    assert codec.loads(codec.dumps([None, 1.5, {"x": None}])) == [None, 1.5, {"x": None}]


def test_nan_inside_a_dataclass_is_refused() -> None:
    @dataclasses.dataclass
    class Reading:
        value: float
        missing: None = None
    with pytest.raises(SerializationError, match="NaN"):
        make_codec("orjson", name=NAME).dumps(Reading(float("nan")))


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b'{"a":', b"nul", b"[1,]"])
def test_corrupt_bytes_raise_serialization_error(data: bytes) -> None:
    for codec in (make_codec("orjson", name=NAME), codec_for(Event), codec_for(Item)):
        with pytest.raises(SerializationError) as info:
            codec.loads(data)
        assert info.value.function == NAME
        assert info.value.__cause__ is not None


@pytest.mark.parametrize(("annotation", "data"), [
    (dt.datetime, b'"not a date"'),
    (UUID, b'"xyz"'),
    (Decimal, b'"1,5"'),
    (Color, b'"green"'),
    (Event, b"{}"),
    (Event, b"[1, 2]"),
    (tuple[int, dt.date], b'[1, "2020-01-01", 3]'),
    (dict[int, str], b'{"one": "a"}'),
    (Item, b'{"id": "nope"}'),
    (list[Item], b'[{"id": "nope"}]'),
])
def test_data_that_does_not_fit_the_annotation_is_a_decode_error(annotation: Any,
                                                                 data: bytes) -> None:
    with pytest.raises(SerializationError, match="cannot decode"):
        codec_for(annotation).loads(data)


# ---- signed pickle --------------------------------------------------------------------------

class Exploit:
    """Unpickling this creates a file: proof that a payload was (or was not) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.path), "w"))


@dataclasses.dataclass
class Opaqueish:
    when: dt.datetime
    data: set[tuple[int, str]]


def test_pickle_round_trips_arbitrary_objects_exactly() -> None:
    codec = make_codec("pickle", name=NAME, secret=SECRET)
    assert type(codec) is _SignedPickleCodec
    for value in [Opaqueish(dt.datetime(2020, 1, 1, tzinfo=PARIS), {(1, "a")}), (1, 2),
                  2**100, float("nan"), b"bytes", None, 0, "", {1: {2}}]:
        restored = codec.loads(codec.dumps(value))
        if not (isinstance(value, float) and math.isnan(value)):
            assert_same(value, restored)
    when = codec.loads(codec.dumps(dt.datetime(2020, 1, 1, tzinfo=PARIS)))
    assert when.tzinfo is PARIS


def test_pickle_payload_layout() -> None:
    codec = make_codec("pickle", name=NAME, secret=b"k" * 32)
    data = codec.dumps({"a": 1})
    assert data[0] == 1
    assert pickle.loads(data[33:]) == {"a": 1}


@pytest.mark.parametrize("secret", [None, "", b""])
def test_pickle_requires_a_secret(secret: str | bytes | None) -> None:
    with pytest.raises(ConfigurationError, match="secret") as info:
        make_codec("pickle", name=NAME, secret=secret)
    assert isinstance(info.value, ValueError)


def test_pickle_rejects_a_non_text_secret() -> None:
    with pytest.raises(ConfigurationError):
        make_codec("pickle", name=NAME, secret=42)  # type: ignore[arg-type]


def test_forged_payloads_are_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Exploit(marker))
    codec = make_codec("pickle", name=NAME, secret=SECRET)
    other = make_codec("pickle", name=NAME, secret="another secret, 32 bytes or longer")
    signed_elsewhere = other.dumps(Exploit(marker))
    good = codec.dumps(Exploit(marker))
    forged = [
        evil,                                  # plain, unsigned pickle
        b"\x01" + bytes(32) + evil,            # right shape, wrong MAC
        b"\x02" + good[1:],                    # unknown version
        signed_elsewhere,                      # correctly signed with a different secret
        good[:33],                             # truncated to the header
        good[:-1],                             # truncated payload
        good[:20],
        b"",
        good[:1] + bytes([good[1] ^ 1]) + good[2:],  # one flipped MAC bit
    ]
    for data in forged:
        with pytest.raises(SerializationError) as info:
            codec.loads(data)
        assert info.value.function == NAME
        assert not marker.exists()
    # control: the same payload correctly signed *is* dangerous, so the test proves something
    handle = codec.loads(good)
    handle.close()
    assert marker.exists()


def test_unpicklable_value_raises_serialization_error() -> None:
    codec = make_codec("pickle", name=NAME, secret=SECRET)
    with pytest.raises(SerializationError, match="generator") as info:
        codec.dumps(x for x in range(1))
    assert isinstance(info.value, TypeError)
    assert NAME in str(info.value)


# ---- custom serializers and configuration ---------------------------------------------------

class Failing:
    def dumps(self, obj: Any) -> bytes:
        raise RuntimeError("dumps broke")

    def loads(self, data: bytes) -> Any:
        raise RuntimeError("loads broke")


class ReturnsInt:
    def dumps(self, obj: Any) -> Any:
        return 42

    def loads(self, data: bytes) -> Any:
        return data


class ReturnsBytearray:
    def dumps(self, obj: Any) -> bytearray:
        return bytearray(repr(obj), "utf-8")

    def loads(self, data: bytes) -> Any:
        return data.decode()


def test_custom_serializer_returning_str_is_encoded() -> None:
    codec = make_codec(json, name=NAME)
    data = codec.dumps({"é": [1, 2]})
    assert data == json.dumps({"é": [1, 2]}).encode()
    assert codec.loads(data) == {"é": [1, 2]}


def test_custom_serializer_bytes_like_output_becomes_bytes() -> None:
    codec = make_codec(ReturnsBytearray(), name=NAME)
    assert codec.dumps([1]) == b"[1]"
    assert codec.loads(b"[1]") == "[1]"


def test_custom_serializer_failures_become_serialization_errors() -> None:
    codec = make_codec(Failing(), name=NAME)
    with pytest.raises(SerializationError, match="dumps broke") as info:
        codec.dumps(Opaque())
    assert "Opaque" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(SerializationError, match="loads broke"):
        codec.loads(b"x")


def test_custom_serializer_must_return_bytes_or_str() -> None:
    with pytest.raises(SerializationError, match="not bytes or str"):
        make_codec(ReturnsInt(), name=NAME).dumps(1)


@pytest.mark.parametrize("spec", ["yaml", "json", object(), 42,
                                  type("NoLoads", (), {"dumps": staticmethod(repr)})(),
                                  type("Attrs", (), {"dumps": 1, "loads": 2})()])
def test_bad_serializer_spec_is_a_configuration_error(spec: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_codec(spec, name=NAME)
    assert isinstance(info.value, ValueError)


def test_default_spec_is_orjson_and_secret_is_ignored_there() -> None:
    assert type(make_codec(None, name=NAME)) is _JsonCodec
    assert type(make_codec("orjson", name=NAME, secret=SECRET)) is _JsonCodec


# ---- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)
offsets = st.sampled_from([None, dt.UTC, AMSTERDAM_LMT,
                           dt.timezone(dt.timedelta(hours=-9, minutes=-30))])


@settings(database=None, max_examples=200)
@given(json_values)
def test_json_values_round_trip(value: Any) -> None:
    codec = make_codec("orjson", func=unannotated, name=NAME)
    assert_same(value, codec.loads(codec.dumps(value)))
    assert_same(value, roundtrip(Any, value))


@settings(database=None, max_examples=100)
@given(st.dictionaries(st.integers(min_value=-(2**63), max_value=2**63 - 1),
                       st.lists(st.datetimes(timezones=offsets) | st.none(), max_size=4),
                       max_size=4),
       st.decimals(allow_nan=False))
def test_typed_values_round_trip(value: dict[int, list[dt.datetime | None]],
                                 amount: Decimal) -> None:
    assert_same(value, roundtrip(dict[int, list[dt.datetime | None]], value))
    assert_same(amount, roundtrip(Decimal, amount))


def test_uuid4_round_trip_sanity() -> None:
    value = uuid4()
    assert_same(value, roundtrip(UUID, value))


@dataclasses.dataclass
class Point:
    x: int


def test_codecs_that_decode_alike_share_one_decoder() -> None:
    """The near cache serves a value decoded by one function to another sharing its key
    only when their codecs' decoders are the same object."""
    def point() -> Point: ...
    def point_too() -> Point: ...
    def plain() -> dict[str, int]: ...
    def untyped(): ...  # type: ignore[no-untyped-def]
    def raw() -> bytes: ...

    def of(func: Any, serializer: str = "orjson") -> object:
        return decoder(make_codec(serializer, func=func, name=func.__name__, secret="s" * 32))

    assert of(point) is of(point_too)
    assert of(plain) is of(untyped)
    assert of(point) is not of(plain)
    assert of(raw) is of(raw) and of(raw) is not of(plain)
    assert of(point, "pickle") is not of(point_too, "pickle")  # each signed apart: its own
