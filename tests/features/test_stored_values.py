"""What the servers hold is checked before it is served: a corrupt value is a miss that is
overwritten and counted, a forged pickle is never unpickled (a signed one is shared by
registries with the secret), and results JSON cannot hold are refused, never corrupted."""

from __future__ import annotations

import datetime as dt
import hmac
import pathlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from cachedeco import Registry, SerializationError, cached
from tests.support.calls import Calls
from tests.support.deployments import REDIS_BACKENDS, Deployment

pytestmark = pytest.mark.deployments(*REDIS_BACKENDS)


@dataclass
class Point:
    x: int
    y: float


def _valid_header(raw: bytes) -> bytes:
    return raw[: raw.index(b"\n") + 1]


@pytest.mark.parametrize("corruption", [
    "garbage", "binary", "empty", "bad-json-payload", "wrong-shape-payload", "broken-header",
])
def test_corrupt_value_is_a_miss_overwritten_and_counted(
        reg: Registry, deployment: Deployment, corruption: str) -> None:
    raw = deployment.raw
    calls = Calls()

    @cached(registry=reg, tags=["t"])
    def f(x: int) -> list[Point]:
        calls(x)
        return [Point(x, 0.5)]

    assert f(1) == [Point(1, 0.5)]
    key = f.key(1)
    header = _valid_header(raw.get(key))
    forged = {
        "garbage": b"not an envelope",
        "binary": b"\x80\x81\xfe\xff",
        "empty": b"",
        "bad-json-payload": header + b'[{"x": 1, "y":',
        "wrong-shape-payload": header + b'[{"a": 1}]',
        "broken-header": b"cd1:zz:1\n[]",
    }[corruption]
    raw.set(key, forged)
    assert f(1) == [Point(1, 0.5)]  # a miss: recomputed
    assert len(calls) == 2
    stored = raw.get(key)
    assert stored != forged and stored.startswith(b"cd1:")  # overwritten with a good entry
    assert raw.pttl(key) > 0
    assert f(1) == [Point(1, 0.5)]
    assert len(calls) == 2  # and served from it
    assert f.stats().decode_errors == 1  # counted


class Exploit:
    """Unpickling this creates the marker file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.parametrize("forgery", ["unsigned", "wrong-secret", "bare", "truncated-mac"])
def test_forged_pickle_is_never_unpickled(make_registry: Callable[..., Registry],
                                          deployment: Deployment, tmp_path: pathlib.Path,
                                          forgery: str) -> None:
    reg = make_registry(deployment.url, serializer="pickle", secret="right" * 8)
    redis_client = deployment.raw
    marker = tmp_path / "pwned"
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> dict[str, Any]:
        calls(x)
        return {"x": x, "at": dt.date(2024, 1, 2)}

    assert f(1) == {"x": 1, "at": dt.date(2024, 1, 2)}
    key = f.key(1)
    header = _valid_header(redis_client.get(key))
    evil = pickle.dumps(Exploit(marker), protocol=pickle.HIGHEST_PROTOCOL)
    payload = {
        "unsigned": header + evil,
        "wrong-secret": header + b"\x01" + hmac.digest(b"wrong", evil, "sha256") + evil,
        "bare": evil,
        "truncated-mac": header + b"\x01" + evil,
    }[forgery]
    redis_client.set(key, payload)
    assert f(1) == {"x": 1, "at": dt.date(2024, 1, 2)}
    assert not marker.exists()
    assert len(calls) == 2
    assert redis_client.get(key) != payload
    assert f(1) == {"x": 1, "at": dt.date(2024, 1, 2)}
    assert len(calls) == 2
    assert not marker.exists()
    assert f.stats().decode_errors == 1  # refused, logged and counted


def test_signed_pickle_is_shared_by_registries_with_the_secret(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    calls = Calls()

    def load(x: int) -> set[int]:
        calls(x)
        return {x, x + 1}

    one = make_registry(deployment.url, serializer="pickle", secret=b"k" * 32)
    two = make_registry(deployment.url, serializer="pickle", secret=b"k" * 32)
    assert cached(registry=one)(load)(1) == {1, 2}
    assert cached(registry=two)(load)(1) == {1, 2}
    assert len(calls) == 1


def test_non_finite_floats_are_refused_not_corrupted(reg: Registry) -> None:
    @cached(registry=reg)
    def ratio(x: int) -> float:
        return float("nan") if x else float("inf")

    with pytest.raises(SerializationError, match="ratio"):
        ratio(1)
