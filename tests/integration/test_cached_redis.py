"""``@cached`` against a real redis-server: TTLs and jitter read back, the one-round-trip hit,
a busy pool, a backend that never answers, corrupt and forged values, unserializable results,
lazy binding, methods and typed round trips."""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import pathlib
import pickle
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pydantic
import pytest
import redis
import redis.asyncio
import redis.asyncio.connection
import redis.connection

import cachedeco
from cachedeco import BackendError, Registry, SerializationError, cached
from tools.redis_servers import Server, commandstats

# --- helpers -----------------------------------------------------------------------------------


class CountingConnection(redis.connection.Connection):
    """Records every packed send: one send is one round trip (a pipeline is one send)."""

    sends: list[Any]

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends.append(command)
        super().send_packed_command(command, check_health)


class AsyncCountingConnection(redis.asyncio.connection.Connection):
    """The asyncio twin of :class:`CountingConnection`."""

    sends: list[Any]

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends.append(command)
        await super().send_packed_command(command, check_health)


def _flat(sends: list[Any]) -> bytes:
    out = b""
    for command in sends:
        parts = command if isinstance(command, list | tuple) else [command]
        out += b"".join(bytes(p) if not isinstance(p, str) else p.encode() for p in parts)
    return out


@pytest.fixture
def counting_client(redis_url: str, prefix: str) -> Iterator[tuple[redis.Redis, list[Any]]]:
    sends: list[Any] = []
    conn_class = type("Counting", (CountingConnection,), {"sends": sends})
    url = redis.connection.parse_url(redis_url)
    pool = redis.ConnectionPool(connection_class=conn_class, host=url["host"],
                                port=url["port"], db=url.get("db", 0))
    client = redis.Redis(connection_pool=pool)
    yield client, sends
    client.close()
    pool.disconnect()


@pytest.fixture
async def acounting_client(redis_url: str, prefix: str
                           ) -> AsyncIterator[tuple[redis.asyncio.Redis, list[Any]]]:
    sends: list[Any] = []
    conn_class = type("ACounting", (AsyncCountingConnection,), {"sends": sends})
    url = redis.connection.parse_url(redis_url)
    pool = redis.asyncio.ConnectionPool(connection_class=conn_class, host=url["host"],
                                        port=url["port"], db=url.get("db", 0))
    client = redis.asyncio.Redis(connection_pool=pool)
    yield client, sends
    await client.aclose()
    await pool.disconnect()


@pytest.fixture
async def areg(amake_registry: Callable[..., Registry], redis_url: str, prefix: str
               ) -> Registry:
    return amake_registry(redis_url, prefix=prefix)


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel does) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def default_registry() -> Iterator[Registry]:
    yield cachedeco.registry
    cachedeco.registry.close()
    cachedeco.configure("memory://")


@pytest.fixture
async def adefault_registry() -> AsyncIterator[Registry]:
    yield cachedeco.registry
    await cachedeco.registry.aclose()
    cachedeco.configure("memory://")


class Calls:
    def __init__(self) -> None:
        self.log: list[Any] = []

    def __call__(self, item: Any) -> None:
        self.log.append(item)

    def __len__(self) -> int:
        return len(self.log)


# --- TTL and jitter ----------------------------------------------------------------------------


def test_ttl_with_jitter_read_back(make_registry: Callable[..., Registry], redis_url: str,
                                   prefix: str, redis_client: redis.Redis) -> None:
    reg = make_registry(redis_url, prefix=prefix, ttl=100, jitter=0.2)

    @cached(registry=reg)
    def f(x: int) -> int:
        return x

    for x in range(40):
        f(x)
    pttls = [redis_client.pttl(f.key(x)) for x in range(40)]
    assert all(80_000 - 2_000 <= p <= 120_000 for p in pttls), pttls
    assert len(set(pttls)) > 10  # drawn per entry, not one constant
    assert min(pttls) < 95_000 and max(pttls) > 105_000


def test_decorator_ttl_and_jitter_override(reg: Registry, redis_client: redis.Redis) -> None:
    @cached(registry=reg, ttl=10, jitter=0)
    def exact(x: int) -> int:
        return x

    @cached(registry=reg, ttl=50, jitter=0.5)
    def wide(x: int) -> int:
        return x

    exact(1)
    assert 9_000 <= redis_client.pttl(exact.key(1)) <= 10_000
    for x in range(20):
        wide(x)
    pttls = [redis_client.pttl(wide.key(x)) for x in range(20)]
    assert all(25_000 - 2_000 <= p <= 75_000 for p in pttls), pttls


@pytest.mark.parametrize(("ttl", "jitter"), [(0.2, 0.0), (1, 0.9), (1.5, 0.5)])
def test_stored_ttl_is_never_below_one_second(reg: Registry, redis_client: redis.Redis,
                                              ttl: float, jitter: float) -> None:
    @cached(registry=reg, ttl=ttl, jitter=jitter)
    def f(x: int) -> int:
        return x

    for x in range(20):
        f(x)
    pttls = [redis_client.pttl(f.key(x)) for x in range(20)]
    assert all(900 <= p <= max(ttl * (1 + jitter), 1) * 1000 for p in pttls), pttls


def test_no_entry_lives_forever(reg: Registry, redis_client: redis.Redis) -> None:
    @cached(registry=reg, ttl=None)
    def f(x: int) -> int:
        return x

    f(1)
    assert 0 < redis_client.pttl(f.key(1)) <= 3600 * 1.1 * 1000


# --- one round trip per hit ----------------------------------------------------------------------


@pytest.mark.parametrize("tags", [(), ("a:{x}", "b", "c:{x}")], ids=["0 tags", "3 tags"])
def test_a_hit_is_one_round_trip(counting_client: tuple[redis.Redis, list[Any]], prefix: str,
                                 redis_client: redis.Redis, tags: tuple[str, ...]) -> None:
    client, sends = counting_client
    reg = Registry(client, prefix=prefix)
    calls = Calls()

    @cached(registry=reg, tags=list(tags))
    def f(x: int) -> dict[str, int]:
        calls(x)
        return {"x": x}

    assert f(1) == {"x": 1}
    assert f(1) == {"x": 1}  # warm: connection made, script loaded
    sends.clear()
    assert f.key(1).startswith(f"{prefix}:")
    assert sends == []  # f.key is pure: no I/O
    before = commandstats(redis_client)
    assert f(1) == {"x": 1}
    after = commandstats(redis_client)
    assert len(sends) == 1, sends
    assert b"EVAL" not in _flat(sends).upper()
    executed = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    executed.pop("info", None)
    assert sum(executed.values()) == 1, executed  # and one command on the server
    assert len(calls) == 1


@pytest.mark.parametrize("tags", [(), ("a:{x}", "b", "c:{x}")], ids=["0 tags", "3 tags"])
async def test_an_async_hit_is_one_round_trip(
        acounting_client: tuple[redis.asyncio.Redis, list[Any]], prefix: str,
        tags: tuple[str, ...]) -> None:
    client, sends = acounting_client
    reg = Registry(client, prefix=prefix)
    calls = Calls()

    @cached(registry=reg, tags=list(tags))
    async def f(x: int) -> dict[str, int]:
        calls(x)
        return {"x": x}

    assert await f(1) == {"x": 1}
    assert await f(1) == {"x": 1}
    sends.clear()
    for _ in range(5):
        assert await f(1) == {"x": 1}
    assert len(sends) == 5, sends
    assert len(calls) == 1


def test_a_miss_is_a_read_and_one_store(counting_client: tuple[redis.Redis, list[Any]],
                                        prefix: str) -> None:
    client, sends = counting_client
    reg = Registry(client, prefix=prefix)

    @cached(registry=reg, tags=["t:{x}"])
    def f(x: int) -> int:
        return x

    f(0)  # connection and script warmed up
    sends.clear()
    f(1)
    assert len(sends) == 2, sends


# --- single-flight over a real round trip -------------------------------------------------------


def test_single_flight_threads_on_redis(reg: Registry) -> None:
    """Callers that read the miss while a load runs get its value, even when their read
    returns after the load landed: one run per key, always (API.md, single-flight)."""
    from concurrent.futures import ThreadPoolExecutor

    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x

    with ThreadPoolExecutor(48) as pool:
        for round_ in range(20):
            barrier = threading.Barrier(48, timeout=5)

            def call(_: int, round_: int = round_, barrier: threading.Barrier = barrier) -> int:
                barrier.wait()
                return int(f(round_))

            assert list(pool.map(call, range(48))) == [round_] * 48
    assert calls.log == list(range(20))


async def test_single_flight_tasks_on_redis(areg: Registry) -> None:
    calls = Calls()

    @cached(registry=areg)
    async def f(x: int) -> int:
        calls(x)
        await asyncio.sleep(0.002)
        return x

    for round_ in range(10):
        assert await asyncio.gather(*(f(round_) for _ in range(32))) == [round_] * 32
    assert calls.log == list(range(10))


# --- a busy pool -------------------------------------------------------------------------------


async def test_200_concurrent_async_callers_share_one_registry(areg: Registry) -> None:
    calls = Calls()

    @cached(registry=areg, tags=["item:{x}"])
    async def f(x: int) -> dict[str, int]:
        calls(x)
        await asyncio.sleep(0.01)
        return {"x": x}

    async def everyone() -> list[Any]:
        return await asyncio.gather(*(f(x) for x in range(200)), return_exceptions=True)

    for _ in range(3):  # misses, then hits, then misses after invalidation
        results = await everyone()
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        assert results == [{"x": x} for x in range(200)]
        await asyncio.gather(*(areg.ainvalidate_tags(f"item:{x}") for x in range(0, 200, 2)))
    assert len(calls) == 200 + 100 + 100
    assert areg.stats().backend_errors == 0


def test_200_threads_share_one_registry(reg: Registry) -> None:
    from concurrent.futures import ThreadPoolExecutor

    @cached(registry=reg)
    def f(x: int) -> int:
        time.sleep(0.005)
        return x

    with ThreadPoolExecutor(200) as pool:
        assert list(pool.map(f, range(400))) == list(range(400))
    assert reg.stats().backend_errors == 0


def _connections_named(client: redis.Redis, name: str) -> int:
    """How many connections the server holds with CLIENT SETNAME ``name`` (settles ~1 s)."""
    deadline = time.monotonic() + 1.0
    while True:
        count = sum(1 for c in client.client_list() if c.get("name") == name)
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


def test_close_releases_every_connection(make_registry: Callable[..., Registry],
                                         redis_url: str, prefix: str,
                                         redis_client: redis.Redis) -> None:
    from concurrent.futures import ThreadPoolExecutor

    reg = make_registry(redis_url, prefix=prefix, client_name=prefix)

    @cached(registry=reg)
    def f(x: int) -> int:
        time.sleep(0.01)
        return x

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(f, range(20))) == list(range(20))
    assert sum(1 for c in redis_client.client_list() if c.get("name") == prefix) >= 1
    reg.close()
    assert _connections_named(redis_client, prefix) == 0


async def test_aclose_releases_every_connection(amake_registry: Callable[..., Registry],
                                                redis_url: str, prefix: str,
                                                redis_client: redis.Redis) -> None:
    reg = amake_registry(redis_url, prefix=prefix, client_name=prefix)

    @cached(registry=reg)
    async def f(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    assert await asyncio.gather(*(f(x) for x in range(20))) == list(range(20))
    assert sum(1 for c in redis_client.client_list() if c.get("name") == prefix) >= 1
    await reg.aclose()
    assert _connections_named(redis_client, prefix) == 0


# --- a backend that never answers ----------------------------------------------------------------


def test_fallback_within_the_socket_timeout_then_breaker(
        make_registry: Callable[..., Registry], blackhole: int, prefix: str) -> None:
    reg = make_registry(f"redis://127.0.0.1:{blackhole}/0", prefix=prefix, socket_timeout=0.2,
                   socket_connect_timeout=0.2)
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x * 3

    durations = []
    for x in range(10):
        start = time.monotonic()
        assert f(x) == x * 3
        durations.append(time.monotonic() - start)
    assert max(durations) < 0.2 + 0.4, durations
    assert durations[0] >= 0.15  # it really waited on the socket
    assert all(d < 0.05 for d in durations[-3:]), durations  # breaker open: no wait at all
    assert len(calls) == 10
    assert reg.stats().backend_errors >= 10
    assert f.stats().backend_errors >= 10


async def test_async_fallback_within_the_socket_timeout_then_breaker(
        amake_registry: Callable[..., Registry], blackhole: int, prefix: str) -> None:
    reg = amake_registry(f"redis://127.0.0.1:{blackhole}/0", prefix=prefix, socket_timeout=0.2,
                   socket_connect_timeout=0.2)

    @cached(registry=reg)
    async def f(x: int) -> int:
        return x * 3

    durations = []
    for x in range(10):
        start = time.monotonic()
        assert await f(x) == x * 3
        durations.append(time.monotonic() - start)
    assert max(durations) < 0.6, durations
    assert all(d < 0.05 for d in durations[-3:]), durations
    assert reg.stats().backend_errors >= 10


def test_on_error_raise_raises_backend_error(make_registry: Callable[..., Registry],
                                             blackhole: int, prefix: str) -> None:
    reg = make_registry(f"redis://127.0.0.1:{blackhole}/0", prefix=prefix, socket_timeout=0.2,
                   socket_connect_timeout=0.2, on_error="raise")
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x

    start = time.monotonic()
    with pytest.raises(BackendError) as info:
        f(1)
    assert time.monotonic() - start < 0.6
    assert "f" in str(info.value)
    assert isinstance(info.value.__cause__, redis.RedisError | OSError | TimeoutError)
    assert calls.log == []
    with pytest.raises(BackendError):
        reg.invalidate_tags("t")


async def test_async_on_error_raise_raises_backend_error(
        amake_registry: Callable[..., Registry], blackhole: int, prefix: str) -> None:
    reg = amake_registry(f"redis://127.0.0.1:{blackhole}/0", prefix=prefix, socket_timeout=0.2,
                   socket_connect_timeout=0.2, on_error="raise")

    @cached(registry=reg)
    async def f(x: int) -> int:
        return x

    with pytest.raises(BackendError):
        await f(1)


def test_breaker_probes_again_after_the_cooldown(make_registry: Callable[..., Registry],
                                                 fresh_redis: Server, prefix: str) -> None:
    reg = make_registry(fresh_redis.url, prefix=prefix, socket_timeout=0.3,
                   socket_connect_timeout=0.3, breaker_cooldown=0.5)
    calls = Calls()

    @cached(registry=reg)
    def f(x: int) -> int:
        calls(x)
        return x

    assert (f(1), f(1)) == (1, 1)
    assert len(calls) == 1
    fresh_redis.kill()
    for x in range(8):
        assert f(x) == x  # down: computed, never raised
    errors = reg.stats().backend_errors
    assert errors >= 8
    fresh_redis.restart()
    time.sleep(0.6)
    f(100)  # the probe reaches the server again and stores
    before = len(calls)
    assert f(100) == 100
    assert len(calls) == before  # a hit: the backend is in use again
    assert f.stats().hits >= 2


# --- corrupt values ------------------------------------------------------------------------------


def _valid_header(raw: bytes) -> bytes:
    return raw[: raw.index(b"\n") + 1]


@pytest.mark.parametrize("corruption", [
    "garbage", "binary", "empty", "bad-json-payload", "wrong-shape-payload", "broken-header",
])
def test_corrupt_value_is_a_miss_overwritten_and_counted(
        reg: Registry, redis_client: redis.Redis, corruption: str) -> None:
    calls = Calls()

    @cached(registry=reg, tags=["t"])
    def f(x: int) -> list[Point]:
        calls(x)
        return [Point(x, 0.5)]

    assert f(1) == [Point(1, 0.5)]
    key = f.key(1)
    header = _valid_header(redis_client.get(key))
    raw = {
        "garbage": b"not an envelope",
        "binary": b"\x80\x81\xfe\xff",
        "empty": b"",
        "bad-json-payload": header + b'[{"x": 1, "y":',
        "wrong-shape-payload": header + b'[{"a": 1}]',
        "broken-header": b"cd1:zz:1\n[]",
    }[corruption]
    redis_client.set(key, raw)
    assert f(1) == [Point(1, 0.5)]  # a miss: recomputed
    assert len(calls) == 2
    stored = redis_client.get(key)
    assert stored != raw and stored.startswith(b"cd1:")  # overwritten with a good entry
    assert redis_client.pttl(key) > 0
    assert f(1) == [Point(1, 0.5)]
    assert len(calls) == 2  # and served from it
    assert f.stats().decode_errors == 1  # counted


# --- forged pickles ------------------------------------------------------------------------------


class Exploit:
    """Unpickling this creates the marker file."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))


@pytest.fixture
def pickle_reg(make_registry: Callable[..., Registry], redis_url: str, prefix: str
               ) -> Registry:
    return make_registry(redis_url, prefix=prefix, serializer="pickle", secret="right")


@pytest.mark.parametrize("forgery", ["unsigned", "wrong-secret", "bare", "truncated-mac"])
def test_forged_pickle_is_never_unpickled(pickle_reg: Registry, redis_client: redis.Redis,
                                          tmp_path: pathlib.Path, forgery: str) -> None:
    marker = tmp_path / "pwned"
    calls = Calls()
    reg = pickle_reg

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
        make_registry: Callable[..., Registry], redis_url: str, prefix: str) -> None:
    calls = Calls()

    def load(x: int) -> set[int]:
        calls(x)
        return {x, x + 1}

    one = make_registry(redis_url, prefix=prefix, serializer="pickle", secret=b"k")
    two = make_registry(redis_url, prefix=prefix, serializer="pickle", secret=b"k")
    assert cached(registry=one)(load)(1) == {1, 2}
    assert cached(registry=two)(load)(1) == {1, 2}
    assert len(calls) == 1


# --- unserializable results ----------------------------------------------------------------------


class Opaque:
    pass


def test_unserializable_result_raises_naming_function_and_type(
        reg: Registry, redis_client: redis.Redis) -> None:
    calls = Calls()

    @cached(registry=reg)
    def make_opaque(x: int) -> Any:
        calls(x)
        return Opaque()

    with pytest.raises(SerializationError) as info:
        make_opaque(1)
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert "make_opaque" in message and "Opaque" in message
    assert calls.log == [1]
    assert redis_client.exists(make_opaque.key(1)) == 0


async def test_async_unserializable_result_raises(areg: Registry) -> None:
    calls = Calls()

    @cached(registry=areg)
    async def make_opaque(x: int) -> Any:
        calls(x)
        return {"obj": Opaque()}

    with pytest.raises(SerializationError, match="make_opaque"):
        await make_opaque(1)
    assert calls.log == [1]


def test_non_finite_floats_are_refused_not_corrupted(reg: Registry) -> None:
    @cached(registry=reg)
    def ratio(x: int) -> float:
        return float("nan") if x else float("inf")

    with pytest.raises(SerializationError, match="ratio"):
        ratio(1)


# --- lazy binding and methods --------------------------------------------------------------------


def test_lazy_binding_on_redis(default_registry: Registry, redis_url: str, prefix: str,
                               redis_client: redis.Redis) -> None:
    calls = Calls()

    @cached(ttl=60)
    def f(x: int) -> int:
        calls(x)
        return x

    cachedeco.configure(redis_url, prefix=prefix)
    assert (f(1), f(1)) == (1, 1)
    assert calls.log == [1]
    assert f.key(1).startswith(f"{prefix}:")
    assert redis_client.exists(f.key(1)) == 1
    cachedeco.invalidate_tags("nothing")


async def test_lazy_binding_on_redis_async(adefault_registry: Registry, redis_url: str,
                                           prefix: str,
                                           aredis_client: redis.asyncio.Redis) -> None:
    calls = Calls()

    @cached(ttl=60)
    async def f(x: int) -> int:
        calls(x)
        return x

    cachedeco.configure(redis_url, prefix=prefix)
    assert (await f(1), await f(1)) == (1, 1)
    assert calls.log == [1]
    assert await aredis_client.exists(f.key(1)) == 1


def build_accounts(reg: Registry, calls: Calls) -> type:
    class Accounts:
        @cached(registry=reg, tags=["acct:{account_id}"])
        def balance(self, account_id: int) -> Decimal:
            calls(("balance", account_id))
            return Decimal("10.50")

        @cached(registry=reg)
        async def owner(self, account_id: int) -> str:
            calls(("owner", account_id))
            return "ann"

        @classmethod
        @cached(registry=reg)
        def currency(cls, account_id: int) -> str:
            calls(("currency", account_id))
            return "EUR"

        @staticmethod
        @cached(registry=reg)
        def rate(code: str) -> float:
            calls(("rate", code))
            return 1.5

    return Accounts


async def test_methods_on_redis(areg: Registry, redis_client: redis.Redis) -> None:
    reg = areg
    calls = Calls()
    accounts = build_accounts(reg, calls)
    a, b = accounts(), accounts()
    assert a.balance(7) == Decimal("10.50")
    assert b.balance(7) == Decimal("10.50")  # self is not part of the key
    result = a.balance(7)
    assert type(result) is Decimal and str(result) == "10.50"
    assert await a.owner(7) == "ann"
    assert await b.owner(7) == "ann"
    assert accounts.currency(7) == a.currency(7) == "EUR"
    assert accounts.rate("x") == a.rate("x") == 1.5
    assert calls.log == [("balance", 7), ("owner", 7), ("currency", 7), ("rate", "x")]
    key = a.balance.key(7)
    assert redis_client.exists(key) == 1
    assert a.balance.invalidate(7) is True
    assert redis_client.get(key).startswith(b"cdT:")
    reg.invalidate_tags("acct:7")
    assert a.balance(7) == Decimal("10.50")
    assert await b.owner.invalidate(7) is True
    assert await a.owner(7) == "ann"
    assert len(calls) == 6


# --- typed round trips ---------------------------------------------------------------------------


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


TYPED = [_point, _shape, _points, _by_name, _when, _naive, _day, _uid, _price, _pair, _model,
         _json]


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
def test_typed_round_trips(reg: Registry, make: Any) -> None:
    decorated = cached(registry=reg)(make)
    expected = make()
    _same(decorated(), expected)  # the miss
    _same(decorated(), expected)  # the hit, decoded
    assert decorated.stats().hits == 1


@pytest.mark.parametrize("make", [_shape, _points, _when, _price], ids=lambda f: f.__name__)
async def test_async_typed_round_trips(areg: Registry, make: Any) -> None:
    async def amake() -> Any:
        return make()

    amake.__annotations__ = {"return": make.__annotations__["return"]}
    amake.__module__ = make.__module__
    decorated = cached(registry=areg)(amake)
    _same(await decorated(), make())
    _same(await decorated(), make())
    assert decorated.stats().hits == 1
