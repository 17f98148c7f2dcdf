"""Values through the servers' codec, on sync and asyncio functions: every annotated type comes
back equal and of the same type, and a result JSON cannot hold is refused at the call, naming
the function and the type, and never stored."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from cachedeco import Registry, SerializationError, cached
from tests.support.calls import Calls
from tests.support.deployments import REDIS_BACKENDS
from tests.support.peek import stored

pytestmark = pytest.mark.deployments(*REDIS_BACKENDS)  # memory:// keeps objects as they are


@dataclass
class Point:
    x: int
    y: float


@dataclass
class Shape:
    name: str
    points: list[Point]
    created: dt.datetime
    ident: uuid.UUID
    price: Decimal
    span: tuple[int, str]


class Model(pydantic.BaseModel):
    name: str
    when: dt.date
    tags: list[str]


@dataclass
class Line:
    x: int
    y: float
    length: float


WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _point() -> Point:
    return Point(1, 2.5)


def _shape() -> Shape:
    return Shape("tri", [Point(0, 0.0), Point(1, 1.5)], WHEN, UID, Decimal("3.10"), (1, "a"))


def _points() -> list[Point]:
    return [Point(1, 2.0), Point(3, 4.5)]


def _by_name() -> dict[str, Point]:
    return {"a": Point(1, 1.0)}


def _when() -> dt.datetime:
    return WHEN


def _naive() -> dt.datetime:
    return dt.datetime(2024, 1, 1, 12, 0)


def _day() -> dt.date:
    return dt.date(2024, 2, 29)


def _uid() -> uuid.UUID:
    return UID


def _price() -> Decimal:
    return Decimal("0.10")


def _pair() -> tuple[int, str]:
    return (1, "a")


def _model() -> Model:
    return Model(name="m", when=dt.date(2024, 1, 1), tags=["a"])


def _json() -> dict[str, Any]:
    return {"a": [1, 2.5, "x", None, True], "b": {"c": []}}


def _either() -> Point | Line:  # both arrive as JSON objects: stored with their member
    return Line(1, 2.0, 3.5)


def _mixed() -> list[Point | Line | Model]:
    return [Point(1, 2.0), Line(0, 0.0, 1.0), _model()]


def _moment() -> str | dt.datetime:  # both arrive as JSON strings
    return WHEN


def _blob() -> bytes:
    return bytes(range(256))


def _wait() -> dict[str, dt.timedelta]:
    return {"a": dt.timedelta(days=-1, microseconds=5)}


TYPED = [_point, _shape, _points, _by_name, _when, _naive, _day, _uid, _price, _pair, _model,
         _json, _either, _mixed, _moment, _blob, _wait]


def _same(a: Any, b: Any) -> None:
    assert a == b
    assert type(a) is type(b)
    if isinstance(a, list | tuple):
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    if isinstance(a, dict):
        for k in a:
            _same(a[k], b[k])
    if isinstance(a, Shape):
        _same(a.points, b.points)
        _same(a.span, b.span)
        _same(a.price, b.price)
        assert str(a.price) == str(b.price)
        assert a.created.utcoffset() == b.created.utcoffset()


@pytest.mark.parametrize("make", TYPED, ids=lambda f: f.__name__)
async def test_typed_round_trips(reg: Registry, make: Any) -> None:
    async def amake() -> Any:
        return make()

    amake.__annotations__ = {"return": make.__annotations__["return"]}
    amake.__module__ = make.__module__
    decorated = cached(registry=reg)(amake)
    expected = make()
    _same(await decorated(), expected)  # the miss
    _same(await decorated(), expected)  # the hit, decoded
    assert decorated.stats().hits == 1


class Opaque:
    pass


@pytest.mark.parametrize("nested", [False, True], ids=["object", "in a dict"])
async def test_unserializable_result_raises_naming_function_and_type(
        reg: Registry, nested: bool) -> None:
    calls = Calls()

    @cached(registry=reg)
    async def make_opaque(x: int) -> Any:
        calls(x)
        return {"obj": Opaque()} if nested else Opaque()

    with pytest.raises(SerializationError) as info:
        await make_opaque(1)
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert "make_opaque" in message and "Opaque" in message
    assert calls.log == [1]
    assert stored(reg, make_opaque.key(1)) is None
