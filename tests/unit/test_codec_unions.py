"""Codec tests for what one JSON form cannot tell apart: unions whose members arrive as the
same JSON type, stored tagged with their member; and for what JSON has no form for, written
as text where the annotation says so: ``bytes`` (base64), ``timedelta`` (seconds), and the
classes whose ``str()`` their constructor reads back (addresses, paths, fractions).
Round trips are equal and of the same type, recursively; a union the JSON type does split is
stored as before, untagged; data that is not what the annotation now expects is a decode
error (a miss), never another type."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import ipaddress
import pathlib
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple, Protocol, TypedDict, TypeVar
from uuid import UUID

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typing_extensions import TypeAliasType

from cachedeco.core.codec.typed import build_plan
from cachedeco.errors import SerializationError
from tests.unit.test_codec import assert_same, codec_for, roundtrip


@dataclasses.dataclass
class Cat:
    name: str


@dataclasses.dataclass
class Dog:
    name: str
    barks: bool = True


@dataclasses.dataclass
class Kitten(Cat):
    pass


class Ok(pydantic.BaseModel):
    value: int


class Err(pydantic.BaseModel):
    value: int
    reason: str = "?"


class Shade(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Owner:
    pet: Cat | Dog
    avatar: bytes | None = None


@dataclasses.dataclass
class Tree:
    children: list[Tree]
    leaf: Cat | Dog | None = None


@dataclasses.dataclass
class Left:
    right: Right | None
    pet: Cat | Dog


@dataclasses.dataclass
class Right:
    left: Left | None


class Pair(NamedTuple):
    pet: Cat | Dog
    raw: bytes


class Pt(NamedTuple):
    x: int
    y: int


class Row(TypedDict):
    pet: Cat | Dog
    n: int


D = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
U = UUID(int=7)

CASES: list[tuple[Any, Any]] = [
    (Cat | Dog, Cat("c")),
    (Cat | Dog, Dog("d", barks=False)),
    (Cat | Dog | None, None),
    (Ok | Err, Ok(value=1)),
    (Ok | Err, Err(value=1)),
    (list[Cat | Dog], [Cat("a"), Dog("b"), Cat("c")]),
    (dict[str, Cat | Dog], {"x": Dog("x"), "y": Cat("y")}),
    (tuple[Cat | Dog, int], (Dog("d"), 1)),
    (set[int] | frozenset[int], frozenset({1, 2})),
    (list[Ok | Err], [Err(value=2), Ok(value=3)]),
    (str | dt.datetime, D),
    (str | dt.datetime, "2024-01-02T03:04:05+00:00"),  # a string that reads as a date
    (dt.datetime | dt.date, dt.date(2024, 1, 2)),
    (dt.datetime | dt.date, D),
    (Shade | str, Shade.RED),
    (Shade | str, "red"),
    (list[int] | tuple[int, ...], (1, 2)),
    (list[int] | tuple[int, ...], [1, 2]),
    (tuple[int, int] | Pt, Pt(1, 2)),  # a NamedTuple is a tuple, but not exactly one
    (tuple[int, int] | Pt, (1, 2)),
    (list[dt.datetime] | list[UUID], [U, U]),  # told apart by their items
    (list[dt.datetime] | list[UUID], [D]),
    (int | bool | Shade | str, True),
    (int | bool | Shade | str, 1),
    (Owner, Owner(Dog("d"), b"\x89PNG\x00")),
    (Tree, Tree([Tree([], Dog("a")), Tree([Tree([], Cat("b"))])], None)),
    (Left, Left(Right(Left(None, Dog("d"))), Cat("c"))),
    (Right, Right(Left(Right(Left(None, Cat("c"))), Dog("d")))),  # the union one class down
    (Pair, Pair(Dog("d"), b"\x00")),
    (Row, Row(pet=Dog("d"), n=1)),
    (bytes, bytes(range(256))),
    (bytes, b""),
    (bytes | None, None),
    (list[bytes], [b"a", b"\xff"]),
    (dict[str, bytes], {"k": b"\x01"}),
    (str | bytes, "text"),
    (str | bytes, b"text"),
    (dict[int, tuple[bytes, Cat | Dog]], {1: (b"z", Cat("c"))}),
    (dt.timedelta, dt.timedelta(days=1, seconds=1, microseconds=1)),
    (dt.timedelta, -dt.timedelta(microseconds=1)),
    (dt.timedelta, dt.timedelta(0)),
    (dt.timedelta, dt.timedelta.max),
    (dt.timedelta, dt.timedelta.min),
    (dict[str, dt.timedelta | None], {"a": dt.timedelta(hours=-5), "b": None}),
    (str | dt.timedelta, dt.timedelta(minutes=3)),
    (str | dt.timedelta, "180.000000"),
    (ipaddress.IPv4Address, ipaddress.ip_address("10.1.2.3")),
    (ipaddress.IPv6Address, ipaddress.ip_address("fe80::1%eth0")),
    (ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.ip_address("::2")),
    (list[ipaddress.IPv4Network], [ipaddress.ip_network("10.0.0.0/8")]),
    (dict[str, ipaddress.IPv6Interface], {"a": ipaddress.ip_interface("::1/64")}),
    (pathlib.Path, pathlib.Path("/srv/a b/c.txt")),
    (pathlib.PurePosixPath | None, pathlib.PurePosixPath("x/y")),
    (pathlib.PureWindowsPath, pathlib.PureWindowsPath("C:/Users/x")),
    (Fraction, Fraction(-3, 4)),
    # containers JSON keeps as their base, rebuilt as their class
    (collections.Counter[str], collections.Counter("abracadabra")),
    (collections.Counter, collections.Counter(["a", "a", "b"])),
    (collections.OrderedDict[str, dt.date], collections.OrderedDict(b=dt.date(2020, 1, 1))),
    (collections.deque[dt.timedelta], collections.deque([dt.timedelta(seconds=1)])),
    (collections.deque, collections.deque(["a", 1])),
    (list[collections.deque[int]], [collections.deque([1, 2])]),
    (collections.Counter[str] | dict[str, int], {"a": 1}),
    (collections.Counter[str] | dict[str, int], collections.Counter("ab")),
]


@pytest.mark.parametrize(("annotation", "value"), CASES, ids=repr)
def test_round_trip_is_equal_and_same_type(annotation: Any, value: Any) -> None:
    assert_same(value, roundtrip(annotation, value))


def test_a_tagged_union_is_stored_with_its_member() -> None:
    codec = codec_for(Cat | Dog)
    assert orjson.loads(codec.dumps(Dog("d"))) == [1, {"name": "d", "barks": True}]
    assert orjson.loads(codec.dumps(Cat("c"))) == [0, {"name": "c"}]
    assert codec.dumps(None) == b"null"
    assert orjson.loads(codec_for(list[bytes]).dumps([b"\x00\xff"])) == ["AP8="]
    duration = codec_for(dt.timedelta).dumps(-dt.timedelta(days=1, microseconds=1))
    assert orjson.loads(duration) == "-86400.000001"


def test_a_function_returning_bytes_stores_them_as_they_are() -> None:
    # no JSON and no base64 around a whole payload (a thumbnail, a rendered page)
    codec = codec_for(bytes)
    assert codec.dumps(b"\x00\xff") == b"b\x00\xff"
    assert codec.dumps(bytearray(b"ab")) == b"bab"
    assert_same(b"ab", codec.loads(codec.dumps(bytearray(b"ab"))))
    optional = codec_for(bytes | None)
    assert optional.dumps(None) == b"n"
    assert optional.loads(b"n") is None
    assert_same(b"", optional.loads(optional.dumps(b"")))


def test_a_subclass_comes_back_as_the_member_it_fits() -> None:
    # the annotation names what is rebuilt, as for a single dataclass
    assert_same(Cat("k"), roundtrip(Cat | Dog, Kitten("k")))
    assert_same(Cat("k"), roundtrip(Any | Cat, Kitten("k")))  # before the catch-all Any
    assert_same({"k": 1}, roundtrip(Any | Cat, {"k": 1}))


class Named(Protocol):  # not runtime_checkable: isinstance refuses it
    name: str


def test_a_member_isinstance_refuses_takes_what_the_others_do_not() -> None:
    assert_same(Dog("d"), roundtrip(Cat | Dog | Named, Dog("d")))
    assert_same({"name": "n"}, roundtrip(Cat | Named, {"name": "n"}))


def test_a_value_no_member_fits_comes_back_as_its_json_form() -> None:
    codec = codec_for(Cat | Dog)
    assert orjson.loads(codec.dumps({"name": "x"})) == [-1, {"name": "x"}]
    assert codec.loads(codec.dumps({"name": "x"})) == {"name": "x"}


@pytest.mark.parametrize("annotation", [
    int | bool, int | float, str | int | None, list[int] | dict[str, int], int | dt.datetime,
    list[dt.date] | dict[str, UUID], dt.datetime | None, list[Cat] | int,
])
def test_unions_the_json_type_splits_are_stored_untagged(annotation: Any) -> None:
    assert build_plan(annotation).encode is None


@pytest.mark.parametrize(("annotation", "data"), [
    (Cat | Dog, b'{"name": "c"}'),  # untagged: written before unions were tagged
    (str | dt.datetime, b'"2024-01-02"'),
    (Cat | Dog, b'[2, {"name": "c"}]'),  # no such member
    (Cat | Dog, b'[-2, {"name": "c"}]'),
    (Cat | Dog, b'["0", {"name": "c"}]'),
    (Cat | Dog, b'[0, {"name": "c"}, 1]'),
    (Cat | Dog, b'[1, {"nom": "d"}]'),
    (bytes, b'"AP8="'),  # JSON: not a stored bytes value
    (bytes, b""),
    (bytes | None, b"null"),
    (list[bytes], b'["not base64!"]'),
    (dt.timedelta, b'"1.5"'),
    (dt.timedelta, b'"--1.000000"'),
    (dt.timedelta, b'"1e3.000000"'),
    (dt.timedelta, b"86400"),
])
def test_data_that_does_not_fit_is_a_decode_error(annotation: Any, data: bytes) -> None:
    with pytest.raises(SerializationError, match="cannot decode"):
        codec_for(annotation).loads(data)


@pytest.mark.parametrize(("annotation", "value"), [
    (bytes, "text"),
    (list[bytes], [b"a", 1]),
    (Any, b"raw"),  # unannotated bytes: JSON has none, and nothing says to rebuild them
    (dict[bytes, int], {b"k": 1}),
    (dt.timedelta, 3.5),
    (Any, dt.timedelta(1)),  # unannotated: nothing would turn the text back
    (Any, ipaddress.ip_address("10.0.0.1")),
    (Cat | Dog | int, 2**64),  # stored as [2, 2**64]: the error names the int returned
])
def test_what_json_cannot_hold_is_refused_naming_the_returned_type(annotation: Any,
                                                                   value: Any) -> None:
    with pytest.raises(SerializationError, match="cannot serialize") as info:
        codec_for(annotation).dumps(value)
    assert f"{type(value).__qualname__} returned by" in str(info.value)


SCALARS = (int | bool | str | dt.datetime | dt.date | dt.time | dt.timedelta | UUID | Decimal
           | bytes | None | list[int] | tuple[int, ...] | Shade)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(), st.binary(), st.none(),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)), st.dates(), st.times(), st.uuids(),
    st.timedeltas(),
    st.decimals(allow_nan=False, allow_infinity=False), st.lists(st.integers(0, 9)),
    st.tuples(st.integers(0, 9), st.integers(0, 9)), st.sampled_from(Shade)))
def test_any_member_of_a_wide_union_round_trips(value: Any) -> None:
    assert_same(value, roundtrip(SCALARS, value))
    assert_same([value], roundtrip(list[SCALARS], [value]))


Pet = TypeAliasType("Pet", Cat | Dog)  # `type Pet = Cat | Dog` from Python 3.12 on
Json = TypeAliasType("Json", int)
# A recursive alias, as 3.12's lazily evaluated `type Json = dict[str, Json] | ...` makes one
object.__setattr__(Json, "__value__", dict[str, Json] | list[Json] | str | int | None)
Pets = TypeAliasType("Pets", dict[str, Json] | list[Pet])
T = TypeVar("T")
Box = TypeAliasType("Box", list[T] | Dog, type_params=(T,))  # `type Box[T] = list[T] | Dog`


@pytest.mark.parametrize(("annotation", "value"), [
    (Pet, Dog("d")),
    (list[Pet], [Cat("c"), Dog("d")]),
    (Pet | None, None),
    (Json, {"a": [1, "b", None, {"c": []}]}),
    (Pets, [Dog("d")]),
    (Pets, {"a": [1]}),
    (Box[Cat], [Cat("c")]),
    (Box[Pet], [Dog("d")]),
    (Box[Cat], Dog("d")),
], ids=repr)
def test_type_aliases_are_compiled_as_what_they_stand_for(annotation: Any, value: Any) -> None:
    assert_same(value, roundtrip(annotation, value))
